"""The Engine: feed -> book builder -> dispatch -> ledger -> order sink.

:class:`Engine` is the async shell around the pure core: it wires the
book builder, the dispatcher, the strategies and the execution ledger
(:class:`~trading_engine.core.ledger.Ledger`) to the order sink, the
journal and the feed server, and runs the lifecycle (start-up
reconciliation, start, halts, stop). ``replay`` and the tests drive it
frame by frame through ``engine.builder.handle``.

The order path (all synchronous, on the hot path)::

    strategy hook -> ctx.submit -> late? -> Ledger.admit (risk, self-trade,
                  order, exposure hold) -> OrderSink.submit (sent or refused now)

The sink's typed reports come back through the :class:`ExecutionListener`
methods (``on_report``, ``on_fill``, ``on_status``, ``on_order_fault``),
which go straight to the ledger; the ledger tells the engine what happened
through :class:`~trading_engine.core.ledger.LedgerObserver` (journal rows,
the strategies' ``on_fill``/``on_order_update``, halts on faults).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from time import perf_counter_ns
from typing import Any, Final

from ..config import Config
from ..core.builder import BookBuilder, BookState
from ..core.clock import Clock, SystemClock
from ..core.errors import ConfigError, StrategyError
from ..core.ledger import HALTING_FAULTS, Ledger
from ..core.orders import (
    CLIENT_ID_RULES,
    ClientOrderIds,
    Order,
    OrderSink,
    OrderStatus,
    OrderType,
    Price,
    TimeInForce,
    valid_tag,
)
from ..core.positions import Positions
from ..core.protocol import Side
from ..core.reports import FillReport, OrderReport
from ..core.risk import Denial, RiskEngine, TradingState
from ..core.strategy import Fill, load_strategy_class, validate_params
from ..io.capture import CaptureWriter
from ..io.feed import FeedServer
from ..io.journal import Journal
from ..io.webserver import listen_error
from ..lowlevel.backoff import Backoff
from ..lowlevel.build import BUILD
from ..lowlevel.metrics import LatencyHistogram
from ..lowlevel.tasks import TaskCrashes
from .context import EngineContext
from .dispatch import Dispatcher, StrategyRunner
from .notices import Notices, journal_venues_notice
from .strategy_view import strategies_status

__all__ = ["Engine"]

#: Open orders listed one by one in ``/status`` (the count covers them all).
_STATUS_ORDERS = 200

log = logging.getLogger("trading_engine.engine")

_DENIALS = {denial.value: denial for denial in Denial}

#: Kinds of the engine's background tasks (the ``task`` label of their crash count).
TASK_KINDS = (
    "place",
    "cancel",
    "read-back",
    "fills-poll",
    "resting-audit",
    "fast-path-connect",
    "feed-idle-sweeper",
    "journal",
    "loop-monitor",
    "timers",
    "book-watch",
)


#: What a halting fault means, for its log line (the others: a position in dispute).
_FAULT_MEANING: Final = {
    "venue_banned": "the venue takes no request",
    "venue_auth_failed": "the venue takes no request",
    "fills_log_reset": "the venue's fills log started again (a reset venue): its fills "
    "from now on would be lost",
}


class Engine:
    """The whole engine for one configuration.

    ``clock`` is injected (monotonic and wall time); the order sink is
    ``sink`` or what ``sink_factory(engine)`` returns (the gateway, or the
    in-process venue of ``trading_engine.sim.venue``), and one of them is
    required (``TypeError`` otherwise); ``run_id`` fixes the client order
    id prefix (replay uses a fixed one for determinism). ``timed=False``
    leaves strategy hooks untimed (no latency histogram, no time budget):
    the backtest's, whose time is the data's.
    """

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        sink: OrderSink | None = None,
        sink_factory: Callable[[Engine], OrderSink] | None = None,
        run_id: str | None = None,
        timed: bool = True,
    ) -> None:
        self.config = config
        #: Whether strategy hooks are timed (wall clock): False in a backtest.
        self._timed = timed
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.instruments = config.instrument_map()
        self.ids = ClientOrderIds(
            run_id, config.engine.deployment, CLIENT_ID_RULES[config.gateway.venue]
        )
        self.tick_to_trade = LatencyHistogram()
        #: One admission: the pre-trade risk check, the order's creation and its hold.
        self.risk_latency = LatencyHistogram()
        self.contexts: dict[str, EngineContext] = {}
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
        #: The one owner of orders, exposure and positions.
        self.ledger = Ledger(
            self.instruments,
            self.risk,
            self.clock.monotonic_ns,
            self,
            self.ids,
            retention_ns=round(config.engine.closed_order_retention_s * 1e9),
            self_trade=config.risk.self_trade,
            strategies=self.runners,
            fees=config.fee_schedules(),
        )
        #: Strategies with ``timer_s``: runner name -> [interval ns, next due ns].
        self.timers: dict[str, list[int]] = {
            item.name: [round(item.timer_s * 1e9), 0]
            for item in config.strategies
            if item.timer_s is not None and item.name in self.runners
        }
        self._timer_task: asyncio.Task[None] | None = None
        self.ledger.check_invariants = config.engine.check_invariants
        #: True while start-up replays journaled history: strategies are not told.
        self._replaying = False
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
        #: False from :meth:`mark_reconciliation_pending` (:meth:`start`, or a service
        #: before its admin API serves) until start-up reconciliation succeeds: the
        #: ledger's positions are then partial or forgotten, so ``/status`` and the
        #: metrics say nothing of them rather than a flat book (see :attr:`positions_known`).
        self._positions_known = True
        #: Who set the trading state last, and why (``/status``).
        self.state_by: tuple[str, str | None] = ("start-up", None)
        #: Operator warnings given, by kind (``trading_engine_warnings_total``).
        self.notices = Notices()
        #: Venue fees in an asset without a price (no ``[fees] conversion``), by asset.
        self.fees_unconverted: dict[str, Decimal] = {}
        #: Fills whose venue fee is in ``fees_unconverted``, by asset.
        self.fees_unconverted_fills: Counter[str] = Counter()

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
            context = EngineContext(self, item.name)
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
                clock=perf_counter_ns if self._timed else None,
            )
            context.runner = runner
            self.contexts[item.name] = context
            runners.append((runner, tuple(item.symbols)))
        if problems:
            raise ConfigError(f"{len(problems)} invalid strategy setting(s)", problems)
        return runners

    def start_strategies(self) -> None:
        """Call every strategy's ``on_start`` (in configuration order); start their timers.

        Each timer's first ``on_timer`` is due one interval after this call
        on the engine clock.
        """
        for runner in self.runners.values():
            runner.call("on_start")
        now = self.clock.monotonic_ns()
        for timer in self.timers.values():
            timer[1] = now + timer[0]

    def run_timers(self) -> int:
        """Call ``on_timer`` of each strategy whose timer is due on the engine clock.

        Returns how many fired. A timer fires at most once per call: one
        that fell several intervals behind fires once, and its next time is
        the first multiple of its interval after now (its phase is kept).
        Errors count like any strategy error (the runner's isolation);
        a disabled strategy's timer does nothing. ``O(timers)``.
        """
        if not self.timers:
            return 0
        now = self.clock.monotonic_ns()
        fired = 0
        for name, timer in self.timers.items():
            interval, due = timer
            if due == 0 or now < due:
                continue
            timer[1] = due + interval * ((now - due) // interval + 1)
            self.dispatcher.post(self.runners[name], "on_timer")
            fired += 1
        return fired

    def next_timer_ns(self) -> int | None:
        """When the next timer is due (engine clock ns), or None without timers."""
        due = [timer[1] for timer in self.timers.values() if timer[1]]
        return min(due) if due else None

    async def _timers_forever(self) -> None:
        """Sleep until the next timer is due on the engine clock, run the due ones, again."""
        while True:
            due = self.next_timer_ns()
            if due is None:
                return
            wait_ns = due - self.clock.monotonic_ns()
            await asyncio.sleep(max(0.0, wait_ns / 1e9))
            self.run_timers()

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
        self.mark_reconciliation_pending()
        # Books build from the first frame; strategies see them once started.
        self.builder.set_listener(None)
        if serve_feed:
            await self._listen()
        if not await self._reconcile():
            return
        if (notice := journal_venues_notice(self.journal)) is not None:
            self.notices.warn("journal_venues", notice)
        if self.journal is not None:
            self.journal.start(self.task_crashes)
        self.sink.start()
        if self.risk.state is TradingState.HALTED and self.config.risk.cancel_on_halt:
            # Started halted: orders the venue still holds are canceled, as a halt does.
            self.cancel_all()
        self._strategies_started = True
        self.start_strategies()
        self.builder.set_listener(self.dispatcher)
        if self.timers:
            self._timer_task = self.task_crashes.spawn(
                self._timers_forever(), name="strategy-timers", kind="timers"
            )

    async def _listen(self) -> None:
        """Bind the feed server; undo the start and raise ConfigError if it cannot listen."""
        settings = self.config.feed
        if settings.capture_path:
            try:
                self.capture = CaptureWriter(settings.capture_path)
            except OSError as exc:
                await self._undo_start()
                message = f"feed.capture_path: cannot write {settings.capture_path}: {exc.strerror}"
                raise ConfigError(message, [message]) from None
        try:
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
        restored = self._keep_venue_pauses()
        if restored is not None:
            # Nothing may reach the venue before then; a stop interrupts the wait.
            waiting, wait_s = restored
            self.blocked = f"start-up waits before its first request: {waiting}"
            await asyncio.sleep(wait_s)
        backoff = Backoff(0.2, 5.0)
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
                await asyncio.sleep(backoff.next_s())
                continue
            except Exception:
                # The start stops here (a refused key, another venue): its stop must not
                # act on what reconciliation half-read (cancel restored orders with a
                # refused key); the next start reconciles them.
                self._forget_orders_and_positions()
                raise
            self.blocked = None
            self._positions_known = True
            return True

    def _keep_venue_pauses(self) -> tuple[str, float] | None:
        """The venue's pauses go to the journal; one an earlier run journaled (for
        this base URL) is honoured. Returns what start-up waits for and how long."""
        journal = self.journal
        keep = getattr(self.sink, "keep_pauses", None)
        if journal is None or keep is None:
            return None
        restored: tuple[str, float] | None = keep(journal)
        return restored

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
        self.sink.stop_orders()
        if self._timer_task is not None:
            self._timer_task.cancel()
            self._timer_task = None
        if self.feed is not None:
            await self.feed.stop()
        if self._strategies_started:
            self.stop_strategies()
        else:
            self.cancel_all()
        # Final states arrive through the listener methods, which set no event: poll.
        # A cancel the venue refused is sent again each second (the sink never
        # runs two cancels of one order at once).
        again = time.monotonic() + 1.0
        while any(self.open_orders.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            if time.monotonic() >= again:
                again += 1.0
                self.cancel_all()
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
        if not await self.sink.drain(max(0.1, deadline - time.monotonic())):
            log.error("some order requests were still in flight at shutdown")
        await self.sink.close()
        if self.capture is not None:
            self.capture.close()
        if self.journal is not None:
            await self.journal.stop()
            self.journal.close()
        await asyncio.sleep(0)
        return still_open

    # -- orders -----------------------------------------------------------------

    def venue_market(self, order: Order) -> tuple[Price | None, int | None]:
        """What a venue's trading rules check ``order`` against, before it is sent.

        The book's exact mid in ticks (None without both sides) stands for
        the venue's average price (only a live book's: a crossed or stale
        one leaves the price bands to the venue), and this engine's other open orders on
        the symbol for the account's (orders other programs keep on the
        same account are the venue's to count). ``O(1)``. A whole mid is an
        int: only a half-tick mid pays for a :class:`~fractions.Fraction`
        (about 0.5 us on the order path).
        """
        mid: Price | None = None
        entry = self.builder.books.get(order.symbol)
        if entry is not None and entry.state is BookState.LIVE:
            book = entry.book
            bid, ask = book.best_bid, book.best_ask
            if bid is not None and ask is not None:
                twice = bid + ask
                mid = twice >> 1 if not twice & 1 else Fraction(twice, 2)
        return mid, self.ledger.open_count(order.symbol, order.client_order_id)

    def submit(
        self,
        runner: StrategyRunner,
        symbol: str,
        side: Side,
        lots: int,
        price: int | None,
        order_type: OrderType,
        time_in_force: TimeInForce,
        *,
        tag: str | None = None,
        post_only: bool = False,
    ) -> tuple[Order | None, Denial | None]:
        """Admit and send one order for a strategy: sent now or refused now, with a reason.

        ``tag`` (see :func:`~trading_engine.core.orders.valid_tag`; else
        denied ``invalid_tag``) is kept with the order; ``post_only`` asks
        the venue to reject rather than take, for a GTC limit order only
        (else denied ``invalid_order``).
        """
        if tag is not None or post_only:
            refused = _refuse_extras(tag, post_only, order_type, time_in_force)
            if refused is not None:
                runner.last_order_ns = perf_counter_ns()
                runner.denied(refused)
                return None, self.risk.deny(refused)
        if runner.expired:
            runner.late_orders += 1
            runner.last_order_ns = perf_counter_ns()
            runner.denied(Denial.LATE)
            return None, self.risk.deny(Denial.LATE)
        entry = self.builder.books.get(symbol)
        if entry is None:
            runner.last_order_ns = perf_counter_ns()
            runner.denied(Denial.BOOK_NOT_LIVE)
            return None, self.risk.deny(Denial.BOOK_NOT_LIVE)
        sink = self.sink
        started = perf_counter_ns()
        runner.last_order_ns = started
        order, denial, to_cancel = self.ledger.admit(
            runner.name, entry, side, lots, price, order_type, time_in_force, sink.allow
        )
        self.risk_latency.observe_ns(perf_counter_ns() - started)
        if order is None:
            if denial is not None:
                runner.denied(denial)
            return None, denial
        if to_cancel is not None:
            # risk.self_trade = "cancel_resting": the resting orders it would
            # trade with are canceled first (cancels outrank orders at the venue).
            for resting in to_cancel:
                self.cancel(resting)
        order.recv_ns = self.dispatcher.recv_ns
        if tag is not None or post_only:
            order.tag = tag
            order.post_only = post_only
        refusal = sink.submit(order)
        if refusal is None:
            runner.orders += 1
        else:
            # Refused by the sink at once (no request slot, a halt): it never left.
            self.ledger.refuse(order, refusal)
            # "unencodable: ...", "venue_rule: price_filter_tick": the kind before the colon.
            refused = _DENIALS.get(refusal.partition(":")[0], Denial.RATE_LIMITED)
            runner.denied(refused)
            return None, refused
        # The order's bytes have left (or are on their way); the journal row follows, batched.
        journal = self.journal
        if journal is not None:
            journal.order_submitted(order)
        return order, None

    def cancel(self, order: Order, strategy: str | None = None) -> bool:
        """Ask the sink to cancel an open order. Cancels always pass risk."""
        if not self.ledger.request_cancel(order, strategy):
            return False
        self.sink.cancel(order)
        return True

    def cancel_all(self) -> int:
        """Cancel every open order, whatever happened to earlier cancels; returns how many."""
        count = 0
        ledger = self.ledger
        for order in ledger.open_order_list():
            if ledger.request_cancel(order, again=True):
                self.sink.cancel(order)
                count += 1
        return count

    def switch_refusal(self, state: TradingState) -> str | None:
        """Why an operator may not switch to ``state`` now, or None.

        Only a halt is always allowed. Once the venue's fills log was found
        reset (the order fault ``fills_log_reset``), fills the venue now
        numbers at or below the last id read are lost to this process's
        poll, so it never trades again: ``/resume`` and ``/reduce`` are
        refused until a restart, whose venue check settles the positions
        (docs/operations.md).
        """
        if state is TradingState.HALTED:
            return None
        seen = getattr(self.sink, "fills_log_reset_seen", None)
        if seen is not None:
            return f"{seen}: restart the engine (its venue check settles the positions)"
        return None

    def set_trading_state(
        self, state: TradingState, who: str = "admin", reason: str | None = None
    ) -> None:
        """active | reducing | halted; halting cancels open orders if configured.

        ``who`` (``admin``, ``risk``, ``journal``, ``supervisor``) and
        ``reason`` are journaled with the change and shown in ``/status``.
        A halt stops new orders and sends its cancels before its journal
        row is written (the journal writes on its own thread).
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
        if state is TradingState.HALTED:
            # Before the cancels: from now on no new order leaves the sink.
            self.sink.stop_orders()
            if self.config.risk.cancel_on_halt:
                self.cancel_all()
        else:
            self.sink.resume_orders()
        if self.journal is not None:
            self.journal.trading_state(state.value, who, reason)

    # -- ExecutionListener (the sink's reports, straight to the ledger) ---------------

    def on_written(self, order: Order) -> None:
        if order.recv_ns:
            self.tick_to_trade.observe_ns(self.clock.monotonic_ns() - order.recv_ns)

    def on_report(self, report: OrderReport) -> bool:
        return self.ledger.apply_report(report)

    def on_fill(self, fill: FillReport) -> None:
        self.ledger.apply_fill(fill)

    def on_status(self, client_order_id: str, status: OrderStatus, reason: str | None) -> None:
        self.ledger.apply_status(client_order_id, status, reason)

    def on_order_fault(self, client_order_id: str, kind: str) -> None:
        if kind == "fills_log_reset":
            # Fills the venue numbers from now on are lost to this process: its
            # positions stop following the venue's until a restart settles them.
            self._positions_known = False
        self.ledger.fault(client_order_id, kind)

    def resting_orders(self) -> list[Order]:
        return self.ledger.resting_orders()

    def order(self, client_order_id: str) -> Order | None:
        return self.ledger.orders.get(client_order_id)

    # -- LedgerObserver (what the ledger tells the engine) -------------------------------

    def order_accepted(self, order: Order) -> None:
        if self.journal is not None:
            self.journal.order_accepted(order)

    def order_changed(self, order: Order) -> None:
        if self.journal is not None:
            self.journal.order_status(order)

    def order_update(self, order: Order) -> None:
        runner = self.runners.get(order.strategy)
        if runner is not None and not self._replaying:
            self.dispatcher.post(runner, "on_order_update", order)

    def _venue_fee(self, fill: FillReport) -> None:
        """A venue fee in an asset without a price: kept per asset (``/status``), counted."""
        if fill.fee is None and fill.fee_asset is not None and fill.venue_fee is not None:
            asset = fill.fee_asset
            self.fees_unconverted[asset] = self.fees_unconverted.get(asset, Decimal(0)) + Decimal(
                fill.venue_fee
            )
            self.fees_unconverted_fills[asset] += 1

    def fill_reported(self, order: Order, fill: FillReport, fee: int) -> None:
        self._venue_fee(fill)
        if self.journal is not None:
            # Every fill the venue reports, once: start-up replays these rows.
            self.journal.fill(
                order.client_order_id,
                order.strategy,
                order.symbol,
                order.side,
                fill.price,
                fill.lots,
                fill.fill_id,
                fee=fee,
                venue_fee=fill.venue_fee,
                fee_asset=fill.fee_asset,
            )

    def fill_unattached(self, strategy: str, fill: FillReport, fee: int) -> None:
        self._venue_fee(fill)
        if self.journal is not None and fill.symbol is not None and fill.side is not None:
            self.journal.fill(
                fill.client_order_id,
                strategy,
                fill.symbol,
                fill.side,
                fill.price,
                fill.lots,
                fill.fill_id,
                fee=fee,
                venue_fee=fill.venue_fee,
                fee_asset=fill.fee_asset,
            )

    def fill_credited(self, order: Order, price: Price, lots: int) -> None:
        runner = self.runners.get(order.strategy)
        if runner is not None and not self._replaying:
            runner.fills += 1
            self.dispatcher.post(runner, "on_fill", Fill(order, price, lots))

    def fault(self, client_order_id: str, kind: str, detail: str) -> None:
        log.error("order %s: %s%s", client_order_id, kind, f" ({detail})" if detail else "")
        if kind in HALTING_FAULTS and self.risk.state is not TradingState.HALTED:
            log.error(
                "order %s: %s; halting",
                client_order_id,
                _FAULT_MEANING.get(kind, "the venue and the engine disagree about a position"),
            )
            # "*": a fault of the venue's whole log, not of one order.
            reason = kind if client_order_id == "*" else f"{kind} of {client_order_id}"
            self.set_trading_state(TradingState.HALTED, who="risk", reason=reason)

    def forget(self, client_order_id: str) -> None:
        self.sink.forget(client_order_id)

    # -- the ledger's state, by its old names ------------------------------------------

    @property
    def positions(self) -> Positions:
        return self.ledger.positions

    @property
    def orders(self) -> dict[str, Order]:
        """Open orders and orders closed within the retention time, by client id."""
        return self.ledger.orders

    @property
    def open_orders(self) -> dict[str, dict[str, Order]]:
        return self.ledger.open_orders

    @property
    def exposure(self) -> dict[str, list[int]]:
        return self.ledger.exposure

    @property
    def order_counts(self) -> Counter[str]:
        return self.ledger.order_counts

    @property
    def order_faults(self) -> Counter[str]:
        return self.ledger.order_faults

    @property
    def ignored(self) -> Counter[str]:
        return self.ledger.ignored

    def open_order_list(self) -> list[Order]:
        """Every open order (a copy)."""
        return self.ledger.open_order_list()

    def evict_closed(self, now_ns: int | None = None) -> int:
        """Drop orders closed longer than the retention time (see ``Ledger.evict_closed``)."""
        return self.ledger.evict_closed(self.clock.monotonic_ns() if now_ns is None else now_ns)

    # -- journal and reconciliation ----------------------------------------------------

    def attach_journal(self, journal: Journal) -> None:
        """Record this engine's orders, fills and trading states in ``journal``.

        Writes this run's id and the instruments at once (raises
        :class:`~trading_engine.io.journal.JournalError` if it cannot); a
        write failing later halts trading with the reason (who ``journal``).
        """
        journal.begin_run(self.ids.run_id, self.instruments.values())
        journal.on_failure = self._journal_failed
        journal.crashes = self.task_crashes
        self.journal = journal

    def _journal_failed(self, reason: str) -> None:
        self.set_trading_state(TradingState.HALTED, "journal", reason)

    def _task_crashed(self, who: str, reason: str) -> None:
        """An order-path task died half-way (its order may still hold exposure): halt."""
        if self.risk.state is not TradingState.HALTED:
            self.set_trading_state(TradingState.HALTED, who, reason)

    def _forget_orders_and_positions(self) -> None:
        """Back to no orders and flat positions (a reconciliation attempt failed midway)."""
        self.ledger.reset()

    def restore_order(self, order: Order) -> None:
        """Track an order of an earlier run again (start-up reconciliation)."""
        self.ledger.restore(order)

    # -- introspection ------------------------------------------------------------

    def breaker_state(self) -> str:
        """``closed``, ``half_open`` or ``open`` (always closed without a breaker)."""
        return self.sink.breaker_state()

    def not_ready(self) -> str | None:
        """Why the engine cannot trade yet, or None when it can (``/readyz``)."""
        if self.blocked is not None:
            return self.blocked
        if self.feed is None or not self.feed.listening:
            return "the feed server is not listening"
        return self.sink.not_ready()

    def mark_reconciliation_pending(self) -> None:
        """Positions are unknown from now until start-up reconciliation succeeds.

        :meth:`start` does it first; a service that serves ``/status`` before
        it calls :meth:`start` (its admin API starts first) calls this before
        serving, so that no window shows the empty ledger as flat positions.
        """
        self._positions_known = False

    @property
    def positions_known(self) -> bool:
        """Whether the ledger's positions are the engine's: False while start-up
        reconciliation runs, retries or has refused (positions rebuilt part-way or
        forgotten between attempts), and for the rest of the process once the
        venue's fills log was found reset (``fills_log_reset``: later fills are
        not seen). ``/status`` then gives ``positions: null``."""
        return self._positions_known

    def status(self) -> dict[str, Any]:
        """The ``/status`` document of the admin API.

        ``positions`` is null while :attr:`positions_known` is False (unknown,
        not flat); each strategy's ``positions`` and PnL sums, and
        ``fees_unconverted``, likewise.
        """
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
                "fees": inst.format_money(position.fees),
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
            # The exchange gateway's dialect, ban, clock and weight (None: in-process venue).
            "venue": getattr(self.sink, "venue_status", lambda: None)(),
            "books": books,
            "positions": positions if self._positions_known else None,
            "open_orders": sum(len(orders) for orders in self.open_orders.values()),
            "open_order_list": [
                _order_status(order) for order in self.open_order_list()[:_STATUS_ORDERS]
            ],
            "strategies": strategies_status(self),
            # Venue fees not in money: the venue's amounts, per asset (never a guessed value).
            "fees_unconverted": {
                asset: format(amount.normalize(), "f") if amount else "0"
                for asset, amount in sorted(self.fees_unconverted.items())
            }
            if self._positions_known
            else None,
            # Which build runs: the compiled core or the pure-Python one.
            "build": BUILD.as_dict(),
        }


def _refuse_extras(
    tag: str | None, post_only: bool, order_type: OrderType, time_in_force: TimeInForce
) -> Denial | None:
    """Why a tag or post-only flag cannot go with the order, or None."""
    if tag is not None and not valid_tag(tag):
        return Denial.INVALID_TAG
    if post_only and (order_type is not OrderType.LIMIT or time_in_force is not TimeInForce.GTC):
        return Denial.INVALID_ORDER
    return None


def _order_status(order: Order) -> dict[str, Any]:
    """One open order as ``/status`` lists it (decimal strings, the strategy's tag)."""
    quantity, filled, price = order.render()
    return {
        "client_order_id": order.client_order_id,
        "strategy": order.strategy,
        "symbol": order.symbol,
        "side": order.side.value,
        "price": None if order.price is None else price,
        "quantity": quantity,
        "filled": filled,
        "status": order.status.value,
        "time_in_force": order.time_in_force.value,
        "post_only": order.post_only,
        "tag": order.tag,
    }
