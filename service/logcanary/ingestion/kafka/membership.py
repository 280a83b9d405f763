"""Who else is in a consumer group: read once, right after this process joins it and before it counts anything.

A process that shares a group with processes of another mode or other settings (logcanary.live.cluster) takes
partitions whose events its peers never see, and counts them its own way; nothing else would show it. Read after
the join, the group's generation holds the members that are alive now (a crashed process is dropped by the
rebalance), so the check needs no waiting and sees what a read before joining would miss.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from logcanary.ingestion.kafka.clients import CLOSE_TIMEOUT_SECONDS, bounded
from logcanary.live.cluster import Member

log = logging.getLogger(__name__)

DESCRIBE_TIMEOUT_SECONDS = 10.0


class Refused(Exception):
    """This process must not consume in this group: the reason is worded for the operator."""


async def check(options: dict[str, Any], group: str, me: Member) -> None:
    """Raises Refused naming each member this process conflicts with. A broker that cannot describe the group
    (an old or partial Kafka API) is logged and trusted: the check guards against mistakes, it is not a lock."""
    admin = AIOKafkaAdminClient(**options)
    try:
        await asyncio.wait_for(admin.start(), DESCRIBE_TIMEOUT_SECONDS)
        response = await asyncio.wait_for(admin.describe_consumer_groups([group]), DESCRIBE_TIMEOUT_SECONDS)
        described = response[0].to_object()["groups"]
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # any failure: the check is skipped, and said so
        log.warning("could not read the members of consumer group %r (%s: %s): not checked", group,
                    type(exc).__name__, exc)  # fmt: skip
        return
    finally:
        await bounded(admin.close(), CLOSE_TIMEOUT_SECONDS)
    members = [(m["client_id"], m["member_id"]) for g in described for m in g["members"]]
    reasons, strangers = me.conflicts(members)
    if strangers:
        log.warning(
            "consumer group %r has members that are not logcanary processes of this release: %s (they take "
            "partitions this process will not count)", group, ", ".join(strangers[:5]),
        )  # fmt: skip
    if reasons:
        raise Refused(
            f"consumer group {group!r} is shared with processes that count differently: {'; '.join(reasons)}. "
            "Give this process its own LOGCANARY_KAFKA_GROUP_ID, or the cluster's mode, store and settings"
        )
