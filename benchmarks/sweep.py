"""Parameter sweep speed-up: 8 parameter sets on a local pool of 2 processes against serial.

Each parameter set runs a synthetic CPU-bound backtest (``synthetic_backtest``):
a seeded random walk of ``--events`` book events, a market maker quoting
``spread`` ticks either side of the mid with ``size`` lots, filled when the
walk crosses a quote, a mark every simulated second; its
:class:`~trading_engine.backtest.result.BacktestResult` then goes through
the sweep's own reduction (the analytics) on the worker, as a real sweep's
does. The same 8 sets run with ``workers=1`` (serial, in this process) and
with ``workers=2`` (spawned processes); the figure is the ratio of the
medians of the wall times, the pool's start-up included.
``--dask`` adds a run on a Dask LocalCluster of 2 worker processes.

Run: ``python -m benchmarks.sweep [--events 2000000] [--runs 3] [--dask]``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import machine, summarize
else:
    from ._common import machine, summarize

from trading_engine.backtest.result import BacktestMeta, BacktestResult, FillRecord, MarkSample
from trading_engine.backtest.sweep import combinations, run_sweep
from trading_engine.core.instruments import Instrument
from trading_engine.core.protocol import Side

GRID = {"mm.spread": ["1", "2", "3", "4"], "mm.size": ["1", "5"]}
SYMBOL = "BTC-USD"
STEP_NS = 10_000_000  # one book event every 10 ms of data time
SAMPLE_NS = 10**9


def synthetic_backtest(params: Mapping[str, str], events: int = 2_000_000) -> BacktestResult:
    """A deterministic CPU-bound backtest of one parameter set (see the module doc)."""
    spread = int(params["mm.spread"])
    size = int(params["mm.size"])
    rng = random.Random(1234)  # the same market for every parameter set
    mid = 1_000_000
    position = 0
    fills: list[FillRecord] = []
    marks: list[MarkSample] = []
    bid_quote, ask_quote = mid - spread, mid + spread
    next_mark = 0
    for i in range(events):
        ts = i * STEP_NS
        mid += rng.choice((-1, 0, 0, 1))
        if mid - 1 <= bid_quote and position < 20 * size:
            fills.append(FillRecord(ts, "mm", SYMBOL, f"b{i}", Side.BUY, bid_quote, size,
                                    "maker", 0))  # fmt: skip
            position += size
            marks.append(MarkSample(ts, SYMBOL, mid - 1, mid + 1))
            bid_quote, ask_quote = mid - spread, mid + spread
        elif mid + 1 >= ask_quote and position > -20 * size:
            fills.append(FillRecord(ts, "mm", SYMBOL, f"s{i}", Side.SELL, ask_quote, size,
                                    "maker", 0))  # fmt: skip
            position -= size
            marks.append(MarkSample(ts, SYMBOL, mid - 1, mid + 1))
            bid_quote, ask_quote = mid - spread, mid + spread
        if ts >= next_mark:
            marks.append(MarkSample(ts, SYMBOL, mid - 1, mid + 1))
            next_mark += SAMPLE_NS
    last = (events - 1) * STEP_NS
    meta = BacktestMeta(
        data=("synthetic",), from_ns=None, to_ns=None, first_ns=0, last_ns=last, events=events,
        frames=events, wall_s=0.0, sample_interval_ns=SAMPLE_NS, fill_model="synthetic",
        feed_latency="constant:0", order_latency="constant:0", parameters=dict(params),
    )  # fmt: skip
    return BacktestResult(
        meta, {SYMBOL: Instrument(SYMBOL, "0.01", "0.001")}, ("mm",), fills, [], marks,
        {("mm", SYMBOL): position},
    )  # fmt: skip


class Job:
    """A picklable run_one: the synthetic backtest at a given size."""

    def __init__(self, events: int) -> None:
        self.events = events

    def __call__(self, params: Mapping[str, str]) -> BacktestResult:
        return synthetic_backtest(params, self.events)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000, help="book events per backtest")
    parser.add_argument("--runs", type=int, default=3, help="sweeps per configuration")
    parser.add_argument("--dask", action="store_true", help="also on a Dask LocalCluster")
    args = parser.parse_args(argv)
    # Workers unpickle the job by its module's name, which "__main__" is not for them.
    job_class = Job if __name__ != "__main__" else importlib.import_module("benchmarks.sweep").Job
    job = job_class(args.events)
    configs: list[tuple[str, dict[str, Any]]] = [
        ("serial", {"workers": 1}),
        ("processes:2", {"workers": 2}),
    ]
    cluster = None
    if args.dask:
        from distributed import LocalCluster

        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            scheduler_port=0, dashboard_address=None,
        )  # fmt: skip
        configs.append(("dask:2 processes", {"cluster": cluster.scheduler_address}))
    figures: dict[str, Any] = {
        "machine": machine(),
        "sets": len(combinations(GRID)),
        "events": args.events,
    }
    try:
        for name, kwargs in configs:
            walls = []
            for _ in range(args.runs):
                started = time.perf_counter()
                result = run_sweep(GRID, job, **kwargs)
                walls.append(time.perf_counter() - started)
                if result.failed:
                    raise SystemExit(f"{name}: {result.failed} combinations failed")
            figures[name] = {
                "wall_s": summarize(walls),
                "fills": [row.fills for row in result.rows],
                "per_set_s": round(sum(row.wall_s for row in result.rows) / len(result.rows), 3),
            }
    finally:
        if cluster is not None:
            cluster.close()
    serial = figures["serial"]["wall_s"]["median"]
    for name, _ in configs[1:]:
        figures[name]["ratio_to_serial"] = round(figures[name]["wall_s"]["median"] / serial, 3)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
