"""Binance spot instrument metadata: ``GET /api/v3/exchangeInfo`` to :class:`VenueInstrument`.

Each symbol's ``filters`` carry its grid: ``PRICE_FILTER.tickSize`` (the
price increment), ``LOT_SIZE.stepSize`` and ``LOT_SIZE.minQty`` (the
quantity increment and the smallest quantity), and the smallest order value
in the quote currency, ``NOTIONAL.minNotional`` (``MIN_NOTIONAL.minNotional``
before Binance renamed the filter). Decimal strings are returned in their
shortest form (``"0.01000000"`` becomes ``"0.01"``).

One reader serves two uses: :func:`symbol_entries` finds each asked
symbol's entry and its filters by type, which :func:`parse_exchange_info`
turns into the grid the ``instruments`` command prints and
:mod:`.filters` into the venue's pre-trade checks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Final
from urllib.parse import quote

import orjson

from ...core.errors import UnreadableAnswer
from ...core.feeds import VenueInstrument

__all__ = ["exchange_info_url", "filter_decimal", "parse_exchange_info", "symbol_entries"]


def exchange_info_url(rest_url: str, symbols: Sequence[str]) -> str:
    """The exchangeInfo URL asking for exactly ``symbols``."""
    listed = json.dumps(list(symbols), separators=(",", ":"))
    return f"{rest_url.rstrip('/')}/api/v3/exchangeInfo?symbols={quote(listed)}"


#: A filter's number as the venue writes it: a plain non-negative decimal
#: (``"0.01000000"``), no sign, exponent, space or digit separator.
_FILTER_DECIMAL: Final = re.compile(r"[0-9]{1,30}(?:\.[0-9]{1,30})?")


def filter_decimal(value: object, where: str) -> Decimal:
    """A filter's decimal string, exactly; raises :class:`UnreadableAnswer` naming ``where``.

    The one reader of every number in a symbol's filters, for the grid
    (:func:`parse_exchange_info`) and the pre-trade checks (:mod:`.filters`):
    at most 48 characters of plain decimal, so an exponent (``"1e999999999"``
    would take gigabytes to write out) or a ``NaN`` never gets in.
    """
    if not isinstance(value, str) or len(value) > 48 or not _FILTER_DECIMAL.fullmatch(value):
        raise UnreadableAnswer(
            f"binance exchangeInfo: {where} {value!r} is not a decimal string"[:200]
        )
    return Decimal(value)


def _decimal(value: object, where: str) -> str | None:
    """``value`` in its shortest decimal form; None for zero (the venue's "no limit")."""
    number = filter_decimal(value, where)
    if number == 0:
        return None
    return format(number.normalize(), "f")


def symbol_entries(
    body: bytes, symbols: Sequence[str]
) -> list[tuple[dict[str, Any], dict[str, dict[str, Any]]]]:
    """``symbols``' entries of an exchangeInfo body, each with its filters by ``filterType``.

    In the order asked. Raises
    :class:`~trading_engine.core.errors.UnreadableAnswer` naming the symbol
    for a body that is not exchangeInfo, a symbol the venue does not list
    or one it lists twice with different entries.
    """
    try:
        # orjson: no NaN or Infinity, and a nesting limit instead of a RecursionError.
        document: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UnreadableAnswer(f"binance exchangeInfo: not JSON: {exc}"[:200]) from None
    listed = document.get("symbols") if isinstance(document, dict) else None
    if not isinstance(listed, list):
        raise UnreadableAnswer("binance exchangeInfo: no 'symbols' list in the answer")
    by_symbol: dict[str, dict[str, Any]] = {}
    for item in listed:
        name = item.get("symbol") if isinstance(item, dict) else None
        if not isinstance(name, str):
            continue
        if by_symbol.setdefault(name, item) != item:
            # Two different grids for one symbol: neither can be trusted.
            raise UnreadableAnswer(f"binance exchangeInfo: {name[:40]!r} listed twice")
    found: list[tuple[dict[str, Any], dict[str, dict[str, Any]]]] = []
    for symbol in symbols:
        item = by_symbol.get(symbol)
        if item is None:
            raise UnreadableAnswer(f"binance exchangeInfo: {symbol}: the venue does not list it")
        entries = item.get("filters", [])
        filters: dict[str, dict[str, Any]] = {}
        for entry in entries if isinstance(entries, list) else []:
            kind = entry.get("filterType") if isinstance(entry, dict) else None
            if isinstance(kind, str) and filters.setdefault(kind, entry) != entry:
                raise UnreadableAnswer(
                    f"binance exchangeInfo: {symbol}: filter {kind[:40]!r} listed twice"
                )
        found.append((item, filters))
    return found


def parse_exchange_info(body: bytes, symbols: Sequence[str]) -> list[VenueInstrument]:
    """The instruments ``symbols`` (in that order) from an exchangeInfo body.

    Raises :class:`~trading_engine.core.errors.UnreadableAnswer` naming the
    symbol or field for a body that is not exchangeInfo, a symbol the
    venue does not list, or a symbol without a tick size or lot size.
    """
    found: list[VenueInstrument] = []
    for (entry, filters), symbol in zip(symbol_entries(body, symbols), symbols, strict=True):
        price = filters.get("PRICE_FILTER", {})
        lot = filters.get("LOT_SIZE", {})
        tick = _decimal(price.get("tickSize"), f"{symbol} PRICE_FILTER.tickSize")
        step = _decimal(lot.get("stepSize"), f"{symbol} LOT_SIZE.stepSize")
        if tick is None or step is None:
            raise UnreadableAnswer(f"binance exchangeInfo: {symbol}: tick size or lot size is 0")
        min_quantity = (
            _decimal(lot["minQty"], f"{symbol} LOT_SIZE.minQty") if "minQty" in lot else None
        )
        notional = filters.get("NOTIONAL") or filters.get("MIN_NOTIONAL") or {}
        min_notional = (
            _decimal(notional["minNotional"], f"{symbol} minNotional")
            if "minNotional" in notional
            else None
        )
        base, quote_asset = entry.get("baseAsset"), entry.get("quoteAsset")
        found.append(
            VenueInstrument(
                symbol,
                tick,
                step,
                min_quantity,
                min_notional,
                base if isinstance(base, str) and base else None,
                quote_asset if isinstance(quote_asset, str) and quote_asset else None,
            )
        )
    return found
