"""Binance spot: public market data and instrument metadata.

See :mod:`.market_data` for the sequencing rules and :mod:`.instruments`
for the instrument filters. Every venue package exports the same five
names, which the feed handler and the commands use by venue name
(:mod:`trading_engine.venues.registry`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ...core.feeds import FeedDialect, VenueInstrument
from .instruments import exchange_info_url, parse_exchange_info
from .market_data import BinanceMarketData

__all__ = [
    "DEFAULT_REST_URL",
    "DEFAULT_WS_URL",
    "BinanceMarketData",
    "feed_dialect",
    "instruments_url",
    "parse_instruments",
]

#: The spot market-data WebSocket base (streams are named in the path).
DEFAULT_WS_URL = "wss://stream.binance.com:9443"
#: The spot REST base.
DEFAULT_REST_URL = "https://api.binance.com"


def feed_dialect(symbols: Sequence[str], rest_url: str) -> FeedDialect:
    """A market-data dialect for ``symbols`` (venue names such as ``BTCUSDT``)."""
    return BinanceMarketData(symbols, rest_url)


def instruments_url(rest_url: str, symbols: Sequence[str]) -> str:
    """The URL whose answer :func:`parse_instruments` reads."""
    return exchange_info_url(rest_url, symbols)


def parse_instruments(body: bytes, symbols: Sequence[str]) -> list[VenueInstrument]:
    """``symbols``' instruments from the answer of :func:`instruments_url`."""
    return parse_exchange_info(body, symbols)
