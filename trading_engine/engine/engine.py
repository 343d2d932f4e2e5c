"""The Engine: feed -> book builder -> dispatch -> risk -> order sink.

:class:`Engine` wires the parts together and owns the order and position
bookkeeping. Its core is synchronous: ``replay`` and the tests drive it
frame by frame through ``engine.builder.handle``; ``start``/``stop`` add
the feed server and the strategies' lifecycle on a running loop.

The order path (all synchronous, on the hot path)::

    strategy hook -> ctx.submit -> late? -> RiskEngine.check -> Order
                  -> OrderSink.submit (the simulated venue or the gateway)

Order outcomes come back through the :class:`ExecutionListener` methods
(``on_accepted``, ``on_order_report``, ``on_fill``, ``on_status``,
``on_order_fault``), which update the order's state machine, the
open-order exposure and the positions, then queue the strategy's
``on_fill``/``on_order_update`` callbacks.

Exposure and position move together: every lot an order answer or a fill
adds to the position leaves the order's open exposure in the same
synchronous call, and a final status releases only the lots that did not
fill. So at every instant, per symbol and side, the exposure risk checks
is the position plus every open order's remaining lots (see
docs/design.md, "Crediting fills and exposure").

Closed orders stay in ``orders`` for ``[engine] closed_order_retention_s``
(for late fills and answers), then leave it, and the sink forgets them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from time import perf_counter_ns
from typing import Any

from ..config import Config
from ..core.builder import BookBuilder
from ..core.clock import Clock, SystemClock
from ..core.errors import ConfigError, DuplicateFill, InvalidValue, OrderStateError, StrategyError
from ..core.instruments import Instrument
from ..core.orders import (
    FAULT_KINDS,
    ClientOrderIds,
    Order,
    OrderSink,
    OrderStatus,
    OrderType,
    Price,
    TimeInForce,
)
from ..core.positions import Position, Positions
from ..core.protocol import Side
from ..core.risk import Denial, RiskEngine, TradingState
from ..core.strategy import BookView, Fill, load_strategy_class, validate_params
from ..io.capture import CaptureWriter
from ..io.feed import FeedServer
from ..io.journal import Journal
from ..io.webserver import listen_error
from ..lowlevel.build import BUILD
from ..lowlevel.metrics import LatencyHistogram
from ..lowlevel.tasks import TaskCrashes
from .dispatch import Dispatcher, StrategyRunner

__all__ = ["Engine"]

log = logging.getLogger("trading_engine.engine")

_BUY = Side.BUY

#: Kinds of the engine's background tasks (the ``task`` label of their crash count).
TASK_KINDS = (
    "place",
    "cancel",
    "read-back",
    "fills-poll",
    "fast-path-connect",
    "feed-idle-sweeper",
    "journal",
    "loop-monitor",
)


class _Context:
    """A strategy's :class:`~trading_engine.strategy.StrategyContext`."""

    def __init__(self, engine: Engine, name: str) -> None:
        self._engine = engine
        self.name = name
        self.log = logging.getLogger(f"trading_engine.strategy.{name}")
        self.runner: StrategyRunner | None = None
        self._last_denial: str | None = None

    def book(self, symbol: str) -> BookView:
        return self._engine.dispatcher.view(self._engine.builder.books[symbol])

    def instrument(self, symbol: str) -> Instrument:
        return self._engine.instruments[symbol]

    def position(self, symbol: str) -> Position:
        return self._engine.positions.of_strategy(self.name, symbol)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        orders = self._engine.open_orders.get(self.name, {}).values()
        return [o for o in orders if symbol is None or o.symbol == symbol]

    def now_ns(self) -> int:
        return self._engine.clock.monotonic_ns()

    @property
    def last_denial(self) -> str | None:
        return self._last_denial

    def submit(
        self,
        symbol: str,
        side: Side,
        lots: int,
        price: int | None = None,
        order_type: OrderType = OrderType.LIMIT,
        time_in_force: TimeInForce = TimeInForce.GTC,
    ) -> Order | None:
        assert self.runner is not None
        order, denial = self._engine.submit(
            self.runner, symbol, side, lots, price, order_type, time_in_force
        )
        self._last_denial = None if denial is None else denial.value
        return order

    def buy(
        self,
        symbol: str,
        lots: int,
        price: int | None = None,
        time_in_force: TimeInForce = TimeInForce.GTC,
    ) -> Order | None:
        return self._simple(Side.BUY, symbol, lots, price, time_in_force)

    def sell(
        self,
        symbol: str,
        lots: int,
        price: int | None = None,
        time_in_force: TimeInForce = TimeInForce.GTC,
    ) -> Order | None:
        return self._simple(Side.SELL, symbol, lots, price, time_in_force)

    def _simple(
        self, side: Side, symbol: str, lots: int, price: int | None, time_in_force: TimeInForce
    ) -> Order | None:
        """A limit order, or a market order when ``price`` is None."""
        order_type = OrderType.MARKET if price is None else OrderType.LIMIT
        return self.submit(symbol, side, lots, price, order_type, time_in_force)

    def cancel(self, order: Order) -> bool:
        return self._engine.cancel(order, self.name)

    def replace(
        self, order: Order, lots: int | None = None, price: int | None = None
    ) -> Order | None:
        if not self.cancel(order):
            return None
        return self.submit(
            order.symbol,
            order.side,
            order.quantity - order.filled if lots is None else lots,
            order.price if price is None else price,
            order.type,
            order.time_in_force,
        )


