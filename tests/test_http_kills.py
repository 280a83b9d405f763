"""HTTP retries with idempotency keys across SIGKILLs: every event counted exactly once.

A client posts batches, each with its own ``Idempotency-Key``; a killer SIGKILLs the real service at random
moments (mid-request included). Whatever did not get an answer is retried with the same key after a restart.
Either the kill came before the batch's checkpoint (nothing of it was saved, the retry counts it) or after
(the key was saved with its events, the retry gets the original answer): never lost, never twice.
"""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta

import httpx

from .conftest import Launcher

BATCHES = 600
EVENTS_PER_BATCH = 100
KILLS = 10


def batch(index: int, start: datetime) -> list[dict[str, object]]:
    """The same body every time it is sent: a retry must be the same request."""
    return [
        {
            "timestamp": (start + timedelta(milliseconds=n)).isoformat(),
            "service": "orders",
            "deployment": "v1",
            "host": f"pod-{n % 3}",
            "message": f"order {index}-{n} accepted for customer {n * 7919 % 1000}",
        }
        for n in range(EVENTS_PER_BATCH)
    ]


def test_retries_with_idempotency_keys_across_kills_count_every_event_once(service_process: Launcher) -> None:
    rng = random.Random(7)
    start = datetime.now(UTC) - timedelta(minutes=1)
    bodies = [batch(index, start) for index in range(BATCHES)]
    pending = list(range(BATCHES))
    kills = replays = 0
    answered: list[int] = []
    while pending:
        service = service_process({"LOGCANARY_CHECKPOINT_INTERVAL_SECONDS": "0.2"})
        service.start()
        killer = None
        if kills < KILLS:
            killer = threading.Timer(rng.uniform(0.02, 0.25), service.kill)
            killer.start()
        with service.client() as client:
            if answered:  # the client may have missed the last answer before the kill: it retries, and is replayed
                last = answered[-1]
                try:
                    again = client.post("/v1/events", json=bodies[last], headers={"Idempotency-Key": f"b{last}"})
                    assert again.headers.get("Idempotent-Replayed") == "true", again.text
                    replays += 1
                except httpx.TransportError:
                    pass  # killed already: the next run tries again
            for index in list(pending):
                try:
                    answer = client.post("/v1/events", json=bodies[index], headers={"Idempotency-Key": f"b{index}"})
                except httpx.TransportError:
                    break  # killed mid-request: the batch is retried after the restart
                assert answer.status_code == 202, answer.text
                assert answer.json()["accepted"] == EVENTS_PER_BATCH
                replays += answer.headers.get("Idempotent-Replayed") == "true"
                pending.remove(index)
                answered.append(index)
        if killer is not None:
            killer.join()
            kills += 1
            if service.process is not None and service.process.poll() is None:
                service.kill()  # the timer fired after the client had finished: a kill all the same
        else:
            service.stop()

    service = service_process({})
    service.start()
    with service.client() as client:
        [orders] = [s for s in client.get("/v1/services").json() if s["service"] == "orders"]
    service.stop()
    print(f"\n{BATCHES} batches x {EVENTS_PER_BATCH} events, {kills} SIGKILLs, {replays} replayed answers: "
          f"{orders['events']} counted")  # fmt: skip
    assert kills >= KILLS // 2  # most kills land while batches are still in flight
    assert orders["events"] == BATCHES * EVENTS_PER_BATCH  # nothing lost, nothing counted twice
