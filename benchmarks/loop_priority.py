"""Tick latency on the priority loop, stock asyncio and uvloop, with background load.

From a tick's bytes leaving the publisher to the strategy's decision, through
the real feed server, book builder and dispatcher, while 0, 1,000 or 10,000
background tasks are busy (each spins ~1 us, then yields with
``asyncio.sleep(0)``).

Each (loop, background) case runs in a fresh process: a publisher process
sends ``--ticks`` updates, one every ``--interval-ms``, stamping each with
``time.monotonic_ns()`` (CLOCK_MONOTONIC, shared by the processes); the
strategy stamps its decision with the same clock. Rounds interleave the
loops so that drift on this shared machine hits them alike; the report
gives the median over rounds of each case's p50 and p99.

    python benchmarks/loop_priority.py [--rounds 3] [--ticks 300] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import machine, percentile
from pydantic import BaseModel

from trading_engine.config import parse_config
from trading_engine.core.strategy import BookView, NoParams, Strategy, StrategyContext
from trading_engine.engine.engine import Engine
from trading_engine.lowlevel.loop import new_event_loop
from trading_engine.sim.venue import simulated_venue

LOOPS = ("priority", "asyncio", "uvloop")
LOADS = (0, 1000, 10000)

SENDER = r"""
import json, socket, sys, time
port, ticks, interval = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
sock = socket.create_connection(("127.0.0.1", port))
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
sock.sendall(b'{"type":"snapshot","symbol":"BTC-USD","seq":1,'
             b'"bids":[["100.00","1"]],"asks":[["100.10","1"]]}\n')
time.sleep(0.3)
sent = {}
for seq in range(2, ticks + 2):
    price = "100.0%d" % (seq % 10)
    frame = ('{"type":"update","symbol":"BTC-USD","seq":%d,"bids":[["%s","1"]],"asks":[]}\n'
             % (seq, price)).encode()
    deadline = time.monotonic() + interval
    sent[seq] = time.monotonic_ns()
    sock.sendall(frame)
    while time.monotonic() < deadline:
        time.sleep(0.0002)
time.sleep(0.2)
sock.close()
print(json.dumps(sent))
"""


class Recorder(Strategy):
    """Stamps every decision with CLOCK_MONOTONIC, keyed by the book's seq."""

    Params = NoParams
    decisions: ClassVar[dict[int, int]] = {}

    def __init__(
        self, name: str, params: BaseModel, context: StrategyContext, symbols: Sequence[str]
    ) -> None:
        super().__init__(name, params, context, symbols)

    def on_book(self, book: BookView) -> None:
        seq = book.seq
        if seq is not None:
            Recorder.decisions[seq] = time.monotonic_ns()


def _config(loop: str) -> Any:
    return parse_config(
        {
            "engine": {"loop": loop, "gc_freeze": True},
            "feed": {"port": 0},
            "gateway": {"mode": "simulated"},
            "instruments": [{"symbol": "BTC-USD", "tick_size": "0.01", "lot_size": "0.001"}],
            "strategies": [
                {"name": "recorder", "class": "__main__:Recorder", "symbols": ["BTC-USD"]}
            ],
        },
        environ={},
    )


async def _one(config: Any, background: int, ticks: int, interval_ms: float) -> dict[str, Any]:
    engine = Engine(config, sink_factory=simulated_venue)
    await engine.start()
    assert engine.feed is not None
    stop = False
    steps = [0]

    async def busy() -> None:
        while not stop:
            total = 0
            for i in range(12):  # about 1 us of work
                total += i
            steps[0] += 1
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(busy()) for _ in range(background)]
    await asyncio.sleep(0.1)
    sender = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SENDER,
        str(engine.feed.port),
        str(ticks),
        str(interval_ms / 1000),
        stdout=asyncio.subprocess.PIPE,
    )
    started = time.perf_counter()
    out, _ = await sender.communicate()
    elapsed = time.perf_counter() - started
    stop = True
    await asyncio.gather(*tasks)
    await engine.stop()
    sent = {int(seq): ns for seq, ns in json.loads(out).items()}
    decided = Recorder.decisions
    latencies = sorted((decided[seq] - ns) / 1000 for seq, ns in sent.items() if seq in decided)
    return {
        "ticks": len(sent),
        "decided": len(latencies),
        "p50_us": percentile(latencies, 0.50),
        "p99_us": percentile(latencies, 0.99),
        "max_us": latencies[-1] if latencies else float("nan"),
        "background_steps_per_s": steps[0] / elapsed,
    }


