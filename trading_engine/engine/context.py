"""The engine's side of :class:`~trading_engine.core.strategy.StrategyContext`.

One per strategy (``self.ctx``): every read a strategy makes on an update
and every order it sends passes through it, so it is compiled with the
core (``setup.py``). It holds no state of its own beyond the last denial:
it asks the :class:`~trading_engine.engine.engine.Engine`, and the
engine's ledger and clock directly.
"""

from __future__ import annotations

import logging
import operator
from typing import TYPE_CHECKING, cast

from ..core.clock import Clock
from ..core.instruments import Instrument
from ..core.ledger import Ledger
from ..core.orders import Order, OrderType, TimeInForce
from ..core.positions import Position
from ..core.protocol import Side
from ..core.risk import Denial
from ..core.view import BookView
from .dispatch import StrategyRunner

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["EngineContext"]


class EngineContext:
    """A strategy's :class:`~trading_engine.strategy.StrategyContext`."""

    def __init__(self, engine: Engine, name: str) -> None:
        self._engine = engine
        self._clock: Clock = engine.clock
        #: The engine's ledger, read on first use: the engine makes it after the
        #: strategies (and so their contexts), and never replaces it.
        self._ledger: Ledger | None = None
        self.name = name
        self.log = logging.getLogger(f"trading_engine.strategy.{name}")
        self.runner: StrategyRunner | None = None
        self._last_denial: str | None = None

    def book(self, symbol: str) -> BookView:
        return self._engine.dispatcher.view(self._engine.builder.books[symbol])

    def instrument(self, symbol: str) -> Instrument:
        return self._engine.instruments[symbol]

    def _the_ledger(self) -> Ledger:
        ledger = self._ledger
        if ledger is None:
            ledger = self._ledger = self._engine.ledger
        return ledger

    def position(self, symbol: str) -> Position:
        return self._the_ledger().positions.of_strategy(self.name, symbol)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        # Asked on every update by most strategies: no empty dict made per call.
        orders = self._the_ledger().open_orders.get(self.name)
        if not orders:
            return []
        if symbol is None:
            return list(orders.values())
        return [o for o in orders.values() if o.symbol == symbol]

    def now_ns(self) -> int:
        return self._clock.monotonic_ns()

    @property
    def last_denial(self) -> str | None:
        return self._last_denial

    def submit(
        self,
        symbol: object,
        side: object,
        lots: object,
        price: object = None,
        order_type: object = OrderType.LIMIT,
        time_in_force: object = TimeInForce.GTC,
        *,
        tag: object = None,
        post_only: object = False,
    ) -> Order | None:
        """See :meth:`~trading_engine.core.strategy.StrategyContext.submit`.

        The arguments are taken as loosely as a Python caller may pass them,
        the same in the compiled and the pure build: ``lots`` and ``price``
        as integers (anything with ``__index__``, such as a numpy integer;
        a float, ``Fraction`` or ``Decimal`` is refused ``invalid_order``:
        prices are ticks, never a float), ``side``, ``order_type`` and
        ``time_in_force`` as their enums or their values (``"buy"``,
        ``"IOC"``), ``post_only`` as a bool, ``tag`` as a string or None
        (another is refused ``invalid_tag``).
        """
        runner = self.runner
        assert runner is not None
        exact = _exact(side, lots, price, order_type, time_in_force, tag, post_only)
        if isinstance(exact, Denial) or not isinstance(symbol, str):
            refused = exact if isinstance(exact, Denial) else Denial.INVALID_ORDER
            self._last_denial = self._engine.risk.deny(refused).value
            runner.denied(refused)
            return None
        side_, lots_, price_, type_, tif, tag_, post_only_ = exact
        order, denial = self._engine.submit(
            runner, symbol, side_, lots_, price_, type_, tif, tag=tag_, post_only=post_only_
        )
        self._last_denial = None if denial is None else denial.value
        return order

    def buy(
        self,
        symbol: object,
        lots: object,
        price: object = None,
        time_in_force: object = TimeInForce.GTC,
        *,
        tag: object = None,
        post_only: object = False,
    ) -> Order | None:
        return self._simple(Side.BUY, symbol, lots, price, time_in_force, tag, post_only)

    def sell(
        self,
        symbol: object,
        lots: object,
        price: object = None,
        time_in_force: object = TimeInForce.GTC,
        *,
        tag: object = None,
        post_only: object = False,
    ) -> Order | None:
        return self._simple(Side.SELL, symbol, lots, price, time_in_force, tag, post_only)

    def _simple(
        self,
        side: Side,
        symbol: object,
        lots: object,
        price: object,
        time_in_force: object,
        tag: object,
        post_only: object,
    ) -> Order | None:
        """A limit order, or a market order when ``price`` is None."""
        order_type = OrderType.MARKET if price is None else OrderType.LIMIT
        return self.submit(
            symbol, side, lots, price, order_type, time_in_force, tag=tag, post_only=post_only
        )

    def cancel(self, order: Order) -> bool:
        return self._engine.cancel(order, self.name)

    def replace(self, order: Order, lots: object = None, price: object = None) -> Order | None:
        if not self.cancel(order):
            return None
        return self.submit(
            order.symbol,
            order.side,
            order.quantity - order.filled if lots is None else lots,
            order.price if price is None else price,
            order.type,
            order.time_in_force,
            tag=order.tag,
            post_only=order.post_only,
        )


_Exact = tuple[Side, int, int | None, OrderType, TimeInForce, str | None, bool]


def _exact(
    side: object,
    lots: object,
    price: object,
    order_type: object,
    time_in_force: object,
    tag: object,
    post_only: object,
) -> _Exact | Denial:
    """An order request's arguments in their exact types, or why it is refused."""
    exact = (
        type(lots) is int
        and (price is None or type(price) is int)
        and type(side) is Side
        and type(order_type) is OrderType
        and type(time_in_force) is TimeInForce
        and type(post_only) is bool
        and (tag is None or type(tag) is str)
    )
    if exact:
        # A flag, not the condition itself: with the narrowing condition in
        # the ``if``, the compiled build raised TypeError for a ``lots`` with
        # ``__index__`` below (tests/engine/test_context_arguments.py).
        return cast(_Exact, (side, lots, price, order_type, time_in_force, tag, post_only))
    # The loose forms (rare): normalized, or refused with a counted reason.
    if tag is not None and not isinstance(tag, str):
        return Denial.INVALID_TAG
    if not isinstance(post_only, bool):
        return Denial.INVALID_ORDER
    try:
        whole_lots = operator.index(lots)  # type: ignore[arg-type]
        whole_price = None if price is None else operator.index(price)  # type: ignore[arg-type]
        exact_side = Side(str(side)) if isinstance(side, str) else None
        exact_type = OrderType(str(order_type)) if isinstance(order_type, str) else None
        exact_tif = TimeInForce(str(time_in_force)) if isinstance(time_in_force, str) else None
    except (TypeError, ValueError):
        return Denial.INVALID_ORDER
    if exact_side is None or exact_type is None or exact_tif is None:
        return Denial.INVALID_ORDER
    return exact_side, whole_lots, whole_price, exact_type, exact_tif, tag, post_only
