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
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from ...core.errors import UnreadableAnswer
from ...core.feeds import VenueInstrument

__all__ = ["exchange_info_url", "parse_exchange_info", "symbol_entries"]


def exchange_info_url(rest_url: str, symbols: Sequence[str]) -> str:
    """The exchangeInfo URL asking for exactly ``symbols``."""
    listed = json.dumps(list(symbols), separators=(",", ":"))
    return f"{rest_url.rstrip('/')}/api/v3/exchangeInfo?symbols={quote(listed)}"


def _decimal(value: object, where: str) -> str | None:
    """``value`` in its shortest decimal form; None for zero (the venue's "no limit")."""
    if not isinstance(value, str):
        raise UnreadableAnswer(f"binance exchangeInfo: {where} is not a decimal string")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise UnreadableAnswer(
            f"binance exchangeInfo: {where} {value!r} is not a decimal"
        ) from None
    if not number.is_finite() or number < 0:
        raise UnreadableAnswer(f"binance exchangeInfo: {where} {value!r} is not a decimal")
    if number == 0:
        return None
    return format(number.normalize(), "f")


def symbol_entries(
    body: bytes, symbols: Sequence[str]
) -> list[tuple[dict[str, Any], dict[str, dict[str, Any]]]]:
    """``symbols``' entries of an exchangeInfo body, each with its filters by ``filterType``.

    In the order asked. Raises
    :class:`~trading_engine.core.errors.UnreadableAnswer` naming the symbol
    for a body that is not exchangeInfo or a symbol the venue does not list.
    """
    try:
        document: Any = json.loads(body)
    except ValueError as exc:
        raise UnreadableAnswer(f"binance exchangeInfo: not JSON: {exc}") from None
    listed = document.get("symbols") if isinstance(document, dict) else None
    if not isinstance(listed, list):
        raise UnreadableAnswer("binance exchangeInfo: no 'symbols' list in the answer")
    by_symbol = {item.get("symbol"): item for item in listed if isinstance(item, dict)}
    found: list[tuple[dict[str, Any], dict[str, dict[str, Any]]]] = []
    for symbol in symbols:
        item = by_symbol.get(symbol)
        if item is None:
            raise UnreadableAnswer(f"binance exchangeInfo: {symbol}: the venue does not list it")
        entries = item.get("filters", [])
        filters: dict[str, dict[str, Any]] = {
            entry["filterType"]: entry
            for entry in (entries if isinstance(entries, list) else [])
            if isinstance(entry, dict) and isinstance(entry.get("filterType"), str)
        }
        found.append((item, filters))
    return found


def parse_exchange_info(body: bytes, symbols: Sequence[str]) -> list[VenueInstrument]:
    """The instruments ``symbols`` (in that order) from an exchangeInfo body.

    Raises :class:`~trading_engine.core.errors.UnreadableAnswer` naming the
    symbol or field for a body that is not exchangeInfo, a symbol the
    venue does not list, or a symbol without a tick size or lot size.
    """
    found: list[VenueInstrument] = []
    for (_, filters), symbol in zip(symbol_entries(body, symbols), symbols, strict=True):
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
        found.append(VenueInstrument(symbol, tick, step, min_quantity, min_notional))
    return found
