"""The engine's side of :class:`~trading_engine.core.strategy.StrategyContext`.

One per strategy (``self.ctx``): every read a strategy makes on an update
and every order it sends passes through it, so it is compiled with the
core (``setup.py``). It holds no state of its own beyond the last denial:
it asks the :class:`~trading_engine.engine.engine.Engine`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..core.instruments import Instrument
from ..core.orders import Order, OrderType, TimeInForce
from ..core.positions import Position
from ..core.protocol import Side
from ..core.view import BookView
from .dispatch import StrategyRunner

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["EngineContext"]


class EngineContext:
    """A strategy's :class:`~trading_engine.strategy.StrategyContext`."""

    def __init__(self, engine: Engine, name: str) -> None:
        self._engine = engine
        self.name = name
        self.log = logging.getLogger(f"trading_engine.strategy.{name}")
        self.runner: StrategyRunner | None = None
        self._last_denial: str | None = None

    def book(self, symbol: str) -> BookView:
        return self._engine.dispatcher.view(self._engine.builder.books[symbol])

    def instrument(self, symbol: str) -> Instrument:
        return self._engine.instruments[symbol]

    def position(self, symbol: str) -> Position:
        return self._engine.positions.of_strategy(self.name, symbol)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        # Asked on every update by most strategies: no empty dict made per call.
        orders = self._engine.open_orders.get(self.name)
        if not orders:
            return []
        if symbol is None:
            return list(orders.values())
        return [o for o in orders.values() if o.symbol == symbol]

    def now_ns(self) -> int:
        return self._engine.clock.monotonic_ns()

    @property
    def last_denial(self) -> str | None:
        return self._last_denial

    def submit(
        self,
        symbol: str,
        side: Side,
        lots: int,
        price: int | None = None,
        order_type: OrderType = OrderType.LIMIT,
        time_in_force: TimeInForce = TimeInForce.GTC,
        *,
        tag: str | None = None,
        post_only: bool = False,
    ) -> Order | None:
        assert self.runner is not None
        order, denial = self._engine.submit(
            self.runner,
            symbol,
            side,
            lots,
            price,
            order_type,
            time_in_force,
            tag=tag,
            post_only=post_only,
        )
        self._last_denial = None if denial is None else denial.value
        return order

    def buy(
        self,
        symbol: str,
        lots: int,
        price: int | None = None,
        time_in_force: TimeInForce = TimeInForce.GTC,
        *,
        tag: str | None = None,
        post_only: bool = False,
    ) -> Order | None:
        return self._simple(Side.BUY, symbol, lots, price, time_in_force, tag, post_only)

    def sell(
        self,
        symbol: str,
        lots: int,
        price: int | None = None,
        time_in_force: TimeInForce = TimeInForce.GTC,
        *,
        tag: str | None = None,
        post_only: bool = False,
    ) -> Order | None:
        return self._simple(Side.SELL, symbol, lots, price, time_in_force, tag, post_only)

    def _simple(
        self,
        side: Side,
        symbol: str,
        lots: int,
        price: int | None,
        time_in_force: TimeInForce,
        tag: str | None,
        post_only: bool,
    ) -> Order | None:
        """A limit order, or a market order when ``price`` is None."""
        order_type = OrderType.MARKET if price is None else OrderType.LIMIT
        return self.submit(
            symbol, side, lots, price, order_type, time_in_force, tag=tag, post_only=post_only
        )

    def cancel(self, order: Order) -> bool:
        return self._engine.cancel(order, self.name)

    def replace(
        self, order: Order, lots: int | None = None, price: int | None = None
    ) -> Order | None:
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
