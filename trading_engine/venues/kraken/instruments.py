"""Kraken spot instrument metadata: REST ``GET /0/public/AssetPairs``.

https://docs.kraken.com/api/docs/rest-api/get-tradable-asset-pairs:
``tick_size`` is the price increment, ``lot_decimals`` the quantity's
decimals (its increment is 10^-lot_decimals), ``ordermin`` the smallest
order quantity and ``costmin`` the smallest order cost in the quote
currency.

Why REST and not the WebSocket ``instrument`` channel: the ``instruments``
command is a one-shot read with no WebSocket session, and AssetPairs
answers it with one GET. AssetPairs names pairs the v1 way (``wsname``
``XBT/USD``), where WebSocket v2 and this project use ISO codes
(``BTC/USD``): the two asset codes Kraken spells differently (XBT for
BTC, XDG for DOGE) are translated, and every other name compares as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Final

import msgspec

from ...core.errors import UnreadableAnswer
from ...core.feeds import VenueInstrument

__all__ = ["instruments_url", "parse_instruments", "v2_symbol"]

#: Kraken's legacy asset codes and their ISO names (as WebSocket v2 spells them).
_ISO_NAMES: Final = {"XBT": "BTC", "XDG": "DOGE"}


class _Pair(msgspec.Struct):
    wsname: str | None = None
    tick_size: str | None = None
    pair_decimals: int | None = None
    lot_decimals: int | None = None
    ordermin: str | None = None
    costmin: str | None = None


class _Answer(msgspec.Struct):
    error: list[str] = []
    result: dict[str, _Pair] = {}


def _decimal(text: str | None, where: str) -> str | None:
    """``text`` checked as a decimal >= 0; None when absent or zero (no minimum)."""
    if text is None:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise UnreadableAnswer(f"kraken AssetPairs: {where} {text!r} is not a decimal") from None
    if not value.is_finite() or value < 0:
        raise UnreadableAnswer(f"kraken AssetPairs: {where} {text!r} is not a decimal >= 0")
    return text if value else None


def _places(value: int | None, where: str) -> int:
    if value is None or not 0 <= value <= 18:
        raise UnreadableAnswer(f"kraken AssetPairs: {where} {value!r} is not 0..18")
    return value


def v2_symbol(wsname: str) -> str:
    """An AssetPairs ``wsname`` (``XBT/USD``) as WebSocket v2 names it (``BTC/USD``)."""
    return "/".join(_ISO_NAMES.get(part, part) for part in wsname.split("/"))


def instruments_url(rest_url: str, symbols: Sequence[str]) -> str:
    """The URL listing every spot pair (one request covers all ``symbols``)."""
    return f"{rest_url.rstrip('/')}/0/public/AssetPairs"


def parse_instruments(body: bytes, symbols: Sequence[str]) -> list[VenueInstrument]:
    """The instruments ``symbols`` (``BTC/USD``), in that order, from the answer ``body``.

    Raises :class:`UnreadableAnswer` naming the field when the body is not
    Kraken's answer, the venue answered an error, or a symbol is not listed.
    """
    try:
        answer = msgspec.json.decode(body, type=_Answer)
    except msgspec.DecodeError as exc:
        raise UnreadableAnswer(f"kraken AssetPairs: {exc}") from exc
    if answer.error:
        raise UnreadableAnswer(f"kraken AssetPairs: error {', '.join(answer.error)}")
    listed = {v2_symbol(p.wsname): p for p in answer.result.values() if p.wsname}
    found: list[VenueInstrument] = []
    for symbol in symbols:
        pair = listed.get(symbol)
        if pair is None:
            raise UnreadableAnswer(f"kraken AssetPairs: wsname for {symbol!r} is not listed")
        tick = _decimal(pair.tick_size, f"{symbol} tick_size")
        if tick is None:
            # Older answers carry only the price's decimals.
            places = _places(pair.pair_decimals, f"{symbol} pair_decimals")
            tick = format(Decimal(1).scaleb(-places), "f")
        lot_places = _places(pair.lot_decimals, f"{symbol} lot_decimals")
        found.append(
            VenueInstrument(
                symbol=symbol,
                tick_size=tick,
                lot_size=format(Decimal(1).scaleb(-lot_places), "f"),
                min_quantity=_decimal(pair.ordermin, f"{symbol} ordermin"),
                min_notional=_decimal(pair.costmin, f"{symbol} costmin"),
            )
        )
    return found
