"""The Binance dialect against an independent client: ccxt's Binance order book.

ccxt (ccxt.pro) keeps a Binance spot book by its own reading of the same
documented procedure: buffer diff-depth events until the REST snapshot is
in, drop events with ``u`` <= its ``lastUpdateId``, start from the event
that brackets it, then require ``U`` == the previous ``u`` + 1. The
recorded session goes through ccxt's handler and through the dialect; after
every depth event both books hold the same levels.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt.pro  # type: ignore[import-untyped]

from tests.venues.binance.book import ReferenceBook
from trading_engine.venues.binance import BinanceMarketData

DATA = Path(__file__).resolve().parents[2] / "data" / "venues" / "binance"


class _Client:
    """What ccxt's handler asks of a connection: its URL, and where results go."""

    url = "wss://stream.binance.com:9443/stream"

    def resolve(self, *args: object) -> None:
        pass

    def reject(self, *args: object) -> None:
        pass


def _ccxt_binance() -> Any:
    exchange = ccxt.pro.binance()
    exchange.set_markets(
        [
            {
                "id": "XMRBTC", "symbol": "XMR/BTC", "base": "XMR", "quote": "BTC",
                "baseId": "XMR", "quoteId": "BTC", "type": "spot", "spot": True,
                "swap": False, "future": False, "option": False, "contract": False,
                "active": True, "precision": {}, "limits": {}, "info": {},
            }
        ]
    )  # fmt: skip
    return exchange


def _levels(side: Any) -> dict[Decimal, Decimal]:
    # ccxt keeps floats; the recorded strings have at most 8 decimals.
    return {
        Decimal(repr(price)).quantize(Decimal("1e-8")): Decimal(repr(size)).quantize(
            Decimal("1e-8")
        )
        for price, size in side
    }


def _ours(book: ReferenceBook, side: str) -> dict[Decimal, Decimal]:
    levels = book.bids["XMRBTC"] if side == "bids" else book.asks["XMRBTC"]
    return {
        price.quantize(Decimal("1e-8")): size.quantize(Decimal("1e-8"))
        for price, size in levels.items()
    }


def test_every_book_of_the_recorded_session_equals_ccxts() -> None:
    lines = [
        line.split("\t", 3) for line in (DATA / "xmrbtc_session.capture").read_text().splitlines()
    ]
    exchange, client = _ccxt_binance(), _Client()
    orderbook = exchange.order_book({})
    exchange.orderbooks["XMR/BTC"] = orderbook
    dialect, book = BinanceMarketData(["XMRBTC"], "https://api.binance.com"), ReferenceBook()
    compared = 0
    for _, kind, key, payload in lines:
        if kind == "open":
            book.apply(dialect.on_open(0))
        elif kind == "snapshot":
            book.apply(dialect.on_snapshot(key, payload.encode(), 0))
            # ccxt's own snapshot step: the parsed snapshot, then its buffered events.
            snapshot = json.loads(payload)
            parsed = exchange.parse_order_book(snapshot, "XMR/BTC")
            parsed["nonce"] = snapshot["lastUpdateId"]
            orderbook.reset(parsed)
            for message in list(orderbook.cache):
                exchange.handle_order_book(client, message)
        elif kind == "ws":
            book.apply(dialect.on_message(payload, 0))
            data = json.loads(payload)["data"]
            if data.get("e") != "depthUpdate" or data["s"] != "XMRBTC":
                continue
            exchange.handle_order_book(client, data)
            if book.live.get("XMRBTC") and orderbook["nonce"] == data["u"]:
                assert _ours(book, "bids") == _levels(orderbook["bids"]), data["u"]
                assert _ours(book, "asks") == _levels(orderbook["asks"]), data["u"]
                compared += 1
    assert compared == 9  # every depth event after the one the snapshot covers
