"""Writes the fixture state-format1.sqlite (and its expected counts) with the code of commit 0443c61.

That code saved each miner and each deployment as one blob (codec format 1). Usage:
    git archive 0443c61 service | tar -x -C SRC
    python tests/data/make_state_format1.py OUT_DIR SRC
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, sys.argv[2])  # the old code, not this tree's

from logcanary.settings import Settings
from logcanary.state import LiveState
from logcanary.store.sqlite import SqliteStore

TRACE = (
    "java.lang.NullPointerException: x is null\n"
    "\tat com.acme.pay.EncryptionService.encrypt(EncryptionService.java:{n})\n"
    "\tat com.acme.pay.Api.handle(Api.java:12)"
)


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    settings = Settings(state_dir=out, max_deployments_per_service=3)
    state = LiveState(settings, SqliteStore(settings.state_file))
    state.load()
    rng = random.Random(7)
    for i in range(3000):
        message = [
            f"request {i} served in {rng.randrange(900)}ms",
            f"user {rng.choice(['alice', 'bob', 'carol', 'dave', 'erin'])} logged in from 10.0.0.{rng.randrange(9)}",
            f"cache {rng.choice(['hit', 'miss', 'evict', 'load'])} for key k{i}",
            TRACE.format(n=rng.randrange(100)),
            f"stored as {rng.choice(['bytes', 'values'])}",
            f"job {rng.choice(['a', 'b', 'c', 'd', 'e', 'f'])} finished",
        ][rng.randrange(6)]
        service, deployment = rng.choice(["payments", "orders"]), rng.choice(["v1", "v2", "v3"])
        state.engine.observe(service, deployment, message, 1_700_000_000.0 + i, f"h{i % 4}", "info")
    state.offsets[("logs", 0)] = 3000
    asyncio.run(state.checkpoint())
    state.store.close()
    expected: dict[str, object] = {
        f"{name}/{deployment}": {
            "events": model.events,
            "templates": {t.template_id: stats.count for t, stats in model.templates().items()},
            "other": model.other.count,
        }
        for name, service_model in state.engine.services.items()
        for deployment, model in service_model.deployments.items()
    }
    expected["_miners"] = {name: s.miner.to_state() for name, s in state.engine.services.items()}
    (out / "expected.json").write_text(json.dumps(expected, indent=0, sort_keys=True))


if __name__ == "__main__":
    main()
