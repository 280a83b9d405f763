"""Bounded memory under adversarial input: a million unique random strings.

Every message is a new event type, the worst case for a template miner. The
engine must keep its caps (templates per service and per deployment, clusters,
hosts) and count every event exactly (the overflow goes to the "other" bucket),
with flat memory.

    .venv/bin/python bench/bench_memory.py [--messages 1000000] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import string
import time

from common import machine_info, peak_rss_mb, print_machine

from logcanary.engine.model import Engine


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = random.Random(1)
    alphabet = string.ascii_letters + string.digits
    engine = Engine()
    started = time.perf_counter()
    for index in range(args.messages):
        words = (rng.choices(alphabet, k=rng.randint(3, 10)) for _ in range(rng.randint(1, 8)))
        engine.observe("svc", "v1", " ".join("".join(w) for w in words), float(index), f"host-{index % 5000}")
    seconds = time.perf_counter() - started
    service = engine.service("svc")
    deployment = service.deployment("v1")
    counted = sum(stats.count for stats in deployment.stats.values()) + deployment.other.count
    result = {
        "messages": args.messages,
        "seconds": round(seconds, 1),
        "messages_per_second": round(args.messages / seconds),
        "templates_per_service": len(service.miner),
        "templates_in_deployment": len(deployment.stats),
        "clusters_in_deployment": len(deployment.clusterer),
        "hosts_max_per_template": max((len(s.hosts) for s in deployment.stats.values()), default=0),
        "counted_in_other": deployment.other.count,
        "counted_exactly": counted == args.messages,
        "peak_rss_mb": peak_rss_mb(),
    }
    if args.json:
        print(json.dumps({"machine": machine_info(), "result": result}, indent=2))
    else:
        print_machine(machine_info())
        for key, value in result.items():
            print(f"  {key:<26} {value}")
    return 0 if result["counted_exactly"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
