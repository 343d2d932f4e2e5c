"""ThresholdTaker: take liquidity when the touch crosses a trigger price.

Params: ``side`` (``buy``/``sell``), ``trigger_price``, ``quantity``
(decimal strings), ``cooldown_s`` (default 0) and ``max_position`` (a
decimal string, default none: only ``[risk] max_position`` bounds it).

On each update of a live book, a buy taker sends one IOC limit buy of
``quantity`` at the best ask when the best ask <= ``trigger_price`` (a
sell taker: one IOC limit sell at the best bid when the best bid >=
``trigger_price``); at most one order per update and none within
``cooldown_s`` of its last request, sent or refused (a refused order is
not asked for again on every update), and none that would take its own
position in the symbol beyond ``max_position`` (it then stops instead of
being denied).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from trading_engine import (
    BookView,
    OrderType,
    Side,
    Strategy,
    StrategyContext,
    TimeInForce,
    price_param,
    size_param,
)


class ThresholdParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    side: Literal["buy", "sell"]
    trigger_price: str
    quantity: str
    cooldown_s: float = Field(0.0, ge=0)
    max_position: str | None = None


class ThresholdTaker(Strategy):
    Params = ThresholdParams

    def __init__(
        self, name: str, params: BaseModel, context: StrategyContext, symbols: Sequence[str]
    ) -> None:
        super().__init__(name, params, context, symbols)
        assert isinstance(params, ThresholdParams)
        self.side = Side(params.side)
        self.cooldown_ns = round(params.cooldown_s * 1e9)
        self._trigger: dict[str, int] = {}
        self._lots: dict[str, int] = {}
        self._max: dict[str, int] = {}
        for symbol in symbols:
            instrument = context.instrument(symbol)
            self._trigger[symbol] = price_param(instrument, "trigger_price", params.trigger_price)
            self._lots[symbol] = size_param(instrument, "quantity", params.quantity)
            if params.max_position is not None:
                self._max[symbol] = size_param(instrument, "max_position", params.max_position)
        self._last_ns: int | None = None

    def on_book(self, book: BookView) -> None:
        last = self._last_ns
        if self.cooldown_ns and last is not None and self.ctx.now_ns() - last < self.cooldown_ns:
            return
        symbol = book.symbol
        if self.side is Side.BUY:
            price = book.best_ask
            if price is None or price > self._trigger[symbol]:
                return
        else:
            price = book.best_bid
            if price is None or price < self._trigger[symbol]:
                return
        lots = self._lots[symbol]
        limit = self._max.get(symbol)
        if limit is not None:
            held = self.ctx.position(symbol).quantity
            if abs(held + (lots if self.side is Side.BUY else -lots)) > limit:
                return
        self._last_ns = self.ctx.now_ns()
        self.ctx.submit(symbol, self.side, lots, price, OrderType.LIMIT, TimeInForce.IOC)
