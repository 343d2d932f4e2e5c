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

It reports the way the gateway does: each fill through ``on_fill``
(without a fill id), then, before every status, the order's cumulative
filled lots and average price through ``on_order_report``, as an order
answer would carry them.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING

from ..core.builder import BookEntry, BookState
from ..core.instruments import Instrument
from ..core.orders import ExecutionListener, Order, OrderStatus, OrderType, TimeInForce
from ..core.protocol import Side

if TYPE_CHECKING:
    from ..engine.engine import Engine

__all__ = ["SimulatedVenue", "simulated_venue"]


class SimulatedVenue:
    """An :class:`~trading_engine.orders.OrderSink` that fills in process."""

    def __init__(
        self,
        books: Mapping[str, BookEntry],
        listener: ExecutionListener,
        instruments: Mapping[str, Instrument] | None = None,
    ) -> None:
        self._books = books
        self._listener = listener
        self._instruments: Mapping[str, Instrument] = instruments or {
            symbol: entry.instrument for symbol, entry in books.items()
        }
        self.resting: dict[str, Order] = {}
        #: Lots and cost (ticks * lots) filled per resting order, as the venue counts them.
        self._filled: dict[str, list[int]] = {}
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
        cid = order.client_order_id
        entry = self._books.get(order.symbol)
        if entry is None or entry.state is not BookState.LIVE:
            self._report(order, OrderStatus.REJECTED, "book_not_live", [0, 0])
            return
        done = [0, 0]
        self._match(order, entry, done, sweep=True)
        if done[0] >= order.quantity:
            self._report(order, OrderStatus.FILLED, None, done)
        elif order.type is OrderType.MARKET or order.time_in_force is TimeInForce.IOC:
            self._report(order, OrderStatus.CANCELED, "ioc_remainder", done)
        else:
            self.resting[cid] = order
            self._filled[cid] = done
            status = OrderStatus.PARTIALLY_FILLED if done[0] else OrderStatus.NEW
            self._report(order, status, None, done)

    def cancel(self, order: Order) -> None:
        cid = order.client_order_id
        if self.resting.pop(cid, None) is not None:
            self._report(order, OrderStatus.CANCELED, "canceled", self._filled.pop(cid))

    def on_book(self, entry: BookEntry, recv_ns: int = 0) -> None:
        """Fill resting orders the new book crosses."""
        if not self.resting:
            return
        for order in [o for o in self.resting.values() if o.symbol == entry.symbol]:
            cid = order.client_order_id
            done = self._filled[cid]
            if not self._match(order, entry, done, sweep=False):
                continue
            if done[0] >= order.quantity:
                del self.resting[cid]
                del self._filled[cid]
                self._report(order, OrderStatus.FILLED, None, done)
            else:
                self._report(order, OrderStatus.PARTIALLY_FILLED, None, done)

    def _report(
        self, order: Order, status: OrderStatus, reason: str | None, done: list[int]
    ) -> None:
        """The order answer: cumulative lots and average price, then the status."""
        listener = self._listener
        cid = order.client_order_id
        average = None
        if done[0]:
            inst: Instrument | None = self._instruments.get(order.symbol)
            ticks = Fraction(done[1], done[0])
            if inst is not None:
                average = Decimal(inst.format_price_fraction(ticks))
        listener.on_order_report(cid, done[0], average)
        listener.on_status(cid, status, reason)

    def _match(self, order: Order, entry: BookEntry, done: list[int], sweep: bool) -> int:
        """Fill ``order`` against the book; returns the lots filled now.

        ``done`` is the venue's ``[lots, cost]`` filled so far for the order.
        """
        book = entry.book
        remaining = order.quantity - done[0]
        limit = order.price
        levels = book.asks() if order.side is Side.BUY else book.bids()
        filled = 0
        for price, size in levels:
            if limit is not None and (price > limit if order.side is Side.BUY else price < limit):
                break
            take = min(remaining - filled, size)
            self.fills += 1
            done[0] += take
            done[1] += price * take
            self._listener.on_fill(order.client_order_id, price, take)
            filled += take
            if filled >= remaining or not sweep:
                break
        return filled


def simulated_venue(engine: Engine) -> SimulatedVenue:
    """A :class:`SimulatedVenue` as ``engine``'s order sink, matched after each book update.

    Pass it as ``Engine(config, sink_factory=simulated_venue)``.
    """
    venue = SimulatedVenue(engine.builder.books, engine, engine.instruments)
    engine.dispatcher.after_book = venue.on_book
    return venue
