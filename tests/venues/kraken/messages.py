"""Kraken v2 messages as the venue writes them, from a small reference book.

Numbers are written as JSON number text (the venue's form), with or
without trailing zeros, since both reach a client.
"""

from __future__ import annotations

import json
import zlib
from decimal import Decimal

BTC = {"price": 1, "qty": 8}


def number(value: Decimal, places: int, trailing_zeros: bool) -> str:
    """``value`` as JSON number text: at ``places`` decimals, or as short as it goes."""
    text = f"{value:.{places}f}"
    if not trailing_zeros and "." in text:
        text = text.rstrip("0")
        text = text + "0" if text.endswith(".") else text
    return text


def ref_field(value: Decimal, places: int) -> str:
    """The guide's steps, written plainly: format at the precision, drop '.', drop leading 0s."""
    return f"{value:.{places}f}".replace(".", "").lstrip("0")


def ref_checksum(
    bids: dict[Decimal, Decimal], asks: dict[Decimal, Decimal], price_places: int, qty_places: int
) -> int:
    text = ""
    for p in sorted(asks)[:10]:
        text += ref_field(p, price_places) + ref_field(asks[p], qty_places)
    for p in sorted(bids, reverse=True)[:10]:
        text += ref_field(p, price_places) + ref_field(bids[p], qty_places)
    return zlib.crc32(text.encode())


def book_message(
    kind: str,
    symbol: str,
    bids: list[tuple[Decimal, Decimal]],
    asks: list[tuple[Decimal, Decimal]],
    checksum: int,
    *,
    price_places: int = 1,
    qty_places: int = 8,
    trailing_zeros: bool = True,
    timestamp: str = "2023-10-06T17:35:55.440295Z",
) -> str:
    def level(p: Decimal, q: Decimal) -> str:
        qty = number(q, qty_places, trailing_zeros) if q else "0"
        return f'{{"price":{number(p, price_places, trailing_zeros)},"qty":{qty}}}'

    def levels(items: list[tuple[Decimal, Decimal]]) -> str:
        return ",".join(level(p, q) for p, q in items)

    return (
        f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{symbol}",'
        f'"bids":[{levels(bids)}],"asks":[{levels(asks)}],"checksum":{checksum},'
        f'"timestamp":"{timestamp}"}}]}}'
    )


def instrument_snapshot(pairs: dict[str, tuple[int, int]], kind: str = "snapshot") -> str:
    """An ``instrument`` message (the channel's documented schema) for ``{symbol: (price
    precision, qty precision)}``."""
    items = [
        {
            "symbol": symbol,
            "base": symbol.split("/")[0],
            "quote": symbol.split("/")[1],
            "status": "online",
            "qty_precision": qp,
            "qty_increment": float(Decimal(1).scaleb(-qp)),
            "price_precision": pp,
            "cost_precision": 5,
            "marginable": False,
            "has_index": True,
            "cost_min": 0.5,
            "tick_size": float(Decimal(1).scaleb(-pp)),
            "price_increment": float(Decimal(1).scaleb(-pp)),
            "qty_min": 0.0001,
        }
        for symbol, (pp, qp) in pairs.items()
    ]
    return json.dumps(
        {"channel": "instrument", "type": kind, "data": {"assets": [], "pairs": items}}
    )
