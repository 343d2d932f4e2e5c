"""OKX (v5 public WebSocket): market data from the ``books`` and ``trades`` channels.

The package convention every venue follows: :data:`DEFAULT_WS_URL`,
:data:`DEFAULT_REST_URL`, :func:`feed_dialect`, :func:`instruments_url`
and :func:`parse_instruments`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from ...core.feeds import FeedDialect
from .dialect import OkxDialect
from .instruments import instruments_url, parse_instruments

__all__ = [
    "DEFAULT_REST_URL",
    "DEFAULT_WS_URL",
    "OkxDialect",
    "feed_dialect",
    "instruments_url",
    "parse_instruments",
]

#: The public market-data WebSocket.
DEFAULT_WS_URL: Final = "wss://ws.okx.com:8443/ws/v5/public"
#: The REST API (instrument metadata).
DEFAULT_REST_URL: Final = "https://www.okx.com"


def feed_dialect(symbols: Sequence[str], rest_url: str) -> FeedDialect:
    """An :class:`OkxDialect` for ``symbols``.

    ``rest_url`` is unused: OKX sends its book snapshots on the WebSocket.
    """
    return OkxDialect(symbols)
