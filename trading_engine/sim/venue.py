"""The simulated venue: an in-process order sink that fills against the books.

Used by ``replay`` and by tests, and by the engine until a gateway is
configured. Deterministic: the same books and orders give the same fills.

Matching rules:

* a marketable order (IOC, market, or the marketable part of a GTC) fills
  against the opposite side of the engine's own book, level by level, up
  to its limit price; the book is not changed (the simulated venue does not
  model its own market impact);
* IOC and market orders cancel what did not fill at once;
* a GTC remainder rests; on each later update of the symbol, a resting buy
  fills against asks at or below its price (a sell against bids at or
  above), at most the size shown at the best level per update;
* cancels of resting orders succeed at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..core.builder import BookEntry, BookState
from ..core.orders import ExecutionListener, Order, OrderStatus, OrderType, TimeInForce
from ..core.protocol import Side

if TYPE_CHECKING:
    from ..engine.engine import Engine

__all__ = ["SimulatedVenue", "simulated_venue"]


class SimulatedVenue:
    """An :class:`~trading_engine.orders.OrderSink` that fills in process."""

    def __init__(self, books: Mapping[str, BookEntry], listener: ExecutionListener) -> None:
        self._books = books
        self._listener = listener
        self.resting: dict[str, Order] = {}
        self.orders = 0
        self.fills = 0
        self._next_id = 0

    def allow(self) -> bool:
        return True

    def submit(self, order: Order) -> None:
        self.orders += 1
        self._next_id += 1
        listener = self._listener
        listener.on_written(order)
        listener.on_accepted(order.client_order_id, f"SIM-{self._next_id}")
        entry = self._books.get(order.symbol)
        if entry is None or entry.state is not BookState.LIVE:
            listener.on_status(order.client_order_id, OrderStatus.REJECTED, "book_not_live")
            return
        filled = self._match(order, entry, sweep=True)
        remaining = order.quantity - filled
        if not remaining:
            listener.on_status(order.client_order_id, OrderStatus.FILLED, None)
        elif order.type is OrderType.MARKET or order.time_in_force is TimeInForce.IOC:
            listener.on_status(order.client_order_id, OrderStatus.CANCELED, "ioc_remainder")
        else:
            self.resting[order.client_order_id] = order
            status = OrderStatus.PARTIALLY_FILLED if filled else OrderStatus.NEW
            listener.on_status(order.client_order_id, status, None)

    def cancel(self, order: Order) -> None:
        if self.resting.pop(order.client_order_id, None) is not None:
            self._listener.on_status(order.client_order_id, OrderStatus.CANCELED, "canceled")

    def on_book(self, entry: BookEntry, recv_ns: int = 0) -> None:
        """Fill resting orders the new book crosses."""
        if not self.resting:
            return
        for order in [o for o in self.resting.values() if o.symbol == entry.symbol]:
            if self._match(order, entry, sweep=False) and order.filled >= order.quantity:
                del self.resting[order.client_order_id]
                self._listener.on_status(order.client_order_id, OrderStatus.FILLED, None)
            elif order.filled:
                self._listener.on_status(order.client_order_id, OrderStatus.PARTIALLY_FILLED, None)

    def _match(self, order: Order, entry: BookEntry, sweep: bool) -> int:
        """Fill ``order`` against the book; returns the lots filled now."""
        book = entry.book
        remaining = order.quantity - order.filled
        limit = order.price
        levels = book.asks() if order.side is Side.BUY else book.bids()
        filled = 0
        for price, size in levels:
            if limit is not None and (price > limit if order.side is Side.BUY else price < limit):
                break
            take = min(remaining - filled, size)
            self.fills += 1
            self._listener.on_fill(order.client_order_id, price, take)
            filled += take
            if filled >= remaining or not sweep:
                break
        return filled


def simulated_venue(engine: Engine) -> SimulatedVenue:
    """A :class:`SimulatedVenue` as ``engine``'s order sink, matched after each book update.

    Pass it as ``Engine(config, sink_factory=simulated_venue)``.
    """
    venue = SimulatedVenue(engine.builder.books, engine)
    engine.dispatcher.after_book = venue.on_book
    return venue
