"""Book benchmark: decode + validate + apply + best bid/ask read.

A seeded synthetic stream (random-walk mid, about 20 levels a side, a mix
of new, changed and deleted levels) is applied:

* to the engine's OrderBook from pre-decoded integers (apply + best read);
* to alternative designs kept here for the comparison that chose it: two
  SortedDicts read with ``peekitem``, and plain dicts with a lazy best;
* to NautilusTrader's OrderBook (L2_MBP, deltas built with ``from_raw``)
  when ``nautilus_trader`` is importable (``pip install -e '.[bench]'``);
* through the whole BookBuilder from frame bytes (decode + validate +
  apply), reading the best bid and ask after every update.

Run: ``python benchmarks/book.py [--updates 1000000] [--runs 5]``.
Every variant runs once per round, rounds interleaved, so the machine's
noise hits all of them alike; figures are ns per update, median of rounds.
"""

from __future__ import annotations

import argparse
import gc
import json
from collections.abc import Callable
from typing import Any

from sortedcontainers import SortedDict

from benchmarks._common import machine, summarize, time_per_item_ns
from trading_engine import BookBuilder, BookMessage, Decoder, Instrument, OrderBook
from trading_engine.sim.marketsim import RandomWalkBook

INSTRUMENT = Instrument("BTC-USD", "0.01", "0.001")
Levels = list[tuple[int, int]]


def make_stream(updates: int, seed: int) -> tuple[bytes, list[bytes], list[tuple[Levels, Levels]]]:
    walk = RandomWalkBook(INSTRUMENT, seed=seed, mid=5_000_000, levels=20)
    snapshot = walk.snapshot_frame()[:-1]
    frames = [walk.next_frame()[:-1] for _ in range(updates)]
    decoder = Decoder({INSTRUMENT.symbol: INSTRUMENT})
    decoded: list[tuple[Levels, Levels]] = []
    for frame in [snapshot, *frames]:
        msg = decoder.decode(frame)
        assert isinstance(msg, BookMessage), msg
        decoded.append((msg.bids, msg.asks))
    return snapshot, frames, decoded


# -- the engine's book ----------------------------------------------------


def run_engine_book(decoded: list[tuple[Levels, Levels]]) -> int:
    book = OrderBook("BTC-USD")
    first_bids, first_asks = decoded[0]
    book.replace(first_bids, first_asks)
    apply = book.apply
    best_bid = book.best_bid_level
    best_ask = book.best_ask_level
    for bids, asks in decoded[1:]:
        apply(bids, asks)
        best_bid()
        best_ask()
    return len(decoded) - 1


# -- alternative designs ---------------------------------------------------


def run_sorted_dicts(decoded: list[tuple[Levels, Levels]]) -> int:
    """Two SortedDicts (bids keyed by negated price), best by peekitem(0)."""
    bids_book: Any = SortedDict()
    asks_book: Any = SortedDict()
    first_bids, first_asks = decoded[0]
    for price, size in first_bids:
        bids_book[-price] = size
    for price, size in first_asks:
        asks_book[price] = size
    for bids, asks in decoded[1:]:
        for price, size in bids:
            if size:
                bids_book[-price] = size
            else:
                bids_book.pop(-price, None)
        for price, size in asks:
            if size:
                asks_book[price] = size
            else:
                asks_book.pop(price, None)
        if bids_book:
            bids_book.peekitem(0)
        if asks_book:
            asks_book.peekitem(0)
    return len(decoded) - 1


def run_lazy_dicts(decoded: list[tuple[Levels, Levels]]) -> int:
    """Plain dicts; the best is recomputed with max/min only when invalidated."""
    bids_book: dict[int, int] = dict(decoded[0][0])
    asks_book: dict[int, int] = dict(decoded[0][1])
    best_bid: int | None = max(bids_book) if bids_book else None
    best_ask: int | None = min(asks_book) if asks_book else None
    for bids, asks in decoded[1:]:
        for price, size in bids:
            if size:
                bids_book[price] = size
                if best_bid is not None and price > best_bid:
                    best_bid = price
            elif bids_book.pop(price, None) is not None and price == best_bid:
                best_bid = None
        for price, size in asks:
            if size:
                asks_book[price] = size
                if best_ask is not None and price < best_ask:
                    best_ask = price
            elif asks_book.pop(price, None) is not None and price == best_ask:
                best_ask = None
        if best_bid is None and bids_book:
            best_bid = max(bids_book)
        if best_ask is None and asks_book:
            best_ask = min(asks_book)
        if best_bid is not None:
            bids_book[best_bid]
        if best_ask is not None:
            asks_book[best_ask]
    return len(decoded) - 1


# -- NautilusTrader ---------------------------------------------------------


