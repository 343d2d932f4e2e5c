"""Trading fees: maker and taker rates per instrument, exact.

A fee rate is a decimal fraction of a fill's notional (``"0.0004"`` is
4 basis points; a negative rate is a rebate). A fill of ``lots`` at
``price`` ticks has the notional ``price * lots`` in units of
``tick_size * lot_size``, the unit positions count money in, so its fee
is ``price * lots * rate`` of the same unit. That product is exact (a
rate is a ratio of integers); it is then rounded **up**, toward positive
infinity, to a whole unit: a fee is never understated and a rebate never
overstated. Everything is ``int`` arithmetic: no float, no Decimal on
the order path.

A venue that reports a fee on a fill (a decimal amount of the quote
currency) is taken at its word: :func:`fee_to_units` converts it to the
same unit with the same rounding.

Which lots are maker and which taker (the ledger applies it): the lots an
order filled before the venue first acknowledged it (its placement's
answer, or the answer that settled it when that was unknown) are taker
lots; every lot filled after that, while it rested, is a maker lot.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Final

from .orders import Price

__all__ = ["MAX_FEE_RATE", "NO_FEES", "FeeSchedule", "fee_to_units", "parse_fee_rate"]

#: The largest fee or rebate rate taken (10% of the notional).
MAX_FEE_RATE: Final = Fraction(1, 10)
_PLAIN: Final = re.compile(r"-?[0-9]{1,15}(?:\.[0-9]{1,30})?")


def parse_fee_rate(text: str) -> Fraction:
    """A fee rate from its decimal string (``"0.0004"``, ``"-0.0001"``), exactly.

    Raises ``ValueError`` for anything that is not a plain decimal string
    (no exponent, at most 18 decimals) or whose size exceeds ``MAX_FEE_RATE``.
    """
    if not isinstance(text, str) or not text or len(text) > 24 or "e" in text.lower():
        raise ValueError(f"expected a decimal string such as '0.0004', got {text!r}")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"expected a decimal string such as '0.0004', got {text!r}") from None
    if not number.is_finite():
        raise ValueError(f"expected a finite decimal string, got {text!r}")
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -18:
        raise ValueError(f"at most 18 decimals, got {text!r}")
    rate = Fraction(number)
    if abs(rate) > MAX_FEE_RATE:
        raise ValueError(f"a fee rate is at most {float(MAX_FEE_RATE)} either way, got {text!r}")
    return rate


def _ceil_div(numerator: int, denominator: int) -> int:
    """``ceil(numerator / denominator)`` for a positive denominator, in ints."""
    return -(-numerator // denominator)


class FeeSchedule:
    """One instrument's maker and taker rates (exact fractions of the notional)."""

    __slots__ = (
        "_maker_den",
        "_maker_num",
        "_taker_den",
        "_taker_num",
        "free",
        "maker",
        "taker",
    )

    def __init__(self, maker: Fraction, taker: Fraction) -> None:
        self.maker = maker
        self.taker = taker
        self._maker_num = maker.numerator
        self._maker_den = maker.denominator
        self._taker_num = taker.numerator
        self._taker_den = taker.denominator
        #: True when both rates are zero: no fee is ever computed.
        self.free = not maker and not taker

    def __repr__(self) -> str:
        return f"FeeSchedule(maker={self.maker}, taker={self.taker})"

    def fee(self, price: Price, lots: int, taker_lots: int) -> int:
        """The fee of ``lots`` at ``price`` ticks, ``taker_lots`` of them taker (rounded up).

        In units of ``tick_size * lot_size``; negative for a rebate. The
        maker and taker parts are each rounded up. ``O(1)``.
        """
        if self.free:
            return 0
        maker_lots = lots - taker_lots
        if type(price) is int:
            fee = 0
            if taker_lots:
                fee += _ceil_div(price * taker_lots * self._taker_num, self._taker_den)
            if maker_lots:
                fee += _ceil_div(price * maker_lots * self._maker_num, self._maker_den)
            return fee
        exact = Fraction(price)
        fee = 0
        if taker_lots:
            part = exact * taker_lots * self.taker
            fee += _ceil_div(part.numerator, part.denominator)
        if maker_lots:
            part = exact * maker_lots * self.maker
            fee += _ceil_div(part.numerator, part.denominator)
        return fee


def fee_to_units(text: object, tick_size: str, lot_size: str) -> int:
    """A venue's fee (a decimal string of quote currency) in tick*lot units, rounded up.

    Raises ``ValueError`` for anything but a plain decimal string (a
    leading ``-`` for a rebate; at most 15 digits before the point and 30
    after; no exponent).
    """
    if not isinstance(text, str) or not _PLAIN.fullmatch(text):
        raise ValueError(f"fee {text!r} is not a decimal string")
    units = Fraction(Decimal(text)) / (Fraction(Decimal(tick_size)) * Fraction(Decimal(lot_size)))
    return _ceil_div(units.numerator, units.denominator)


#: The schedule of an instrument without fees.
NO_FEES: Final = FeeSchedule(Fraction(0), Fraction(0))