class Engine:
    """The whole engine for one configuration.

    ``clock`` is injected (monotonic and wall time); the order sink is
    ``sink`` or what ``sink_factory(engine)`` returns (the gateway, or the
    in-process venue of ``trading_engine.sim.venue``), and one of them is
    required (``TypeError`` otherwise); ``run_id`` fixes the client order
    id prefix (replay uses a fixed one for determinism).
    """

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        sink: OrderSink | None = None,
        sink_factory: Callable[[Engine], OrderSink] | None = None,
        run_id: str | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.instruments = config.instrument_map()
        self.positions = Positions()
        #: Open orders and orders closed within the retention time, by client id.
        self.orders: dict[str, Order] = {}
        self.open_orders: dict[str, dict[str, Order]] = {}
        #: Lots held by open orders per symbol: [buy, sell] (the sum of ``Order.held``).
        self.exposure: dict[str, list[int]] = {symbol: [0, 0] for symbol in self.instruments}
        #: Orders that reached each status, plus ``submitted``, ``fills`` and
        #: ``cancel_requested``.
        self.order_counts: Counter[str] = Counter()
        #: Faults the order sinks reported (``on_order_fault``) and the engine
        #: found itself (``fill_after_final``), by kind.
        self.order_faults: Counter[str] = Counter(
            dict.fromkeys((*FAULT_KINDS, "fill_after_final"), 0)
        )
        #: Execution reports ignored, by reason (``duplicate_fill``, ``unknown_order``,
        #: ``invalid_transition``).
        self.ignored: Counter[str] = Counter(
            {"duplicate_fill": 0, "unknown_order": 0, "invalid_transition": 0}
        )
        self._ticks = {
            symbol: Fraction(Decimal(inst.tick_size)) for symbol, inst in self.instruments.items()
        }
        self._retention_ns = round(config.engine.closed_order_retention_s * 1e9)
        self._closed: deque[Order] = deque()
        self.ids = ClientOrderIds(run_id)
        self.tick_to_trade = LatencyHistogram()
        #: One pre-trade risk check.
        self.risk_latency = LatencyHistogram()
        self.contexts: dict[str, _Context] = {}
        runners = self._load_strategies()
        self.runners = {runner.name: runner for runner, _ in runners}
        self.dispatcher = Dispatcher(runners)
        self.builder = BookBuilder(self.instruments.values(), self.dispatcher)
        self.risk = RiskEngine(
            config.risk.limits(),
            self.instruments.values(),
            self.clock.monotonic_ns,
            strategies=self.runners,
            strategy_max_orders_per_s=config.risk.strategy_max_orders_per_s,
        )
        if config.engine.initial_trading_state is not None:
            # Set by the supervisor for a worker it restarts: from the first
            # moment, not only once reconciliation has run.
            self.risk.set_state(TradingState(config.engine.initial_trading_state))
        #: Crashes of background tasks by kind; an order-path crash halts trading.
        self.task_crashes = TaskCrashes(self._task_crashed, TASK_KINDS)
        if sink is None and sink_factory is not None:
            sink = sink_factory(self)
        if sink is None:
            raise TypeError("Engine needs an order sink: pass sink or sink_factory")
        self.sink: OrderSink = sink
        self.feed: FeedServer | None = None
        self.capture: CaptureWriter | None = None
        self._started = False
        self._strategies_started = False
        #: The order journal (None: nothing is recorded); see :meth:`attach_journal`.
        self.journal: Journal | None = None
        #: Start-up reconciliation's report (None until it ran).
        self.reconciliation: dict[str, Any] | None = None
        #: Why the engine is not ready beyond the feed (reconciling, refused), or None.
        self.blocked: str | None = "start-up reconciliation has not run"
        #: Who set the trading state last, and why (``/status``).
        self.state_by: tuple[str, str | None] = ("start-up", None)

    # -- strategies -----------------------------------------------------------

    def _load_strategies(self) -> list[tuple[StrategyRunner, tuple[str, ...]]]:
        """Resolve, validate and construct every configured strategy.

        Raises :class:`ConfigError` listing every problem of every strategy,
        each line naming its key path (``strategies[0].class: ...``,
        ``strategies[1].params.quantity: ...``).
        """
        runners = []
        problems: list[str] = []
        engine_config = self.config.engine
        for i, item in enumerate(self.config.strategies):
            try:
                cls = load_strategy_class(item.name, item.class_)
                params = validate_params(item.name, cls, item.params)
            except StrategyError as exc:
                problems.extend(f"strategies[{i}].{problem}" for problem in exc.problems)
                continue
            context = _Context(self, item.name)
            try:
                strategy = cls(item.name, params, context, item.symbols)
            except StrategyError as exc:
                problems.extend(f"strategies[{i}].{problem}" for problem in exc.problems)
                continue
            except Exception as exc:
                problems.append(
                    f"strategies[{i}]: {item.class_} could not be created: "
                    f"{type(exc).__name__}: {exc}"
                )
                continue
            runner = StrategyRunner(
                strategy,
                budget_s=engine_config.strategy_budget_s,
                error_limit=engine_config.strategy_error_limit,
            )
            context.runner = runner
            self.contexts[item.name] = context
            self.open_orders[item.name] = {}
            runners.append((runner, tuple(item.symbols)))
        if problems:
            raise ConfigError(f"{len(problems)} invalid strategy setting(s)", problems)
        return runners

    def start_strategies(self) -> None:
        """Call every strategy's ``on_start`` (in configuration order)."""
        for runner in self.runners.values():
            runner.call("on_start")

    def stop_strategies(self) -> None:
        """Call ``on_stop``, cancel suspended hooks, then every open order."""
        for runner in self.runners.values():
            runner.call("on_stop")
            runner.cancel_in_flight()
        self.cancel_all()

    # -- lifecycle --------------------------------------------------------------

    async def start(self, *, serve_feed: bool = True) -> None:
        """Listen on the feed port, reconcile, then start the strategies.

        The feed server (by default) binds first, before anything waits on
        the venue, so a port that cannot be listened on is reported at once:
        the start is undone (the order sink and the journal are closed) and
        :class:`ConfigError` names the key: ``feed.port 7001 is already in
        use``. From then on publishers may connect and books build, but no
        frame reaches a strategy before every ``on_start`` ran: the book
        builder has no listener until then.

        Start-up reconciliation (:func:`~trading_engine.engine.reconcile.reconcile`)
        runs next, with the journal and the venue; while it runs, and when it
        refuses (``[journal] unknown_orders = "refuse"``), the engine is not
        ready and no strategy starts. A venue that cannot be read is retried
        (with back-off) until it answers or the engine is stopped.
        """
        if self._started:
            raise RuntimeError("engine already started")
        self._started = True
        # Books build from the first frame; strategies see them once started.
        self.builder.set_listener(None)
        if serve_feed:
            await self._listen()
        if not await self._reconcile():
            return
        if self.journal is not None:
            self.journal.start(self.task_crashes)
        start_sink = getattr(self.sink, "start", None)
        if start_sink is not None:
            start_sink()
        if self.risk.state is TradingState.HALTED and self.config.risk.cancel_on_halt:
            # Started halted: orders the venue still holds are canceled, as a halt does.
            self.cancel_all()
        self._strategies_started = True
        self.start_strategies()
        self.builder.set_listener(self.dispatcher)

    async def _listen(self) -> None:
        """Bind the feed server; undo the start and raise ConfigError if it cannot listen."""
        settings = self.config.feed
        try:
            if settings.capture_path:
                self.capture = CaptureWriter(settings.capture_path)
            self.feed = FeedServer(
                settings,
                self.builder,
                clock=self.clock.monotonic_ns,
                capture=self.capture,
                crashes=self.task_crashes,
            )
            await self.feed.start()
        except OSError as exc:
            await self._undo_start()
            raise listen_error("feed", settings.host, settings.port, exc) from exc
        except BaseException:
            await self._undo_start()
            raise

    async def _undo_start(self) -> None:
        """A start that failed half-way: stop what started, in reverse order."""
        self.feed = None
        await self.stop(shutdown_drain_s=1.0)

    async def _reconcile(self) -> bool:
        """Run start-up reconciliation; False when it refused (the engine stays not ready)."""
        from .reconcile import ReconciliationRefused, VenueReader, reconcile

        reader = self.sink if isinstance(self.sink, VenueReader) else None
        delay = 0.2
        attempt = 0
        while True:
            attempt += 1
            self.blocked = "start-up reconciliation is running"
            try:
                self.reconciliation = await reconcile(self, reader)
            except ReconciliationRefused as exc:
                self.blocked = f"start-up reconciliation refused: {exc}"
                self.reconciliation = {"refused": str(exc)}
                self.order_counts["reconciliation_refused"] += 1
                log.error("%s", self.blocked)
                return False
            except (ConnectionError, OSError) as exc:
                self.order_counts["reconciliation_failed"] += 1
                self.blocked = (
                    f"start-up reconciliation: the venue could not be read "
                    f"(attempt {attempt}: {exc}); retrying"
                )
                log.error("%s", self.blocked)
                self._forget_orders_and_positions()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.blocked = None
            return True

    async def stop(self, shutdown_drain_s: float | None = None) -> list[Order]:
        """Shutdown that keeps its promise; returns the orders still open at the end.

        No new order leaves from the moment it begins (the trading state
        becomes ``halted`` for this process, not journaled: the next start
        keeps the journaled state). Then it stops the feed and the
        strategies, cancels every open order and waits up to
        ``shutdown_drain_s`` (default ``[engine] shutdown_s``) for each to
        reach a final state. Orders still open then are logged, one line
        naming them all, and returned (the next start's reconciliation
        settles them).
        """
        if not self._started:
            return []
        self._started = False
        bound = self.config.engine.shutdown_s if shutdown_drain_s is None else shutdown_drain_s
        deadline = time.monotonic() + bound
        self.risk.set_state(TradingState.HALTED)
        stop_orders = getattr(self.sink, "stop_orders", None)
        if stop_orders is not None:
            stop_orders()
        if self.feed is not None:
            await self.feed.stop()
        if self._strategies_started:
            self.stop_strategies()
        else:
            self.cancel_all()
        # Final states arrive through the listener methods, which set no event: poll.
        while any(self.open_orders.values()) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        still_open = [order for orders in self.open_orders.values() for order in orders.values()]
        if still_open:
            self.order_counts["open_at_shutdown"] += len(still_open)
            log.error(
                "shutdown: %d order(s) still open after %.1f s: %s",
                len(still_open),
                bound,
                ", ".join(
                    f"{o.client_order_id} ({o.status.value}, {o.symbol} {o.side.value} "
                    f"{o.quantity - o.filled} lots left)"
                    for o in still_open
                ),
            )
        drain = getattr(self.sink, "drain", None)
        if drain is not None and not await drain(max(0.1, deadline - time.monotonic())):
            log.error("some order requests were still in flight at shutdown")
        close = getattr(self.sink, "close", None)
        if close is not None:
            await close()
        if self.capture is not None:
            self.capture.close()
        if self.journal is not None:
            await self.journal.stop()
            self.journal.close()
        await asyncio.sleep(0)
        return still_open

    # -- orders -----------------------------------------------------------------

    def submit(
        self,
        runner: StrategyRunner,
        symbol: str,
        side: Side,
        lots: int,
        price: int | None,
        order_type: OrderType,
        time_in_force: TimeInForce,
    ) -> tuple[Order | None, Denial | None]:
        """Risk-check and send one order for a strategy."""
        risk = self.risk
        if runner.expired:
            runner.late_orders += 1
            return None, risk.deny(Denial.LATE)
        entry = self.builder.books.get(symbol)
        if entry is None:
            return None, risk.deny(Denial.BOOK_NOT_LIVE)
        if order_type is OrderType.MARKET:
            # Sent as an IOC limit at the band's edge: the venue cannot
            # sweep past what risk checked (docs/design.md, "Market orders").
            price = risk.band_edge(entry, side)
            if price is None:
                return None, risk.deny(Denial.NO_PRICE)
            order_type = OrderType.LIMIT
            time_in_force = TimeInForce.IOC
        exposure = self.exposure[symbol]
        started = perf_counter_ns()
        denial = risk.check(
            runner.name,
            entry,
            side,
            order_type,
            lots,
            price,
            self.positions.quantity(symbol),
            exposure[0],
            exposure[1],
        )
        self.risk_latency.observe_ns(perf_counter_ns() - started)
        if denial is not None:
            return None, denial
        if not self.sink.allow():
            return None, risk.deny(Denial.CIRCUIT_OPEN)
        now = self.clock.monotonic_ns()
        order = Order(
            self.ids.next(runner.name),
            runner.name,
            symbol,
            side,
            order_type,
            lots,
            price,
            time_in_force,
            now,
            self.instruments[symbol],
        )
        self.orders[order.client_order_id] = order
        self.open_orders[runner.name][order.client_order_id] = order
        exposure[0 if side == _BUY else 1] += lots
        order.held = lots
        runner.orders += 1
        self.order_counts["submitted"] += 1
        order.recv_ns = self.dispatcher.recv_ns
        self.sink.submit(order)
        if order.status is OrderStatus.REJECTED and order.reason == Denial.RATE_LIMITED:
            # Refused by the sink at once: no slot in the venue's request budget.
            # Counted (in on_status) and reported to the strategy like a risk denial.
            return None, Denial.RATE_LIMITED
        # The order's bytes have left (or are queued); the journal row follows, batched.
        journal = self.journal
        if journal is not None:
            journal.order_submitted(order)
        return order, None

    def cancel(self, order: Order, strategy: str | None = None) -> bool:
        """Ask the sink to cancel an open order. Cancels always pass risk."""
        if strategy is not None and order.strategy != strategy:
            return False
        if not order.is_open or order.cancel_requested:
            return False
        order.cancel_requested = True
        self.order_counts["cancel_requested"] += 1
        self.sink.cancel(order)
        return True

    def cancel_all(self) -> int:
        """Cancel every open order; returns how many cancels were sent."""
        count = 0
        for orders in self.open_orders.values():
            for order in list(orders.values()):
                count += self.cancel(order)
        return count

    def set_trading_state(
        self, state: TradingState, who: str = "admin", reason: str | None = None
    ) -> None:
        """active | reducing | halted; halting cancels open orders if configured.

        ``who`` (``admin``, ``risk``, ``journal``, ``supervisor``) and
        ``reason`` are journaled with the change and shown in ``/status``.
        """
        previous = self.risk.state
        self.risk.set_state(state)
        self.state_by = (who, reason)
        if previous is not state:
            log.warning(
                "trading state %s -> %s (by %s%s)",
                previous.value,
                state.value,
                who,
                f": {reason}" if reason else "",
            )
        if self.journal is not None:
            self.journal.trading_state(state.value, who, reason)
        if state is TradingState.HALTED:
            # Before the cancels: from now on no new order leaves the sink.
            stop_orders = getattr(self.sink, "stop_orders", None)
            if stop_orders is not None:
                stop_orders()
            if self.config.risk.cancel_on_halt:
                self.cancel_all()
        else:
            resume_orders = getattr(self.sink, "resume_orders", None)
            if resume_orders is not None:
                resume_orders()

    # -- ExecutionListener --------------------------------------------------------

    def on_written(self, order: Order) -> None:
        if order.recv_ns:
            self.tick_to_trade.observe_ns(self.clock.monotonic_ns() - order.recv_ns)

    def on_accepted(self, client_order_id: str, exchange_order_id: str | None) -> None:
        order = self.orders.get(client_order_id)
        if order is None:
            self._ignore("unknown_order", "acknowledgement", client_order_id)
            return
        order.exchange_order_id = exchange_order_id
        if self.journal is not None:
            self.journal.order_accepted(order)

    def on_order_report(
        self, client_order_id: str, filled_lots: int, avg_price: Decimal | None
    ) -> None:
        """Credit the position at once with what an order answer adds (see ExecutionListener)."""
        order = self.orders.get(client_order_id)
        if order is None:
            self._ignore("unknown_order", "order answer", client_order_id)
            return
        average: Price | None = None
        if avg_price is not None:
            try:
                # On the tick grid (the common case): integer arithmetic only.
                average = self.instruments[order.symbol].price_to_ticks(str(avg_price))
            except InvalidValue:
                average = Fraction(avg_price) / self._ticks[order.symbol]
        before = order.reported
        try:
            credit = order.credit_report(filled_lots, average)
        except OrderStateError as exc:
            log.error("order answer not applied: %s", exc)
            self.on_order_fault(client_order_id, "unreadable_answer")
            self._hold(order)
            return
        if credit is not None:
            self._credit(order, credit[0], credit[1])
        self._hold(order)
        self._journal_order(order)
        self._check_reported(order, before)

    def on_fill(
        self, client_order_id: str, price: int, lots: int, fill_id: int | None = None
    ) -> None:
        """Add what a fill adds beyond the answers (see ExecutionListener)."""
        order = self.orders.get(client_order_id)
        if order is None:
            self._ignore("unknown_order", "fill", client_order_id)
            return
        if self.journal is not None:
            # Every fill the venue reports, before deciding what it adds here:
            # start-up rebuilds positions from these rows.
            self.journal.fill(
                client_order_id, order.strategy, order.symbol, order.side, price, lots, fill_id
            )
        before = order.reported
        try:
            credit, provisional = order.credit_fill(price, lots, fill_id)
        except DuplicateFill:
            self.ignored["duplicate_fill"] += 1
            return
        except OrderStateError as exc:
            log.error("fill not applied: %s", exc)
            self.on_order_fault(client_order_id, "unreadable_fill")
            return
        if credit is not None:
            self._credit(order, credit[0], credit[1])
        if provisional is not None and order.feed_fills is not None:
            self.positions.reprice(
                order.strategy,
                order.symbol,
                order.side,
                client_order_id,
                provisional,
                order.feed_fills,
            )
        self._hold(order)
        self._journal_order(order)
        self._check_reported(order, before)

    def on_status(self, client_order_id: str, status: OrderStatus, reason: str | None) -> None:
        order = self.orders.get(client_order_id)
        if order is None:
            self._ignore("unknown_order", "status", client_order_id)
            return
        was_open = order.is_open
        previous = order.status
        try:
            changed = order.transition(status, reason)
        except OrderStateError as exc:
            # A stale answer (new after partially_filled, or after the end).
            self.ignored["invalid_transition"] += 1
            log.warning("status not applied: %s", exc)
            return
        if not changed:
            return
        self._journal_order(order)
        if status is OrderStatus.REJECTED and reason == Denial.RATE_LIMITED:
            self.risk.deny(Denial.RATE_LIMITED)
        if previous is not status:
            self.order_counts[status.value] += 1
        if was_open and not order.is_open:
            self._hold(order)
            self.open_orders.get(order.strategy, {}).pop(client_order_id, None)
            now = self.clock.monotonic_ns()
            order.closed_ns = now
            self._closed.append(order)
            self.evict_closed(now)
        runner = self.runners.get(order.strategy)
        if runner is not None:
            self.dispatcher.post(runner, "on_order_update", order)

    def on_order_fault(self, client_order_id: str, kind: str) -> None:
        """Count a fault the sink met; an overfill halts trading (see ExecutionListener)."""
        self.order_faults[kind] += 1
        log.error("order %s: %s", client_order_id, kind)
        if kind == "overfill" and self.risk.state is not TradingState.HALTED:
            log.error(
                "order %s filled beyond its quantity: the venue and the engine disagree; halting",
                client_order_id,
            )
            self.set_trading_state(TradingState.HALTED, who="risk")

    def _check_reported(self, order: Order, before: int) -> None:
        """Fault what the venue reported beyond the order (``before``: lots reported earlier).

        Beyond its quantity: an ``overfill`` (trading halts). More fills
        after the order's final status (which carried its final count):
        ``fill_after_final``, counted and logged; the position holds them.
        """
        reported = order.reported
        if reported <= before:
            return
        if reported > order.quantity >= before:
            self.on_order_fault(order.client_order_id, "overfill")
        elif not order.is_open:
            self.on_order_fault(order.client_order_id, "fill_after_final")

    def _credit(self, order: Order, price: Price, lots: int) -> None:
        """Add lots to the position (the caller then updates the exposure they held)."""
        self.positions.fill(
            order.strategy, order.symbol, order.side, price, lots, order.client_order_id
        )
        self.order_counts["fills"] += 1
        runner = self.runners.get(order.strategy)
        if runner is not None:
            self.dispatcher.post(runner, "on_fill", Fill(order, price, lots))

    def _hold(self, order: Order) -> None:
        """Bring the exposure in line with what ``order`` holds now (``Order.held_lots``)."""
        held = order.held_lots()
        change = held - order.held
        if change:
            order.held = held
            self.exposure[order.symbol][0 if order.side is _BUY else 1] += change

    def _ignore(self, reason: str, what: str, client_order_id: str) -> None:
        self.ignored[reason] += 1
        log.warning("%s for an order not held: %s", what, client_order_id)

    def evict_closed(self, now_ns: int | None = None) -> int:
        """Drop orders closed longer than the retention time; returns how many left.

        An order whose reported fills are not all in the position yet (it
        still holds exposure) stays until they are. The sink's
        ``forget(client_order_id)``, when it has one, is called for each.
        Amortized ``O(1)`` per order.
        """
        if now_ns is None:
            now_ns = self.clock.monotonic_ns()
        closed = self._closed
        cutoff = now_ns - self._retention_ns
        if not closed or closed[0].closed_ns > cutoff:
            return 0
        forget = getattr(self.sink, "forget", None)
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
                if forget is not None:
                    forget(cid)
                evicted += 1
        closed.extend(kept)
        return evicted

    def _journal_order(self, order: Order) -> None:
        """Record ``order``'s status and cumulative fill in the journal.

        The one place where order answers reach the journal: every
        listener method that changes an order's state or cumulative
        quantity calls it.
        """
        if self.journal is not None:
            self.journal.order_status(order)

    # -- journal and reconciliation ----------------------------------------------------

    def attach_journal(self, journal: Journal) -> None:
        """Record this engine's orders, fills and trading states in ``journal``.

        Writes this run's id and the instruments at once (raises
        :class:`~trading_engine.io.journal.JournalError` if it cannot); a
        write failing later halts trading with the reason (who ``journal``).
        """
        journal.begin_run(self.ids.run_id, self.instruments.values())
        journal.on_failure = self._journal_failed
        self.journal = journal

    def _journal_failed(self, reason: str) -> None:
        self.set_trading_state(TradingState.HALTED, "journal", reason)

    def _task_crashed(self, who: str, reason: str) -> None:
        """An order-path task died half-way (its order may still hold exposure): halt."""
        if self.risk.state is not TradingState.HALTED:
            self.set_trading_state(TradingState.HALTED, who, reason)

    def _forget_orders_and_positions(self) -> None:
        """Back to no orders and flat positions (a reconciliation attempt failed midway)."""
        self.positions = Positions()
        self.orders.clear()
        for orders in self.open_orders.values():
            orders.clear()
        self._closed.clear()
        for exposure in self.exposure.values():
            exposure[0] = exposure[1] = 0

    def restore_order(self, order: Order) -> None:
        """Track an order that is open on the venue (start-up reconciliation).

        Its remaining quantity joins the open exposure of its symbol.
        """
        self.orders[order.client_order_id] = order
        self.open_orders.setdefault(order.strategy, {})[order.client_order_id] = order
        if order.reported < order.filled:
            order.reported = order.filled
        self._hold(order)

    # -- introspection ------------------------------------------------------------

    def breaker_state(self) -> str:
        """``closed``, ``half_open`` or ``open`` (always closed without a breaker)."""
        breaker = getattr(self.sink, "breaker", None)
        return "closed" if breaker is None else str(breaker.state.label)

    def not_ready(self) -> str | None:
        """Why the engine cannot trade yet, or None when it can (``/readyz``)."""
        if self.blocked is not None:
            return self.blocked
        if self.feed is None or not self.feed.listening:
            return "the feed server is not listening"
        if not getattr(self.sink, "reached", True):
            return f"the gateway has not reached the exchange at {self.config.gateway.base_url} yet"
        return None

    def status(self) -> dict[str, Any]:
        """The ``/status`` document of the admin API."""
        books: dict[str, Any] = {}
        for symbol, entry in self.builder.books.items():
            inst = entry.instrument
            bid = entry.book.best_bid_level()
            ask = entry.book.best_ask_level()
            books[symbol] = {
                "state": entry.state.value,
                "seq": entry.seq,
                "best_bid": None
                if bid is None
                else [inst.format_price(bid[0]), inst.format_size(bid[1])],
                "best_ask": None
                if ask is None
                else [inst.format_price(ask[0]), inst.format_size(ask[1])],
            }
        positions: dict[str, Any] = {}
        for symbol, position in self.positions.by_symbol.items():
            inst = self.instruments[symbol]
            entry = self.builder.books[symbol]
            avg = position.avg_price
            positions[symbol] = {
                "quantity": inst.format_size(position.quantity),
                "avg_price": None if avg is None else inst.format_price_fraction(avg),
                "realized_pnl": inst.format_money(position.realized),
                "unrealized_pnl": inst.format_money(position.unrealized(entry.book.mid())),
            }
        journal = self.journal
        return {
            "trading_state": self.risk.state.value,
            "trading_state_by": {"who": self.state_by[0], "reason": self.state_by[1]},
            "reconciliation": self.reconciliation,
            "journal": None
            if journal is None
            else {
                "path": journal.path,
                "pending_rows": journal.pending,
                "rows_written": journal.rows_written,
                "write_errors": journal.write_errors,
                "failed": journal.failed,
            },
            "breaker": self.breaker_state(),
            "books": books,
            "positions": positions,
            "open_orders": sum(len(orders) for orders in self.open_orders.values()),
            "strategies": {
                name: {"enabled": runner.enabled, "errors": runner.errors, "orders": runner.orders}
                for name, runner in self.runners.items()
            },
            # Which build runs: the compiled core or the pure-Python one.
            "build": BUILD.as_dict(),
        }
