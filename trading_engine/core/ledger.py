"""The execution ledger: the one owner of orders, exposure and positions.

Pure and synchronous (compiled with mypyc). The ledger admits orders (the
pre-trade risk check, self-trade prevention, the order's creation and the
hold of its lots in exposure), applies every venue report and fill, and is
the only thing that changes a position. The engine around it is an async
shell: it hands the ledger's orders to the order sink and the sink's
typed reports (:mod:`trading_engine.core.reports`) back to the ledger.

The invariant it keeps, per symbol and side, between any two calls::

    exposure = position + open remaining quantity

``exposure[symbol]`` holds the open part: the sum over tracked orders of
``Order.held``. An open order holds every lot the position does not hold
yet (``quantity - filled``, more if the venue reported more); a closed
order only the lots the venue reported filled that no fill has priced
yet. Lots leave exposure only when a fill (or an answer with an average)
credits them to the position, or when a final status releases a
remainder the venue's filled quantity accounts for; never anything else.
:meth:`Ledger._check` asserts all of it; the property tests call it after
every step.

What happened is told through a :class:`LedgerObserver` handed in (the
engine: the journal, the strategies' callbacks, halts), so the ledger
does no I/O of its own. Restoring after a restart replays the journaled
fills through :meth:`Ledger.apply_fill`, the path live fills take.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from typing import Final, Protocol

from .builder import BookEntry
from .errors import DuplicateFill, InvariantError, OrderStateError
from .fees import NO_FEES, FeeSchedule
from .instruments import Instrument
from .orders import (
    FAULT_KINDS,
    POST_ONLY_REJECTED,
    ClientOrderIds,
    Order,
    OrderStatus,
    OrderType,
    Price,
    TimeInForce,
)
from .positions import Positions
from .protocol import Side
from .reports import FillReport, OrderReport
from .risk import Denial, RiskEngine

__all__ = [
    "HALTING_FAULTS",
    "LEDGER_FAULTS",
    "SELF_TRADE_POLICIES",
    "Ledger",
    "LedgerObserver",
]

_BUY: Final = Side.BUY
_LIMIT: Final = OrderType.LIMIT
_MARKET: Final = OrderType.MARKET
_IOC: Final = TimeInForce.IOC
_REJECTED: Final = OrderStatus.REJECTED
_FILLED: Final = OrderStatus.FILLED
_PARTIAL: Final = OrderStatus.PARTIALLY_FILLED
_PENDING: Final = OrderStatus.PENDING_NEW
_UNKNOWN: Final = OrderStatus.UNKNOWN

#: Every fault the ledger counts (``trading_engine_order_faults_total{kind}``).
LEDGER_FAULTS: Final = (
    *FAULT_KINDS,
    "fill_after_final",
    "fills_missing",
    "fill_mismatch",
    "fills_log_reset",
    "venue_banned",
    "venue_auth_failed",
)
#: Faults that mean the engine and the venue disagree about a position, or that the
#: venue will take no request (a ban, a refused key): trading halts.
HALTING_FAULTS: Final = frozenset({
    "overfill", "fills_missing", "fill_mismatch", "fills_log_reset",
    "venue_banned", "venue_auth_failed",
})  # fmt: skip
#: ``[risk] self_trade``: what an order that would cross the engine's own resting order does.
SELF_TRADE_POLICIES: Final = ("refuse", "cancel_resting", "allow")


class LedgerObserver(Protocol):
    """What the ledger tells the rest of the engine (the engine implements it)."""

    def order_accepted(self, order: Order) -> None:
        """The venue gave the order its id (journal it)."""

    def order_changed(self, order: Order) -> None:
        """The order's status or cumulative fill changed (journal it)."""

    def order_update(self, order: Order) -> None:
        """The order's status changed (the strategy's ``on_order_update``)."""

    def fill_reported(self, order: Order, fill: FillReport, fee: int) -> None:
        """A fill of the venue's fills log, not seen before, for ``order`` (journal it).

        ``fee`` is the fill's own fee in tick*lot units: the venue's, or the
        one computed from the instrument's rates.
        """

    def fill_unattached(self, strategy: str, fill: FillReport, fee: int) -> None:
        """A fill of one of the deployment's orders that the ledger no longer tracks,
        credited to ``strategy``'s position (journal it; ``fill.symbol`` and ``side`` are set).

        ``fee``: the fill's fee in tick*lot units (the venue's, else the
        instrument's taker rate), charged to the position.
        """

    def fill_credited(self, order: Order, price: Price, lots: int) -> None:
        """``lots`` at ``price`` ticks joined the position (the strategy's ``on_fill``)."""

    def fault(self, client_order_id: str, kind: str, detail: str) -> None:
        """A fault, counted by the ledger; one of ``HALTING_FAULTS`` must halt trading."""

    def forget(self, client_order_id: str) -> None:
        """A closed order left the ledger (the sink may forget it too)."""


