"""The matching engine shared by the exchange simulator and the replay venue.

Pure and synchronous: no clock, no I/O. The exchange simulator
(:mod:`trading_engine.sim.exchange_sim`) matches against its own
random-walk books; the in-process venue of ``replay``
(:mod:`trading_engine.sim.venue`) matches against the engine's books,
which are the same books as received. One set of rules for both is what
makes a replay a rerun of the live session.

Rules (prices in ticks, sizes in lots):

* a new order matches at once against the opposite side, best level first,
  taking ``min(remaining, level size)`` from each level it crosses (a buy
  crosses an ask at or below its limit, a sell a bid at or above it; a
  market order crosses every level), until it is filled or no level crosses;
* a market or IOC order's unfilled remainder is canceled; a GTC remainder
  rests (``new``, or ``partially_filled`` when part filled at once);
* a fill-or-kill (``FOK``) limit order fills whole at once or not at all:
  when the crossing levels hold less than its quantity it is ``canceled``
  with nothing filled;
* a post-only order that would match at once is ``rejected`` whole, with
  the reason ``post_only_would_take``, and nothing of it fills; one that
  would not rests as any GTC order (and fills later as a maker);
* after each move of a symbol's book, every resting order of that symbol
  matches again, against the best crossing level only (at most the size
  shown there per move);
* matching does not consume the displayed liquidity: the venue models no
  market impact of its own orders, so a level can fill several orders, and
  the same order again on the next move;
* a cancel of a resting order succeeds at once; an order that is no longer
  resting stays as it is.

With a queue model (``MatchingEngine(queue=...)``, used by backtests), a
resting limit order also has a place in its level's queue, and the rule
for resting orders is instead:

* when it rests, the lots ahead of it are the size its level showed then
  (``submit``'s ``ahead``);
* a trade at its price takes the lots ahead first; what the trade has left
  over fills the order (``on_trade``); a trade at a worse price for the
  trade's aggressor than the order's (a sell printing below a resting bid)
  went through the whole level, and fills the order's remainder;
* a size decrease at its level that no trade explains moves it forward as
  the queue model estimates (``on_depth``; an increase joins behind it);
* a book whose opposite best price reaches the order's price (an ask at or
  below a resting bid) fills the order's remainder at the order's price
  (``on_book``).

Statuses use the exchange API's words (``new``, ``partially_filled``,
``filled``, ``canceled``), as :class:`~trading_engine.core.orders.OrderStatus`
values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from mypy_extensions import mypyc_attr

from ..core.orders import OrderStatus, OrderType, TimeInForce
from ..core.protocol import Side

__all__ = [
    "FOK",
    "BookLevels",
    "MatchFill",
    "MatchOrder",
    "MatchingEngine",
    "QueueModel",
    "QueuePosition",
    "SortedLevels",
]

_OPEN = frozenset({OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED})
_LIMIT = OrderType.LIMIT
_BUY = Side.BUY
#: Fill-or-kill: a time in force the engine never sends, that venues (and so
#: the simulator's Binance dialect) accept.
FOK = "FOK"


class BookLevels(Protocol):
    """Both sides of a book as ``(price ticks, size lots)`` levels, best first."""

    def bids(self) -> Iterable[tuple[int, int]]: ...

    def asks(self) -> Iterable[tuple[int, int]]: ...


class SortedLevels:
    """:class:`BookLevels` over two ``{price: size}`` mappings (sorted on each read, O(n log n))."""

    __slots__ = ("_asks", "_bids")

    def __init__(self, bids: Mapping[int, int], asks: Mapping[int, int]) -> None:
        self._bids = bids
        self._asks = asks

    def bids(self) -> Iterable[tuple[int, int]]:
        return sorted(self._bids.items(), reverse=True)

    def asks(self) -> Iterable[tuple[int, int]]:
        return sorted(self._asks.items())


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(eq=False)
class MatchOrder:
    """An order as the matching engine sees it.

    ``side``, ``type``, ``time_in_force`` and ``status`` hold the exchange
    API's words (:class:`Side`, :class:`OrderType`, :class:`TimeInForce`,
    :class:`OrderStatus` values); ``price`` is ticks (None for a market
    order); ``quantity`` and ``filled`` are lots; ``cost`` is the sum of
    price * lots over the fills (ticks * lots), so the average fill price is
    ``cost / filled``.
    """

    client_order_id: str
    symbol: str
    side: str
    type: str
    price: int | None
    quantity: int
    time_in_force: str = TimeInForce.GTC
    status: str = OrderStatus.NEW
    filled: int = 0
    cost: int = 0
    post_only: bool = False

    @property
    def is_open(self) -> bool:
        return self.status in _OPEN


@dataclass(frozen=True, slots=True)
class MatchFill:
    """One fill: ``lots`` of ``order`` at ``price`` ticks."""

    order: MatchOrder
    price: int
    lots: int


@dataclass(slots=True)
class QueuePosition:
    """A resting order's place in its level's queue, in lots.

    ``ahead``: the lots in front of it; ``traded``: the lots traded at its
    price since its level's size last changed (a venue's book update that
    follows a trade shows the trade's decrease again: the queue model
    subtracts it, so one decrease never moves the order twice).
    """

    ahead: int
    traded: int = 0


class QueueModel(Protocol):
    """How a size decrease at a resting order's level moves the order forward.

    ``depth`` is given the order's position and the level's size before
    and after (lots) and returns the new lots ahead (``0 <= ahead <= new``);
    it resets ``position.traded``. Pure and deterministic.
    """

    name: str

    def depth(self, position: QueuePosition, before: int, after: int) -> int: ...


class MatchingEngine:
    """Matches orders against books it is shown; keeps the resting orders.

    ``resting`` maps client order id to the resting (open) orders in arrival
    order. Every method returns the fills it made, in order; order statuses
    change in place. ``queue``: a :class:`QueueModel` (see the module
    docstring); None keeps the rule "a resting order fills at the touch".
    """

    def __init__(self, queue: QueueModel | None = None) -> None:
        self.resting: dict[str, MatchOrder] = {}
        #: The resting orders again, by symbol (a book move looks at its own only).
        self._by_symbol: dict[str, dict[str, MatchOrder]] = {}
        self.queue = queue
        #: With a queue model: each resting limit order's place, by client order id.
        self.positions: dict[str, QueuePosition] = {}
        #: With a queue model: symbol -> side -> price -> the resting orders at that
        #: level (a market message's levels are looked up by price, no key built).
        self.levels: dict[str, dict[str, dict[int, dict[str, MatchOrder]]]] = {}

    def submit(self, order: MatchOrder, book: BookLevels, ahead: int = 0) -> list[MatchFill]:
        """Match a new order at once; rest a GTC remainder, cancel any other.

        A post-only order that would match is rejected instead (no fills).
        ``ahead``: with a queue model, the lots its level shows on its own
        side (the queue it joins if it rests).
        """
        if order.post_only and self._would_take(order, book):
            order.status = OrderStatus.REJECTED
            return []
        if order.time_in_force == FOK and self._fillable(order, book) < order.quantity:
            order.status = OrderStatus.CANCELED
            return []
        fills = self._match(order, book, sweep=True)
        if order.filled >= order.quantity:
            order.status = OrderStatus.FILLED
        elif order.type == OrderType.MARKET or order.time_in_force in (TimeInForce.IOC, FOK):
            order.status = OrderStatus.CANCELED
        else:
            order.status = OrderStatus.PARTIALLY_FILLED if order.filled else OrderStatus.NEW
            self.resting[order.client_order_id] = order
            self._by_symbol.setdefault(order.symbol, {})[order.client_order_id] = order
            if self.queue is not None and order.price is not None:
                self.positions[order.client_order_id] = QueuePosition(ahead)
                sides = self.levels.setdefault(order.symbol, {})
                prices = sides.setdefault(order.side, {})
                prices.setdefault(order.price, {})[order.client_order_id] = order
        return fills

    def on_trade(self, symbol: str, price: int, lots: int, aggressor: str) -> list[MatchFill]:
        """With a queue model: a trade of ``lots`` at ``price`` ticks; fills what it reaches.

        ``aggressor`` is the taker's side (``buy`` or ``sell``): it trades
        against resting orders of the other side. O(resting orders of
        ``symbol``).
        """
        fills: list[MatchFill] = []
        orders = self._by_symbol.get(symbol)
        if not orders or self.queue is None:
            return fills
        passive = Side.SELL if aggressor == Side.BUY else Side.BUY
        for order in list(orders.values()):
            if order.side != passive or not order.is_open or order.price is None:
                continue
            limit = order.price
            remaining = order.quantity - order.filled
            if limit == price:
                position = self.positions[order.client_order_id]
                position.traded += lots
                position.ahead -= lots
                if position.ahead >= 0:
                    continue
                take = min(remaining, -position.ahead)
                position.ahead = 0
            elif limit > price if passive == Side.BUY else limit < price:
                # The print went past the order's price: its whole level traded.
                take = remaining
            else:
                continue
            fills.append(self._fill_resting(order, limit, take, orders))
        return fills

    def on_depth(self, symbol: str, side: str, price: int, before: int, after: int) -> None:
        """With a queue model: the size at ``side``'s ``price`` went from ``before`` to ``after``.

        Moves the resting orders at that level as the model estimates. O(1)
        when no order rests there.
        """
        queue = self.queue
        if queue is None:
            return
        sides = self.levels.get(symbol)
        if sides is None:
            return
        prices = sides.get(side)
        if prices is None:
            return
        at_level = prices.get(price)
        if not at_level:
            return
        positions = self.positions
        for cid in at_level:
            position = positions[cid]
            position.ahead = queue.depth(position, before, after)

    def _fill_resting(
        self, order: MatchOrder, price: int, take: int, orders: dict[str, MatchOrder]
    ) -> MatchFill:
        order.filled += take
        order.cost += price * take
        if order.filled >= order.quantity:
            order.status = OrderStatus.FILLED
            self._remove(order.client_order_id, orders)
        else:
            order.status = OrderStatus.PARTIALLY_FILLED
        return MatchFill(order, price, take)

    def would_fill(self, symbol: str, best_bid: int | None, best_ask: int | None) -> bool:
        """False only when :meth:`on_book` with this top of book would do nothing.

        True as soon as one resting order of ``symbol`` could move: a limit
        buy at or above ``best_ask``, a limit sell at or below ``best_bid``,
        any other order type, or an order no longer open. A check that
        costs a few comparisons per resting order, so a backtest calls
        :meth:`on_book` (which reads the book's levels and copies the
        orders) only for the updates that reach an order. O(resting orders
        of ``symbol``).
        """
        orders = self._by_symbol.get(symbol)
        if not orders:
            return False
        for order in orders.values():
            limit = order.price
            if limit is None or order.type != _LIMIT or not order.is_open:
                return True
            if order.side == _BUY:
                if best_ask is not None and best_ask <= limit:
                    return True
            elif best_bid is not None and best_bid >= limit:
                return True
        return False

    def on_book(self, symbol: str, book: BookLevels) -> list[MatchFill]:
        """``symbol``'s book moved: fill its resting orders that the book now crosses.

        Each crossing order takes ``min(remaining, size)`` at the best
        opposite level. O(resting orders of ``symbol``); the book is read
        once per side.
        """
        fills: list[MatchFill] = []
        orders = self._by_symbol.get(symbol)
        if not orders:
            return fills
        best_bid: tuple[int, int] | None = None
        best_ask: tuple[int, int] | None = None
        read_bid = read_ask = False
        for order in list(orders.values()):
            cid = order.client_order_id
            if not order.is_open:  # canceled outside the engine
                self._remove(cid, orders)
                continue
            buy = order.side == Side.BUY
            if buy:
                if not read_ask:
                    best_ask = next(iter(book.asks()), None)
                    read_ask = True
                best = best_ask
            else:
                if not read_bid:
                    best_bid = next(iter(book.bids()), None)
                    read_bid = True
                best = best_bid
            if best is None:
                continue
            price, size = best
            if order.type == OrderType.LIMIT:
                limit = order.price
                assert limit is not None
                if price > limit if buy else price < limit:
                    continue
                if self.queue is not None:
                    # The book reached the order's price: its queue is gone.
                    fills.append(
                        self._fill_resting(order, limit, order.quantity - order.filled, orders)
                    )
                    continue
            take = min(order.quantity - order.filled, size)
            if take <= 0:
                continue
            order.filled += take
            order.cost += price * take
            fills.append(MatchFill(order, price, take))
            if order.filled >= order.quantity:
                order.status = OrderStatus.FILLED
                self._remove(cid, orders)
            else:
                order.status = OrderStatus.PARTIALLY_FILLED
        return fills

    def resting_of(self, symbol: str) -> list[MatchOrder]:
        """The resting orders of ``symbol``, in arrival order (a copy). O(resting of symbol)."""
        return list(self._by_symbol.get(symbol, {}).values())

    def cancel(self, client_order_id: str) -> MatchOrder | None:
        """Cancel a resting order; returns it, or None if it was not resting."""
        order = self.resting.get(client_order_id)
        if order is None:
            return None
        self._remove(client_order_id, self._by_symbol[order.symbol])
        if order.is_open:
            order.status = OrderStatus.CANCELED
        return order

    def _remove(self, client_order_id: str, of_symbol: dict[str, MatchOrder]) -> None:
        order = self.resting.pop(client_order_id)
        del of_symbol[client_order_id]
        if self.positions.pop(client_order_id, None) is not None and order.price is not None:
            sides = self.levels[order.symbol]
            prices = sides[order.side]
            at_level = prices[order.price]
            del at_level[client_order_id]
            if not at_level:
                del prices[order.price]
                if not prices:
                    del sides[order.side]
                    if not sides:
                        del self.levels[order.symbol]

    @staticmethod
    def _would_take(order: MatchOrder, book: BookLevels) -> bool:
        """Whether ``order`` would match the best opposite level right now."""
        buy = order.side == Side.BUY
        best = next(iter(book.asks() if buy else book.bids()), None)
        if best is None:
            return False
        if order.price is None:
            return True
        return best[0] <= order.price if buy else best[0] >= order.price

    @staticmethod
    def _fillable(order: MatchOrder, book: BookLevels) -> int:
        """Lots ``order`` could take at once, up to its quantity (the levels it crosses)."""
        limit = order.price if order.type == OrderType.LIMIT else None
        buy = order.side == Side.BUY
        total = 0
        for price, size in book.asks() if buy else book.bids():
            if limit is not None and (price > limit if buy else price < limit):
                break
            total += size
            if total >= order.quantity:
                break
        return total

    @staticmethod
    def _match(order: MatchOrder, book: BookLevels, sweep: bool) -> list[MatchFill]:
        fills: list[MatchFill] = []
        limit = order.price if order.type == OrderType.LIMIT else None
        buy = order.side == Side.BUY
        for price, size in book.asks() if buy else book.bids():
            if limit is not None and (price > limit if buy else price < limit):
                break
            take = min(order.quantity - order.filled, size)
            if take <= 0:
                break
            order.filled += take
            order.cost += price * take
            fills.append(MatchFill(order, price, take))
            if order.filled >= order.quantity or not sweep:
                break
        return fills
