"""Dispatch benchmark: cost per update of the strategy fan-out.

For 1, 4 and 16 strategies watching one symbol, each update is evaluated:

* by the engine's Dispatcher, strategies as plain ``def`` hooks;
* by the engine's Dispatcher, strategies as ``async def`` hooks that do
  not suspend (started eagerly, no Task);
* by ``asyncio.gather(*coros, return_exceptions=True)`` over the same
  async hooks, awaited on a running loop (the naive fan-out).

Every strategy reads the top of book and runs the full
pre-trade risk check for an order it would send (limits set so it passes),
so "including risk checks" is part of the figure. Variants are
interleaved per round; figures are microseconds per update, median of
rounds.

Run: ``python -m benchmarks.dispatch [--updates 20000] [--runs 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._common import machine, summarize
from trading_engine import BookEntry, parse_config
from trading_engine.core.orders import OrderType
from trading_engine.core.protocol import Side
from trading_engine.core.risk import RiskEngine
from trading_engine.core.strategy import BookView, NoParams, Strategy
from trading_engine.engine.dispatch import Dispatcher, StrategyRunner

_risk: RiskEngine | None = None
_entry: BookEntry | None = None


class _Ctx:
    name = "bench"


class SyncStrategy(Strategy):
    def on_book(self, book: BookView) -> None:
        ask = book.best_ask
        assert _risk is not None
        assert _entry is not None
        assert ask is not None
        _risk.check(self.name, _entry, Side.BUY, OrderType.LIMIT, 1, ask, 0, 0, 0)


class AsyncStrategy(Strategy):
    async def on_book(self, book: BookView) -> None:
        ask = book.best_ask
        assert _risk is not None
        assert _entry is not None
        assert ask is not None
        _risk.check(self.name, _entry, Side.BUY, OrderType.LIMIT, 1, ask, 0, 0, 0)


def setup() -> tuple[BookEntry, RiskEngine]:
    config = parse_config(
        {
            "instruments": [{"symbol": "BTC-USD", "tick_size": "0.01", "lot_size": "0.001"}],
            "risk": {"max_orders_per_s": 10**9, "strategy_max_orders_per_s": 10**9},
        },
        environ={},
    )
    from trading_engine import BookBuilder

    builder = BookBuilder(config.instrument_map().values())
    builder.handle(
        b'{"type":"snapshot","symbol":"BTC-USD","seq":1,"bids":[["100.00","2"]],'
        b'"asks":[["100.01","1"]]}'
    )
    entry = builder.books["BTC-USD"]
    risk = RiskEngine(config.risk.limits(), config.instrument_map().values(), time.monotonic_ns)
    return entry, risk


def make_dispatcher(cls: type[Strategy], count: int) -> Dispatcher:
    runners = []
    for i in range(count):
        strategy = cls(f"s{i}", NoParams(), _Ctx(), ["BTC-USD"])  # type: ignore[arg-type]
        runners.append((StrategyRunner(strategy, budget_s=1.0, error_limit=5), ("BTC-USD",)))
    return Dispatcher(runners)


def time_dispatcher(dispatcher: Dispatcher, entry: BookEntry, updates: int) -> float:
    on_book = dispatcher.on_book
    start = time.perf_counter_ns()
    for _ in range(updates):
        on_book(entry, 0)
    return (time.perf_counter_ns() - start) / updates / 1000


async def time_gather(strategies: list[Strategy], view: BookView, updates: int) -> float:
    gather = asyncio.gather
    start = time.perf_counter_ns()
    for _ in range(updates):
        await gather(*(s.on_book(view) for s in strategies), return_exceptions=True)
    return (time.perf_counter_ns() - start) / updates / 1000


def main() -> None:
    global _risk, _entry
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()

    _entry, _risk = setup()
    entry = _entry
    view = BookView(entry)
    counts = (1, 4, 16)
    variants: dict[str, Callable[[], float]] = {}
    loop = asyncio.new_event_loop()
    for count in counts:
        sync_dispatcher = make_dispatcher(SyncStrategy, count)
        async_dispatcher = make_dispatcher(AsyncStrategy, count)
        plain = [
            AsyncStrategy(f"g{i}", NoParams(), _Ctx(), ["BTC-USD"])  # type: ignore[arg-type]
            for i in range(count)
        ]
        variants[f"{count:2d} sync, dispatcher"] = lambda d=sync_dispatcher: time_dispatcher(
            d, entry, args.updates
        )
        variants[f"{count:2d} async, dispatcher"] = lambda d=async_dispatcher: time_dispatcher(
            d, entry, args.updates
        )
        variants[f"{count:2d} async, asyncio.gather"] = lambda p=plain: loop.run_until_complete(
            time_gather(p, view, args.updates)
        )
    results: dict[str, list[float]] = {name: [] for name in variants}
    gc.collect()
    for round_number in range(args.runs + 1):
        for name, run in variants.items():
            figure = run()
            if round_number:
                results[name].append(figure)
    loop.close()
    report: dict[str, Any] = {
        "benchmark": "dispatch",
        "updates": args.updates,
        "machine": machine(),
        "us_per_update": {name: summarize(values) for name, values in results.items()},
    }
    print(f"{args.updates:,} updates per variant, {args.runs} runs; us per update")
    print(f"{'variant':28} {'median':>8} {'min':>8} {'max':>8}")
    for name, stats in report["us_per_update"].items():
        print(f"{name:28} {stats['median']:8.2f} {stats['min']:8.2f} {stats['max']:8.2f}")
    ratios = {}
    for count in counts:
        paired = sorted(
            g / d
            for g, d in zip(
                results[f"{count:2d} async, asyncio.gather"],
                results[f"{count:2d} async, dispatcher"],
                strict=True,
            )
        )
        ratios[count] = paired[len(paired) // 2]
        print(f"gather / dispatcher, {count} async strategies: {ratios[count]:.1f}x")
    report["gather_over_dispatcher"] = ratios
    print(json.dumps(report["machine"]))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
