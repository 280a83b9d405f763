"""How much a deployment's logging varies on its own: time slices, the steadiness of a flow, event rates.

A drop or a slower canary is only evidence when it falls outside what the baseline does by itself. The baseline's
active time is cut into slices of equal length (whole 10-second buckets of the engine's counts), and:

* a flow (an event type, or a cluster of them) is *steady* when its count per slice varies no more than a Poisson
  count would (index of dispersion ``variance / mean``) and it occurs in most slices; a steady flow that vanishes or
  halves in the canary is a failure alone, while a bursty one (a phase of a test, a restart) is judged with others;
* an event *rate* is compared slice by slice: the canary's slice rates against the baseline's (a one-sided
  Mann-Whitney rank test), so a baseline that swings by itself (bursts, a restart, load over the day) needs a canary
  that is lower than nearly all of its slices, and a steady baseline a canary lower by far less;
* the canary is scaled to the baseline by the weighted median of its steady flows' ratios (a size factor, as in
  count-data normalisation): many flows moving together in proportion are the traffic, not a failure.

Pure computation over the engine's counts (:class:`logcanary.engine.model.TemplateStats`); no clock but the window.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from logcanary.engine.model import BUCKET_SECONDS

MAX_SLICES = 12  # slices a side's active time is cut into for steadiness (a rate test uses the shorter side's)
MIN_SLICES = 4  # fewer slices say nothing about variability
MAX_RATE_SLICES = 120  # slices of the longer side in a rate test, at most (its slices may be longer then)
GAP_MIN_SECONDS = 120.0  # a run of empty buckets shorter than this is quiet time, never a gap
GAP_TYPICAL_INTERVALS = 20  # ... and so is one shorter than this many typical intervals between active buckets
STEADY_MAX_DISPERSION = 2.0  # index of dispersion of a steady flow's count per slice, at most
STEADY_MIN_PRESENCE = 0.75  # share of the baseline's slices a steady flow occurs in, at least
Window = tuple[float, float] | None


@dataclass(frozen=True, slots=True)
class Timeline:
    """A side's active time cut into slices of ``slice_seconds``: which slice each bucket falls in."""

    slice_of: dict[int, int]  # bucket start (epoch s) -> slice index
    slices: int
    slice_seconds: float

    @property
    def seconds(self) -> float:
        return self.slices * self.slice_seconds

    def per_slice(self, buckets: dict[int, int], weight: float = 1.0) -> list[float]:
        """A count per slice from a template's buckets (buckets outside the timeline are not counted)."""
        out = [0.0] * self.slices
        get = self.slice_of.get
        for bucket, count in buckets.items():
            index = get(bucket)
            if index is not None:
                out[index] += weight * count
        return out


def clip(buckets: Iterable[int], window: Window) -> list[int]:
    """The bucket starts within the window (a bucket counts when it overlaps it, as ``count_between``)."""
    if window is None:
        return sorted(buckets)
    start, end = window
    return sorted(b for b in buckets if start - BUCKET_SECONDS < b < end)


