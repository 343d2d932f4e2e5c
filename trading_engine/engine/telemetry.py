"""The engine's Prometheus metrics and the event-loop lag monitor.

The hot path keeps plain ints and :class:`LatencyHistogram` objects;
:class:`EngineCollector` turns them into the exposition when Prometheus
scrapes, so observing costs a ``bisect`` instead of a prometheus_client
call. Metric names and their labels are listed in the README ("Metrics").

A scrape runs on the engine's event loop, a step at a time
(:class:`~trading_engine.lowlevel.metrics.ExpositionRenderer`): the
collector pauses every :data:`SYMBOLS_PER_STEP` symbols, and per-symbol
series are kept for at most ``[admin] metrics_symbols`` symbols (see
:class:`EngineCollector`), so neither the loop stall of a scrape nor its
size grows with the number of instruments.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator
from typing import Final

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..core.builder import BookState
from ..core.ledger import LEDGER_FAULTS
from ..core.orders import OrderStatus
from ..core.protocol import MessageType, Reason
from ..core.risk import Denial
from ..io.gateway import EVENTS, HttpGateway
from ..io.scheduler import Priority
from ..lowlevel.loop import PriorityEventLoop
from ..lowlevel.metrics import (
    LatencyHistogram,
    SteppedRegistry,
    add_histogram,
    histogram_family,
    register_process_collectors,
)
from ..lowlevel.tasks import TaskCrashes, cancel_and_wait
from .engine import Engine
from .venue_links import venue_collectors

__all__ = [
    "DEFAULT_METRICS_SYMBOLS",
    "STATE_SETTERS",
    "SYMBOLS_PER_STEP",
    "EngineCollector",
    "GcMonitor",
    "LoopMonitor",
    "registry_for",
]

P = "trading_engine_"
#: ``trading_engine_order_faults_total{kind}``: the ledger's kinds and start-up
#: reconciliation's ``venue_changed`` (a journal on a reset or other venue).
_FAULT_KINDS: Final = (*LEDGER_FAULTS, "venue_changed")

#: Who can set the trading state: the ``who`` label of ``trading_engine_trading_state_by``.
STATE_SETTERS: Final = ("start-up", "admin", "risk", "journal", "gateway", "supervisor")
#: Symbols with per-symbol series when ``[admin] metrics_symbols`` is not set.
DEFAULT_METRICS_SYMBOLS = 100
#: Symbols looked at between two pauses of a scrape (about 0.1 ms of work).
SYMBOLS_PER_STEP = 128
#: Symbols given per-symbol series between two pauses (about 0.1 ms).
_LISTED_PER_STEP = 4


class LoopMonitor:
    """Measures how late the event loop runs a periodic timer.

    Every ``interval_s`` it sleeps and records how much later than asked it
    woke up: the time a tick would have waited behind other work. A wake-up
    later than ``slow_callback_s`` counts as a stall: on loops that cannot
    time each callback (asyncio without debug mode, uvloop) that is how slow
    callbacks are counted. The priority loop counts them one by one
    (:attr:`slow_callbacks` then reads its own counter).
    """

    def __init__(self, interval_s: float = 0.05, slow_callback_s: float = 0.001) -> None:
        self.interval_s = interval_s
        self.slow_callback_s = slow_callback_s
        self.lag = LatencyHistogram()
        self.stalls = 0
        self.last_beat = time.monotonic()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def slow_callbacks(self) -> int:
        """Callbacks slower than ``slow_callback_s`` (priority loop), else stalls seen."""
        if isinstance(self.loop, PriorityEventLoop):
            return self.loop.stats.slow_callbacks
        return self.stalls

    def start(self, crashes: TaskCrashes | None = None) -> None:
        """Start measuring (needs a running loop); a crash is counted in ``crashes``."""
        self.loop = asyncio.get_running_loop()
        crashes = crashes if crashes is not None else TaskCrashes()
        self._task = crashes.spawn(
            self._run(), name="loop-monitor", kind="loop-monitor", loop=self.loop
        )

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        interval_ns = round(self.interval_s * 1e9)
        slow_ns = self.slow_callback_s * 1e9
        while True:
            start = time.perf_counter_ns()
            await asyncio.sleep(self.interval_s)
            late = time.perf_counter_ns() - start - interval_ns
            if late > slow_ns:
                self.stalls += 1
            self.lag.observe_ns(max(0, late))
            self.last_beat = time.monotonic()


class GcMonitor:
    """Times every garbage collection through ``gc.callbacks``.

    Costs nothing between collections. :meth:`tune` applies the settings
    ``[engine] gc_freeze`` and ``gc_threshold`` name (see docs/design.md).
    """

    def __init__(self) -> None:
        self.pauses = [LatencyHistogram() for _ in range(3)]
        self._started = 0
        self._installed = False

    def install(self) -> None:
        if not self._installed:
            gc.callbacks.append(self._callback)
            self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            gc.callbacks.remove(self._callback)
            self._installed = False

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter_ns()
        elif self._started:
            self.pauses[info["generation"]].observe_ns(time.perf_counter_ns() - self._started)
            self._started = 0

    @staticmethod
    def tune(freeze: bool, threshold: int | None) -> None:
        """Move start-up objects out of the collector's sight; set the gen-0 threshold."""
        if threshold is not None:
            _, second, third = gc.get_threshold()
            gc.set_threshold(threshold, second, third)
        if freeze:
            gc.collect()
            gc.freeze()


