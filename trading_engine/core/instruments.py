"""Instruments and exact fixed-point conversion.

Money is never a float in the core. An :class:`Instrument` fixes a price
grid (``tick_size``) and a size grid (``lot_size``), both given as decimal
strings. Every price in the core is an ``int`` number of ticks and every
size an ``int`` number of lots; decimal strings exist only on the wire.

Wire values may be decimal strings (``"100.01"``) or JSON numbers. orjson
reads JSON numbers as IEEE-754 doubles; a double is taken at its shortest
round-tripping decimal form (``repr``), so ``100.01`` converts to exactly
10001 ticks of 0.01. A publisher that needs more than 15 significant digits
sends strings.

Conversion is ``O(len(value))`` and allocates only the resulting ``int``.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Final

from mypy_extensions import i64

from .errors import InvalidValue

__all__ = ["MAX_UNITS", "Instrument", "parse_decimal"]

#: The largest magnitude, in ticks or lots, that the engine accepts. Far
#: above any real price or size, far below where arithmetic could surprise.
MAX_UNITS: Final = 10**15
#: Longest accepted textual form of a number; also bounds the cost of int().
_MAX_TEXT: Final = 48
_NUMBER: Final = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")
_NOT_FINITE: Final = frozenset(
    {"nan", "-nan", "+nan", "inf", "-inf", "+inf", "infinity", "-infinity", "+infinity"}
)
_POW10: Final[tuple[int, ...]] = tuple(10**i for i in range(40))


def _grid(text: str, what: str) -> tuple[int, int]:
    """Return (scale, step) such that the step is ``step / 10**scale`` exactly."""
    try:
        value = Decimal(text)
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise ValueError(f"{what} {text!r} is not a decimal number") from exc
    if not value.is_finite() or value <= 0:
        raise ValueError(f"{what} {text!r} must be a positive finite decimal")
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    scale = max(0, -exponent)
    if scale >= len(_POW10) - 8:
        raise ValueError(f"{what} {text!r} has too many decimal places")
    step = int(value * _POW10[scale])
    return scale, step


def _text_of(value: object) -> str:
    """The decimal text of a wire value, or raise InvalidValue."""
    if type(value) is str:
        return value
    cls = type(value)
    if cls is int:
        return str(value)
    if cls is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise InvalidValue("not_finite", value)
        text = repr(value)
        if "e" in text:
            # repr switches to exponent notation below 1e-4 and from 1e16.
            text = format(Decimal(text), "f")
        return text
    raise InvalidValue("malformed", value)


#: Longest text the digit loop takes: 18 digits always fit in 63 bits.
_PLAIN_DIGITS: Final = 18


def _plain_units(text: str, scale: int) -> int:
    """Units of an unsigned plain decimal (``"123"``, ``"0.25"``), or -1.

    -1 means "not that simple" (a sign, an exponent, more fraction digits
    than ``scale``, anything but ASCII digits and one inner dot, or more
    than 18 characters): :func:`parse_decimal` then takes the full path,
    which decides. One pass over the characters; no intermediate strings.
    """
    length = len(text)
    if length == 0 or length > _PLAIN_DIGITS:
        return -1
    units = 0
    fraction = -1  # digits after the dot; -1 while no dot was seen
    for index in range(length):
        code = ord(text[index])
        if 48 <= code <= 57:
            units = units * 10 + (code - 48)
            if fraction >= 0:
                fraction += 1
        elif code == 46 and fraction < 0 and 0 < index < length - 1:
            fraction = 0
        else:
            return -1
    if fraction < 0:
        fraction = 0
    if fraction > scale:
        return -1
    return units * _POW10[scale - fraction]


def _plain_units_bytes(text: bytes, scale: int, start: int, end: int) -> int:
    """:func:`_plain_units` of ASCII bytes ``text[start:end]`` (a CSV field), or -1
    for "not that simple".

    Its twin for ``str`` is kept apart rather than shared through an
    ``encode``: each stays one native loop with no intermediate object. The
    field is read in place, so a reader need not slice it out of its line.
    """
    length = end - start
    if length <= 0 or length > _PLAIN_DIGITS:
        return -1
    # At most 18 digits: a machine integer (i64, compiled) holds them, with no
    # overflow check per digit.
    units: i64 = 0
    fraction = -1
    last = end - 1
    for index in range(start, end):
        code: i64 = text[index]
        if 48 <= code <= 57:
            units = units * 10 + (code - 48)
            if fraction >= 0:
                fraction += 1
        elif code == 46 and fraction < 0 and start < index < last:
            fraction = 0
        else:
            return -1
    if fraction < 0:
        fraction = 0
    if fraction > scale:
        return -1
    return int(units) * _POW10[scale - fraction]


def parse_decimal(value: object, scale: int) -> int:
    """Convert a wire number to an integer count of ``10**-scale`` units.

    Exact: raises :class:`InvalidValue` (``off_grid``) rather than round.
    Accepts decimal strings, ``int`` and finite ``float``; rejects ``bool``,
    exponent notation in strings, signs other than a leading ``-``,
    whitespace, underscores and non-ASCII digits.
    """
    if type(value) is str:
        units = _plain_units(value, scale)
        if units >= 0:
            return units
    text = _text_of(value)
    if len(text) > _MAX_TEXT:
        raise InvalidValue("too_large", value)
    match = _NUMBER.fullmatch(text)
    if match is None:
        if text.lower() in _NOT_FINITE:
            raise InvalidValue("not_finite", value)
        raise InvalidValue("malformed", value)
    # Typed one by one: the third group is None when there is no fraction.
    sign: str = match.group(1)
    digits: str = match.group(2)
    fraction: str | None = match.group(3)
    if fraction is None:
        units = int(digits) * _POW10[scale]
    else:
        if len(fraction) > scale:
            if fraction[scale:].strip("0"):
                raise InvalidValue("off_grid", value)
            fraction = fraction[:scale]
        units = int(digits + fraction) * _POW10[scale - len(fraction)]
    if sign and units:
        # "-0" and "-0.0" are zero: the sign alone carries no meaning.
        raise InvalidValue("negative", value)
    return units


# "%d.%02d" and so on: %-formatting with a fixed width is several times
# cheaper than an f-string with a nested width, and rendering is on the
# order path.
_FORMATS: Final[tuple[str, ...]] = ("%d", *(f"%d.%0{scale}d" for scale in range(1, 40)))


def _render(units: int, scale: int) -> str:
    if scale == 0:
        return str(units)
    if units < 0:
        return "-" + _render(-units, scale)
    return _FORMATS[scale] % divmod(units, _POW10[scale])


class Instrument:
    """A tradable symbol with its price and size grids.

    ``tick_size`` and ``lot_size`` are positive decimal strings such as
    ``"0.01"``. Prices convert to ticks and sizes to lots; both directions
    are exact. All conversions are ``O(digits)``.
    """

    __slots__ = (
        "_lot_step",
        "_price_scale",
        "_size_scale",
        "_tick_step",
        "lot_size",
        "symbol",
        "tick_size",
    )

    symbol: Final[str]
    tick_size: Final[str]
    lot_size: Final[str]
    _price_scale: Final[int]
    _tick_step: Final[int]
    _size_scale: Final[int]
    _lot_step: Final[int]

    def __init__(self, symbol: str, tick_size: str, lot_size: str) -> None:
        if not symbol:
            raise ValueError("symbol must not be empty")
        self.symbol = symbol
        self.tick_size = tick_size
        self.lot_size = lot_size
        price_scale, tick_step = _grid(tick_size, "tick_size")
        size_scale, lot_step = _grid(lot_size, "lot_size")
        self._price_scale = price_scale
        self._tick_step = tick_step
        self._size_scale = size_scale
        self._lot_step = lot_step

    def __repr__(self) -> str:
        return (
            f"Instrument(symbol={self.symbol!r}, tick_size={self.tick_size!r}, "
            f"lot_size={self.lot_size!r})"
        )

    # -- wire -> core ---------------------------------------------------

    def price_to_ticks(self, value: object) -> int:
        """Convert a wire price to a positive number of ticks.

        Raises :class:`InvalidValue` with reason ``malformed``,
        ``not_finite``, ``too_large``, ``negative``, ``zero`` or
        ``off_tick``.
        """
        try:
            units = parse_decimal(value, self._price_scale)
        except InvalidValue as exc:
            if exc.reason == "off_grid":
                raise InvalidValue("off_tick", value) from None
            raise
        step = self._tick_step
        ticks = units // step
        if ticks * step != units:
            raise InvalidValue("off_tick", value)
        if ticks <= 0:
            raise InvalidValue("zero", value)
        if ticks > MAX_UNITS:
            raise InvalidValue("too_large", value)
        return ticks

    def plain_price_ticks(self, text: bytes, start: int = 0, end: int = -1) -> int:
        """Ticks of a plain unsigned decimal price in ASCII bytes (``b"100.25"``), or -1.

        The fast path of a file reader: -1 means this path does not decide
        (not a plain decimal of at most 18 characters, off the tick, zero or
        beyond ``MAX_UNITS``), and :meth:`price_to_ticks` of the decoded text
        then gives the value or the exact error. Reads ``text[start:end]``
        (``end`` -1: to the end; a field of a line, read in place).
        ``O(end - start)``, no allocation.
        """
        units = _plain_units_bytes(text, self._price_scale, start, len(text) if end < 0 else end)
        if units <= 0:
            return -1
        step = self._tick_step
        ticks = units // step
        if ticks * step != units or ticks > MAX_UNITS:
            return -1
        return ticks

    def plain_size_lots(self, text: bytes, start: int = 0, end: int = -1) -> int:
        """Lots of a plain unsigned decimal size in ASCII bytes ``text[start:end]``, or -1
        (see :meth:`plain_price_ticks`; zero is a size: ``b"0"`` gives 0)."""
        units = _plain_units_bytes(text, self._size_scale, start, len(text) if end < 0 else end)
        if units < 0:
            return -1
        step = self._lot_step
        lots = units // step
        if lots * step != units or lots > MAX_UNITS:
            return -1
        return lots

    def average_to_ticks(self, value: object) -> int | Fraction:
        """Convert a wire average price to ticks, exactly: an ``int`` on the grid, else a Fraction.

        An average of fills at several prices may fall between ticks, so
        unlike :meth:`price_to_ticks` it is not refused for that. The same
        strict grammar and bounds apply: at most 48 characters, no exponent,
        at most ``10**15`` ticks. Raises :class:`InvalidValue` with reason
        ``malformed``, ``not_finite``, ``too_large``, ``negative`` or
        ``zero``. ``O(digits)``.
        """
        try:
            return self.price_to_ticks(value)
        except InvalidValue as exc:
            if exc.reason != "off_tick":
                raise
        text = _text_of(value)
        match = _NUMBER.fullmatch(text)
        if match is None:  # pragma: no cover - price_to_ticks refused it first
            raise InvalidValue("malformed", value)
        digits: str = match.group(2)
        fraction: str | None = match.group(3)
        places = 0 if fraction is None else len(fraction)
        units = int(digits + (fraction or ""))
        if match.group(1) and units:
            raise InvalidValue("negative", value)
        ticks = Fraction(units * _POW10[self._price_scale], 10**places * self._tick_step)
        if ticks <= 0:
            raise InvalidValue("zero", value)
        if ticks > MAX_UNITS:
            raise InvalidValue("too_large", value)
        return ticks

    def size_to_lots(self, value: object) -> int:
        """Convert a wire size to a non-negative number of lots.

        Zero is allowed (an update's level removal); callers that need a
        positive size check ``> 0``. Raises :class:`InvalidValue` with reason
        ``malformed``, ``not_finite``, ``too_large``, ``negative`` or
        ``off_lot``.
        """
        try:
            units = parse_decimal(value, self._size_scale)
        except InvalidValue as exc:
            if exc.reason == "off_grid":
                raise InvalidValue("off_lot", value) from None
            raise
        step = self._lot_step
        lots = units // step
        if lots * step != units:
            raise InvalidValue("off_lot", value)
        if lots > MAX_UNITS:
            raise InvalidValue("too_large", value)
        return lots

    # -- core -> wire ---------------------------------------------------

    def format_price(self, ticks: int) -> str:
        """Render ticks as a decimal string at the tick size's precision."""
        return _render(ticks * self._tick_step, self._price_scale)

    def format_size(self, lots: int) -> str:
        """Render lots as a decimal string at the lot size's precision."""
        return _render(lots * self._lot_step, self._size_scale)

    def format_money(self, value: Fraction | int, scale: int | None = None) -> str:
        """Render an amount in price units times lots (``ticks * lots``).

        ``ticks * lots`` is money in units of ``tick_size * lot_size``. By
        default it is rendered with the price's and the size's decimals
        together (tick 0.01 and lot 0.001 give 5 places), which is exact for
        any whole number of ticks times lots (a fill's cost, realized PnL);
        an amount finer than that (unrealized PnL at a mid between two
        ticks) is rounded half to even. ``scale`` sets another number of
        decimals.
        """
        digits = self._price_scale + self._size_scale if scale is None else scale
        exact = Fraction(value) * self._tick_step * self._lot_step
        exact /= _POW10[self._price_scale + self._size_scale]
        return _render(round(exact * _POW10[digits]), digits)

    @property
    def money_scale(self) -> int:
        """The decimals of a money amount: the price's plus the size's."""
        return self._price_scale + self._size_scale

    def format_price_fraction(self, ticks: Fraction, digits: int | None = None) -> str:
        """Render an exact price in ticks (an average, a mid) as a decimal string.

        At the tick size's precision unless ``digits`` says otherwise,
        rounding half to even only when the price is finer than that.
        """
        scale = self._price_scale if digits is None else digits
        exact = Fraction(ticks) * self._tick_step / _POW10[self._price_scale]
        return _render(round(exact * _POW10[scale]), scale)

    def price_decimal(self, ticks: int) -> Decimal:
        """The price of ``ticks`` as an exact Decimal (not for the hot path)."""
        return Decimal(self.format_price(ticks))

    def size_decimal(self, lots: int) -> Decimal:
        """The size of ``lots`` as an exact Decimal (not for the hot path)."""
        return Decimal(self.format_size(lots))
