"""Ingest benchmark: frames over loopback into the feed server, applied to books.

A publisher process (``python -m trading_engine.sim.publisher --pregenerate``)
builds a seeded random-walk stream for several symbols, then blasts it at
the feed port as fast as TCP allows. The engine side (this process) runs
the real FeedServer and BookBuilder on one event loop; messages per second
is the count of frames applied divided by the time from the first byte
received to the last frame applied.

Variants, interleaved per round so noise hits them alike: the event loop
as stock asyncio and as uvloop (if installed), and the decoder as the
engine's (msgspec typed decoding, orjson for what it refuses) and stdlib
json (reference). ``benchmarks/builds.py`` runs it against the compiled
and the pure build.

Run: ``python -m benchmarks.ingest [--count 300000] [--runs 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._common import machine, summarize
from trading_engine import BookBuilder, BookEntry, Decoder, Instrument, Reason
from trading_engine.config import FeedConfig
from trading_engine.io.feed import FeedServer
from trading_engine.sim.publisher import symbols_for

ROOT = Path(__file__).resolve().parent.parent


class StdlibJsonBuilder:
    """The engine's builder, decoding with stdlib json (reference only).

    Wraps rather than subclasses: the compiled build's ``BookBuilder`` is a
    native class.
    """

    def __init__(self, instruments: list[Instrument]) -> None:
        self._builder = BookBuilder(instruments)
        self._decoder = Decoder({inst.symbol: inst for inst in instruments})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._builder, name)

    def handle(
        self, frame: bytes | bytearray | memoryview, recv_ns: int = 0
    ) -> BookEntry | Reason | None:
        try:
            obj = json.loads(bytes(frame))
        except ValueError:
            return self._builder.apply(self._decoder.undecodable(frame), recv_ns)
        return self._builder.apply(self._decoder.decode_object(obj), recv_ns)


async def one_run(count: int, symbols: int, builder_class: Any) -> float:
    instruments = symbols_for(symbols)
    builder = builder_class(instruments)
    server = FeedServer(FeedConfig(host="127.0.0.1", port=0), builder)
    await server.start()
    publisher = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "trading_engine.sim.publisher", "--port", str(server.port),
        "--symbols", str(symbols), "--count", str(count), "--pregenerate",
        cwd=ROOT, stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        first_ns = 0
        deadline = time.monotonic() + 300
        while True:
            total = sum(builder.accepted.values()) + sum(builder.rejected.values())
            if total and not first_ns:
                first_ns = time.monotonic_ns()
            if total >= count:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {total} of {count} frames arrived")
            await asyncio.sleep(0.0005)
        # Polling starts the clock up to 0.5 ms late: noise against seconds.
        elapsed_ns = time.monotonic_ns() - first_ns
        rejected = sum(builder.rejected.values())
        if rejected:
            raise RuntimeError(f"{rejected} frames rejected: {builder.rejected}")
        await publisher.wait()
    finally:
        if publisher.returncode is None:
            publisher.kill()
            await publisher.wait()
        await server.stop()
    return count / (elapsed_ns / 1e9)


def run_variant(loop_name: str, builder_class: Any, count: int, symbols: int) -> float:
    if loop_name == "uvloop":
        import uvloop

        return uvloop.run(one_run(count, symbols, builder_class))
    return asyncio.run(one_run(count, symbols, builder_class))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300_000)
    parser.add_argument("--symbols", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--only", metavar="VARIANT", help="run only this variant (profiling)")
    args = parser.parse_args()

    loops = ["asyncio"]
    try:
        import uvloop  # noqa: F401

        loops.append("uvloop")
    except ImportError:
        print("uvloop not installed: pip install -e '.[uvloop]' to compare it")
    variants = {}
    for loop_name in loops:
        variants[f"{loop_name} + engine decoder"] = (loop_name, BookBuilder)
        variants[f"{loop_name} + stdlib json"] = (loop_name, StdlibJsonBuilder)
    if args.only:
        variants = {args.only: variants[args.only]}
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.runs):
        for name, (loop_name, builder_class) in variants.items():
            results[name].append(run_variant(loop_name, builder_class, args.count, args.symbols))
    report = {
        "benchmark": "ingest",
        "frames": args.count,
        "symbols": args.symbols,
        "machine": machine(),
        "messages_per_s": {name: summarize(values) for name, values in results.items()},
    }
    print(f"{args.count:,} frames over {args.symbols} symbols, {args.runs} runs")
    print(f"{'variant':32} {'median msg/s':>14} {'min':>12} {'max':>12}")
    for name, stats in report["messages_per_s"].items():
        print(f"{name:32} {stats['median']:14,.0f} {stats['min']:12,.0f} {stats['max']:12,.0f}")
    base = statistics.median(next(iter(results.values())))
    for name, values in results.items():
        print(f"  {name}: {statistics.median(values) / base:.2f}x {next(iter(results))}")
    print(json.dumps(report["machine"]))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
