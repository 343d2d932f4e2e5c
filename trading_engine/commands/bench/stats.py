"""Statistics of latency samples: nearest-rank percentiles, wire-to-wire matching."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

__all__ = ["QUANTILES", "percentile", "percentiles", "wire_to_wire"]

#: The reported quantiles, by name.
QUANTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p99.9", 0.999))


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def percentiles(samples_us: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max (nearest rank) of microsecond samples."""
    ordered = sorted(samples_us)
    if not ordered:
        return {name: float("nan") for name, _ in QUANTILES} | {"max": float("nan"), "n": 0}
    result: dict[str, float] = {}
    for name, fraction in QUANTILES:
        result[name] = percentile(ordered, fraction)
    result["max"] = ordered[-1]
    result["n"] = len(ordered)
    return result


def wire_to_wire(ticks: list[list[Any]], arrivals: list[dict[str, Any]]) -> list[float]:
    """Microseconds from each order's tick being sent to the order arriving."""
    by_price: dict[str, list[int]] = {}
    for _, price, sent_ns in ticks:
        by_price.setdefault(price, []).append(sent_ns)
    latencies = []
    for arrival in arrivals:
        stamps = by_price.get(arrival["price"])
        if not stamps or not arrival["arrival_ns"]:
            continue
        index = bisect.bisect_left(stamps, arrival["arrival_ns"]) - 1
        if index >= 0:
            latencies.append((arrival["arrival_ns"] - stamps[index]) / 1000)
    return latencies
