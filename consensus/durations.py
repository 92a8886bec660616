"""A histogram of durations kept as plain ints: cheap to observe, read at scrape time."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

MICRO_BUCKETS_S: tuple[float, ...] = (
    25e-6,
    50e-6,
    100e-6,
    250e-6,
    500e-6,
    1e-3,
    2.5e-3,
    5e-3,
    10e-3,
    25e-3,
    50e-3,
    100e-3,
    250e-3,
    500e-3,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds from 25 us to 10 s: a cached command takes tens of microseconds, a
replicated write a few milliseconds, a slow disk flush or commit seconds."""

SLOW_BUCKETS_S: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Upper bounds for snapshots (milliseconds to a minute)."""


class Durations:
    """Counts per bucket (the last one is +Inf), their sum and count; not thread-safe, so
    one thread observes (the loop or the tick thread) and a scrape only reads."""

    __slots__ = ("bounds_ns", "bounds_s", "counts", "sum_ns")

    def __init__(self, bounds_s: Sequence[float] = MICRO_BUCKETS_S) -> None:
        self.bounds_s = tuple(bounds_s)
        self.bounds_ns = tuple(round(b * 1e9) for b in self.bounds_s)
        self.counts = [0] * (len(self.bounds_s) + 1)
        self.sum_ns = 0

    def observe_ns(self, ns: int) -> None:
        self.counts[bisect_left(self.bounds_ns, ns)] += 1
        self.sum_ns += ns

    def observe(self, seconds: float) -> None:
        self.observe_ns(int(seconds * 1e9))

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound, observations at or below it) pairs as Prometheus exposes them."""
        out: list[tuple[str, int]] = []
        total = 0
        for bound, count in zip((*map(repr, self.bounds_s), "+Inf"), self.counts, strict=True):
            total += count
            out.append((bound, total))
        return out
