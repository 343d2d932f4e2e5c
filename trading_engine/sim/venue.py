"""The simulated venue: an in-process order sink that fills against the books.

Used by ``replay`` and by tests, and by the engine when ``[gateway] mode =
"simulated"``. Deterministic: the same books and orders give the same fills.

It matches with the exchange simulator's own matching engine
(:mod:`trading_engine.sim.matching`, whose docstring states the rules),
against the engine's books as received, and in the simulator's order of
events:

* when an update or trade of a live book arrives, the venue's book has
  already moved: resting orders of that symbol match first, once per
  sequence number (the simulator matches once per step of its book; a
  snapshot restating the book at the same ``seq`` is not a step);
* then the strategies see the message; a new order matches at once
  against that same book, and a cancel finds the order as the venue has
  it (an order filled by this move is no longer cancelable);
* what the venue did while the strategies ran (fills, statuses) reaches
  the engine after they return, as an exchange's answers arrive after the
  request: a strategy never learns of a fill within the fan-out that
  caused it.

A replay of a capture taken against ``exchange-sim`` therefore fills as
the live session did, except where a live order reached the simulator
after its book had moved on (see ``docs/replay.md``). An order for a
book that is not live is rejected (``book_not_live``).

It reports the way the gateway does: each fill through ``on_fill`` (a
:class:`~trading_engine.core.reports.FillReport` without a fill id), and
every status as an order answer through ``on_report`` (an
:class:`~trading_engine.core.reports.OrderReport` with the order's
cumulative filled lots and their average rendered at the tick's
precision, as an exchange renders it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from fractions import Fraction
from functools import partial
from typing import TYPE_CHECKING

from ..core.builder import BookEntry, BookState
from ..core.instruments import Instrument
from ..core.orders import POST_ONLY_REJECTED, ExecutionListener, Order, OrderStatus
from ..core.protocol import BookMessage, MessageType, Trade
from ..core.reports import FillReport, OrderReport
from .matching import MatchFill, MatchingEngine, MatchOrder, QueueModel

if TYPE_CHECKING:
    from ..engine.engine import Engine

__all__ = ["ANSWER", "ARRIVAL", "MARKET", "DelayedVenue", "SimulatedVenue", "simulated_venue"]

#: What is due at one instant runs in this order: market data reaching the
#: engine, then orders and cancels reaching the venue, then the venue's
#: answers reaching the engine. With no latency this is ``replay``'s order:
#: the strategies see a message before the fills it caused.
MARKET = 0
ARRIVAL = 1
ANSWER = 2

_STATUSES = {status.value: status for status in OrderStatus}

#: A report to the engine: a fill (client order id, price, lots), or a
#: status (client order id, status, reason, filled lots, cost in
#: ticks * lots, symbol) delivered as an order answer.
_Report = tuple[str, int, int] | tuple[str, OrderStatus, str | None, int, int, str]


class SimulatedVenue:
    """An :class:`~trading_engine.core.orders.OrderSink` that fills in process.

    Wire :meth:`before_fan_out` and :meth:`after_fan_out` to the
    dispatcher's hooks (as :func:`simulated_venue` does); without them it
    reports at once and matches resting orders only when
    :meth:`before_fan_out` is called.
    """

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
        self.matching = MatchingEngine()
        self.orders = 0
        self.fills = 0
        self._next_id = 0
        #: The sequence of the last book resting orders were matched against,
        #: per symbol (by a move, or at submit for the order that rested).
        self._matched_seq: dict[str, int | None] = {}
        #: Reports held while the strategies see a message (``_holding``).
        self._held: list[_Report] = []
        self._holding = False
        #: The venue's order id of each open order.
        self._venue_ids: dict[str, str] = {}

    @property
    def resting(self) -> dict[str, MatchOrder]:
        """The resting orders by client order id."""
        return self.matching.resting

    # -- OrderSink --------------------------------------------------------------

    def allow(self) -> bool:
        return True

    def start(self) -> None:
        """Nothing runs in the background."""

    def stop_orders(self) -> None:
        """Nothing is queued: there is nothing to stop."""

    def resume_orders(self) -> None:
        """Nothing was stopped."""

    async def drain(self, within_s: float) -> bool:
        return True

    async def close(self) -> None:
        """Nothing to release."""

    def forget(self, client_order_id: str) -> None:
        self._venue_ids.pop(client_order_id, None)

    def not_ready(self) -> str | None:
        return None

    def breaker_state(self) -> str:
        return "closed"

    def submit(self, order: Order) -> str | None:
        self._listener.on_written(order)
        self._accept(order)
        return None

    def _accept(self, order: Order) -> None:
        """The order reached the venue: match it against the book now, rest or end it."""
        self.orders += 1
        self._next_id += 1
        self._venue_ids[order.client_order_id] = f"SIM-{self._next_id}"
        entry = self._books.get(order.symbol)
        if entry is None or entry.state is not BookState.LIVE:
            self._report(
                (order.client_order_id, OrderStatus.REJECTED, "book_not_live", 0, 0, order.symbol)
            )
            return
        match = MatchOrder(
            order.client_order_id,
            order.symbol,
            order.side,
            order.type,
            order.price,
            order.quantity,
            order.time_in_force,
            post_only=order.post_only,
        )
        self._fills(self.matching.submit(match, entry.book, self._ahead(match, entry)))
        if match.is_open:
            # It rests, matched against this sequence's book: not again at it.
            self._matched_seq[order.symbol] = entry.seq
        reason = (
            "ioc_remainder"
            if match.status == OrderStatus.CANCELED
            else POST_ONLY_REJECTED
            if match.status == OrderStatus.REJECTED
            else None
        )
        self._status(match, reason)

    def _ahead(self, match: MatchOrder, entry: BookEntry) -> int:
        """The lots a resting order would queue behind (used with a queue model only)."""
        return 0

    def cancel(self, order: Order) -> None:
        match = self.matching.cancel(order.client_order_id)
        if match is not None:
            self._status(match, "canceled")

    def before_fan_out(self, entry: BookEntry) -> None:
        """An update or trade of a live book: match resting orders, then hold reports."""
        self._holding = True
        if not self.matching.resting:
            return
        symbol = entry.symbol
        matched = self._matched_seq
        if matched.get(symbol, -1) == entry.seq:
            return
        matched[symbol] = entry.seq
        fills = self.matching.on_book(symbol, entry.book)
        self._fills(fills)
        done = {fill.order.client_order_id: fill.order for fill in fills}
        for match in done.values():
            self._status(match, None)

    def after_fan_out(self, entry: BookEntry, recv_ns: int = 0) -> None:
        """The strategies returned: deliver what the venue did meanwhile, in order."""
        self._holding = False
        held = self._held
        if not held:
            return
        self._held = []
        listener = self._listener
        for report in held:
            self._deliver(listener, report)

    def _fills(self, fills: list[MatchFill]) -> None:
        for fill in fills:
            self.fills += 1
            self._report((fill.order.client_order_id, fill.price, fill.lots))

    def _status(self, match: MatchOrder, reason: str | None) -> None:
        """An order answer: its status with its cumulative fills as they are now."""
        status = _STATUSES[match.status]
        self._report(
            (match.client_order_id, status, reason, match.filled, match.cost, match.symbol)
        )

    def _report(self, report: _Report) -> None:
        if self._holding:
            self._held.append(report)
        else:
            self._deliver(self._listener, report)

    def _deliver(self, listener: ExecutionListener, report: _Report) -> None:
        if len(report) == 3:
            cid, price, lots = report
            assert isinstance(price, int)
            listener.on_fill(FillReport(cid, price, lots))
            return
        cid, status, reason, filled, cost, symbol = report
        assert isinstance(status, OrderStatus)
        assert not isinstance(reason, int)
        average = None
        if filled:
            inst = self._instruments.get(symbol)
            if inst is not None:
                # Rendered at the tick's precision, as an exchange's answer carries it.
                average = inst.average_to_ticks(inst.format_price_fraction(Fraction(cost, filled)))
        venue_id = self._venue_ids.get(cid)
        if status is not OrderStatus.NEW and status is not OrderStatus.PARTIALLY_FILLED:
            self._venue_ids.pop(cid, None)
        listener.on_report(OrderReport(cid, status, filled, average, venue_id, reason))


def simulated_venue(engine: Engine) -> SimulatedVenue:
    """A :class:`SimulatedVenue` as ``engine``'s order sink, wired to its dispatcher.

    Pass it as ``Engine(config, sink_factory=simulated_venue)``.
    """
    venue = SimulatedVenue(engine.builder.books, engine, engine.instruments)
    dispatcher = engine.dispatcher
    dispatcher.before_fan_out = venue.before_fan_out
    dispatcher.after_book = venue.after_fan_out
    dispatcher.after_trade = venue.after_fan_out
    return venue


class DelayedVenue(SimulatedVenue):
    """The simulated venue of a backtest: its own book, latency each way, a queue model.

    Unlike :class:`SimulatedVenue`, it matches against ``books``, the
    venue's own books at the data's time (not the engine's, which see the
    market ``feed latency`` later), and nothing is instant: an order or a
    cancel reaches it ``entry_latency()`` ns after the engine sent it, and
    each answer reaches the engine ``response_latency()`` ns after the
    venue gave it, both through ``schedule(at_ns, rank, action)`` (the
    backtest's event queue; ``now()`` is its time; ``rank`` orders what is
    due at the same instant: :data:`ARRIVAL` before :data:`ANSWER`, both
    after market data). Each direction keeps its order, as one connection
    does: a sample shorter than the one before it waits for it.

    ``queue``: the matching engine's queue model (None: the replay's touch
    rule). The runner tells it of every market message with
    :meth:`before_book` / :meth:`after_book` and :meth:`on_trade`.
    ``on_fill(fill, liquidity, ts_ns)`` sees every fill as the venue makes
    it (``taker`` when it matched on arrival, else ``maker``);
    ``on_arrive(order, ts_ns)`` every order as it reaches the venue.
    """

    def __init__(
        self,
        books: Mapping[str, BookEntry],
        listener: ExecutionListener,
        instruments: Mapping[str, Instrument],
        *,
        now: Callable[[], int],
        schedule: Callable[[int, int, Callable[[], None]], None],
        entry_latency: Callable[[], int],
        response_latency: Callable[[], int],
        queue: QueueModel | None,
        on_fill: Callable[[MatchFill, str, int], None],
        on_arrive: Callable[[Order, int], None],
    ) -> None:
        super().__init__(books, listener, instruments)
        self.matching = MatchingEngine(queue)
        self._now = now
        self._schedule = schedule
        self._entry_latency = entry_latency
        self._response_latency = response_latency
        self._on_fill = on_fill
        self._on_arrive = on_arrive
        self._entry_clear = 0
        self._answer_clear = 0
        self._taker = False
        #: Sizes before a book message of the levels where orders rest: (side, price, lots).
        self._before: list[tuple[str, int, int]] = []

    def submit(self, order: Order) -> str | None:
        self._listener.on_written(order)
        self._send(partial(self._arrive, order))
        return None

    def cancel(self, order: Order) -> None:
        self._send(partial(SimulatedVenue.cancel, self, order))

    def _send(self, action: Callable[[], None]) -> None:
        at = max(self._now() + self._entry_latency(), self._entry_clear)
        self._entry_clear = at
        self._schedule(at, ARRIVAL, action)

    def _arrive(self, order: Order) -> None:
        self._on_arrive(order, self._now())
        self._taker = True
        try:
            self._accept(order)
        finally:
            self._taker = False

    def _ahead(self, match: MatchOrder, entry: BookEntry) -> int:
        if match.price is None:
            return 0
        book = entry.book
        return book.bid_size(match.price) if match.side == "buy" else book.ask_size(match.price)

    def _fills(self, fills: list[MatchFill]) -> None:
        liquidity = "taker" if self._taker else "maker"
        now = self._now()
        for fill in fills:
            self._on_fill(fill, liquidity, now)
        super()._fills(fills)

    def _report(self, report: _Report) -> None:
        at = max(self._now() + self._response_latency(), self._answer_clear)
        self._answer_clear = at
        self._schedule(at, ANSWER, partial(self._deliver, self._listener, report))

    # -- the market moves ---------------------------------------------------------

    def before_book(self, message: BookMessage) -> None:
        """Before ``message`` is applied to the venue's book: note the sizes where orders rest."""
        sides = self.matching.levels.get(message.symbol)
        if sides is None:
            return
        entry = self._books.get(message.symbol)
        if entry is None:
            return
        book = entry.book
        before = self._before
        if message.type is MessageType.SNAPSHOT:
            for side, prices in sides.items():
                for price in prices:
                    size = book.bid_size(price) if side == "buy" else book.ask_size(price)
                    before.append((side, price, size))
            return
        buys = sides.get("buy")
        if buys is not None:
            for price, _ in message.bids:
                if price in buys:
                    before.append(("buy", price, book.bid_size(price)))
        sells = sides.get("sell")
        if sells is not None:
            for price, _ in message.asks:
                if price in sells:
                    before.append(("sell", price, book.ask_size(price)))

    def after_book(self, entry: BookEntry) -> None:
        """The venue's book of ``entry`` moved: move queues, then fill what it reaches."""
        matching = self.matching
        before = self._before
        if before:
            book = entry.book
            symbol = entry.symbol
            for side, price, size in before:
                after = book.bid_size(price) if side == "buy" else book.ask_size(price)
                if after != size:
                    matching.on_depth(symbol, side, price, size, after)
            before.clear()
        if matching.resting and entry.state is BookState.LIVE:
            book = entry.book
            # Most updates reach no resting order: skip reading the book's levels.
            if matching.would_fill(entry.symbol, book.best_bid, book.best_ask):
                self._settle(matching.on_book(entry.symbol, book))

    def on_trade(self, entry: BookEntry, trade: Trade) -> None:
        """A print on the venue: with a queue model it fills what it reaches, else as a move."""
        matching = self.matching
        if not matching.resting or entry.state is not BookState.LIVE:
            return
        if matching.queue is None:
            self._settle(matching.on_book(entry.symbol, entry.book))
        else:
            self._settle(matching.on_trade(entry.symbol, trade.price, trade.size, trade.side))

    def _settle(self, fills: list[MatchFill]) -> None:
        if not fills:
            return
        self._fills(fills)
        done = {fill.order.client_order_id: fill.order for fill in fills}
        for match in done.values():
            self._status(match, None)
