"""A template strategy: copy this file into your own package to start yours.

It imports only public names of ``trading_engine``. Copied to
``mystrategies/spread.py`` in the directory you run ``trading-engine``
from, load it with ``class = "mystrategies.spread:TemplateStrategy"`` in a
``[[strategies]]`` entry (see docs/strategies.md), or register it as an
entry point in the group ``trading_engine.strategies`` of your package.

Everything the strategy needs comes through ``self.ctx`` (its
StrategyContext) and the BookView handed to the hooks. Prices are int
ticks and sizes int lots; convert decimal params once, in ``__init__``.

Its tests are ``strategies/test_template.py``: copy them with it (point
their ``STRATEGY`` at your copy) and run ``python3 -m pytest``.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from trading_engine import (
    BookView,
    Fill,
    Order,
    Strategy,
    StrategyContext,
    TimeInForce,
    Trade,
    size_param,
)


class TemplateParams(BaseModel):
    """Your params: validated at start-up; a bad value names strategy and key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    quantity: str = "0.001"
    max_spread_ticks: int = Field(5, ge=1)


class TemplateStrategy(Strategy):
    """Buys one lot-sized IOC order whenever the spread is tight enough."""

    Params = TemplateParams

    def __init__(
        self, name: str, params: BaseModel, context: StrategyContext, symbols: Sequence[str]
    ) -> None:
        super().__init__(name, params, context, symbols)
        assert isinstance(params, TemplateParams)
        self.max_spread = params.max_spread_ticks
        # Convert decimal params to lots once per symbol; a size off the lot
        # grid stops start-up naming strategies[i].params.quantity.
        self.size = {
            s: size_param(context.instrument(s), "quantity", params.quantity) for s in symbols
        }
        self.fills = 0

    # Required: called after every update of a live book you watch.
    # It may be ``async def``; keep it short either way: it is on the hot path.
    def on_book(self, book: BookView) -> None:
        spread = book.spread()  # None unless the book is live
        if spread is None or spread > self.max_spread:
            return
        if self.ctx.open_orders(book.symbol):
            return  # one order at a time
        ask = book.best_ask
        if ask is not None:
            # Returns None if pre-trade risk denied it; self.ctx.last_denial says why.
            self.ctx.buy(book.symbol, self.size[book.symbol], ask, TimeInForce.IOC)

    # Optional hooks: delete the ones you do not need.
    def on_start(self) -> None:
        self.ctx.log.info("template strategy starting on %s", ", ".join(self.symbols))

    def on_trade(self, book: BookView, trade: Trade) -> None:
        pass

    def on_fill(self, fill: Fill) -> None:
        self.fills += 1

    def on_order_update(self, order: Order) -> None:
        pass

    # Called every ``timer_s`` seconds of the engine clock when the
    # [[strategies]] entry sets ``timer_s`` (requote, cancel what is stale).
    def on_timer(self) -> None:
        pass

    def on_stop(self) -> None:
        self.ctx.log.info("template strategy stopping after %d fills", self.fills)