def nautilus_runner() -> Callable[[list[tuple[Levels, Levels]]], int] | None:
    try:
        from nautilus_trader.model import objects
        from nautilus_trader.model.book import OrderBook as NautilusBook
        from nautilus_trader.model.data import OrderBookDelta
        from nautilus_trader.model.enums import BookAction, BookType, OrderSide
        from nautilus_trader.model.identifiers import InstrumentId
    except ImportError:
        return None
    scalar = 10**objects.FIXED_PRECISION
    price_unit = scalar // 100  # tick 0.01
    size_unit = scalar // 1000  # lot 0.001
    instrument_id = InstrumentId.from_str("BTC-USD.SIM")
    update_action, delete_action = BookAction.UPDATE, BookAction.DELETE
    buy, sell = OrderSide.BUY, OrderSide.SELL
    from_raw = OrderBookDelta.from_raw

    def run(decoded: list[tuple[Levels, Levels]]) -> int:
        book = NautilusBook(instrument_id, BookType.L2_MBP)
        apply_delta = book.apply_delta
        for seq, (bids, asks) in enumerate(decoded, start=1):
            for price, size in bids:
                action = update_action if size else delete_action
                apply_delta(
                    from_raw(
                        instrument_id, action, buy, price * price_unit, 2,
                        size * size_unit, 3, 0, 0, seq, 0, 0,
                    )
                )  # fmt: skip
            for price, size in asks:
                action = update_action if size else delete_action
                apply_delta(
                    from_raw(
                        instrument_id, action, sell, price * price_unit, 2,
                        size * size_unit, 3, 0, 0, seq, 0, 0,
                    )
                )  # fmt: skip
            book.best_bid_price()
            book.best_bid_size()
            book.best_ask_price()
            book.best_ask_size()
        return len(decoded)

    return run


# -- the whole builder -------------------------------------------------------


def builder_runner(snapshot: bytes, frames: list[bytes]) -> Callable[[], int]:
    def run() -> int:
        builder = BookBuilder([INSTRUMENT])
        builder.handle(snapshot)
        handle = builder.handle
        book = builder.books[INSTRUMENT.symbol].book
        best_bid = book.best_bid_level
        best_ask = book.best_ask_level
        for frame in frames:
            handle(frame)
            best_bid()
            best_ask()
        assert builder.accepted["update"] == len(frames), builder.rejected
        return len(frames)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()

    snapshot, frames, decoded = make_stream(args.updates, args.seed)
    levels = sum(len(b) + len(a) for b, a in decoded[1:]) / args.updates
    variants: dict[str, Callable[[], int]] = {
        "engine OrderBook: apply + best read": lambda: run_engine_book(decoded),
        "two SortedDicts + peekitem": lambda: run_sorted_dicts(decoded),
        "plain dicts, lazy best": lambda: run_lazy_dicts(decoded),
        "BookBuilder.handle: decode + validate + apply + best read": builder_runner(
            snapshot, frames
        ),
    }
    nautilus = nautilus_runner()
    if nautilus is not None:
        variants["NautilusTrader OrderBook (L2_MBP, from_raw deltas)"] = lambda: nautilus(decoded)

    results: dict[str, list[float]] = {name: [] for name in variants}
    gc.collect()
    gc.freeze()
    for round_number in range(args.runs + 1):
        for name, run in variants.items():
            figure = time_per_item_ns(run)
            if round_number:  # round 0 warms up
                results[name].append(figure)
    report = {
        "benchmark": "book",
        "updates": args.updates,
        "levels_per_update": round(levels, 2),
        "machine": machine(),
        "ns_per_update": {name: summarize(values) for name, values in results.items()},
    }
    engine = report["ns_per_update"]["engine OrderBook: apply + best read"]["median"]
    print(f"{args.updates:,} updates, {levels:.2f} levels per update, {args.runs} runs")
    print(f"{'variant':62} {'median ns':>10} {'min':>8} {'max':>8} {'vs engine':>10}")
    for name, stats in report["ns_per_update"].items():
        print(
            f"{name:62} {stats['median']:10.0f} {stats['min']:8.0f} {stats['max']:8.0f}"
            f" {stats['median'] / engine:9.2f}x"
        )
    if nautilus is not None:
        paired = sorted(
            theirs / ours
            for theirs, ours in zip(
                results["NautilusTrader OrderBook (L2_MBP, from_raw deltas)"],
                results["engine OrderBook: apply + best read"],
                strict=True,
            )
        )
        ratio = paired[len(paired) // 2]
        print(f"NautilusTrader / engine book: {ratio:.2f}x (median of per-round ratios)")
        report["nautilus_over_engine"] = ratio
    print(json.dumps(report["machine"]))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
