"""The feed handler's cost per venue message: Binance diff-depth in, an engine frame written.

``python -m benchmarks.feedhandler [--count N] [--runs R]``. In one
process, without sockets: each message goes through what the handler does
between ``ws.receive()`` returning and ``writer.write()`` returning (the
dialect's decode and sequence check, the handler's copy of the levels,
the frame's encoding and the write into a writer that only counts
bytes). Reports per message the median and p99 (each message timed on its
own) and the throughput of a tight loop, plus a snapshot of 5,000 levels a
side (decode, the handler's copy, split into 64 KiB frames).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

from trading_engine.io.feedhandler import EngineAddress, FeedHandler
from trading_engine.venues.binance import BinanceMarketData

from ._common import machine, percentile, summarize


class _Transport:
    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


class _Writer:
    """Counts what it is given, as an engine connection that keeps up."""

    def __init__(self) -> None:
        self.transport = _Transport()
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)


def _messages(count: int, first_id: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    messages = []
    next_id = first_id
    for _ in range(count):
        levels = rng.randint(1, 6)
        last = next_id + levels - 1
        bids = [[f"{60000 - rng.randint(0, 400) / 100:.8f}", f"{rng.randint(0, 900) / 1000:.8f}"]
                for _ in range(levels // 2 + 1)]  # fmt: skip
        asks = [[f"{60001 + rng.randint(0, 400) / 100:.8f}", f"{rng.randint(0, 900) / 1000:.8f}"]
                for _ in range(levels // 2)]  # fmt: skip
        data = {"e": "depthUpdate", "E": 1700000000000, "s": "BTCUSDT", "U": next_id, "u": last,
                "b": bids, "a": asks}  # fmt: skip
        messages.append(json.dumps({"stream": "btcusdt@depth@100ms", "data": data}))
        next_id = last + 1
    return messages


def _snapshot(levels: int, last_id: int) -> bytes:
    bids = [[f"{60000 - i / 100:.8f}", "0.50000000"] for i in range(levels)]
    asks = [[f"{60000.01 + i / 100:.8f}", "0.50000000"] for i in range(levels)]
    return json.dumps({"lastUpdateId": last_id, "bids": bids, "asks": asks}).encode()


def _handler() -> tuple[FeedHandler, BinanceMarketData, _Writer]:
    dialect = BinanceMarketData(["BTCUSDT"], "http://unused")
    handler = FeedHandler(
        dialect,
        ws_url="ws://unused",
        engines=[EngineAddress("127.0.0.1", 1)],
        symbol_map={"BTCUSDT": "BTCUSDT"},
    )
    writer = _Writer()
    handler.links[0].writer = writer  # type: ignore[assignment]
    handler._fetch = lambda symbol, url: None  # type: ignore[method-assign]  # no network
    return handler, dialect, writer


def run(count: int) -> dict[str, Any]:
    handler, dialect, writer = _handler()
    act, on_message = handler._act, dialect.on_message
    dialect.on_open(0)
    snapshot = _snapshot(5000, 99)
    messages = _messages(count + 1, 100)
    started = time.perf_counter_ns()
    act(dialect.on_snapshot("BTCUSDT", snapshot, 0), 1)
    act(on_message(messages[0], 0), 1)  # confirms the snapshot: the book is live
    snapshot_ms = (time.perf_counter_ns() - started) / 1e6
    clock = time.perf_counter_ns
    samples = []
    for text in messages[1 : count // 2]:
        begin = clock()
        act(on_message(text, 1), 1)
        samples.append(clock() - begin)
    rest = messages[count // 2 :]
    begin = clock()
    for text in rest:
        act(on_message(text, 1), 1)
    throughput = len(rest) / ((clock() - begin) / 1e9)
    assert handler.routes["BTCUSDT"].live, dialect.errors
    assert writer.written > 0
    samples.sort()
    return {
        "p50_us": percentile(samples, 0.5) / 1000,
        "p99_us": percentile(samples, 0.99) / 1000,
        "per_s": throughput,
        "snapshot_ms": snapshot_ms,
        "frames": handler.counts.frames["update"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results = [run(args.count) for _ in range(args.runs)]
    for key in ("p50_us", "p99_us", "per_s", "snapshot_ms"):
        figures = summarize([result[key] for result in results])
        print(
            f"{key:12} median {figures['median']:12,.2f}  min {figures['min']:12,.2f}  "
            f"max {figures['max']:12,.2f}"
        )
    print(machine())


if __name__ == "__main__":
    main()