def run_case(loop_name: str, background: int, ticks: int, interval_ms: float) -> dict[str, Any]:
    config = _config(loop_name)
    loop = new_event_loop(loop_name)
    with asyncio.Runner(loop_factory=lambda: loop) as runner:
        result: dict[str, Any] = runner.run(_one(config, background, ticks, interval_ms))
        return result


def available_loops(wanted: Sequence[str]) -> list[str]:
    """``wanted`` without uvloop when it is not installed (with a note on stderr)."""
    loops = list(wanted)
    if "uvloop" in loops and importlib.util.find_spec("uvloop") is None:
        loops.remove("uvloop")
        print(
            "uvloop not installed: skipping it (pip install -e '.[uvloop]' to compare it)",
            file=sys.stderr,
        )
    return loops


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ticks", type=int, default=300)
    parser.add_argument("--interval-ms", type=float, default=2.0)
    parser.add_argument("--loads", default=",".join(map(str, LOADS)))
    parser.add_argument("--loops", default=",".join(LOOPS))
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--case", nargs=2, metavar=("LOOP", "BACKGROUND"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case[0], int(args.case[1]), args.ticks, args.interval_ms)))
        return
    loads = [int(x) for x in args.loads.split(",")]
    loops = available_loops(args.loops.split(","))
    results: dict[str, dict[int, list[dict[str, Any]]]] = {
        name: {load: [] for load in loads} for name in loops
    }
    for round_ in range(args.rounds):
        for load in loads:
            for name in loops:
                out = subprocess.run(
                    [sys.executable, __file__, "--case", name, str(load),
                     "--ticks", str(args.ticks), "--interval-ms", str(args.interval_ms)],
                    check=True, capture_output=True, text=True, env={**os.environ},
                )  # fmt: skip
                case = json.loads(out.stdout.strip().splitlines()[-1])
                results[name][load].append(case)
                print(
                    f"round {round_ + 1} {name:8s} bg={load:5d}: p50 {case['p50_us']:9.1f} us  "
                    f"p99 {case['p99_us']:9.1f} us  decided {case['decided']}/{case['ticks']}",
                    file=sys.stderr,
                )
    summary: dict[str, Any] = {"machine": machine(), "ticks": args.ticks, "cases": {}}
    print(f"\n{'loop':9s} {'background':>10s} {'p50 us':>10s} {'p99 us':>10s}")
    for name in loops:
        for load in loads:
            runs = results[name][load]
            p50 = sorted(r["p50_us"] for r in runs)[len(runs) // 2]
            p99 = sorted(r["p99_us"] for r in runs)[len(runs) // 2]
            summary["cases"][f"{name}/{load}"] = {"p50_us": p50, "p99_us": p99, "runs": runs}
            print(f"{name:9s} {load:10d} {p50:10.1f} {p99:10.1f}")
    cases = summary["cases"]
    for load in loads:
        if "priority" in loops and "asyncio" in loops:
            ratio = cases[f"asyncio/{load}"]["p99_us"] / cases[f"priority/{load}"]["p99_us"]
            print(f"bg={load}: asyncio p99 / priority p99 = {ratio:.1f}x")
    if "priority" in loops and 0 in loads:
        base = cases["priority/0"]["p99_us"]
        for load in loads:
            print(
                f"priority p99 at bg={load} / its unloaded p99 = "
                f"{cases[f'priority/{load}']['p99_us'] / base:.2f}x"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
