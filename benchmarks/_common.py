"""Shared helpers for the benchmark scripts: timing, statistics, machine."""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable, Sequence
from time import perf_counter_ns
from typing import Any

from trading_engine.commands.bench import machine, percentile

__all__ = [
    "BINANCE_API_KEY",
    "BINANCE_SECRET",
    "Variants",
    "machine",
    "percentile",
    "print_variants",
    "summarize",
    "time_per_item_ns",
]

#: An HMAC key of Binance's documented form (64 characters), for the signing benchmarks.
BINANCE_API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
BINANCE_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"


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


class Variants:
    """Per-run median and p99 of variants timed side by side, summarized against a base.

    ``add_run(name, samples)`` records one run of one variant (samples in ns,
    any order); ``result(base)`` gives, per variant, the median over the
    runs of each run's p50 and p99 (``p50_ns``, ``p99_ns``), their ranges
    over the runs, the samples in the last run, and what the variant adds
    to ``base``'s figures (``added_p50_ns``, ``added_p99_ns``).
    """

    def __init__(self, names: Sequence[str]) -> None:
        self.per_run: dict[str, dict[str, list[float]]] = {
            name: {"p50": [], "p99": []} for name in names
        }
        self.samples: dict[str, int] = dict.fromkeys(names, 0)

    def add_run(self, name: str, samples: list[int]) -> None:
        ordered = sorted(samples)
        self.per_run[name]["p50"].append(percentile(ordered, 0.50))
        self.per_run[name]["p99"].append(percentile(ordered, 0.99))
        self.samples[name] = len(ordered)

    def result(self, base: str, **meta: Any) -> dict[str, Any]:
        """``{**meta, "variants": {name: figures}}``; raises KeyError for an unknown ``base``."""
        variants: dict[str, dict[str, Any]] = {}
        for name, figures in self.per_run.items():
            variants[name] = {
                "p50_ns": statistics.median(figures["p50"]),
                "p99_ns": statistics.median(figures["p99"]),
                "p50_ns_range": [min(figures["p50"]), max(figures["p50"])],
                "p99_ns_range": [min(figures["p99"]), max(figures["p99"])],
                "samples_per_run": self.samples[name],
            }
        reference = variants[base]
        for figures in variants.values():
            figures["added_p50_ns"] = figures["p50_ns"] - reference["p50_ns"]
            figures["added_p99_ns"] = figures["p99_ns"] - reference["p99_ns"]
        return {**meta, "variants": variants}


def print_variants(result: dict[str, Any], heading: str, args: argparse.Namespace) -> None:
    """Print the machine and a ``Variants`` result's table (us); write it to ``args.json``."""
    result["machine"] = machine()
    print(result["machine"])
    width = max(len(heading), *(len(name) for name in result["variants"]))
    print(f"{heading:<{width}} {'p50 us':>8} {'p99 us':>8} {'added p50':>10} {'added p99':>10}")
    for name, figures in result["variants"].items():
        print(
            f"{name:<{width}} {figures['p50_ns'] / 1000:8.2f} {figures['p99_ns'] / 1000:8.2f} "
            f"{figures['added_p50_ns'] / 1000:10.2f} {figures['added_p99_ns'] / 1000:10.2f}"
        )
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)