class EngineCollector(Collector):
    """Renders the engine's counters and histograms for Prometheus.

    Per-symbol series (``book_state``, ``position``, ``realized_pnl``,
    ``unrealized_pnl``) are bounded by ``symbol_limit``: with at most that
    many instruments configured, every symbol has them; with more, only
    the active symbols (a position, realized PnL or open orders) do, the
    first ``symbol_limit`` of them in configuration order. The rest are
    counted in ``trading_engine_metrics_symbols_omitted``, and every book
    is counted by state in ``trading_engine_books{state}``. A scrape's
    size is then ``O(symbol_limit)``; its work is ``O(symbols)`` (one look
    at each), done in steps of :data:`SYMBOLS_PER_STEP` (:meth:`steps`).
    """

    def __init__(
        self,
        engine: Engine,
        monitor: LoopMonitor | None = None,
        gc_monitor: GcMonitor | None = None,
        symbol_limit: int = DEFAULT_METRICS_SYMBOLS,
    ) -> None:
        self.engine = engine
        self.monitor = monitor
        self.gc_monitor = gc_monitor
        self.symbol_limit = symbol_limit

    def collect(self) -> Iterator[Metric]:
        """Every family at once (``generate_latest``); see :meth:`steps`."""
        return (family for family in self.steps() if family is not None)

    def steps(self) -> Iterator[Metric | None]:
        """The families, with ``None`` where a scrape may give the loop back."""
        engine = self.engine
        builder = engine.builder

        tick = histogram_family(
            P + "tick_to_trade_seconds",
            "Feed bytes received to order request written to the exchange socket.",
        )
        add_histogram(tick, engine.tick_to_trade)
        yield tick

        stages = histogram_family(
            P + "stage_seconds",
            "Latency of one pipeline stage: feed_handle (decode + validate + apply, "
            "sampled 1 frame in 16) and risk (one pre-trade check).",
            ["stage"],
        )
        feed_server = engine.feed
        add_histogram(
            stages,
            feed_server.handle_latency if feed_server else LatencyHistogram(),
            ["feed_handle"],
        )
        add_histogram(stages, engine.risk_latency, ["risk"])
        yield stages

        messages = CounterMetricFamily(
            P + "feed_messages", "Frames accepted, by message type.", labels=["type"]
        )
        for kind in MessageType:
            messages.add_metric([kind.value], builder.accepted[kind])
        yield messages

        rejected = CounterMetricFamily(
            P + "feed_rejected", "Frames ignored or rejected, by reason.", labels=["reason"]
        )
        for reason in Reason:
            rejected.add_metric([reason.value], builder.rejected[reason])
        feed = engine.feed
        rejected.add_metric(["bad_peer_closed"], feed.stats.bad_peer_closed if feed else 0)
        yield rejected

        warnings = CounterMetricFamily(
            P + "warnings",
            "Operator warnings logged, by kind (admin_token, book_off_grid, journal_venues).",
            labels=["kind"],
        )
        for notice, count in engine.notices.counts.items():
            warnings.add_metric([notice], count)
        yield warnings

        orders = CounterMetricFamily(
            P + "orders",
            "Orders that reached each status (submitted: sent to the order sink).",
            labels=["status"],
        )
        orders.add_metric(["submitted"], engine.order_counts["submitted"])
        for status in OrderStatus:
            if status is not OrderStatus.PENDING_NEW:
                orders.add_metric([status.value], engine.order_counts[status.value])
        yield orders

        post_only = CounterMetricFamily(
            P + "post_only_rejected",
            "Post-only orders the venue rejected because they would have taken liquidity.",
        )
        post_only.add_metric([], engine.order_counts["post_only_rejected"])
        yield post_only

        faults = CounterMetricFamily(
            P + "order_faults",
            "Order faults the order sink could not resolve alone, by kind "
            "(an overfill halts trading).",
            labels=["kind"],
        )
        # Every kind from 0, so that a rate() sees the first one (``venue_changed`` is
        # start-up reconciliation's, not the ledger's).
        kinds = dict.fromkeys(_FAULT_KINDS, 0)
        kinds.update(engine.order_faults)
        for fault, count in sorted(kinds.items()):
            faults.add_metric([fault], count)
        yield faults

        unconverted = CounterMetricFamily(
            P + "fees_unconverted_fills",
            "Fills whose venue fee is in an asset without a price (no [fees] conversion), "
            "by asset: kept unconverted (in /status), not charged to PnL.",
            labels=["asset"],
        )
        for asset, count in sorted(engine.fees_unconverted_fills.items()):
            unconverted.add_metric([asset], count)
        yield unconverted

        ignored = CounterMetricFamily(
            P + "execution_reports_ignored",
            "Fills, answers and statuses not applied: duplicate_fill (a fill id already "
            "counted), unknown_order (an order the engine does not hold), "
            "invalid_transition (a stale status).",
            labels=["reason"],
        )
        for cause, count in sorted(engine.ignored.items()):
            ignored.add_metric([cause], count)
        yield ignored

        roundtrip = histogram_family(
            P + "order_roundtrip_seconds",
            "Order request (placement, re-send, cancel) written to exchange answer read; "
            "timeouts and lost connections are in gateway_events_total.",
        )
        gateway_histogram = getattr(engine.sink, "roundtrip", None)
        add_histogram(
            roundtrip,
            gateway_histogram
            if isinstance(gateway_histogram, LatencyHistogram)
            else LatencyHistogram(),
        )
        yield roundtrip

        denied = CounterMetricFamily(
            P + "risk_denied", "Orders stopped by pre-trade risk.", labels=["reason"]
        )
        for denial in Denial:
            denied.add_metric([denial.value], engine.risk.denied[denial])
        yield denied

        breaker = getattr(engine.sink, "breaker", None)
        yield GaugeMetricFamily(
            P + "circuit_breaker_state",
            "Order gateway circuit breaker: 0 closed, 1 half open, 2 open.",
            value=0 if breaker is None else int(breaker.state),
        )

        yield from self._gateway()

        strategy = histogram_family(
            P + "strategy_seconds", "One strategy's evaluation of one update.", ["strategy"]
        )
        for name, runner in engine.runners.items():
            add_histogram(strategy, runner.latency, [name])
        yield strategy

        errors = CounterMetricFamily(
            P + "strategy_errors", "Exceptions raised by strategy hooks.", labels=["strategy"]
        )
        enabled = GaugeMetricFamily(
            P + "strategy_enabled", "1 while a strategy is enabled.", labels=["strategy"]
        )
        for name, runner in engine.runners.items():
            errors.add_metric([name], runner.errors)
            enabled.add_metric([name], 1 if runner.enabled else 0)
        yield errors
        yield enabled
        yield from _strategy_metrics(engine)

        lag = histogram_family(P + "loop_lag_seconds", "How late the event loop runs a timer.")
        monitor = self.monitor
        add_histogram(lag, monitor.lag if monitor else LatencyHistogram())
        yield lag
        yield CounterMetricFamily(
            P + "loop_slow_callbacks",
            "Callbacks slower than engine.slow_callback_s (priority loop: each one timed; "
            "asyncio and uvloop: loop-lag samples later than that).",
            value=monitor.slow_callbacks if monitor else 0,
        )
        loop = monitor.loop if monitor else None
        if isinstance(loop, PriorityEventLoop):
            loop_stats = loop.stats
            callbacks = CounterMetricFamily(
                P + "loop_callbacks", "Callbacks run, by priority.", labels=["priority"]
            )
            callbacks.add_metric(["critical"], loop_stats.critical_callbacks)
            callbacks.add_metric(["normal"], loop_stats.normal_callbacks)
            yield callbacks
            yield CounterMetricFamily(
                P + "loop_critical_polls",
                "Polls of the critical sockets between background callbacks.",
                value=loop_stats.critical_polls,
            )
            yield CounterMetricFamily(
                P + "loop_share_deferrals",
                "Critical drains put off so background work kept its share.",
                value=loop_stats.share_deferrals,
            )
        if self.gc_monitor is not None:
            pauses = histogram_family(
                P + "gc_pause_seconds", "Garbage collector pauses, by generation.", ["generation"]
            )
            for generation, histogram in enumerate(self.gc_monitor.pauses):
                add_histogram(pauses, histogram, [str(generation)])
            yield pauses

        trading = GaugeMetricFamily(
            P + "trading_state", "1 for the current trading state.", labels=["state"]
        )
        for value in ("active", "reducing", "halted"):
            trading.add_metric([value], 1 if engine.risk.state.value == value else 0)
        yield trading
        yield from _readiness(engine)

        yield from self._symbols()

        open_orders = GaugeMetricFamily(P + "open_orders", "Orders currently open.")
        open_orders.add_metric([], sum(len(orders) for orders in engine.open_orders.values()))
        yield open_orders

        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:  # scraped with no running loop (tests)
            tasks = 0
        yield GaugeMetricFamily(P + "tasks", "Tasks alive on the event loop.", value=tasks)

        connections = GaugeMetricFamily(P + "feed_connections", "Publisher connections open.")
        connections.add_metric([], len(feed.sessions) if feed else 0)
        yield connections

        yield from _journal_metrics(engine)
        yield from _task_metrics(engine)

    def _symbols(self) -> Iterator[Metric | None]:
        """Books by state, then the per-symbol series of the listed symbols."""
        engine = self.engine
        books = engine.builder.books
        limit = self.symbol_limit
        everyone = len(books) <= limit
        by_state = dict.fromkeys(BookState, 0)
        listed: list[str] = []
        active = 0
        held = engine.positions.by_symbol
        exposure = engine.exposure
        # The books are fixed at start-up; a tuple keeps the walk safe across pauses.
        for seen, entry in enumerate(tuple(books.values()), 1):
            symbol = entry.symbol
            by_state[entry.state] += 1
            position = held.get(symbol)
            open_lots = exposure.get(symbol)
            busy = (position is not None and (position.quantity or position.realized)) or (
                open_lots is not None and (open_lots[0] or open_lots[1])
            )
            if busy:
                active += 1
            if (everyone or busy) and len(listed) < limit:
                listed.append(symbol)
            if seen % SYMBOLS_PER_STEP == 0:
                yield None
        counts = GaugeMetricFamily(P + "books", "Books in each state.", labels=["state"])
        for state, count in by_state.items():
            counts.add_metric([state.value], count)
        yield counts
        # Every state change of every book (a book going crossed is one),
        # all pairs listed from 0 so a rate() sees the first one.
        changes = CounterMetricFamily(
            P + "book_transitions",
            "Book state changes, by from and to state (every symbol).",
            labels=["from", "to"],
        )
        seen_changes = engine.builder.transitions
        for source in BookState:
            for target in BookState:
                if source is not target:
                    changes.add_metric(
                        [source.value, target.value], seen_changes.get((source, target), 0)
                    )
        yield changes
        yield GaugeMetricFamily(
            P + "symbols_active",
            "Symbols with a position, realized PnL or open orders.",
            value=active,
        )
        yield GaugeMetricFamily(
            P + "metrics_symbols_omitted",
            "Active symbols left without per-symbol series by [admin] metrics_symbols.",
            value=max(0, active - len(listed)) if not everyone else 0,
        )

        states = GaugeMetricFamily(
            P + "book_state",
            "1 for the state each book is in (listed symbols, see [admin] metrics_symbols).",
            labels=["symbol", "state"],
        )
        position_family = GaugeMetricFamily(
            P + "position", "Position per symbol, in units of the instrument.", labels=["symbol"]
        )
        realized = GaugeMetricFamily(
            P + "realized_pnl", "Realized PnL per symbol, in quote currency.", labels=["symbol"]
        )
        unrealized = GaugeMetricFamily(
            P + "unrealized_pnl", "Unrealized PnL at mid per symbol.", labels=["symbol"]
        )
        instruments = engine.instruments
        known = engine.positions_known
        yield GaugeMetricFamily(
            P + "positions_known",
            "1 when the engine's positions are settled; 0 while start-up reconciliation "
            "runs, retries or refused (the position and PnL series then have no samples).",
            value=1 if known else 0,
        )
        for index, symbol in enumerate(listed):
            book = books.get(symbol)
            inst = instruments.get(symbol)
            if book is None or inst is None:
                continue
            for state in BookState:
                states.add_metric([symbol, state.value], 1 if book.state is state else 0)
            if not known:
                continue  # unknown, not flat: no sample (see ``positions_known``)
            position = held.get(symbol)
            quantity = position.quantity if position else 0
            # Gauges are floats by nature; the exact values are in /status.
            position_family.add_metric([symbol], float(inst.format_size(quantity)))
            realized.add_metric(
                [symbol], float(inst.format_money(position.realized if position else 0, 8))
            )
            open_pnl = position.unrealized(book.book.mid()) if position else 0
            unrealized.add_metric([symbol], float(inst.format_money(open_pnl, 8)))
            if (index + 1) % _LISTED_PER_STEP == 0:
                yield None
        yield states
        yield position_family
        yield realized
        yield unrealized

    def _gateway(self) -> Iterator[Metric]:
        """The gateway's outcome counters, its request budget, breaker and connections."""
        sink = self.engine.sink
        gateway = sink if isinstance(sink, HttpGateway) else None
        events = CounterMetricFamily(
            P + "gateway_events",
            "Order-path events of the exchange gateway, by kind (timeouts, unknown outcomes, "
            "settlements, re-sends, rate_limited refusals, unreadable answers, not-found, ...).",
            labels=["event"],
        )
        for event in EVENTS:
            events.add_metric([event], gateway.counts[event] if gateway else 0)
        yield events

        reads = CounterMetricFamily(
            P + "gateway_read_failures",
            "Reads that said nothing (no answer, 429, 4xx but 404, 5xx, unreadable), "
            "by what was read.",
            labels=["request"],
        )
        for what in ("order", "fills", "open_orders"):
            reads.add_metric([what], gateway.read_failures[what] if gateway else 0)
        yield reads

        rules = CounterMetricFamily(
            P + "venue_rule_refusals",
            "New orders refused before sending because they break the venue's trading rules "
            "(Binance's symbol filters), by rule.",
            labels=["venue", "rule"],
        )
        if gateway is not None:
            dialect = gateway.dialect
            for rule in sorted(set(dialect.rule_reasons) | set(gateway.rule_refusals)):
                rules.add_metric([dialect.name, rule], gateway.rule_refusals[rule])
        yield rules

        requests = CounterMetricFamily(
            P + "gateway_requests",
            "Requests granted a slot in the venue's budget, by priority.",
            labels=["priority"],
        )
        for priority in Priority:
            granted = gateway.scheduler.granted[priority] if gateway else 0
            requests.add_metric([priority.name.lower()], granted)
        yield requests

        yield GaugeMetricFamily(
            P + "gateway_orders_in_flight",
            "Orders with a gateway request in flight or waiting to be sent (the gateway keeps "
            "nothing else of an order).",
            value=gateway.orders_in_flight if gateway else 0,
        )
        yield GaugeMetricFamily(
            P + "gateway_requests_in_window",
            "Requests started in the last second (against gateway.max_requests_per_s).",
            value=gateway.scheduler.in_window if gateway else 0,
        )

        yield CounterMetricFamily(
            P + "gateway_paused_seconds",
            "Seconds the whole venue was paused by 429 answers (Retry-After).",
            value=gateway.scheduler.paused_ns_total / 1e9 if gateway else 0.0,
        )

        fast = gateway.fast if gateway else None
        attempts = CounterMetricFamily(
            P + "gateway_connects",
            "Fast-path connection attempts, and those that failed before serving an answer.",
            labels=["result"],
        )
        tried = fast.connect_attempts if fast else 0
        failed = fast.connect_failures if fast else 0
        attempts.add_metric(["attempted"], tried)
        attempts.add_metric(["failed"], failed)
        yield attempts
        yield CounterMetricFamily(
            P + "gateway_fast_fallbacks",
            "New orders sent over httpx because no fast-path connection was idle.",
            value=fast.fallbacks if fast else 0,
        )

        breaker = gateway.breaker if gateway else None
        transitions = CounterMetricFamily(
            P + "circuit_breaker_transitions",
            "Circuit breaker state changes, by from and to state.",
            labels=["from", "to"],
        )
        for source in ("closed", "open", "half_open"):
            for target in ("closed", "open", "half_open"):
                if source != target:
                    count = breaker.transitions.get((source, target), 0) if breaker else 0
                    transitions.add_metric([source, target], count)
        yield transitions
        yield CounterMetricFamily(
            P + "circuit_breaker_denied",
            "Order placements denied by the circuit breaker (open, or half-open trials taken).",
            value=breaker.denied if breaker else 0,
        )


