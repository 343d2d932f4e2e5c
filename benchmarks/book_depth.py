"""The book at venue depth: the engine's sorted list index against sortedcontainers.

``python -m benchmarks.book_depth [--updates N] [--runs R]``. Venues send
deep books: Binance snapshots hold up to 5,000 levels a side, OKX 400,
Kraken 10 to 1,000. For each depth a seeded stream of one-level updates is
applied, reading the best bid and ask after each; where an update lands
follows real books (most changes near the top: the distance from the best
price is geometric with mean depth / 20, capped at the depth), and levels
appear and disappear as often as they change (a third each: new, change,
delete). Variants, all a dict of sizes plus a sorted index of prices:

* the engine's ``OrderBook``: a plain ``list`` kept sorted with ``bisect``
  (best price last);
* ``SortedList`` of prices (bids ascending, the best read with ``[-1]``);
* ``SortedKeyList`` of prices keyed by the negated price for the bids, as
  a design that keeps both sides best-first.

Also timed: a snapshot replace (``replace`` against building the two
sorted containers) at each depth. Every variant runs once per round,
rounds interleaved; figures are ns per update (per snapshot: us), median
of rounds.
"""

from __future__ import annotations

import argparse
import gc
import random
from collections.abc import Callable
from typing import Any

from sortedcontainers import SortedKeyList, SortedList

from benchmarks._common import machine, summarize, time_per_item_ns
from trading_engine import OrderBook

DEPTHS = (10, 400, 1000, 5000)
MID = 10_000_000
Update = tuple[bool, int, int]  # (is bid, price, size: 0 removes)


def make_stream(depth: int, updates: int, seed: int) -> tuple[list[int], list[int], list[Update]]:
    """Initial bid and ask prices (``depth`` each) and updates that keep about that depth."""
    rng = random.Random(seed)
    bids = {MID - 1 - 2 * i for i in range(depth)}
    asks = {MID + 1 + 2 * i for i in range(depth)}
    stream: list[Update] = []
    mean = max(1.0, depth / 20)
    for _ in range(updates):
        is_bid = rng.random() < 0.5
        side = bids if is_bid else asks
        distance = min(int(rng.expovariate(1 / mean)), 2 * depth)
        price = (MID - 1 - distance) if is_bid else (MID + 1 + distance)
        roll = rng.random()
        if price in side and (roll < 0.5 or len(side) > depth):
            side.discard(price)
            stream.append((is_bid, price, 0))
        else:
            side.add(price)
            stream.append((is_bid, price, rng.randint(1, 1000)))
    initial_bids = sorted({MID - 1 - 2 * i for i in range(depth)})
    initial_asks = sorted({MID + 1 + 2 * i for i in range(depth)})
    return initial_bids, initial_asks, stream


def run_engine(bids: list[int], asks: list[int], stream: list[Update]) -> int:
    book = OrderBook("X")
    book.replace([(p, 1) for p in bids], [(p, 1) for p in asks])
    set_bid, set_ask = book.set_bid, book.set_ask
    for is_bid, price, size in stream:
        if is_bid:
            set_bid(price, size)
        else:
            set_ask(price, size)
        book.best_bid_level()
        book.best_ask_level()
    return len(stream)


def _sorted_run(bids: list[int], asks: list[int], stream: list[Update], keyed: bool) -> int:
    bid_sizes = dict.fromkeys(bids, 1)
    ask_sizes = dict.fromkeys(asks, 1)
    bid_index: Any = SortedKeyList(bids, key=lambda p: -p) if keyed else SortedList(bids)
    ask_index: Any = SortedKeyList(asks) if keyed else SortedList(asks)
    bid_at = 0 if keyed else -1
    for is_bid, price, size in stream:
        sizes, index = (bid_sizes, bid_index) if is_bid else (ask_sizes, ask_index)
        if size:
            if price not in sizes:
                index.add(price)
            sizes[price] = size
        elif price in sizes:
            del sizes[price]
            index.remove(price)
        if bid_index:
            best = bid_index[bid_at]
            (best, bid_sizes[best])
        if ask_index:
            best = ask_index[0]
            (best, ask_sizes[best])
    return len(stream)


def run_sorted_list(bids: list[int], asks: list[int], stream: list[Update]) -> int:
    return _sorted_run(bids, asks, stream, keyed=False)


def run_sorted_key_list(bids: list[int], asks: list[int], stream: list[Update]) -> int:
    return _sorted_run(bids, asks, stream, keyed=True)


def snapshot_engine(bids: list[int], asks: list[int], repeat: int) -> int:
    levels_b, levels_a = [(p, 1) for p in bids], [(p, 1) for p in asks]
    book = OrderBook("X")
    for _ in range(repeat):
        book.replace(levels_b, levels_a)
    return repeat


def snapshot_sorted(bids: list[int], asks: list[int], repeat: int) -> int:
    levels_b, levels_a = [(p, 1) for p in bids], [(p, 1) for p in asks]
    for _ in range(repeat):
        bid_sizes = dict(levels_b)
        ask_sizes = dict(levels_a)
        SortedList(bid_sizes)
        SortedList(ask_sizes)
    return repeat


VARIANTS: dict[str, Callable[[list[int], list[int], list[Update]], int]] = {
    "engine list index": run_engine,
    "SortedList": run_sorted_list,
    "SortedKeyList": run_sorted_key_list,
}


def _bound(function: Callable[..., int], *args: Any) -> Callable[[], int]:
    return lambda: function(*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--updates", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    gc.disable()
    print(f"| depth | {' | '.join(VARIANTS)} | snapshot: engine | snapshot: SortedList |")
    print("|---:|" + "---:|" * (len(VARIANTS) + 2))
    for depth in DEPTHS:
        bids, asks, stream = make_stream(depth, args.updates, seed=depth)
        rounds: dict[str, list[float]] = {name: [] for name in VARIANTS}
        snapshots: dict[str, list[float]] = {"engine": [], "sorted": []}
        repeat = max(1, 200_000 // depth)
        for _ in range(args.runs):
            for name, variant in VARIANTS.items():
                rounds[name].append(time_per_item_ns(_bound(variant, bids, asks, stream)))
            snapshots["engine"].append(
                time_per_item_ns(_bound(snapshot_engine, bids, asks, repeat)) / 1000
            )
            snapshots["sorted"].append(
                time_per_item_ns(_bound(snapshot_sorted, bids, asks, repeat)) / 1000
            )
        cells = [f"{summarize(rounds[name])['median']:,.0f} ns" for name in VARIANTS]
        cells += [f"{summarize(snapshots[k])['median']:,.1f} us" for k in ("engine", "sorted")]
        print(f"| {depth:,} | " + " | ".join(cells) + " |")
    print(machine())


if __name__ == "__main__":
    main()
