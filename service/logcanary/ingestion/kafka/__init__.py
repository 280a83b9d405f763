"""Kafka ingestion by role: :class:`DirectConsumer` (single node), :class:`Router` and :class:`Owner` (scale-out)."""

from logcanary.ingestion.kafka.clients import KafkaUnavailable, client_options
from logcanary.ingestion.kafka.consumer import SupervisedConsumer
from logcanary.ingestion.kafka.direct import DirectConsumer
from logcanary.ingestion.kafka.owner import Owner
from logcanary.ingestion.kafka.router import Router

__all__ = ["DirectConsumer", "KafkaUnavailable", "Owner", "Router", "SupervisedConsumer", "client_options"]