def _strategy_metrics(engine: Engine) -> Iterator[Metric]:
    """The per-strategy view: orders, fills, denials, positions, PnL, last decision.

    Labels are bounded by the configuration: ``strategy`` takes only the
    configured strategies' names (positions restored for a strategy no
    longer configured count in the per-symbol series alone), ``symbol``
    only a strategy's configured symbols, ``reason`` only :class:`Denial`
    values. So a scrape holds ``O(strategies * (symbols + reasons))`` series.
    """
    orders = CounterMetricFamily(
        P + "strategy_orders", "Orders a strategy sent.", labels=["strategy"]
    )
    fills = CounterMetricFamily(
        P + "strategy_fills",
        "Fills credited to a strategy's position by this process.",
        labels=["strategy"],
    )
    denied = CounterMetricFamily(
        P + "strategy_denied",
        "A strategy's order requests refused, by reason (risk, late, circuit_open, "
        "rate_limited, self_trade).",
        labels=["strategy", "reason"],
    )
    decided = GaugeMetricFamily(
        P + "strategy_last_decision_timestamp_seconds",
        "Unix time of a strategy's last hook evaluation (0: never).",
        labels=["strategy"],
    )
    position_family = GaugeMetricFamily(
        P + "strategy_position",
        "A strategy's position per configured symbol, in units of the instrument.",
        labels=["strategy", "symbol"],
    )
    realized = GaugeMetricFamily(
        P + "strategy_realized_pnl",
        "A strategy's realized PnL per configured symbol, in quote currency.",
        labels=["strategy", "symbol"],
    )
    unrealized = GaugeMetricFamily(
        P + "strategy_unrealized_pnl",
        "A strategy's unrealized PnL at mid per configured symbol, in quote currency.",
        labels=["strategy", "symbol"],
    )
    offset_s = time.time() - time.perf_counter()
    by_strategy = engine.positions.by_strategy
    books = engine.builder.books
    known = engine.positions_known  # unknown, not flat: no position or PnL samples
    for name, runner in engine.runners.items():
        orders.add_metric([name], runner.orders)
        fills.add_metric([name], runner.fills)
        counts = runner.denials
        for denial in Denial:
            denied.add_metric([name, denial.value], counts.get(denial, 0))
        last = runner.last_evaluation_ns
        decided.add_metric([name], last / 1e9 + offset_s if last else 0.0)
        for symbol in runner.strategy.symbols if known else ():
            inst = engine.instruments.get(symbol)
            entry = books.get(symbol)
            if inst is None or entry is None:
                continue
            held = by_strategy.get((name, symbol))
            # Gauges are floats by nature; the exact values are in /status.
            position_family.add_metric(
                [name, symbol], float(inst.format_size(held.quantity if held else 0))
            )
            realized.add_metric(
                [name, symbol], float(inst.format_money(held.realized if held else 0, 8))
            )
            open_pnl = held.unrealized(entry.book.mid()) if held else 0
            unrealized.add_metric([name, symbol], float(inst.format_money(open_pnl, 8)))
    yield orders
    yield fills
    yield denied
    yield decided
    yield position_family
    yield realized
    yield unrealized


