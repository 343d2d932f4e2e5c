"""OKX spot instrument metadata: ``GET /api/v5/public/instruments?instType=SPOT``.

https://www.okx.com/docs-v5/en/#public-data-rest-api-get-instruments:
``tickSz`` is the price increment, ``lotSz`` the size increment and
``minSz`` the smallest order size (base currency for spot). OKX states no
minimum notional for spot.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

import msgspec

from ...core.errors import UnreadableAnswer
from ...core.feeds import VenueInstrument

__all__ = ["instruments_url", "parse_instruments"]


class _Instrument(msgspec.Struct, rename="camel"):
    inst_id: str
    tick_sz: str
    lot_sz: str
    min_sz: str | None = None


class _Answer(msgspec.Struct):
    code: str
    data: list[_Instrument] = []
    msg: str = ""


def _decimal(text: str, where: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise UnreadableAnswer(f"okx instruments: {where} {text!r} is not a decimal") from None
    if not value.is_finite() or value < 0:
        raise UnreadableAnswer(f"okx instruments: {where} {text!r} is not a decimal >= 0")
    return value


def _increment(text: str, where: str) -> str:
    """``text`` checked as a decimal > 0."""
    if not _decimal(text, where):
        raise UnreadableAnswer(f"okx instruments: {where} is 0")
    return text


def _minimum(text: str | None, where: str) -> str | None:
    """``text`` checked as a decimal >= 0; None when absent or zero (no minimum)."""
    if not text or not _decimal(text, where):
        return None
    return text


def instruments_url(rest_url: str, symbols: Sequence[str]) -> str:
    """The URL listing every spot instrument (one request covers all ``symbols``)."""
    return f"{rest_url.rstrip('/')}/api/v5/public/instruments?instType=SPOT"


def parse_instruments(body: bytes, symbols: Sequence[str]) -> list[VenueInstrument]:
    """The instruments ``symbols`` (``BTC-USDT``), in that order, from the answer ``body``.

    Raises :class:`UnreadableAnswer` naming the field when the body is not
    OKX's answer, the venue answered an error code, or a symbol is not listed.
    """
    try:
        answer = msgspec.json.decode(body, type=_Answer)
    except msgspec.DecodeError as exc:
        raise UnreadableAnswer(f"okx instruments: {exc}") from exc
    if answer.code != "0":
        raise UnreadableAnswer(f"okx instruments: code {answer.code!r}: {answer.msg}")
    listed = {item.inst_id: item for item in answer.data}
    found: list[VenueInstrument] = []
    for symbol in symbols:
        item = listed.get(symbol)
        if item is None:
            raise UnreadableAnswer(f"okx instruments: instId {symbol!r} is not listed")
        found.append(
            VenueInstrument(
                symbol=symbol,
                tick_size=_increment(item.tick_sz, f"{symbol} tickSz"),
                lot_size=_increment(item.lot_sz, f"{symbol} lotSz"),
                min_quantity=_minimum(item.min_sz, f"{symbol} minSz"),
                min_notional=None,
            )
        )
    return found
