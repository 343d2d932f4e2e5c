"""Binance spot: public market data, instrument metadata and order entry.

See :mod:`.market_data` for the sequencing rules and :mod:`.instruments`
for the instrument filters. Every venue package exports the same five
names, which the feed handler and the commands use by venue name
(:mod:`trading_engine.venues.registry`). Order entry: :mod:`.orders`
(the sans-I/O codec), :mod:`.signing` (HMAC and Ed25519 signatures) and
:mod:`.filters` (the symbol filters as pre-trade checks).
"""

from __future__ import annotations

from collections.abc import Sequence

from ...core.feeds import FeedDialect, VenueInstrument
from .filters import SymbolFilters, parse_symbol_filters
from .instruments import exchange_info_url, parse_exchange_info
from .market_data import BinanceMarketData
from .orders import BinanceSpotCodec
from .signing import Ed25519Signer, HmacSha256Signer, signer_from_environment

__all__ = [
    "DEFAULT_REST_URL",
    "DEFAULT_WS_URL",
    "BinanceMarketData",
    "BinanceSpotCodec",
    "Ed25519Signer",
    "HmacSha256Signer",
    "SymbolFilters",
    "feed_dialect",
    "instruments_url",
    "parse_instruments",
    "parse_symbol_filters",
    "signer_from_environment",
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
