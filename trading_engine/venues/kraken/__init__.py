"""Kraken (Spot WebSocket v2): market data from the ``book`` and ``trade`` channels.

The package convention every venue follows: :data:`DEFAULT_WS_URL`,
:data:`DEFAULT_REST_URL`, :func:`feed_dialect`, :func:`instruments_url`
and :func:`parse_instruments`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from ...core.feeds import FeedDialect
from .dialect import DEPTHS, KrakenDialect
from .instruments import instruments_url, parse_instruments

__all__ = [
    "DEFAULT_REST_URL",
    "DEFAULT_WS_URL",
    "DEPTHS",
    "KrakenDialect",
    "feed_dialect",
    "instruments_url",
    "parse_instruments",
]

#: The public market-data WebSocket (v2).
DEFAULT_WS_URL: Final = "wss://ws.kraken.com/v2"
#: The REST API (instrument metadata).
DEFAULT_REST_URL: Final = "https://api.kraken.com"


def feed_dialect(symbols: Sequence[str], rest_url: str, *, depth: int = 10) -> FeedDialect:
    """A :class:`KrakenDialect` for ``symbols`` with book ``depth`` (one of :data:`DEPTHS`).

    ``rest_url`` is unused: Kraken sends its book snapshots on the WebSocket.
    Raises ValueError for a depth Kraken does not offer.
    """
    return KrakenDialect(symbols, depth=depth)
