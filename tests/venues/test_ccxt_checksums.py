"""Both venues' checksums against an independent implementation: ccxt's.

ccxt (ccxt.pro) writes Kraken's checksum fields with its own
``format_number`` (drop the point, strip leading zeros) and both CRC32
conventions with its own ``crc32`` (signed for OKX, unsigned for Kraken).
Its OKX checksum code is gone since OKX deprecated the field, so for OKX
the comparison covers the CRC32 and its sign; the interleaving is checked
against OKX's own published examples in tests/venues/okx.
"""

from __future__ import annotations

from decimal import Decimal

import ccxt  # type: ignore[import-untyped]
import ccxt.pro  # type: ignore[import-untyped]
from hypothesis import given
from hypothesis import strategies as st

from trading_engine.venues.kraken.book import KrakenBook
from trading_engine.venues.okx.book import OkxBook

_levels = st.dictionaries(st.integers(1, 10_000), st.integers(1, 10**9), max_size=40)


class _Level:
    def __init__(self, price: Decimal, qty: Decimal) -> None:
        self.price = price
        self.qty = qty


@given(
    bids=_levels,
    asks=_levels,
    price_places=st.integers(0, 9),
    qty_places=st.integers(0, 9),
)
def test_kraken_checksum_agrees_with_ccxt(
    bids: dict[int, int], asks: dict[int, int], price_places: int, qty_places: int
) -> None:
    exchange = ccxt.pro.kraken()
    book = KrakenBook(1000, price_places, qty_places)
    bid_levels = {
        Decimal(p).scaleb(-price_places): Decimal(q).scaleb(-qty_places) for p, q in bids.items()
    }
    # Asks above every bid.
    ask_levels = {
        Decimal(p + 10_000).scaleb(-price_places): Decimal(q).scaleb(-qty_places)
        for p, q in asks.items()
    }
    book.apply(
        [_Level(p, q) for p, q in bid_levels.items()],
        [_Level(p, q) for p, q in ask_levels.items()],
    )
    payload = ""
    for levels in (sorted(ask_levels.items())[:10], sorted(bid_levels.items(), reverse=True)[:10]):
        for price, qty in levels:
            payload += exchange.format_number(f"{price:.{price_places}f}")
            payload += exchange.format_number(f"{qty:.{qty_places}f}")
    assert book.checksum() == ccxt.Exchange.crc32(payload, False)


@given(bids=_levels, asks=_levels, places=st.integers(0, 8))
def test_okx_checksum_agrees_with_ccxt_crc32(
    bids: dict[int, int], asks: dict[int, int], places: int
) -> None:
    book = OkxBook()
    bid_levels = [(format(Decimal(p).scaleb(-places), "f"), str(q)) for p, q in bids.items()]
    ask_levels = [
        (format(Decimal(p + 10_000).scaleb(-places), "f"), str(q)) for p, q in asks.items()
    ]
    book.apply(bid_levels, ask_levels)
    top_bids = [f"{p}:{s}" for p, s in sorted(bid_levels, key=lambda x: -Decimal(x[0]))[:25]]
    top_asks = [f"{p}:{s}" for p, s in sorted(ask_levels, key=lambda x: Decimal(x[0]))[:25]]
    parts: list[str] = []
    for i in range(25):
        parts += [x[i] for x in (top_bids, top_asks) if i < len(x)]
    assert book.checksum() == ccxt.Exchange.crc32(":".join(parts), True)
