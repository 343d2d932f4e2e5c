"""ImbalanceTaker: momentum on order-book imbalance.

Params: ``quantity`` and ``max_position`` (decimal strings), ``threshold``
(0-1, default 0.6), ``levels`` (default 3) and ``cooldown_s`` (default 0).

When the size imbalance over the top ``levels`` of each side is at least
``threshold`` (bids heavier), it buys ``quantity`` IOC at the best ask;
at most ``-threshold`` (asks heavier), it sells IOC at the best bid; never
beyond ``max_position`` either way, and at most one order per
``cooldown_s``.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from trading_engine import (
    BookView,
    OrderType,
    Side,
    Strategy,
    StrategyContext,
    TimeInForce,
    size_param,
)


class ImbalanceParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    quantity: str
    max_position: str
    threshold: float = Field(0.6, gt=0, le=1)
    levels: int = Field(3, ge=1, le=50)
    cooldown_s: float = Field(0.0, ge=0)


class ImbalanceTaker(Strategy):
    Params = ImbalanceParams

    def __init__(
        self, name: str, params: BaseModel, context: StrategyContext, symbols: Sequence[str]
    ) -> None:
        super().__init__(name, params, context, symbols)
        assert isinstance(params, ImbalanceParams)
        self.p = params
        self.cooldown_ns = round(params.cooldown_s * 1e9)
        self._lots = {
            s: size_param(context.instrument(s), "quantity", params.quantity) for s in symbols
        }
        self._max = {
            s: size_param(context.instrument(s), "max_position", params.max_position)
            for s in symbols
        }
        self._last_ns: int | None = None

    def on_book(self, book: BookView) -> None:
        now = self.ctx.now_ns()
        if (
            self.cooldown_ns
            and self._last_ns is not None
            and now - self._last_ns < self.cooldown_ns
        ):
            return
        imbalance = book.imbalance(self.p.levels)
        if imbalance is None:
            return
        symbol = book.symbol
        position = self.ctx.position(symbol).quantity
        size = self._lots[symbol]
        if imbalance >= self.p.threshold and position + size <= self._max[symbol]:
            side, price = Side.BUY, book.best_ask
        elif imbalance <= -self.p.threshold and position - size >= -self._max[symbol]:
            side, price = Side.SELL, book.best_bid
        else:
            return
        if price is None:
            return
        if self.ctx.submit(symbol, side, size, price, OrderType.LIMIT, TimeInForce.IOC) is not None:
            self._last_ns = now