def _journal_metrics(engine: Engine) -> Iterator[Metric]:
    """The journal's writes and failures, and start-up reconciliation's outcomes."""
    journal = engine.journal
    yield CounterMetricFamily(
        P + "journal_rows_written", "Rows written to the order journal.",
        value=journal.rows_written if journal else 0,
    )  # fmt: skip
    yield CounterMetricFamily(
        P + "journal_write_errors", "Journal transactions that failed (trading halts).",
        value=journal.write_errors if journal else 0,
    )  # fmt: skip
    yield CounterMetricFamily(
        P + "journal_fill_id_conflicts",
        "Fill ids the venue reported again for another fill (trading halts).",
        value=journal.fill_id_conflicts if journal else 0,
    )
    yield CounterMetricFamily(
        P + "journal_stalls",
        "Journal writes not done within journal.write_timeout_s (trading halts).",
        value=journal.stalls if journal else 0,
    )
    yield CounterMetricFamily(
        P + "journal_file_replaced",
        "The journal file was found removed or replaced under the engine (trading halts).",
        value=journal.file_replaced if journal else 0,
    )
    yield GaugeMetricFamily(
        P + "journal_pending_rows", "Journal rows waiting for the next transaction.",
        value=journal.pending if journal else 0,
    )  # fmt: skip
    flush = histogram_family(P + "journal_flush_seconds", "One journal transaction.")
    add_histogram(flush, journal.flush_latency if journal else LatencyHistogram())
    yield flush
    outcomes = CounterMetricFamily(
        P + "reconciliation", "Start-up reconciliation attempts that failed or refused.",
        labels=["outcome"],
    )  # fmt: skip
    for outcome in ("failed", "refused"):
        outcomes.add_metric([outcome], engine.order_counts[f"reconciliation_{outcome}"])
    yield outcomes
    yield CounterMetricFamily(
        P + "orders_open_at_shutdown", "Orders still open when a shutdown stopped waiting.",
        value=engine.order_counts["open_at_shutdown"],
    )  # fmt: skip


