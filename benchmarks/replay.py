"""Replay throughput: a captured feed through books, strategies, risk and the venue.

A seeded random walk of two symbols (5 % trades) is written as a capture
(frames 2.5 ms apart), then replayed ``--runs`` times through a fresh
engine with the shipped configuration's strategies (a threshold taker and
a market maker), orders going to the in-process simulated venue: the path
``trading-engine replay`` takes. Figures are frames per second per run
(median, min, max) and the orders and fills of the last run (the same in
every run: replay is deterministic).

Run: ``python -m benchmarks.replay [--frames 200000] [--runs 5]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import machine, summarize
else:
    from ._common import machine, summarize

from trading_engine.config import load_default_config
from trading_engine.core.instruments import Instrument
from trading_engine.io.capture import read_capture
from trading_engine.sim.marketsim import RandomWalkBook
from trading_engine.sim.replay import replay


def write_capture(path: Path, frames: int) -> None:
    """``frames`` frames of two seeded random walks, 2.5 ms apart."""
    walks = [
        RandomWalkBook(Instrument(symbol, "0.01", "0.001"), seed=i, trade_probability=0.05)
        for i, symbol in enumerate(("BTC-USD", "ETH-USD"))
    ]
    now = 10**9
    with path.open("wb") as out:
        for walk in walks:
            out.write(b"%d\t" % now + walk.snapshot_frame())
        for i in range(frames - len(walks)):
            now += 2_500_000
            out.write(b"%d\t" % now + walks[i % len(walks)].next_frame())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    config = load_default_config(environ={})
    per_run: list[float] = []
    last: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        capture = Path(tmp) / "walk.capture"
        write_capture(capture, args.frames)
        frames = list(read_capture(capture))
        for run in range(args.runs):
            started = time.perf_counter()
            result = replay(config, frames)
            seconds = time.perf_counter() - started
            per_run.append(result.frames / seconds)
            last = {"orders": result.orders, "fills": result.fills}
            print(f"run {run + 1}: {per_run[-1]:,.0f} frames/s", file=sys.stderr)
    summary = {"machine": machine(), "frames": args.frames, **summarize(per_run), **last}
    print(
        f"replay: median {summary['median']:,.0f} frames/s "
        f"(min {summary['min']:,.0f}, max {summary['max']:,.0f}, {args.runs} runs); "
        f"orders {sum(v for k, v in last['orders'].items() if k == 'submitted')}, "
        f"fills {last['fills']}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
