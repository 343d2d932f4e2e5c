"""Cost of the OKX and Kraken dialects per venue message (not collected by pytest).

Run: ``python -m tests.venues.bench_dialects``. Each case builds a book,
then feeds 2,000 prepared update messages (every checksum verified) after
a warm-up pass, and reports the median and p99 per message, and the time
of one snapshot of that depth. Results are recorded in docs/venues.md.
"""

from __future__ import annotations

import platform
import random
import sys
import time
from collections.abc import Callable
from decimal import Decimal

from trading_engine.venues.kraken import KrakenDialect
from trading_engine.venues.okx import OkxDialect

from .kraken.messages import book_message as kraken_message
from .kraken.messages import instrument_snapshot, ref_checksum
from .okx.messages import Level, RefBook
from .okx.messages import book_message as okx_message

UPDATES = 2_000


def _percentiles(feed: Callable[[str], object], messages: list[str]) -> tuple[float, float]:
    samples: list[int] = []
    clock = time.perf_counter_ns
    for text in messages:
        start = clock()
        feed(text)
        samples.append(clock() - start)
    samples.sort()
    return samples[len(samples) // 2] / 1000, samples[len(samples) * 99 // 100] / 1000


def _line(case: str, p50: float, p99: float, snapshot_us: float) -> str:
    return f"{case}: p50 {p50:.1f} us, p99 {p99:.1f} us; snapshot {snapshot_us:.0f} us"


def okx_case(rng: random.Random) -> str:
    ref = RefBook()
    bids: list[Level] = [
        (f"{50_000 - i / 10:.1f}", f"{rng.randint(1, 10**6) / 1e4:.4f}") for i in range(400)
    ]
    asks: list[Level] = [
        (f"{50_000.1 + i / 10:.1f}", f"{rng.randint(1, 10**6) / 1e4:.4f}") for i in range(400)
    ]
    ref.apply(bids, asks)
    snapshot = okx_message(
        "BTC-USDT", "snapshot", bids, asks, seq=1, prev=-1, checksum=ref.checksum()
    )
    messages: list[str] = []
    seq = 1
    for _ in range(2 * UPDATES):
        changed: tuple[dict[str, str], dict[str, str]] = ({}, {})
        for _ in range(rng.randint(1, 10)):
            is_bid = rng.random() < 0.5
            i = rng.randint(0, 60)
            price = f"{50_000 - i / 10:.1f}" if is_bid else f"{50_000.1 + i / 10:.1f}"
            size = "0" if rng.random() < 0.2 else f"{rng.randint(1, 10**6) / 1e4:.4f}"
            changed[0 if is_bid else 1][price] = size
        b, a = list(changed[0].items()), list(changed[1].items())
        ref.apply(b, a)
        messages.append(
            okx_message("BTC-USDT", "update", b, a, seq=seq + 1, prev=seq, checksum=ref.checksum())
        )
        seq += 1
    dialect = OkxDialect(["BTC-USDT"])
    dialect.on_open(0)
    start = time.perf_counter_ns()
    dialect.on_message(snapshot, 0)
    snapshot_us = (time.perf_counter_ns() - start) / 1000
    _percentiles(lambda t: dialect.on_message(t, 0), messages[:UPDATES])  # warm-up
    p50, p99 = _percentiles(lambda t: dialect.on_message(t, 0), messages[UPDATES:])
    assert not dialect.errors, dialect.errors
    return _line("okx, 400 levels a side, 1-10 levels a message", p50, p99, snapshot_us)


def kraken_case(rng: random.Random, depth: int) -> str:
    bids = {Decimal(500_000 - i) / 10: Decimal(rng.randint(1, 10**8)) / 10**8 for i in range(depth)}
    asks = {Decimal(500_001 + i) / 10: Decimal(rng.randint(1, 10**8)) / 10**8 for i in range(depth)}
    snapshot = kraken_message(
        "snapshot",
        "BTC/USD",
        sorted(bids.items(), reverse=True),
        sorted(asks.items()),
        ref_checksum(bids, asks, 1, 8),
    )
    messages: list[str] = []
    for _ in range(2 * UPDATES):
        b: list[tuple[Decimal, Decimal]] = []
        a: list[tuple[Decimal, Decimal]] = []
        for _ in range(rng.randint(1, 5)):
            is_bid = rng.random() < 0.5
            i = rng.randint(0, min(depth - 1, 20))
            price = Decimal(500_000 - i) / 10 if is_bid else Decimal(500_001 + i) / 10
            qty = Decimal(rng.randint(1, 10**8)) / 10**8
            (bids if is_bid else asks)[price] = qty
            (b if is_bid else a).append((price, qty))
        messages.append(kraken_message("update", "BTC/USD", b, a, ref_checksum(bids, asks, 1, 8)))
    dialect = KrakenDialect(["BTC/USD"], depth=depth)
    dialect.on_open(0)
    dialect.on_message(instrument_snapshot({"BTC/USD": (1, 8)}), 0)
    start = time.perf_counter_ns()
    dialect.on_message(snapshot, 0)
    snapshot_us = (time.perf_counter_ns() - start) / 1000
    _percentiles(lambda t: dialect.on_message(t, 0), messages[:UPDATES])  # warm-up
    p50, p99 = _percentiles(lambda t: dialect.on_message(t, 0), messages[UPDATES:])
    assert not dialect.errors, dialect.errors
    return _line(f"kraken, depth {depth}, 1-5 levels a message", p50, p99, snapshot_us)


def main() -> None:
    rng = random.Random(1)
    print(f"python {sys.version.split()[0]} on {platform.machine()}")
    print(okx_case(rng))
    for depth in (10, 1000):
        print(kraken_case(rng, depth))


if __name__ == "__main__":
    main()