def _readiness(engine: Engine) -> Iterator[Metric]:
    """Whether the engine can trade (``/readyz``), and who set the trading state.

    ``who`` takes only :data:`STATE_SETTERS` values (anything else, such
    as a name journaled by an older version, reads ``other``), so alert
    rules can tell an operator's halt from the engine's own without the
    free-text reason becoming a label.
    """
    yield GaugeMetricFamily(
        P + "ready",
        "1 when the engine can trade (GET /readyz answers 200), 0 while it cannot.",
        value=0 if engine.not_ready() is not None else 1,
    )
    by = GaugeMetricFamily(
        P + "trading_state_by",
        "1 for who set the current trading state (the reason is in /status).",
        labels=["who"],
    )
    who = engine.state_by[0]
    known = who in STATE_SETTERS
    for setter in STATE_SETTERS:
        by.add_metric([setter], 1 if setter == who else 0)
    by.add_metric(["other"], 0 if known else 1)
    yield by


def _task_metrics(engine: Engine) -> Iterator[Metric]:
    """Background tasks that crashed, by kind."""
    crashes = CounterMetricFamily(
        P + "task_crashes",
        "Background tasks that ended with an exception, by kind (an order-path "
        "task's crash halts trading).",
        labels=["task"],
    )
    for kind, count in sorted(engine.task_crashes.counts.items()):
        crashes.add_metric([kind], count)
    yield crashes


def registry_for(
    engine: Engine,
    monitor: LoopMonitor | None = None,
    gc_monitor: GcMonitor | None = None,
    symbol_limit: int = DEFAULT_METRICS_SYMBOLS,
) -> SteppedRegistry:
    """A fresh registry: the engine's collector, its venue connections' and this
    process's standard ones.

    The standard collectors are prometheus_client's: ``process_*`` (CPU,
    memory, open files, from /proc; nothing where there is none),
    ``python_gc_*`` and ``python_info``.
    """
    registry = SteppedRegistry(auto_describe=False)
    registry.register(EngineCollector(engine, monitor, gc_monitor, symbol_limit))
    for collector in venue_collectors(engine.sink):
        registry.register(collector)  # the venue clock's and user data stream's
    register_process_collectors(registry)
    return registry
