"""Backtest throughput: book events per second per core, four strategies, Tardis CSV input.

A seeded random walk of two symbols is written as a Tardis.dev
``incremental_book_L2`` CSV (gzip) plus a ``trades`` CSV: one message in
ten is a trade, messages 1 ms apart, and each book message changes (the
``--shape``):

* ``synthetic`` (the default, the figure of record): 1 to 4 levels,
  uniformly (2.5 on average);
* ``recorded``: as many levels as one of the depth updates of the
  project's recorded Binance spot session (``tests/data/venues/binance``:
  11 ``depthUpdate`` messages changing 2, 6, 4, 1, 1, 1, 2, 1, 1, 1 and 1
  levels, 1.9 on average), drawn at random. That session is a quiet pair
  (XMRBTC, 100 ms updates); a busy pair's updates change more levels.

Every 50th book message or so, the walk moves a tick (four levels).
``run_backtest`` then reads both files (parsing, merging), applies every
message to the venue's book and, after the feed latency, to the engine's
(book builder, dispatcher, four strategies: the threshold taker, the market
maker, the imbalance strategy and the template), with the ``prob`` queue
model and 50 us / 200 us / 200 us of feed / order / response latency, in
one process on one core. The figure is book events (levels changed plus
trades: ``BacktestMeta.events``) per second of the run's wall time
(``BacktestMeta.wall_s``, reading the files included), median of
``--runs`` runs; the zero-latency comparison run is off (it would double
the work and is measured by the same figure).

Run: ``python -m benchmarks.backtest [--messages 200000] [--runs 3] [--profile]
[--no-strategies] [--shape synthetic|recorded]``
(``TRADING_ENGINE_PURE=1`` for the pure build; ``benchmarks.builds backtest``
runs both).
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import json
import pstats
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import machine, summarize
else:
    from ._common import machine, summarize

from trading_engine.backtest.runner import BacktestOptions, run_backtest
from trading_engine.config import Config, parse_config

SYMBOLS = ("BTC-USD", "ETH-USD")
#: Levels changed by each ``depthUpdate`` of tests/data/venues/binance/xmrbtc_session.capture.
RECORDED_LEVELS = (2, 6, 4, 1, 1, 1, 2, 1, 1, 1, 1)
SHAPES = ("synthetic", "recorded")


def config(with_strategies: bool = True) -> Config:
    """Two symbols, four strategies (or none), the prob queue model and some latency."""
    strategies = [
        {"name": "taker", "class": "threshold", "symbols": ["BTC-USD"],
         "params": {"side": "buy", "trigger_price": "99.00", "quantity": "0.01",
                    "cooldown_s": 0.5}},
        {"name": "maker", "class": "market_maker", "symbols": ["BTC-USD", "ETH-USD"],
         "params": {"quantity": "0.05", "max_inventory": "1", "requote_interval_s": 0.05}},
        {"name": "momentum", "class": "imbalance", "symbols": ["BTC-USD", "ETH-USD"],
         "params": {"quantity": "0.01", "max_position": "0.2", "threshold": 0.5,
                    "cooldown_s": 0.5}},
        {"name": "template", "class": "template", "symbols": ["ETH-USD"],
         "params": {"quantity": "0.001", "max_spread_ticks": 1}},
    ]  # fmt: skip
    return parse_config(
        {
            "instruments": [
                {"symbol": s, "tick_size": "0.01", "lot_size": "0.001", "maker_fee": "0.0001",
                 "taker_fee": "0.0005"} for s in SYMBOLS
            ],
            "strategies": strategies if with_strategies else [],
            "risk": {"max_orders_per_s": 1000, "max_position": "1000"},
            "journal": {"path": ":memory:"},
            "backtest": {"queue_model": "prob", "feed_latency_us": 50, "order_latency_us": 200,
                         "response_latency_us": 200},
        },
        environ={},
    )  # fmt: skip


def write_data(
    directory: Path, messages: int, seed: int = 1, shape: str = "synthetic"
) -> list[Path]:
    """A Tardis book CSV and trades CSV (gzip) of ``messages`` messages; returns both paths.

    ``shape``: ``synthetic`` (1-4 levels a book message) or ``recorded``
    (levels drawn from :data:`RECORDED_LEVELS`); raises ``ValueError`` for another.
    """
    if shape not in SHAPES:
        raise ValueError(f"shape: {shape!r} is not one of {', '.join(SHAPES)}")
    recorded = shape == "recorded"
    rng = random.Random(seed)
    book_path = directory / "book.csv.gz"
    trades_path = directory / "trades.csv.gz"
    mids = dict.fromkeys(SYMBOLS, 10000)  # ticks of 0.01
    local = 1_600_000_000_000_000  # us
    with (
        gzip.open(book_path, "wt", compresslevel=1) as book,
        gzip.open(trades_path, "wt", compresslevel=1) as trades,
    ):
        book.write("exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount\n")
        trades.write("exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n")
        for symbol in SYMBOLS:
            mid = mids[symbol]
            for level in range(1, 21):
                size = rng.randint(1, 5000) / 1000
                book.write(
                    f"x,{symbol},{local},{local},true,bid,{(mid - level) / 100:.2f},{size}\n"
                )
                book.write(
                    f"x,{symbol},{local},{local},true,ask,{(mid + level) / 100:.2f},{size}\n"
                )
            local += 1
        for i in range(messages):
            local += 1000
            symbol = SYMBOLS[i % 2]
            mid = mids[symbol]
            if rng.random() < 0.1:
                side = rng.choice(("buy", "sell"))
                price = mid + 1 if side == "buy" else mid - 1
                trades.write(
                    f"x,{symbol},{local},{local},{i},{side},{price / 100:.2f},"
                    f"{rng.randint(1, 300) / 1000}\n"
                )
                continue
            if rng.random() < 0.02:
                # The walk moves one tick: the touch on the side it moves to goes, the
                # other side gains a level at the old mid; the far levels follow.
                step = rng.choice((-1, 1))
                new = mids[symbol] = mid + step
                if step > 0:
                    rows = [
                        ("ask", mid + 1, "0"),
                        ("bid", mid, "1.5"),
                        ("bid", mid - 20, "0"),
                        ("ask", new + 20, "1.5"),
                    ]
                else:
                    rows = [("bid", mid - 1, "0"), ("ask", mid, "1.5"),
                            ("ask", mid + 20, "0"), ("bid", new - 20, "1.5")]  # fmt: skip
                for side, price, text in rows:
                    book.write(
                        f"x,{symbol},{local},{local},false,{side},{price / 100:.2f},{text}\n"
                    )
                continue
            count = rng.choice(RECORDED_LEVELS) if recorded else rng.randint(1, 4)
            for _ in range(count):
                level = rng.randint(1, 20)
                side = rng.choice(("bid", "ask"))
                price = mid - level if side == "bid" else mid + level
                size = rng.randint(1, 5000) / 1000
                book.write(f"x,{symbol},{local},{local},false,{side},{price / 100:.2f},{size}\n")
    return [book_path, trades_path]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--profile", action="store_true", help="print the top of a cProfile")
    parser.add_argument(
        "--no-strategies",
        action="store_true",
        help="no strategy: the data path alone (reading, both books, the event queue)",
    )
    parser.add_argument(
        "--shape",
        choices=SHAPES,
        default="synthetic",
        help="levels a book message changes: synthetic 1-4, or recorded (a Binance session's)",
    )
    args = parser.parse_args(argv)
    cfg = config(not args.no_strategies)
    label = "data path alone" if args.no_strategies else "4 strategies"
    if args.shape != "synthetic":
        label += f", {args.shape} shape"
    options = BacktestOptions(compare_zero_latency=False)
    per_run: list[float] = []
    last: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = write_data(Path(tmp), args.messages, shape=args.shape)
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            run_backtest(cfg, data, options)
            profile.disable()
            pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(25)
        for run in range(args.runs):
            result = run_backtest(cfg, data, options)
            meta = result.meta
            per_run.append(meta.events / meta.wall_s)
            last = {
                "events": meta.events,
                "messages": meta.frames,
                "orders": len(result.orders),
                "fills": len(result.fills),
                "wall_s": round(meta.wall_s, 3),
            }
            print(f"run {run + 1}: {per_run[-1]:,.0f} events/s", file=sys.stderr)
    summary = {
        "machine": machine(),
        "shape": args.shape,
        "strategies": 0 if args.no_strategies else 4,
        # One variant per run, keyed by what it ran (benchmarks.builds reads this shape).
        "events_per_s": {label: summarize(per_run)},
        **last,
    }
    figures = summary["events_per_s"][label]
    print(
        f"backtest ({summary['strategies']} strategies, {args.shape} shape): "
        f"median {figures['median']:,.0f} book events/s per core "
        f"(min {figures['min']:,.0f}, max {figures['max']:,.0f}, {args.runs} runs); "
        f"{last['events']:,} events in {last['messages']:,} messages, "
        f"orders {last['orders']:,}, fills {last['fills']:,}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