class Ledger:
    """Orders, open orders, exposure, positions and the fault counters.

    ``instruments`` by symbol; ``risk`` the pre-trade checks (the ledger
    feeds them its exposure and positions); ``clock`` monotonic ns;
    ``ids`` makes client order ids; ``retention_ns`` how long a closed
    order stays for late fills; ``self_trade`` one of
    ``SELF_TRADE_POLICIES``; ``fees`` the fee schedules by symbol (a
    symbol without one pays none). Raises ``ValueError`` for an unknown
    policy.

    Fees: every lot credited to a position is charged its fee at once
    (:mod:`trading_engine.core.fees`: maker or taker rate, rounded up).
    A fill that lists lots an answer already credited at its average
    replaces the fee charged for them by its own (the venue's, when it
    reports one, else computed at the fill's price): once the fills list
    every lot, an order's fees are exactly the sum of its fills' fees.
    """

    def __init__(
        self,
        instruments: Mapping[str, Instrument],
        risk: RiskEngine,
        clock: Callable[[], int],
        observer: LedgerObserver,
        ids: ClientOrderIds,
        *,
        retention_ns: int = 60 * 10**9,
        self_trade: str = "refuse",
        strategies: Iterable[str] = (),
        fees: Mapping[str, FeeSchedule] | None = None,
    ) -> None:
        if self_trade not in SELF_TRADE_POLICIES:
            raise ValueError(f"self_trade {self_trade!r} is not one of {SELF_TRADE_POLICIES}")
        self.instruments = instruments
        self.risk = risk
        self._clock = clock
        self.observer = observer
        self.ids = ids
        self.retention_ns = retention_ns
        self.self_trade = self_trade
        self.positions = Positions()
        #: Maker and taker rates by symbol (a symbol without one pays none).
        self.fees: dict[str, FeeSchedule] = {
            symbol: NO_FEES if fees is None else fees.get(symbol, NO_FEES) for symbol in instruments
        }
        #: False when no symbol has a fee rate: fills without a venue fee cost nothing.
        self._rates = any(not schedule.free for schedule in self.fees.values())
        #: Open orders and orders closed within the retention time, by client id.
        self.orders: dict[str, Order] = {}
        #: Open orders by strategy, then client id.
        self.open_orders: dict[str, dict[str, Order]] = {name: {} for name in strategies}
        #: Open limit orders by symbol, then client id (self-trade checks, audits).
        self._resting: dict[str, dict[str, Order]] = {symbol: {} for symbol in instruments}
        #: Lots held by tracked orders per symbol: [buy, sell] (the sum of ``Order.held``).
        self.exposure: dict[str, list[int]] = {symbol: [0, 0] for symbol in instruments}
        #: Orders that reached each status, plus ``submitted``, ``fills`` and
        #: ``cancel_requested``.
        self.order_counts: Counter[str] = Counter()
        #: Faults by kind (``LEDGER_FAULTS``), always present.
        self.order_faults: Counter[str] = Counter(dict.fromkeys(LEDGER_FAULTS, 0))
        #: Reports ignored, by reason.
        self.ignored: Counter[str] = Counter(
            {"duplicate_fill": 0, "unknown_order": 0, "invalid_transition": 0, "stale_report": 0}
        )
        self._closed: deque[Order] = deque()
        #: Call :meth:`_check` after every change (a debug setting: slow).
        self.check_invariants = False

    # -- admission ---------------------------------------------------------------

    def admit(
        self,
        strategy: str,
        entry: BookEntry,
        side: Side,
        lots: int,
        price: int | None,
        order_type: OrderType,
        time_in_force: TimeInForce,
        allow: Callable[[], bool],
    ) -> tuple[Order | None, Denial | None, list[Order] | None]:
        """Risk-check one order and, when it passes, create it and hold its lots.

        Returns ``(order, None, to_cancel)`` or ``(None, denial, None)``;
        ``to_cancel`` lists the engine's own resting orders the order would
        cross under ``self_trade = "cancel_resting"`` (the caller cancels
        them), else None. A market order is checked and created as an IOC
        limit order at the band's edge. ``allow`` is the order sink's
        permission (the circuit breaker), asked last. Every denial is
        counted under its reason. ``O(1)`` plus the symbol's own resting
        orders on the other side when self-trade prevention is on.
        """
        risk = self.risk
        symbol = entry.symbol
        if order_type is _MARKET:
            price = risk.band_edge(entry, side)
            if price is None:
                return None, risk.deny(Denial.NO_PRICE), None
            order_type = _LIMIT
            time_in_force = _IOC
        exposure = self.exposure[symbol]
        to_cancel: list[Order] | None = None
        if price is not None and self.self_trade != "allow":
            resting = self._resting[symbol]
            if resting:
                crossing = _crossing(resting, side, price)
                if crossing:
                    if self.self_trade == "refuse":
                        return None, risk.deny(Denial.SELF_TRADE), None
                    to_cancel = crossing
        denial = risk.check(
            strategy,
            entry,
            side,
            order_type,
            lots,
            price,
            self.positions.quantity(symbol),
            exposure[0],
            exposure[1],
        )
        if denial is not None:
            return None, denial, None
        if not allow():
            return None, risk.deny(Denial.CIRCUIT_OPEN), None
        order = Order(
            self.ids.next(strategy),
            strategy,
            symbol,
            side,
            order_type,
            lots,
            price,
            time_in_force,
            self._clock(),
            self.instruments[symbol],
        )
        cid = order.client_order_id
        self.orders[cid] = order
        opened = self.open_orders.get(strategy)
        if opened is None:
            opened = self.open_orders[strategy] = {}
        opened[cid] = order
        self._resting[symbol][cid] = order
        exposure[0 if side is _BUY else 1] += lots
        order.held = lots
        self._count("submitted")
        if self.check_invariants:
            self._check()
        return order, None, to_cancel

    def refuse(self, order: Order, reason: str) -> None:
        """The sink refused ``order`` at once (it never left): close it ``rejected``.

        ``reason`` is the sink's (``rate_limited``, ``halted``, ...); a
        ``rate_limited`` refusal is also counted as a risk denial.
        """
        if reason == Denial.RATE_LIMITED:
            self.risk.deny(Denial.RATE_LIMITED)
        self.apply_status(order.client_order_id, _REJECTED, reason)

    # -- reports -----------------------------------------------------------------------

    def apply_report(self, report: OrderReport, credit_average: bool = True) -> bool:
        """Apply one order answer: its venue id, cumulative fill, average and status.

        The lots beyond what is credited are credited at once at the price
        that makes the order's total cost ``avg_price * filled_lots``
        (``credit_average`` False: start-up reconciliation, where the fills
        log prices every lot, keeps them held instead). A ``filled`` status
        whose filled quantity is not the order's quantity, or an average
        that would price new lots at <= 0, is an ``unreadable_answer``
        fault: nothing changes but the lots reported, and False is
        returned (the caller reads the order back). A stale status (``new``
        after ``partially_filled``) is ignored and counted, as is an older
        cumulative report of the same status (fewer lots filled than one
        already taken: ``stale_report``). Returns True
        when the answer was taken. ``O(1)``.
        """
        cid = report.client_order_id
        order = self.orders.get(cid)
        if order is None:
            self._ignore("unknown_order")
            return True
        venue_id = report.exchange_order_id
        if venue_id is not None and order.exchange_order_id != venue_id:
            order.exchange_order_id = venue_id
            self.observer.order_accepted(order)
        before = order.reported
        filled = report.filled_lots
        status = report.status
        if filled < before and status is order.status:
            # An older cumulative report (3 lots filled after one said 6), as a
            # stream that redelivers or reorders sends: nothing in it is new.
            self._ignore("stale_report")
            return True
        if status is _FILLED and filled < order.quantity:
            # "filled" must account for the whole order: otherwise the answer
            # would release lots no fill and no count accounts for.
            self._fault(cid, "unreadable_answer", f"filled with {filled} of {order.quantity}")
            if filled > order.reported:
                order.reported = filled
            self._hold(order)
            return False
        try:
            credit = order.credit_report(filled, report.avg_price if credit_average else None)
        except OrderStateError as exc:
            self._fault(cid, "unreadable_answer", str(exc))
            self._hold(order)
            return False
        if credit is not None:
            self._credit(order, credit[0], credit[1])
            if self._rates:
                self._charge_answer(order, credit[0], credit[1])
        changed = order.reported != before or credit is not None
        # Lots an answer reports with its final status are not "after" it.
        self._check_reported(order, before)
        if (status is not order.status or status is _PARTIAL) and self._transition(
            order, status, report.reason
        ):
            changed = False  # _transition journaled it
        self._hold(order)
        if changed:
            self.observer.order_changed(order)
        if self.check_invariants:
            self._check()
        return True

    def apply_fill(self, fill: FillReport, journal: bool = True) -> None:
        """Apply one fill: only the lots beyond what answers credited join the position.

        Each ``fill_id`` counts once per order (a repeat is ignored and
        counted ``duplicate_fill``). A fill beyond the order's quantity is
        credited (the position is the venue's) and faults ``overfill``,
        which halts trading. ``journal`` False: a replay of the journal's
        own rows (not journaled again). ``O(1)`` (``O(n)`` in the order's
        open lots when it reprices an averaged answer).
        """
        cid = fill.client_order_id
        order = self.orders.get(cid)
        if order is None:
            self._unattached_fill(fill, journal)
            return
        if (fill.side is not None and fill.side is not order.side) or (
            fill.symbol is not None and fill.symbol != order.symbol
        ):
            # The venue filled something else than this order: the positions disagree.
            self._fault(
                cid,
                "fill_mismatch",
                f"fill {fill.fill_id} says {fill.symbol} {fill.side}, the order "
                f"{order.symbol} {order.side.value}",
            )
            return
        before = order.reported
        try:
            credit, provisional = order.credit_fill(fill.price, fill.lots, fill.fill_id)
        except DuplicateFill:
            self._ignore("duplicate_fill")
            return
        except OrderStateError as exc:
            self._fault(cid, "unreadable_fill", str(exc))
            return
        if fill.fee is None and not self._rates:
            # No rates (so nothing charged from answers either) and no venue fee.
            fee = charge = 0
        else:
            # The order's lots listed before this fill (credit_fill added its lots).
            listed = order.feed_filled - fill.lots
            fee, charge = self._fill_fee(order, fill, listed, 0 if credit is None else credit[1])
        if journal:
            self.observer.fill_reported(order, fill, fee)
        if credit is not None:
            self._credit(order, credit[0], credit[1])
        if charge:
            self._charge(order, charge)
        if provisional is not None and order.feed_fills is not None:
            self.positions.reprice(
                order.strategy, order.symbol, order.side, cid, provisional, order.feed_fills
            )
        self._hold(order)
        self.observer.order_changed(order)
        self._check_reported(order, before)
        if self.check_invariants:
            self._check()

    def _unattached_fill(self, fill: FillReport, journal: bool) -> None:
        """A fill of an order the ledger does not track.

        Another client's order (or one whose fill does not say its symbol
        and side) is ignored (``unknown_order``). One of this deployment's
        orders on a symbol of this ledger was closed with every lot
        accounted for and has left the ledger: the venue filled it again,
        an overfill. The position is the venue's, so the fill is credited
        (and journaled) with its fee (the venue's, else the taker rate: the
        order's resting history is gone) and faults ``overfill``, which
        halts trading.
        """
        cid = fill.client_order_id
        symbol = fill.symbol
        side = fill.side
        if symbol is None or side is None or symbol not in self.instruments:
            self._ignore("unknown_order")
            return
        if not self.ids.owns(cid):
            self._ignore("unknown_order")
            return
        strategy = self.ids.strategy_of(cid)
        self.positions.fill(strategy, symbol, side, fill.price, fill.lots, cid)
        fee = fill.fee
        if fee is None:
            schedule = self.fees[symbol]
            # A venue fee in an asset without a price is kept as it is, never a rate.
            unpriced = fill.fee_asset is not None or schedule.free
            fee = 0 if unpriced else schedule.fee(fill.price, fill.lots, fill.lots)
        self.positions.charge(strategy, symbol, fee)
        self._count("fills")
        if journal:
            self.observer.fill_unattached(strategy, fill, fee)
        self._fault(
            cid,
            "overfill",
            f"fill {fill.fill_id} of {fill.lots} lots for an order closed with every lot "
            "accounted for",
        )
        if self.check_invariants:
            self._check()

    def apply_status(self, client_order_id: str, status: OrderStatus, reason: str | None) -> None:
        """A status the sink decided locally (``unknown``, ``rejected``, ``canceled``).

        A final one releases only the order's unfilled remainder (lots
        reported filled but not yet priced stay held). A transition that
        does not exist is ignored and counted (``invalid_transition``).
        """
        order = self.orders.get(client_order_id)
        if order is None:
            self._ignore("unknown_order")
            return
        self._transition(order, status, reason)
        self._hold(order)
        if self.check_invariants:
            self._check()

    def fault(self, client_order_id: str, kind: str, detail: str = "") -> None:
        """Count a fault the sink met (``FAULT_KINDS``); a halting one halts trading.

        A refused cancel (``cancel_refused``) leaves the order open and no
        longer cancel-requested: its strategy may ask again, and a halt or
        stop cancels it again in any case.
        """
        if kind == "cancel_refused":
            order = self.orders.get(client_order_id)
            if order is not None:
                order.cancel_requested = False
        self._fault(client_order_id, kind, detail)

    # -- cancels ------------------------------------------------------------------------

    def request_cancel(
        self, order: Order, strategy: str | None = None, again: bool = False
    ) -> bool:
        """May a cancel of ``order`` be sent? Marks it cancel-requested.

        False for another strategy's order, a closed order, or (unless
        ``again``: a halt or a stop) one whose cancel was already asked
        for. The sink itself never runs two cancels of one order at once.
        """
        if strategy is not None and order.strategy != strategy:
            return False
        if not order.is_open:
            return False
        if order.cancel_requested and not again:
            return False
        order.cancel_requested = True
        self._count("cancel_requested")
        return True

    def open_order_list(self) -> list[Order]:
        """Every open order (a copy), in admission order per strategy."""
        return [order for orders in self.open_orders.values() for order in orders.values()]

    def open_count(self, symbol: str, besides: str = "") -> int:
        """Open orders on ``symbol``, but the one whose client order id is ``besides``. ``O(1)``."""
        orders = self._resting.get(symbol)
        if orders is None:
            return 0
        return len(orders) - (besides in orders)

    def resting_orders(self) -> list[Order]:
        """Open orders the venue acknowledged (``new``, ``partially_filled``): a copy."""
        return [
            order
            for orders in self._resting.values()
            for order in orders.values()
            if order.status is OrderStatus.NEW or order.status is _PARTIAL
        ]

    # -- restart ------------------------------------------------------------------------

    def restore(self, order: Order) -> None:
        """Track an order of an earlier run again (start-up reconciliation).

        It is open (its status ``unknown`` until the venue's answer is
        applied) and holds its lots in exposure. Its fills are replayed
        with :meth:`apply_fill` afterwards, which rebuilds its accounting.
        """
        cid = order.client_order_id
        self.orders[cid] = order
        opened = self.open_orders.get(order.strategy)
        if opened is None:
            opened = self.open_orders[order.strategy] = {}
        if order.is_open:
            opened[cid] = order
            self._resting[order.symbol][cid] = order
        self._hold(order)

    def credit_unattached(
        self,
        strategy: str,
        symbol: str,
        side: Side,
        price: int,
        lots: int,
        client_order_id: str,
        fee: int | None = None,
    ) -> None:
        """Credit a fill of an order the ledger does not track (a closed order of an earlier run).

        The journal's fills and the venue's fills found at start-up, for
        orders that are no longer open, go straight to the position, with
        ``fee`` (tick*lot units: the journaled or the venue's), or the
        taker fee when it is None (whether they were maker lots is not known).
        """
        self.positions.fill(strategy, symbol, side, price, lots, client_order_id)
        if fee is None:
            fee = self.fees[symbol].fee(price, lots, lots)
        self.positions.charge(strategy, symbol, fee)
        self._count("fills")

    def reset(self) -> None:
        """Back to no orders and flat positions (a start-up attempt failed midway)."""
        self.positions = Positions()
        self.orders.clear()
        for orders in self.open_orders.values():
            orders.clear()
        for orders in self._resting.values():
            orders.clear()
        self._closed.clear()
        for exposure in self.exposure.values():
            exposure[0] = 0
            exposure[1] = 0

    # -- retention ----------------------------------------------------------------------

    def evict_closed(self, now_ns: int) -> int:
        """Drop orders closed longer than the retention time; returns how many left.

        An order still holding reported-but-unpriced lots stays until they
        are priced. The observer's ``forget`` is told of each. Amortized
        ``O(1)`` per order.
        """
        closed = self._closed
        cutoff = now_ns - self.retention_ns
        if not closed or closed[0].closed_ns > cutoff:
            return 0
        evicted = 0
        kept: list[Order] = []
        while closed and closed[0].closed_ns <= cutoff:
            order = closed.popleft()
            if order.held:
                order.closed_ns = now_ns  # look again one retention time later
                kept.append(order)
                continue
            cid = order.client_order_id
            if self.orders.get(cid) is order:
                del self.orders[cid]
                self.observer.forget(cid)
                evicted += 1
        closed.extend(kept)
        return evicted

    # -- internals --------------------------------------------------------------------

    def _transition(self, order: Order, status: OrderStatus, reason: str | None) -> bool:
        """Move ``order`` to ``status``; True when it changed (journaled, strategy told)."""
        was_open = order.is_open
        previous = order.status
        try:
            changed = order.transition(status, reason)
        except OrderStateError:
            self._ignore("invalid_transition")
            return False
        if not changed:
            return False
        if (
            (previous is _PENDING or previous is _UNKNOWN)
            and status is not _UNKNOWN
            and order.taker_lots < 0
        ):
            # The venue's first word on the order: what filled until now took liquidity.
            order.taker_lots = order.reported
        if previous is not status:
            self._count(status.value)
            if status is _REJECTED and reason == POST_ONLY_REJECTED:
                self._count("post_only_rejected")
        if was_open and not order.is_open:
            cid = order.client_order_id
            opened = self.open_orders.get(order.strategy)
            if opened is not None:
                opened.pop(cid, None)
            self._resting[order.symbol].pop(cid, None)
            self._hold(order)
            now = self._clock()
            order.closed_ns = now
            self._closed.append(order)
            self.evict_closed(now)
        self.observer.order_changed(order)
        self.observer.order_update(order)
        return True

    def _credit(self, order: Order, price: Price, lots: int) -> None:
        """Add lots to the position (the caller then updates the exposure they held)."""
        self.positions.fill(
            order.strategy, order.symbol, order.side, price, lots, order.client_order_id
        )
        self._count("fills")
        self.observer.fill_credited(order, price, lots)

    def _charge(self, order: Order, fee: int) -> None:
        """Charge ``fee`` (tick*lot units) for ``order`` to its positions."""
        order.fee += fee
        self.positions.charge(order.strategy, order.symbol, fee)

    def _charge_answer(self, order: Order, price: Price, lots: int) -> None:
        """The fee of ``lots`` an answer credited at ``price`` (until fills list them)."""
        schedule = self.fees[order.symbol]
        if schedule.free:
            return
        fee = schedule.fee(price, lots, _taker_part(order, order.filled - lots, lots))
        order.fee_pending += fee
        order.fee_pending_lots += lots
        if fee:
            self._charge(order, fee)

    def _fill_fee(
        self, order: Order, fill: FillReport, listed: int, credited: int
    ) -> tuple[int, int]:
        """``(the fill's own fee, what to charge now)`` for a fill just applied.

        ``listed``: the order's lots the fills listed before this one;
        ``credited``: the lots of this fill newly credited. Its other lots
        were credited (and charged) from an answer: that part of the
        answer's fee is taken back, all of what remains once the fills
        list every such lot, so the order ends at exactly its fills' fees.
        """
        fee = fill.fee
        if fee is None:
            schedule = self.fees[order.symbol]
            fee = (
                0
                if schedule.free or fill.fee_asset is not None
                else schedule.fee(fill.price, fill.lots, _taker_part(order, listed, fill.lots))
            )
        covered = fill.lots - credited
        pending_lots = order.fee_pending_lots
        if covered <= 0 or not pending_lots:
            return fee, fee
        if covered >= pending_lots:
            refund = order.fee_pending
            order.fee_pending_lots = 0
        else:
            refund = order.fee_pending * covered // pending_lots
            order.fee_pending_lots = pending_lots - covered
        order.fee_pending -= refund
        return fee, fee - refund

    def _hold(self, order: Order) -> None:
        """Bring the exposure in line with what ``order`` holds now (``Order.held_lots``)."""
        held = order.held_lots()
        change = held - order.held
        if change:
            order.held = held
            self.exposure[order.symbol][0 if order.side is _BUY else 1] += change

    def _check_reported(self, order: Order, before: int) -> None:
        """Fault what the venue reported beyond the order (``before``: lots reported earlier)."""
        reported = order.reported
        if reported <= before:
            return
        if reported > order.quantity >= before:
            self._fault(
                order.client_order_id,
                "overfill",
                f"{reported} lots reported filled of {order.quantity}",
            )
        elif not order.is_open:
            self._fault(order.client_order_id, "fill_after_final", f"{reported} lots")

    def _fault(self, client_order_id: str, kind: str, detail: str) -> None:
        self.order_faults[kind] += 1
        self.observer.fault(client_order_id, kind, detail)

    def _ignore(self, reason: str) -> None:
        self.ignored[reason] += 1

    def _count(self, key: str) -> None:
        self.order_counts[key] += 1

    def _check(self) -> None:
        """Assert every invariant; raises :class:`InvariantError` naming the first broken one.

        Per symbol and side, the exposure is the sum of the tracked orders'
        ``held`` and each order holds exactly ``held_lots()``; an open
        order holds at least its remaining lots; the open-order indexes
        hold exactly the open orders; the symbol's position is the sum of
        its strategies' positions. ``O(orders + positions)``.
        """
        held: dict[str, list[int]] = {symbol: [0, 0] for symbol in self.exposure}
        open_ids: set[str] = set()
        for cid, order in self.orders.items():
            if order.client_order_id != cid:
                raise InvariantError(f"order {order.client_order_id} filed under {cid}")
            if order.held != order.held_lots():
                raise InvariantError(
                    f"{cid} holds {order.held} lots, should hold {order.held_lots()}"
                )
            if order.filled > order.reported:
                raise InvariantError(f"{cid}: {order.filled} credited > {order.reported} reported")
            if order.is_open:
                open_ids.add(cid)
                if order.held < order.quantity - order.filled:
                    raise InvariantError(f"{cid}: open but holds {order.held} lots")
            held[order.symbol][0 if order.side is _BUY else 1] += order.held
        for symbol, sides in held.items():
            if self.exposure[symbol] != sides:
                raise InvariantError(
                    f"{symbol}: exposure {self.exposure[symbol]} != held by orders {sides}"
                )
        indexed = {cid for orders in self.open_orders.values() for cid in orders}
        if indexed != open_ids:
            raise InvariantError(f"open orders index differs: {sorted(indexed ^ open_ids)[:5]}")
        resting = {cid for orders in self._resting.values() for cid in orders}
        if resting != open_ids:
            raise InvariantError(f"resting index differs: {sorted(resting ^ open_ids)[:5]}")
        totals: dict[str, int] = {}
        for (_, symbol), position in self.positions.by_strategy.items():
            totals[symbol] = totals.get(symbol, 0) + position.quantity
        for symbol, position in self.positions.by_symbol.items():
            if totals.get(symbol, 0) != position.quantity:
                raise InvariantError(
                    f"{symbol}: position {position.quantity} != strategies' {totals.get(symbol)}"
                )


def _taker_part(order: Order, start: int, lots: int) -> int:
    """How many of an order's lots ``[start, start + lots)`` (in fill order) took liquidity."""
    taker = order.taker_lots
    if taker < 0 or start + lots <= taker:
        return lots  # not yet acknowledged, or filled before it was
    if start >= taker:
        return 0
    return taker - start


def _crossing(resting: dict[str, Order], side: Side, price: int) -> list[Order]:
    """The open orders of the other side that an order at ``price`` would trade with."""
    crossing: list[Order] = []
    for order in resting.values():
        if order.side is side or order.price is None:
            continue
        if (side is _BUY and order.price <= price) or (side is not _BUY and order.price >= price):
            crossing.append(order)
    return crossing
