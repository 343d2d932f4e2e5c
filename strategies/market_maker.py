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

An update that changes neither the touch (best prices and sizes) nor the
inventory, after one that asked for nothing, is answered at once when
the pause that held a quote back (if any) has not ended: nothing the
quotes depend on has moved. A status change of one of the strategy's
orders on the symbol (``on_order_update``) and any order request it
makes end that shortcut, so the decisions are exactly those of a full
evaluation on every update.
"""

from __future__ import annotations

from collections.abc import Sequence

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

_BUY = Side.BUY
_SELL = Side.SELL
#: Later than any engine time (ns): a quote that is as wanted stands until its inputs move.
_FOREVER = 1 << 62


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
        # Params read on every update, as plain ints on the instance.
        self._skew = params.skew_ticks
        self._half_spread = params.half_spread_ticks
        self._requote_ticks = params.requote_ticks
        #: Time of the last order request per (symbol, side), engine clock.
        self._last_ns: dict[tuple[str, Side], int] = {}
        #: Per symbol: the (touch, inventory) of the last update that asked for
        #: nothing, and the engine time until which the same inputs ask for
        #: nothing (a held-back quote's pause end); gone after any own order event.
        self._settled: dict[str, tuple[tuple[int, int, int, int], int, int]] = {}

    def targets(self, book: BookView) -> tuple[int | None, int | None]:
        """The (bid, ask) prices to quote now (ticks), None for a side not quoted.

        The fair price is the microprice ``(bid * ask_size + ask * bid_size)
        / (bid_size + ask_size)`` moved by ``skew_ticks * inventory /
        max_inventory`` (inventory clamped to the limit): a rational number
        of ticks, kept as one integer fraction ``numerator / denominator``
        so that the floor and ceiling below are exact, without a Fraction.
        """
        top = book.top()
        if top is None:
            return None, None
        symbol = book.symbol
        return self._targets(symbol, top, self.ctx.position(symbol).quantity)

    def _targets(
        self, symbol: str, top: tuple[int, int, int, int], inventory: int
    ) -> tuple[int | None, int | None]:
        bid, bid_size, ask, ask_size = top
        limit = self._max[symbol]
        held = -limit if inventory < -limit else limit if inventory > limit else inventory
        size = bid_size + ask_size
        # fair - skew * held / limit == numerator / denominator, denominator > 0.
        numerator = (bid * ask_size + ask * bid_size) * limit - self._skew * held * size
        denominator = size * limit
        half = self._half_spread
        quote_bid = numerator // denominator - half  # floor(skewed - half)
        if quote_bid > ask - 1:
            quote_bid = ask - 1
        quote_ask = -(-numerator // denominator) + half  # ceil(skewed + half)
        if quote_ask < bid + 1:
            quote_ask = bid + 1
        return (
            quote_bid if inventory < limit and quote_bid > 0 else None,
            quote_ask if inventory > -limit else None,
        )

    def on_book(self, book: BookView) -> None:
        symbol = book.symbol
        top = book.top()
        inventory = 0
        if top is None:
            bid = ask = None
        else:
            inventory = self.ctx.position(symbol).quantity
            memo = self._settled.get(symbol)
            if (
                memo is not None
                and memo[1] == inventory
                and memo[0] == top
                and self.ctx.now_ns() < memo[2]
            ):
                return
            bid, ask = self._targets(symbol, top, inventory)
        # One pass over the open orders: the live (not being canceled) quotes
        # per side, in the order they were sent, and the own prices a new
        # quote must not cross (a quote being canceled still rests).
        buys: list[Order] = []
        sells: list[Order] = []
        highest_buy: int | None = None
        lowest_sell: int | None = None
        for order in self.ctx.open_orders(symbol):
            price = order.price
            if order.side is _BUY:
                if price is not None and (highest_buy is None or price > highest_buy):
                    highest_buy = price
                if not order.cancel_requested:
                    buys.append(order)
            else:
                if price is not None and (lowest_sell is None or price < lowest_sell):
                    lowest_sell = price
                if not order.cancel_requested:
                    sells.append(order)
        if bid is not None and lowest_sell is not None and bid > lowest_sell - 1:
            bid = lowest_sell - 1
        if ask is not None and highest_buy is not None and ask < highest_buy + 1:
            ask = highest_buy + 1
        bid_stands = self._quote(symbol, _BUY, bid if bid is None or bid > 0 else None, buys)
        ask_stands = self._quote(symbol, _SELL, ask, sells)
        if top is None or bid_stands is None or ask_stands is None:
            self._settled.pop(symbol, None)
        else:
            self._settled[symbol] = (top, inventory, min(bid_stands, ask_stands))

    def on_order_update(self, order: Order) -> None:
        self._settled.pop(order.symbol, None)

    def _quote(self, symbol: str, side: Side, price: int | None, live: list[Order]) -> int | None:
        """Keep one live quote on ``side`` at ``price`` (None: none); ``live`` oldest first.

        Returns None when it asked for something (a cancel or an order),
        else the engine time (ns) until which the same quote and orders ask
        for nothing: the end of the ``requote_interval_s`` pause holding a
        new quote back, or :data:`_FOREVER` when the quote is as wanted.
        """
        if price is None:
            for order in live:
                self.ctx.cancel(order)
            return None if live else _FOREVER
        if live:
            current = live[0]
            for order in live[1:]:
                self.ctx.cancel(order)
            assert current.price is not None
            if abs(current.price - price) < self._requote_ticks:
                return None if len(live) > 1 else _FOREVER
        now = self.ctx.now_ns()
        key = (symbol, side)
        last = self._last_ns.get(key)
        if self._interval_ns and last is not None and now - last < self._interval_ns:
            return None if len(live) > 1 else last + self._interval_ns
        self._last_ns[key] = now
        if live:
            self.ctx.replace(live[0], lots=self._lots[symbol], price=price)
        else:
            self.ctx.submit(
                symbol, side, self._lots[symbol], price, OrderType.LIMIT, TimeInForce.GTC
            )
        return None
