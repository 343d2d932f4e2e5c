"""Venues by name: ``binance``, ``okx``, ``kraken``.

Each venue is a package ``trading_engine.venues.<name>`` exporting
``DEFAULT_WS_URL``, ``DEFAULT_REST_URL``, ``feed_dialect(symbols,
rest_url)``, ``instruments_url(rest_url, symbols)`` and
``parse_instruments(body, symbols)``. The package is imported when first
asked for, so a missing or broken one is an error naming the venue, and
the others keep working.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, cast

from ..core.errors import ConfigError
from ..core.feeds import FeedDialect, VenueInstrument

__all__ = ["VENUES", "Venue", "venue"]

#: The venue names the command line and ``[[feeds]]`` accept.
VENUES: Final = ("binance", "okx", "kraken")


@dataclass(frozen=True, slots=True)
class Venue:
    """One venue package's exports."""

    name: str
    default_ws_url: str
    default_rest_url: str
    feed_dialect: Callable[[Sequence[str], str], FeedDialect]
    instruments_url: Callable[[str, Sequence[str]], str]
    parse_instruments: Callable[[bytes, Sequence[str]], list[VenueInstrument]]


def venue(name: str) -> Venue:
    """The venue ``name``.

    Raises :class:`~trading_engine.core.errors.ConfigError` for a name that
    is not a venue, or a venue package that is missing or lacks an export.
    """
    if name not in VENUES:
        message = f"venue {name!r} is not one of {', '.join(VENUES)}"
        raise ConfigError(message, [message])
    try:
        module = importlib.import_module(f"{__package__}.{name}")
    except ImportError as exc:
        message = f"venue {name!r} is not available in this installation ({exc})"
        raise ConfigError(message, [message]) from exc
    try:
        return Venue(
            name=name,
            default_ws_url=cast(str, module.DEFAULT_WS_URL),
            default_rest_url=cast(str, module.DEFAULT_REST_URL),
            feed_dialect=module.feed_dialect,
            instruments_url=module.instruments_url,
            parse_instruments=module.parse_instruments,
        )
    except AttributeError as exc:
        message = f"venue {name!r}: its package lacks {exc.name}"
        raise ConfigError(message, [message]) from exc
