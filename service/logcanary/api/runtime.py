"""The runtime the routes need (settings, store, live state, analyses, Kafka) and its FastAPI dependency."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from logcanary.analyses import Analyses
from logcanary.ingestion.kafka import KafkaIngestor
from logcanary.settings import Settings
from logcanary.state import LiveState
from logcanary.store.factory import open_store


class Runtime:
    """What the routes need, created with the app and started by its lifespan."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = open_store(settings)
        self.state = LiveState(settings, self.store)
        self.analyses = Analyses(self.state, self.store)  # one database, two roles
        self.kafka: KafkaIngestor | None = None  # the consumer that counts events
        self.router: KafkaIngestor | None = None  # scale-out: the consumer that routes them to their owners


async def runtime(request: Request) -> Runtime:
    return cast(Runtime, request.app.state.runtime)


RuntimeDep = Annotated[Runtime, Depends(runtime)]
