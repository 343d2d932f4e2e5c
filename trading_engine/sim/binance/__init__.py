"""The exchange simulator's Binance spot dialect (``exchange-sim --dialect binance``).

:class:`BinanceSimulator` serves the venue's REST endpoints and its user
data stream on the simulator's books and matching engine, with the
venue's request security (:mod:`.auth`), limits (:mod:`.limits`) and
symbol filters (:mod:`.rules`). docs/exchange-api.md, "The simulator's
Binance dialect", says what it serves and what it simplifies.
"""

from __future__ import annotations

from .auth import ApiKeys, load_ed25519_public_key
from .errors import VenueError
from .limits import LimitSettings, RateLimiter
from .rules import SymbolRules, SymbolSettings
from .simulator import UNKNOWN_STATUS_HTTP, BinanceOrder, BinanceSimulator

__all__ = [
    "UNKNOWN_STATUS_HTTP",
    "ApiKeys",
    "BinanceOrder",
    "BinanceSimulator",
    "LimitSettings",
    "RateLimiter",
    "SymbolRules",
    "SymbolSettings",
    "VenueError",
    "load_ed25519_public_key",
]
