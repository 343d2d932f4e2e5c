"""The hot path's latency histograms: counts per bucket in plain ints.

Compiled with the core (``setup.py``): every stage of the hot path
observes into one of these, and :mod:`trading_engine.lowlevel.metrics`
renders them for Prometheus when scraped.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Final

from mypy_extensions import mypyc_attr

__all__ = ["LATENCY_BUCKETS_S", "LatencyHistogram", "SampledHistogram"]

#: Upper bounds in seconds: 1 us to 10 s, resolving microseconds, and
#: reaching far enough that a backlog of seconds shows as one.
LATENCY_BUCKETS_S: Final[tuple[float, ...]] = (
    1e-6, 2e-6, 5e-6, 10e-6, 20e-6, 30e-6, 50e-6, 75e-6, 100e-6, 150e-6, 200e-6, 300e-6,
    500e-6, 750e-6, 1e-3, 2e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip


# Open to interpreted subclasses: the bench command swaps in recording and
# no-op histograms to measure what the metrics cost.
@mypyc_attr(allow_interpreted_subclasses=True)
class LatencyHistogram:
    """Counts of durations (observed in ns) per bucket, plus sum and count.

    ``observe_ns`` is a scan of the bounds from the smallest and two
    additions. ``counts[i]`` is the number of observations in bucket ``i``
    (not cumulative); the last slot is +Inf.
    """

    __slots__ = ("_bounds_ns", "bounds_s", "count", "counts", "sum_ns")

    def __init__(self, bounds_s: Sequence[float] = LATENCY_BUCKETS_S) -> None:
        self.bounds_s = tuple(bounds_s)
        self._bounds_ns = [round(bound * 1e9) for bound in self.bounds_s]
        self.counts = [0] * (len(self.bounds_s) + 1)
        self.sum_ns = 0
        self.count = 0

    def observe_ns(self, value_ns: int) -> None:
        # A scan from the smallest bound: the hot path's durations sit in the
        # first few buckets, where a few compiled comparisons beat a call to
        # bisect (the bucket is the same: the first bound >= the value).
        bounds = self._bounds_ns
        index = 0
        last = len(bounds)
        while index < last and bounds[index] < value_ns:
            index += 1
        self.counts[index] += 1
        self.sum_ns += value_ns
        self.count += 1

    def quantile_s(self, fraction: float) -> float | None:
        """Upper bound of the bucket holding the ``fraction`` quantile (``inf`` past the last).

        A bound, not a measurement: use :class:`SampledHistogram` to show one.
        """
        if not self.count:
            return None
        rank = fraction * self.count
        seen = 0
        for i, count in enumerate(self.counts):
            seen += count
            if seen >= rank and count:
                return self.bounds_s[i] if i < len(self.bounds_s) else float("inf")
        return float("inf")

    def reset(self) -> None:
        self.counts = [0] * (len(self.bounds_s) + 1)
        self.sum_ns = 0
        self.count = 0


class SampledHistogram(LatencyHistogram):
    """A :class:`LatencyHistogram` that also keeps the last ``keep`` observations.

    For measured percentiles where a bucket bound would mislead (the demo's
    status screen). ``observe_ns`` adds one deque append; ``percentile_s``
    sorts the kept samples, O(n log n).
    """

    __slots__ = ("samples_ns",)

    def __init__(self, keep: int = 100_000, bounds_s: Sequence[float] = LATENCY_BUCKETS_S) -> None:
        super().__init__(bounds_s)
        self.samples_ns: deque[int] = deque(maxlen=keep)

    def observe_ns(self, value_ns: int) -> None:
        super().observe_ns(value_ns)
        self.samples_ns.append(value_ns)

    def percentile_s(self, fraction: float) -> float | None:
        """The nearest-rank ``fraction`` percentile of the kept samples, or None."""
        ordered = sorted(self.samples_ns)
        if not ordered:
            return None
        index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
        return ordered[index] / 1e9

    def reset(self) -> None:
        super().reset()
        self.samples_ns.clear()
