"""Binomial tails: the one-sided tests a verdict's frequency rules make on counts."""

from __future__ import annotations

import math


def binomial_tail(successes: int, trials: int, p: float) -> float:
    """P(X >= successes) for X ~ Binomial(trials, p), summed in log space from the tail's start.

    Only called when the count is above its expectation, where the terms shrink
    fast, so the sum stops after a few dozen terms even for large ``trials``.
    """
    if successes <= 0:
        return 1.0
    if successes > trials:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    log_choose = math.lgamma(trials + 1) - math.lgamma(successes + 1) - math.lgamma(trials - successes + 1)
    term = log_choose + successes * log_p + (trials - successes) * log_q
    total = 0.0
    for k in range(successes, trials + 1):
        value = math.exp(term)
        total += value
        if value < total * 1e-15 and k > trials * p:
            break
        term += math.log(trials - k) - math.log(k + 1) + log_p - log_q if k < trials else 0.0
    return min(total, 1.0)


def binomial_head(successes: int, trials: int, p: float) -> float:
    """P(X <= successes) for X ~ Binomial(trials, p): the lower tail, as the upper tail of the failures."""
    return binomial_tail(trials - successes, trials, 1.0 - p)
