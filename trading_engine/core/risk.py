"""Pre-trade risk: pure, synchronous checks of every order before it leaves.

:class:`RiskEngine.check` answers ``None`` (the order may go) or a
:class:`Denial` (it may not), and counts every denial by reason. It reads
nothing by itself: the caller passes the order, the book entry, the
current position and the open-order exposure, and the clock is injected.
Cancels are never checked: they always pass.

Checks, in order (the first failure is the reason):

============================  ==================================================
``halted``                    trading state is ``halted``
``book_not_live``             the symbol's book is not live (stale, crossed, ...)
``invalid_order``             quantity <= 0, or a limit order without a price
``max_quantity``              quantity > ``max_order_quantity``
``no_price``                  no mid to check the price against (a side is empty)
``max_notional``              price * quantity > ``max_order_notional``; a market
                              order is priced at its band edge (``band_edge``)
``price_band``                limit price further than ``price_band`` from mid
``reducing``                  state ``reducing`` and the order would not shrink
                              the position (counting open orders on that side)
``max_position``              position + open orders + this order > ``max_position``
``rate_limit``                more than ``max_orders_per_s`` in any 1 s window
                              (both ends included)
``strategy_rate_limit``       more than ``strategy_max_orders_per_s`` for the strategy
============================  ==================================================

Limits are converted once per instrument to lots and tick*lot units, so
each check is integer arithmetic.

A market order may sweep the book far beyond its best level, so it is
checked at the worst price the band allows (:meth:`RiskEngine.band_edge`),
and the engine sends it as an IOC limit order at that price: the venue
then cannot fill it beyond the band, and the notional checked is the most
it can cost.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Context, Decimal, DivisionByZero, InvalidOperation, Overflow
from enum import StrEnum
from fractions import Fraction

from .builder import BookEntry, BookState
from .instruments import Instrument
from .orders import OrderType
from .protocol import Side

__all__ = [
    "Denial",
    "RiskEngine",
    "RiskLimits",
    "SlidingWindowLimit",
    "TradingState",
]


class TradingState(StrEnum):
    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


class Denial(StrEnum):
    """Why an order was stopped (a metric label)."""

    HALTED = "halted"
    BOOK_NOT_LIVE = "book_not_live"
    INVALID_ORDER = "invalid_order"
    MAX_QUANTITY = "max_quantity"
    NO_PRICE = "no_price"
    MAX_NOTIONAL = "max_notional"
    PRICE_BAND = "price_band"
    REDUCING = "reducing"
    MAX_POSITION = "max_position"
    RATE_LIMIT = "rate_limit"
    STRATEGY_RATE_LIMIT = "strategy_rate_limit"
    #: Not a risk check: the gateway's circuit breaker is open.
    CIRCUIT_OPEN = "circuit_open"
    #: Not a risk check: the strategy answered after its time budget.
    LATE = "late"
    #: Not a risk check: the venue's request budget had no slot for the order
    #: (or a 429 pause is in force); the gateway refused it locally.
    RATE_LIMITED = "rate_limited"
    #: The order would trade with one of the engine's own resting orders
    #: (``[risk] self_trade = "refuse"``).
    SELF_TRADE = "self_trade"
    #: Not a risk check: the order's tag is not 1-32 characters of [A-Za-z0-9._:-].
    INVALID_TAG = "invalid_tag"
    #: Not a risk check: the venue's API cannot express the order (refused by the gateway).
    UNENCODABLE = "unencodable"
    #: Not a risk check: the order breaks one of the venue's trading rules
    #: (Binance's symbol filters; the rule is counted by the gateway).
    VENUE_RULE = "venue_rule"


_HALTED = TradingState.HALTED
_REDUCING = TradingState.REDUCING
_LIVE = BookState.LIVE
_MARKET = OrderType.MARKET
_LIMIT = OrderType.LIMIT
_BUY = Side.BUY


class SlidingWindowLimit:
    """At most ``count`` events in any window of ``window_ns``. Injected clock.

    Stricter than a token bucket, which lets a full burst plus its refill
    through within one window: here no window ``[t, t + window_ns]``, both
    ends included, ever holds more than ``count`` accepted events. So an
    event is allowed only when the ``count``-th accepted event before it is
    more than ``window_ns`` older: one exactly ``window_ns`` older still
    shares a window with it. Times are ``int`` nanoseconds that never go
    back (a monotonic clock). ``O(1)``.
    """

    __slots__ = ("_times", "count", "window_ns")

    def __init__(self, count: int, window_ns: int = 10**9) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self.count = count
        self.window_ns = window_ns
        self._times: deque[int] = deque(maxlen=count)

    def allows(self, now_ns: int) -> bool:
        """True if an event at ``now_ns`` keeps every window within ``count``."""
        times = self._times
        return len(times) < self.count or now_ns - times[0] > self.window_ns

    def record(self, now_ns: int) -> None:
        """Count an accepted event at ``now_ns`` (after :meth:`allows` said yes)."""
        self._times.append(now_ns)


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """The pre-trade limits (``[risk]`` in the configuration file).

    Quantities are in the instrument's units (lots are derived per
    instrument, rounded down), ``max_order_notional`` in quote currency;
    ``price_band`` is a fraction of the reference price in (0, 1);
    rates are orders per rolling second.
    """

    max_order_quantity: Decimal = Decimal("10")
    max_order_notional: Decimal = Decimal("1000000")
    max_position: Decimal = Decimal("100")
    price_band: float = 0.05
    max_orders_per_s: int = 50
    strategy_max_orders_per_s: int | None = None


class _Limits:
    __slots__ = ("max_lots", "max_notional", "max_position")

    def __init__(self, config: RiskLimits, instrument: Instrument) -> None:
        self.max_lots = _floor_units(config.max_order_quantity, Decimal(instrument.lot_size))
        self.max_position = _floor_units(config.max_position, Decimal(instrument.lot_size))
        unit = Decimal(instrument.tick_size) * Decimal(instrument.lot_size)
        self.max_notional = _floor_units(config.max_order_notional, unit)


#: Enough digits for any limit the configuration accepts (below 1e40) in
#: units as fine as 1e-40: the default context's 28 digits are not.
_EXACT = Context(prec=100, traps=[InvalidOperation, DivisionByZero, Overflow])


def _floor_units(amount: Decimal, unit: Decimal) -> int:
    """``floor(amount / unit)`` exactly, however large ``amount`` is."""
    return int(_EXACT.divide_int(amount, unit))


class RiskEngine:
    """The pre-trade checks. Pure: no I/O, no clock but the injected one."""

    def __init__(
        self,
        config: RiskLimits,
        instruments: Iterable[Instrument],
        clock: Callable[[], int],
        strategies: Iterable[str] = (),
        strategy_max_orders_per_s: int | None = None,
    ) -> None:
        self.config = config
        self.state = TradingState.ACTIVE
        self._limits = {inst.symbol: _Limits(config, inst) for inst in instruments}
        band = Fraction(str(config.price_band))
        self._band_num = band.numerator
        self._band_den = band.denominator
        self._clock = clock
        self._global = SlidingWindowLimit(config.max_orders_per_s)
        per_strategy = strategy_max_orders_per_s or config.max_orders_per_s
        self._per_strategy_rate = per_strategy
        self._strategy_limits = {name: SlidingWindowLimit(per_strategy) for name in strategies}
        self.denied: dict[Denial, int] = dict.fromkeys(Denial, 0)
        self.passed = 0

    def set_state(self, state: TradingState) -> None:
        self.state = state

    def deny(self, denial: Denial) -> Denial:
        """Count a denial decided outside the checks (breaker, lateness)."""
        self.denied[denial] += 1
        return denial

    def band_edge(self, entry: BookEntry, side: Side) -> int | None:
        """The worst price in ticks the band allows for ``side``, or None without a mid.

        A buy: the highest tick at most ``mid * (1 + price_band)``; a sell:
        the lowest tick at least ``mid * (1 - price_band)``. Exact integer
        arithmetic; ``O(1)``.
        """
        book = entry.book
        bid = book.best_bid
        ask = book.best_ask
        if bid is None or ask is None:
            return None
        mid_x2 = bid + ask
        num = self._band_num
        den = self._band_den
        if side is _BUY:
            return (mid_x2 * (den + num)) // (2 * den)
        return -((-mid_x2 * (den - num)) // (2 * den))

    def check(
        self,
        strategy: str,
        entry: BookEntry,
        side: Side,
        order_type: OrderType,
        lots: int,
        price: int | None,
        position: int,
        open_buy: int,
        open_sell: int,
    ) -> Denial | None:
        """Check one new order; ``None`` means it may go (and uses a rate token).

        Every denial is counted under its reason. ``O(1)``.
        """
        state = self.state
        if state is _HALTED:
            return self.deny(Denial.HALTED)
        if entry.state is not _LIVE:
            return self.deny(Denial.BOOK_NOT_LIVE)
        if lots <= 0 or (order_type is _LIMIT and (price is None or price <= 0)):
            return self.deny(Denial.INVALID_ORDER)
        limits = self._limits[entry.symbol]
        if lots > limits.max_lots:
            return self.deny(Denial.MAX_QUANTITY)
        book = entry.book
        bid = book.best_bid
        ask = book.best_ask
        if order_type is _MARKET:
            price = self.band_edge(entry, side)
            if price is None:
                return self.deny(Denial.NO_PRICE)
        assert price is not None
        if price * lots > limits.max_notional:
            return self.deny(Denial.MAX_NOTIONAL)
        if bid is not None and ask is not None:
            mid_x2 = bid + ask
            if abs(2 * price - mid_x2) * self._band_den > self._band_num * mid_x2:
                return self.deny(Denial.PRICE_BAND)
        else:
            return self.deny(Denial.NO_PRICE)
        if side is _BUY:
            if state is _REDUCING and not (position < 0 and open_buy + lots <= -position):
                return self.deny(Denial.REDUCING)
            if position + open_buy + lots > limits.max_position:
                return self.deny(Denial.MAX_POSITION)
        else:
            if state is _REDUCING and not (position > 0 and open_sell + lots <= position):
                return self.deny(Denial.REDUCING)
            if position - open_sell - lots < -limits.max_position:
                return self.deny(Denial.MAX_POSITION)
        limit = self._strategy_limits.get(strategy)
        if limit is None:
            limit = self._strategy_limits[strategy] = SlidingWindowLimit(self._per_strategy_rate)
        now = self._clock()
        shared = self._global
        if not shared.allows(now):
            return self.deny(Denial.RATE_LIMIT)
        if not limit.allows(now):
            return self.deny(Denial.STRATEGY_RATE_LIMIT)
        shared.record(now)
        limit.record(now)
        self.passed += 1
        return None
