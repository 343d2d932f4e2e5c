"""Garbage-collector settings against per-update latency.

Each setting runs in a fresh process that imports what the service imports
(aiohttp, httpx, pydantic, prometheus_client: a realistic long-lived heap),
builds the engine from the default configuration with the in-process
venue, and feeds it ``--frames`` random-walk frames one by one, timing each
``handle`` call. The garbage collector's pauses are timed through
``gc.callbacks`` (:class:`trading_engine.engine.telemetry.GcMonitor`).

    python benchmarks/gc_tuning.py [--rounds 3] [--frames 200000]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import machine, percentile

SETTINGS: dict[str, tuple[bool, int | None]] = {
    "python default (700, no freeze)": (False, None),
    "freeze": (True, None),
    "freeze + threshold 10000": (True, 10_000),
    "freeze + threshold 50000": (True, 50_000),
}


def run_case(name: str, frames: int) -> dict[str, Any]:
    from trading_engine.config import load_default_config
    from trading_engine.core.clock import ManualClock
    from trading_engine.engine.engine import Engine
    from trading_engine.engine.telemetry import GcMonitor
    from trading_engine.sim.publisher import random_walk_stream
    from trading_engine.sim.venue import simulated_venue

    config = load_default_config(environ={})
    config = config.model_copy(
        update={"gateway": config.gateway.model_copy(update={"mode": "simulated"})}
    )
    stream = random_walk_stream(list(config.instrument_map().values()), seed=1)
    data = [frame.rstrip(b"\n") for frame in itertools.islice(stream, frames)]
    clock = ManualClock(start_ns=0)
    engine = Engine(config, clock=clock, run_id="gc", sink_factory=simulated_venue)
    engine.start_strategies()
    freeze, threshold = SETTINGS[name]
    monitor = GcMonitor()
    GcMonitor.tune(freeze, threshold)
    tracked = len(gc.get_objects())
    monitor.install()
    handle = engine.builder.handle
    clock_ns = time.perf_counter_ns
    latencies = []
    step = 1_000_000
    started = clock_ns()
    for frame in data:
        clock.now_ns += step
        t0 = clock_ns()
        handle(frame, clock.now_ns)
        latencies.append(clock_ns() - t0)
    total_s = (clock_ns() - started) / 1e9
    monitor.uninstall()
    latencies.sort()
    return {
        "tracked_objects": tracked,
        "frames_per_s": frames / total_s,
        "p50_us": percentile(latencies, 0.5) / 1000,
        "p99_us": percentile(latencies, 0.99) / 1000,
        "p999_us": percentile(latencies, 0.999) / 1000,
        "max_us": latencies[-1] / 1000,
        "collections": [h.count for h in monitor.pauses],
        "gc_max_us": [
            max((b for b, c in zip(h.bounds_s, h.counts, strict=False) if c), default=0) * 1e6
            for h in monitor.pauses
        ],
        "gc_total_ms": sum(h.sum_ns for h in monitor.pauses) / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.frames)))
        return
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):
        for name in SETTINGS:
            out = subprocess.run(
                [sys.executable, __file__, "--case", name, "--frames", str(args.frames)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            results[name].append(json.loads(out.stdout))

    def median(name: str, key: str) -> float:
        values = sorted(r[key] for r in results[name])
        return float(values[len(values) // 2])

    print(f"{machine()['python']} on {machine()['cpu']}; {args.frames} frames, "
          f"medians of {args.rounds} runs")  # fmt: skip
    header = "setting", "p50 us", "p99 us", "p99.9 us", "max us", "gc ms", "gen0/1/2"
    print("{:34s} {:>7s} {:>7s} {:>9s} {:>8s} {:>7s} {:>14s}".format(*header))
    for name in SETTINGS:
        collections = results[name][0]["collections"]
        print(
            f"{name:34s} {median(name, 'p50_us'):7.2f} {median(name, 'p99_us'):7.2f} "
            f"{median(name, 'p999_us'):9.2f} {median(name, 'max_us'):8.0f} "
            f"{median(name, 'gc_total_ms'):7.1f} {'/'.join(map(str, collections)):>14s}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
