"""Realistic traffic of a Java payments service, for the demo, the tests and the benchmarks.

A baseline (v1) and a canary (v2) log the same kinds of events with fresh
request ids, latencies, users and hosts; the canary can also throw the
motivating bug: ``NullPointerException``s from a new ``EncryptionService``.
Deterministic for a given seed.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

SERVICE = "payments"

_NPE = (
    "Failed to process payment {request}\n"
    'java.lang.NullPointerException: Cannot invoke "javax.crypto.SecretKey.getEncoded()" because "this.key" is null\n'
    "\tat com.acme.payments.crypto.EncryptionService.encrypt(EncryptionService.java:{line})\n"
    "\tat com.acme.payments.PaymentProcessor.tokenize(PaymentProcessor.java:88)\n"
    "\tat com.acme.payments.PaymentProcessor.process(PaymentProcessor.java:41)\n"
    "\tat com.acme.payments.api.PaymentController.pay(PaymentController.java:57)\n"
    "\tat java.base/jdk.internal.reflect.NativeMethodAccessorImpl.invoke0(Native Method)\n"
    "\tat org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:897)"
)
_TIMEOUT = (
    "Upstream call failed for order {order}\n"
    "java.net.SocketTimeoutException: Read timed out after {ms} ms\n"
    "\tat java.base/java.net.SocketInputStream.socketRead0(Native Method)\n"
    "\tat com.acme.payments.gateway.CardGatewayClient.authorize(CardGatewayClient.java:{line})\n"
    "\tat com.acme.payments.PaymentProcessor.process(PaymentProcessor.java:52)"
)

# (weight, level, template); templates are filled with fresh values per event.
_EVENTS: list[tuple[float, str, str]] = [
    (30, "INFO", "Received POST /api/v1/payments request_id={request} user={user} amount={amount} currency=EUR"),
    (30, "INFO", "Payment {payment} authorized for order {order} in {ms} ms"),
    (12, "INFO", "GET /api/v1/payments/{payment} 200 {ms}ms client={ip}"),
    (8, "DEBUG", "Cache hit for customer {user} (ttl={ttl}s)"),
    (6, "INFO", "Connection pool stats: active={small} idle={small} waiting=0"),
    (4, "WARN", "Slow query on payments_ledger took {ms} ms: SELECT * FROM ledger WHERE account_id = ?"),
    (3, "INFO", "Refund {payment} issued for order {order}, amount {amount} EUR"),
    (2, "WARN", "Card declined for order {order}: insufficient funds (code {code})"),
    (1, "ERROR", _TIMEOUT),
    (1, "INFO", "Scheduled job reconcile-ledger finished in {ms} ms, {small} batches"),
]


def _fill(template: str, rng: random.Random) -> str:
    return template.format(
        request=uuid.UUID(int=rng.getrandbits(128)),
        user=f"cus_{rng.getrandbits(40):010x}",
        amount=f"{rng.uniform(1, 900):.2f}",
        payment=f"pay_{rng.getrandbits(48):012x}",
        order=rng.randint(100000, 999999),
        ms=rng.randint(3, 900),
        ip=f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        ttl=rng.randint(10, 600),
        small=rng.randint(0, 40),
        code=rng.choice([51, 54, 61, 65]),
        line=rng.choice([112, 118]),
    )


def pods_of(deployment: str, hosts: int = 3, service: str = SERVICE) -> list[str]:
    """A deployment's pods: the same names for every call (its pod-template hash, then a suffix per replica)."""
    rng = random.Random(f"{service}/{deployment}/pods")
    template = f"{rng.getrandbits(32):08x}"[:9]
    return [f"{service}-{deployment}-{template}-{rng.getrandbits(20):05x}" for _ in range(hosts)]


def events(
    deployment: str,
    count: int,
    seed: int = 0,
    npe_rate: float = 0.0,
    start: datetime | None = None,
    seconds: float = 600.0,
    hosts: int = 3,
    service: str = SERVICE,
    pods: Sequence[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """``count`` log events of one deployment; ``npe_rate`` of them are the EncryptionService NPE. ``pods``: the
    hosts to log from (default: ``hosts`` pod names of this seed, so each call of another seed has pods of its own;
    a replay in many calls passes :func:`pods_of` to keep one set of pods, as a deployment does)."""
    rng = random.Random(f"{service}/{deployment}/{seed}")
    begin = start or datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    weights = [w for w, _, _ in _EVENTS]
    invented = [f"{service}-{deployment}-{rng.getrandbits(20):05x}" for _ in range(hosts)]  # drawn either way
    pods = list(pods) if pods else invented
    for index in range(count):
        if npe_rate and rng.random() < npe_rate:
            level, message = "ERROR", _fill(_NPE, rng)
        else:
            _, level, template = rng.choices(_EVENTS, weights)[0]
            message = _fill(template, rng)
        yield {
            "timestamp": (begin + timedelta(seconds=seconds * index / max(count, 1))).isoformat(),
            "service": service,
            "deployment": deployment,
            "host": rng.choice(pods),
            "level": level,
            "message": message,
        }