def active_range(buckets: Sequence[int], window: Window, live_end: float | None) -> list[tuple[int, int]]:
    """The side's active time as segments of buckets ``[first, last]``.

    Within a finite window the range runs from the window's start (or the side's first event, if later) to the
    window's end (or ``live_end``, the latest event of either side, when it is open): silence then is evidence, a
    canary that stopped logging has a rate of zero. Without a window (files), the range runs from the side's first
    to its last event, and a run of empty buckets far longer than the side's typical interval is a gap between
    stretches of recording, not time the deployment ran.
    """
    if not buckets:
        return []
    if window is not None:
        start = max(window[0], buckets[0])
        end = window[1] if math.isfinite(window[1]) else (live_end if live_end is not None else buckets[-1])
        first = int(start // BUCKET_SECONDS) * BUCKET_SECONDS
        last = int(max(end - 1e-9, first) // BUCKET_SECONDS) * BUCKET_SECONDS
        return [(first, last)]
    steps = sorted(b - a for a, b in itertools.pairwise(buckets))
    typical = steps[len(steps) // 2] if steps else BUCKET_SECONDS
    gap = max(GAP_MIN_SECONDS, GAP_TYPICAL_INTERVALS * typical)
    segments = []
    first = previous = buckets[0]
    for bucket in buckets[1:]:
        if bucket - previous > gap:
            segments.append((first, previous))
            first = bucket
        previous = bucket
    segments.append((first, previous))
    return segments


def active_seconds(segments: Sequence[tuple[int, int]]) -> float:
    return float(sum(last - first + BUCKET_SECONDS for first, last in segments))


def timeline(segments: Sequence[tuple[int, int]], slice_seconds: float) -> Timeline:
    """The segments cut into slices of ``slice_seconds`` (whole buckets) of active time; what is left over at the
    end, less than a slice, is not counted (a rate over a shorter slice would read low)."""
    width = max(1, round(slice_seconds / BUCKET_SECONDS))
    slice_of: dict[int, int] = {}
    position = 0
    for first, last in segments:
        for bucket in range(first, last + 1, BUCKET_SECONDS):
            slice_of[bucket] = position // width
            position += 1
    slices = position // width
    if position % width:
        slice_of = {bucket: index for bucket, index in slice_of.items() if index < slices}
    return Timeline(slice_of, slices, width * float(BUCKET_SECONDS))


def dispersion(counts: Sequence[float]) -> float:
    """Index of dispersion of counts: sample variance over mean (1 for Poisson counts; inf for an absent flow)."""
    if len(counts) < 2:
        return math.inf
    mean = sum(counts) / len(counts)
    if mean <= 0:
        return math.inf
    variance = sum((count - mean) ** 2 for count in counts) / (len(counts) - 1)
    return variance / mean


def host_dispersion(counts: dict[str, float], totals: dict[str, float]) -> float:
    """Index of dispersion of a flow's count across hosts, each host expected to log it in proportion to all it logs
    (Pearson's chi-square over its degrees of freedom: 1 for counts that vary as Poisson counts do)."""
    flow, volume = sum(counts.values()), sum(totals.values())
    hosts = [host for host, total in totals.items() if total > 0]
    if flow <= 0 or volume <= 0 or len(hosts) < 2:
        return math.inf
    chi = 0.0
    for host in hosts:
        expected = flow * totals[host] / volume
        chi += (counts.get(host, 0.0) - expected) ** 2 / expected
    return chi / (len(hosts) - 1)


def is_steady(counts: Sequence[float]) -> bool:
    """A flow occurs in most slices and its count varies as a Poisson count's would (or less)."""
    if len(counts) < MIN_SLICES:
        return False
    present = sum(1 for count in counts if count > 0) / len(counts)
    return present >= STEADY_MIN_PRESENCE and dispersion(counts) <= STEADY_MAX_DISPERSION


def weighted_median(values: Sequence[float], weights: Sequence[float]) -> float:
    """The value at which half the weight lies on either side (the lower one on a tie)."""
    pairs = sorted(zip(values, weights, strict=True))
    half = sum(weights) / 2
    running = 0.0
    for value, weight in pairs:
        running += weight
        if running >= half:
            return value
    return pairs[-1][0] if pairs else math.nan


def rank_test_lower(lower: Sequence[float], higher: Sequence[float]) -> float:
    """One-sided Mann-Whitney p-value that values of ``lower`` tend to be smaller than those of ``higher``.

    Exact (by counting) when both are small and there are no ties, else the normal approximation with the tie
    correction and a continuity correction. Used on per-slice rates, so it asks whether the canary's rate is below
    the baseline's own slice-to-slice spread, whatever that spread's shape."""
    n1, n2 = len(lower), len(higher)
    if not n1 or not n2:
        return 1.0
    ranked = sorted([(value, 0) for value in lower] + [(value, 1) for value in higher])
    ranks = [0.0] * len(ranked)
    ties = 0.0
    index = 0
    while index < len(ranked):
        end = index
        while end < len(ranked) and ranked[end][0] == ranked[index][0]:
            end += 1
        for position in range(index, end):
            ranks[position] = (index + end + 1) / 2
        size = end - index
        ties += size**3 - size
        index = end
    u = sum(rank for rank, (_, side) in zip(ranks, ranked, strict=True) if side == 0) - n1 * (n1 + 1) / 2
    if ties == 0 and n1 * n2 <= 400 and n1 + n2 <= 40:
        return _exact_u_cdf(round(u), n1, n2)
    mean = n1 * n2 / 2
    n = n1 + n2
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if variance <= 0:
        return 1.0
    z = (u - mean + 0.5) / math.sqrt(variance)
    return 0.5 * math.erfc(-z / math.sqrt(2))


def _exact_u_cdf(u: int, n1: int, n2: int) -> float:
    """P(U <= u) for the Mann-Whitney U of samples of sizes n1 and n2 without ties (counting arrangements)."""
    # ways[i][j][k]: arrangements of i of the first and j of the second sample with U = k; one row at a time.
    previous = [[1] + [0] * u for _ in range(n2 + 1)]  # i = 0: U = 0
    for _ in range(n1):
        row = [[0] * (u + 1) for _ in range(n2 + 1)]
        row[0][0] = 1
        for j in range(1, n2 + 1):
            for k in range(u + 1):
                # the largest value is from the first sample (it is above all j of the second: adds j to U) or not
                row[j][k] = (previous[j][k - j] if k >= j else 0) + row[j - 1][k]
        previous = row
    return sum(previous[n2]) / math.comb(n1 + n2, n1)
