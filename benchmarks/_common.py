"""Shared helpers for the benchmark scripts: timing, statistics, machine."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from time import perf_counter_ns

from trading_engine.commands.bench import machine, percentile

__all__ = ["machine", "percentile", "summarize", "time_per_item_ns"]


def summarize(per_run: Sequence[float]) -> dict[str, float]:
    """Median, min, max and spread of per-run figures."""
    ordered = sorted(per_run)
    median = statistics.median(ordered)
    return {
        "median": median,
        "min": ordered[0],
        "max": ordered[-1],
        "spread_pct": 100.0 * (ordered[-1] - ordered[0]) / median if median else 0.0,
        "runs": len(ordered),
    }


def time_per_item_ns(run: Callable[[], int]) -> float:
    """Run ``run`` once (it returns how many items it did); ns per item."""
    start = perf_counter_ns()
    count = run()
    return (perf_counter_ns() - start) / count
