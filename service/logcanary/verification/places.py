"""Where the cluster map draws each event type of a service: given once, kept.

A template gets its place the first time a map shows it: laid out among the service's templates placed before
(:func:`logcanary.analysis.layout.place`, by similarity; they never move), then recorded in the store
(``map_places``). From then on every map of the service, on any replica and after any restart, draws it there, so
unchanged clusters never move between refreshes or deployments, and a new event type settles beside its nearest
known neighbours. A template that generalised (a new id, the old one an alias) keeps the place of its former id.

A map read therefore may write: the places of event types shown for the first time. When two replicas place the
same template at once, the store keeps the first place written and both draw that one. The layout runs in a worker
thread from words taken on the loop (templates change while events are mined).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from logcanary.analysis.layout import Point, place
from logcanary.analysis.projection import position
from logcanary.engine.clustering import template_terms
from logcanary.engine.miner import Template
from logcanary.engine.model import ServiceModel
from logcanary.store.base import Repository
from logcanary.verification.writer import StoreWriter

log = logging.getLogger(__name__)

SERVICES_KEPT = 64  # services whose places are held in memory (the rest are read from the store again)


class Places:
    def __init__(self, repository: Repository, write: StoreWriter) -> None:
        self.repository = repository
        self.write = write
        self._known: OrderedDict[str, dict[str, Point]] = OrderedDict()  # service -> template id -> place
        self._locks: dict[str, asyncio.Lock] = {}

    async def of(self, model: ServiceModel, shown: list[Template]) -> dict[str, Point]:
        """The places of the ``shown`` templates, by their current ids: recorded ones, and the others laid out now
        among every placed template of the service (and recorded)."""
        service = model.name
        lock = self._locks.setdefault(service, asyncio.Lock())
        async with lock:  # one layout per service at a time: two maps never place one template twice
            known = await self._load(service)
            out: dict[str, Point] = {}
            renamed: dict[str, Point] = {}
            missing: list[Template] = []
            for template in shown:
                found = _recorded(template, known)
                if found is None:
                    missing.append(template)
                else:
                    out[template.template_id] = found
                    if template.template_id not in known:
                        renamed[template.template_id] = found
            if not (missing or renamed):
                return out
            new = {t.template_id: template_terms(t) for t in missing}
            anchors: dict[str, tuple[Point, dict[str, int]]] = {}
            for template in model.miner.templates.values():
                found = _recorded(template, known)
                if found is not None and template.template_id not in new:
                    anchors[template.template_id] = (found, dict(template_terms(template)))
            placed = await asyncio.to_thread(place, new, anchors) if new else {}
            try:
                stored = await self.write(self.repository.save_places, service, {**placed, **renamed})
            except Exception:  # the places are drawn all the same; the next map records them
                log.warning("could not record the map's places of service %r", service, exc_info=True)
                stored = {**placed, **renamed}
            known.update(stored)
            out.update(stored)
            for template in missing:  # none lost (a store that kept nothing): the content projection
                out.setdefault(template.template_id, position(template))
            return out

    async def _load(self, service: str) -> dict[str, Point]:
        known = self._known.get(service)
        if known is None:
            known = await self.write(self.repository.load_places, service)
            self._known[service] = known
            if len(self._known) > SERVICES_KEPT:
                self._known.popitem(last=False)
        self._known.move_to_end(service)
        return known


def _recorded(template: Template, known: dict[str, Point]) -> Point | None:
    """The recorded place of a template, by its id or a former one."""
    found = known.get(template.template_id)
    if found is None:
        found = next((known[alias] for alias in reversed(template.aliases) if alias in known), None)
    return found
