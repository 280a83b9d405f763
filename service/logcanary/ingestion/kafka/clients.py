"""Connection options and bounded waits shared by every Kafka client of the service."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from aiokafka.helpers import create_ssl_context

from logcanary.settings import KafkaSettings

log = logging.getLogger(__name__)

#: How often the cluster's reachability is checked in the background, and how long one check may take.
PROBE_INTERVAL_SECONDS = 2.0
PROBE_TIMEOUT_SECONDS = 1.5
#: Longest wait to connect, and to close clients that cannot reach the broker.
CONNECT_TIMEOUT_SECONDS = 30.0
CLOSE_TIMEOUT_SECONDS = 5.0
#: Largest batch the producer builds (a router's batches to the repartition topic; above any record).
MAX_BATCH_BYTES = 2 * 1024 * 1024


class KafkaUnavailable(Exception):
    """Scale-out HTTP ingestion could not hand events to Kafka."""


def client_options(config: KafkaSettings) -> dict[str, Any]:
    """Connection and security options shared by the consumers, the producers and the admin client."""
    options: dict[str, Any] = {
        "bootstrap_servers": config.kafka_bootstrap_servers,
        "security_protocol": config.kafka_security_protocol,
        "client_id": "logcanary",
    }
    if config.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=str(config.kafka_ssl_cafile) if config.kafka_ssl_cafile else None,
            certfile=str(config.kafka_ssl_certfile) if config.kafka_ssl_certfile else None,
            keyfile=str(config.kafka_ssl_keyfile) if config.kafka_ssl_keyfile else None,
        )
    if config.kafka_security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = config.kafka_sasl_mechanism
        options["sasl_plain_username"] = config.kafka_sasl_username
        password = config.kafka_sasl_password
        options["sasl_plain_password"] = password.get_secret_value() if password else None
    return options


async def bounded(awaitable: Awaitable[Any], timeout: float) -> None:
    """Awaits at most ``timeout`` seconds; a client that cannot reach the broker is abandoned, not waited for."""
    try:
        await asyncio.wait_for(awaitable, timeout)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.warning("gave up waiting for Kafka (%s: %s)", type(exc).__name__, exc)
