"""MarketMaker: quote both sides around the microprice, skewed by inventory.

Params:

* ``quantity``: size of each quote (decimal string);
* ``half_spread_ticks``: distance of each quote from the fair price (default 2);
* ``max_inventory``: position at which the side that would grow it stops
  quoting (decimal string);
* ``skew_ticks``: how far the fair price moves against the inventory at
  ``max_inventory`` (default 2): long inventory lowers both quotes;
* ``requote_ticks``: a quote is replaced (cancel/replace) only when its
  target moved at least this far (default 1);
* ``requote_interval_s``: at most one new order request per side and
  symbol within this many seconds (default 0: no pause), whether it was
  sent or refused. Each replace is a new order, so this keeps the strategy
  inside ``[risk] max_orders_per_s`` on a busy book (at most
  ``2 / requote_interval_s`` orders per second and symbol), and a refused
  quote (a halt, a paused venue) is not asked for again on every update.

Quotes are GTC limit orders that never cross the touch, nor one of the
strategy's own open orders on the other side (a quote being replaced still
rests until its cancel is answered), so self-trade prevention never has to
refuse one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

from pydantic import BaseModel, ConfigDict, Field

from trading_engine import (
    BookView,
    Order,
    OrderType,
    Side,
    Strategy,
    StrategyContext,
    TimeInForce,
    size_param,
)


class MarketMakerParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    quantity: str
    max_inventory: str
    half_spread_ticks: int = Field(2, ge=1)
    skew_ticks: int = Field(2, ge=0)
    requote_ticks: int = Field(1, ge=1)
    requote_interval_s: float = Field(0.0, ge=0)


class MarketMaker(Strategy):
    Params = MarketMakerParams

    def __init__(
        self, name: str, params: BaseModel, context: StrategyContext, symbols: Sequence[str]
    ) -> None:
        super().__init__(name, params, context, symbols)
        assert isinstance(params, MarketMakerParams)
        self.p = params
        self._lots = {
            s: size_param(context.instrument(s), "quantity", params.quantity) for s in symbols
        }
        self._max = {
            s: size_param(context.instrument(s), "max_inventory", params.max_inventory)
            for s in symbols
        }
        self._interval_ns = round(params.requote_interval_s * 1e9)
        #: Time of the last order request per (symbol, side), engine clock.
        self._last_ns: dict[tuple[str, Side], int] = {}

    def targets(self, book: BookView) -> tuple[int | None, int | None]:
        """The (bid, ask) prices to quote now, None for a side not quoted."""
        fair = book.microprice()
        bid, ask = book.best_bid, book.best_ask
        if fair is None or bid is None or ask is None:
            return None, None
        symbol = book.symbol
        inventory = self.ctx.position(symbol).quantity
        limit = self._max[symbol]
        skewed = fair - Fraction(self.p.skew_ticks * max(-limit, min(limit, inventory)), limit)
        quote_bid = min(math.floor(skewed - self.p.half_spread_ticks), ask - 1)
        quote_ask = max(math.ceil(skewed + self.p.half_spread_ticks), bid + 1)
        return (
            quote_bid if inventory < limit and quote_bid > 0 else None,
            quote_ask if inventory > -limit else None,
        )

    def on_book(self, book: BookView) -> None:
        bid, ask = self.targets(book)
        open_orders = self.ctx.open_orders(book.symbol)
        buys = [o for o in open_orders if o.side is Side.BUY]
        sells = [o for o in open_orders if o.side is Side.SELL]
        # Never cross an own order still resting on the other side.
        lowest_sell = min((o.price for o in sells if o.price is not None), default=None)
        highest_buy = max((o.price for o in buys if o.price is not None), default=None)
        if bid is not None and lowest_sell is not None:
            bid = min(bid, lowest_sell - 1)
        if ask is not None and highest_buy is not None:
            ask = max(ask, highest_buy + 1)
        self._quote(book.symbol, Side.BUY, bid if bid is None or bid > 0 else None, buys)
        self._quote(book.symbol, Side.SELL, ask, sells)

    def _quote(self, symbol: str, side: Side, price: int | None, mine: list[Order]) -> None:
        live = [o for o in mine if not o.cancel_requested]
        if price is None:
            for order in live:
                self.ctx.cancel(order)
            return
        if live:
            current, *extra = live
            for order in extra:
                self.ctx.cancel(order)
            assert current.price is not None
            if abs(current.price - price) < self.p.requote_ticks:
                return
        now = self.ctx.now_ns()
        last = self._last_ns.get((symbol, side))
        if self._interval_ns and last is not None and now - last < self._interval_ns:
            return
        self._last_ns[(symbol, side)] = now
        if live:
            self.ctx.replace(live[0], lots=self._lots[symbol], price=price)
        else:
            self.ctx.submit(
                symbol, side, self._lots[symbol], price, OrderType.LIMIT, TimeInForce.GTC
            )
