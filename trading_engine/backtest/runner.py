"""Run the configured strategies over recorded market data: :func:`run_backtest`.

The engine is the live one (:class:`~trading_engine.engine.engine.Engine`:
book builder, dispatcher, strategies, risk, ledger, fees), its orders going
to :class:`~trading_engine.sim.venue.DelayedVenue`, which matches them with
the one matching engine (:mod:`trading_engine.sim.matching`) against the
venue's own copy of the books. One event queue orders everything in data
time (ns):

* a market message at ``t`` moves the venue's book at ``t`` (resting
  orders' queues move and fill there), and reaches the engine's book and
  strategies at ``t + feed latency`` (never before the message ahead of
  it: a feed keeps its order);
* an order a strategy sends at ``T`` reaches the venue at
  ``T + order latency`` and matches the venue's book as it is then;
* each venue answer reaches the engine ``response latency`` after it.

At one instant the venue's market moves first, then the engine sees market
data, then orders reach the venue, then answers reach the engine (each in
the order it was scheduled). With every latency zero an order matches
against the book its strategy saw, and the venue's answers reach the
engine after the fan-out of the message, as in ``replay``.

Deterministic: the clock is the data's, client order ids use the fixed run
id ``backtest``, sampled latencies come from a generator seeded with
``seed``; two runs of the same inputs give the same result except
``meta.wall_s``.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config
from ..core.builder import BookBuilder, BookEntry
from ..core.fees import NO_FEES
from ..core.orders import Order, OrderSink
from ..core.protocol import BookMessage, Trade
from ..engine.engine import Engine
from ..sim.matching import MatchFill
from ..sim.venue import DelayedVenue
from .data import DataEvent, read_data
from .models import ConstantLatency, Latency, SampledLatency, load_latency_samples, queue_model
from .result import BacktestMeta, BacktestResult, FillRecord, MarkSample, OrderRecord

__all__ = ["BacktestOptions", "run_backtest"]

_RUN_ID = "backtest"


@dataclass(frozen=True)
class BacktestOptions:
    """What a run takes besides the configuration and the data.

    ``from_ns`` / ``to_ns``: the data time the strategies trade in (ns
    since the epoch, inclusive; None: from the start, to the end): earlier
    messages still build the books, unseen by strategies. ``sample_interval_ns``:
    marks every this many ns of data time (None: ``[backtest]
    sample_interval_s``). ``parameters``: strategy name -> parameter ->
    value (a string, validated as the configuration's would be), set over
    the configured ones. ``seed``: None uses ``[backtest] seed``.
    ``compare_zero_latency``: when a latency is not zero, run again with
    none and report the differences (``BacktestResult.latency_effect``).
    """

    from_ns: int | None = None
    to_ns: int | None = None
    sample_interval_ns: int | None = None
    parameters: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    seed: int | None = None
    compare_zero_latency: bool = True


def run_backtest(
    config: Config, data: Sequence[Path], options: BacktestOptions | None = None
) -> BacktestResult:
    """Run ``config``'s strategies over ``data`` (one or more files, merged by time).

    Raises :class:`~trading_engine.backtest.data.DataError` for a file that
    cannot be read, :class:`~trading_engine.core.errors.ConfigError` for
    invalid strategy parameters, ``ValueError`` naming the key for an
    invalid ``[backtest]`` setting or option, and
    :class:`~trading_engine.backtest.models.LatencyError` for a latency
    file that cannot be read.
    """
    options = options or BacktestOptions()
    config = _with_parameters(config, options.parameters)
    result = _Run(config, data, options, zero_latency=False).run()
    latent = any(
        (
            config.backtest.feed_latency_us,
            config.backtest.order_latency_us,
            config.backtest.response_latency_us,
            config.backtest.feed_latency_file,
            config.backtest.order_latency_file,
            config.backtest.response_latency_file,
        )
    )
    if latent and options.compare_zero_latency:
        baseline = _Run(config, data, options, zero_latency=True).run()
        result = _with_latency_effect(result, baseline)
    return result


def _with_parameters(config: Config, parameters: Mapping[str, Mapping[str, str]]) -> Config:
    if not parameters:
        return config
    names = {item.name for item in config.strategies}
    unknown = sorted(set(parameters) - names)
    if unknown:
        raise ValueError(f"parameters for strategies that are not configured: {unknown}")
    strategies = [
        item.model_copy(update={"params": {**item.params, **parameters[item.name]}})
        if item.name in parameters
        else item
        for item in config.strategies
    ]
    updated: Config = config.model_copy(update={"strategies": strategies})
    return updated


def _latency(us: float, path: str | None, seed: int, zero: bool) -> Latency:
    if zero:
        return ConstantLatency(0)
    if path is not None:
        return SampledLatency(load_latency_samples(path), seed, source=path)
    return ConstantLatency(round(us * 1000))


class _DataClock:
    """The run's clock: the data's time in ns, moved only by the event loop.

    A :class:`~trading_engine.core.clock.Clock` (``monotonic_ns``,
    ``time_ns``) whose ``now_ns`` is a compiled attribute: the loop reads and
    moves it at nearly every event. ``time_ns`` adds ``wall_offset_ns``, as
    :class:`~trading_engine.core.clock.ManualClock` does.
    """

    __slots__ = ("now_ns", "wall_offset_ns")

    def __init__(self, start_ns: int = 0, wall_offset_ns: int = 1_700_000_000 * 10**9) -> None:
        self.now_ns = start_ns
        self.wall_offset_ns = wall_offset_ns

    def monotonic_ns(self) -> int:
        return self.now_ns

    def time_ns(self) -> int:
        return self.now_ns + self.wall_offset_ns


class _Recorder:
    """The order sink the engine sees: notes each order and when it was decided."""

    def __init__(self, clock: _DataClock) -> None:
        self.clock = clock
        self.sink: DelayedVenue | None = None
        #: Orders the engine still tracks, in submission order.
        self.by_id: dict[str, Order] = {}
        self.decided: dict[str, int] = {}
        self.arrived: dict[str, int] = {}
        #: Orders the engine forgot (closed longer than its retention): their
        #: records with their submission numbers, so memory follows the open
        #: orders, not every order of the run.
        self.done: list[tuple[int, OrderRecord]] = []
        self.number: dict[str, int] = {}
        self._count = itertools.count()

    def _venue(self) -> DelayedVenue:
        assert self.sink is not None
        return self.sink

    def allow(self) -> bool:
        return True

    def submit(self, order: Order) -> str | None:
        cid = order.client_order_id
        self.by_id[cid] = order
        self.number[cid] = next(self._count)
        self.decided[cid] = self.clock.now_ns
        return self._venue().submit(order)

    def record(self, order: Order) -> OrderRecord:
        """``order`` as the result lists it (its state now)."""
        cid = order.client_order_id
        return OrderRecord(
            decided_ns=self.decided[cid],
            arrived_ns=self.arrived.get(cid),
            strategy=order.strategy,
            symbol=order.symbol,
            client_order_id=cid,
            side=order.side,
            order_type=str(order.type),
            time_in_force=str(order.time_in_force),
            price=order.price,
            quantity=order.quantity,
            filled=order.filled,
            status=str(order.status),
            reason=order.reason,
        )

    def records(self) -> list[OrderRecord]:
        """Every order of the run, in submission order."""
        kept = [(self.number[cid], self.record(order)) for cid, order in self.by_id.items()]
        return [record for _, record in sorted(self.done + kept, key=lambda item: item[0])]

    def cancel(self, order: Order) -> None:
        self._venue().cancel(order)

    def start(self) -> None:
        """Nothing runs in the background."""

    def stop_orders(self) -> None:
        """Nothing is queued outside the event queue."""

    def resume_orders(self) -> None:
        """Nothing was stopped."""

    async def drain(self, within_s: float) -> bool:
        return True

    async def close(self) -> None:
        """Nothing to release."""

    def forget(self, client_order_id: str) -> None:
        self._venue().forget(client_order_id)
        order = self.by_id.get(client_order_id)
        if order is not None:
            self.done.append((self.number.pop(client_order_id), self.record(order)))
            del self.by_id[client_order_id]
            del self.decided[client_order_id]
            self.arrived.pop(client_order_id, None)

    def not_ready(self) -> str | None:
        return None

    def breaker_state(self) -> str:
        return "closed"


class _Run:
    """One backtest run (see the module docstring)."""

    def __init__(
        self, config: Config, data: Sequence[Path], options: BacktestOptions, zero_latency: bool
    ) -> None:
        settings = config.backtest
        self.config = config.model_copy(
            update={"gateway": config.gateway.model_copy(update={"mode": "simulated"})}
        )
        self.data = tuple(str(path) for path in data)
        self.options = options
        seed = settings.seed if options.seed is None else options.seed
        self.interval = (
            options.sample_interval_ns
            if options.sample_interval_ns is not None
            else round(settings.sample_interval_s * 1e9)
        )
        if self.interval <= 0:
            raise ValueError(f"sample interval must be positive, got {self.interval} ns")
        # Each latency has its own generator (seed, seed+1, seed+2): adding
        # one never changes the draws of another.
        self.feed_latency = _latency(
            settings.feed_latency_us, settings.feed_latency_file, seed, zero_latency
        )
        self.order_latency = _latency(
            settings.order_latency_us, settings.order_latency_file, seed + 1, zero_latency
        )
        self.response_latency = _latency(
            settings.response_latency_us, settings.response_latency_file, seed + 2, zero_latency
        )
        self.queue = queue_model(settings.queue_model, settings.queue_power)
        #: What the run left out that no file did (reason -> count).
        self.skipped: dict[str, int] = {}
        #: What each data file left out (file -> reason -> count).
        self.skipped_by_file: dict[str, dict[str, int]] = {}
        self.clock = _DataClock(start_ns=0)
        self.heap: list[tuple[int, int, int, Callable[[], None]]] = []
        #: Market data on its way to the engine: (at ns, event), in time order (a
        #: feed keeps its order), so a queue of its own, merged with ``heap``;
        #: at one instant it goes first (rank MARKET).
        self.feed: deque[tuple[int, DataEvent]] = deque()
        self.counter = itertools.count()
        self.fills: list[FillRecord] = []
        self.marks: list[MarkSample] = []
        self.fees = self.config.fee_schedules()
        self.recorder = _Recorder(self.clock)
        self.venue_builder = BookBuilder(self.config.instrument_map().values())

        def sink(engine: Engine) -> OrderSink:
            self.recorder.sink = DelayedVenue(
                self.venue_builder.books,
                engine,
                engine.instruments,
                now=self.clock.monotonic_ns,
                schedule=self.schedule,
                entry_latency=self.order_latency,
                response_latency=self.response_latency,
                queue=self.queue,
                on_fill=self.on_fill,
                on_arrive=self.on_arrive,
            )
            return self.recorder

        # Hooks untimed: in the data's time a hook takes none, and wall time decides nothing.
        self.engine = Engine(
            self.config, clock=self.clock, run_id=_RUN_ID, sink_factory=sink, timed=False
        )
        #: Whether any strategy has a timer (fixed when the engine is built): the
        #: clock moves at nearly every event, and most runs have none to check.
        self.timed = bool(self.engine.timers)

    # -- the event queue -----------------------------------------------------------

    def schedule(self, at_ns: int, rank: int, action: Callable[[], None]) -> None:
        """Run ``action`` at ``at_ns``; at one instant by ``rank``, then in scheduling order."""
        heapq.heappush(self.heap, (at_ns, rank, next(self.counter), action))

    def run_due(self, until_ns: int, inclusive: bool) -> None:
        """Run what is due before ``until_ns`` (or at it, ``inclusive``), in time order."""
        heap = self.heap
        feed = self.feed
        clock = self.clock
        engine = self.engine
        # Compiled, a method called on a typed local is a direct call; bound to
        # a local first, it would be a generic call through a method object.
        builder = engine.builder
        timed = self.timed
        while True:
            if feed and (not heap or feed[0][0] <= heap[0][0]):
                at = feed[0][0]
                if at > until_ns or (at == until_ns and not inclusive):
                    return
                event = feed.popleft()[1]
                if at > clock.now_ns:
                    clock.now_ns = at
                    if timed:
                        engine.run_timers()
                message = event.message
                if message is None:
                    builder.mark_stale((event.symbol,))
                else:
                    builder.apply(message, at)
                continue
            if not heap:
                return
            at = heap[0][0]
            if at > until_ns or (at == until_ns and not inclusive):
                return
            action = heapq.heappop(heap)[3]
            if at > clock.now_ns:
                clock.now_ns = at
                # Strategy timers run on the data's clock, before what moved it.
                if timed:
                    engine.run_timers()
            action()

    # -- what the venue reports to the run -------------------------------------------

    def on_fill(self, fill: MatchFill, liquidity: str, ts_ns: int) -> None:
        cid = fill.order.client_order_id
        order = self.recorder.by_id.get(cid)
        if order is None:
            # The venue filled an order the engine forgot (closed past its retention).
            self.skipped["fill_of_forgotten_order"] = (
                self.skipped.get("fill_of_forgotten_order", 0) + 1
            )
            return
        symbol = order.symbol
        taker = fill.lots if liquidity == "taker" else 0
        fee = self.fees.get(symbol, NO_FEES).fee(fill.price, fill.lots, taker)
        self.fills.append(
            FillRecord(
                ts_ns=ts_ns,
                strategy=order.strategy,
                symbol=symbol,
                client_order_id=cid,
                side=order.side,
                price=fill.price,
                quantity=fill.lots,
                liquidity="taker" if taker else "maker",
                fee=fee,
            )
        )
        self.mark(symbol, ts_ns)

    def on_arrive(self, order: Order, ts_ns: int) -> None:
        self.recorder.arrived[order.client_order_id] = ts_ns

    def mark(self, symbol: str, ts_ns: int) -> None:
        book = self.venue_builder.books[symbol].book
        bid = book.best_bid
        ask = book.best_ask
        self.marks.append(MarkSample(ts_ns, symbol, bid, ask))

    # -- the run ------------------------------------------------------------------------

    def run(self) -> BacktestResult:
        """The run, under the configuration's ``[engine] gc_threshold`` as live runs.

        The collector's thresholds are Python's again afterwards.
        """
        previous = gc.get_threshold()
        threshold = self.config.engine.gc_threshold
        if threshold is not None:
            gc.set_threshold(threshold, previous[1], previous[2])
        try:
            return self._run()
        finally:
            gc.set_threshold(*previous)

    def _run(self) -> BacktestResult:
        started = time.perf_counter()
        options = self.options
        from_ns = options.from_ns
        to_ns = options.to_ns
        engine = self.engine
        builder = engine.builder
        venue_builder = self.venue_builder
        venue = self.recorder._venue()
        clock = self.clock
        feed_latency = self.feed_latency
        # A constant feed latency is read once, not called per message.
        feed_constant = feed_latency.ns if type(feed_latency) is ConstantLatency else -1
        timed = self.timed
        interval = self.interval
        next_mark: dict[str, int] = {}
        seqs: dict[str, int] = {}
        events = frames = 0
        first_ns: int | None = None
        last_ns: int | None = None
        feed_clear = 0
        listening = from_ns is None
        if not listening:
            # Before ``from``: the books build, the strategies do not see them.
            builder.set_listener(None)
        # The strategies start at ``from``, else at the data's first event: on
        # the data's clock, so their timers' first ``on_timer`` is one interval
        # after that (docs/strategies.md), never at the epoch.
        trading = False
        feed = self.feed
        skipped = self.skipped
        stream = read_data(self.data, self.config, self.skipped_by_file)
        try:
            for event in stream:
                ts = event.ts_ns
                if to_ns is not None and ts > to_ns:
                    break
                if not trading and (from_ns is None or ts >= from_ns):
                    start_ns = ts if from_ns is None else from_ns
                    self.run_due(start_ns, inclusive=False)
                    clock.now_ns = max(clock.now_ns, start_ns)
                    if not listening:
                        listening = True
                        builder.set_listener(engine.dispatcher)
                    # The strategies' timers start with their trading.
                    engine.start_strategies()
                    trading = True
                self.run_due(ts, inclusive=False)
                if ts > clock.now_ns:
                    clock.now_ns = ts
                    if timed:
                        engine.run_timers()
                message = event.message
                symbol = event.symbol
                if message is not None and not event.numbered:
                    seq = seqs[symbol] = seqs.get(symbol, 0) + 1
                    message.seq = seq
                if first_ns is None:
                    first_ns = ts
                last_ns = ts
                frames += 1
                if not frames & 4095:
                    # As live does on a timer: orders closed longer than the
                    # retention time leave the ledger, and their records the run.
                    engine.evict_closed()
                # The venue's market moves now.
                applied: object = None
                if message is None:
                    venue_builder.mark_stale((symbol,))
                elif type(message) is BookMessage:
                    venue.before_book(message)
                    applied = venue_builder.apply(message, ts)
                    if type(applied) is BookEntry:
                        venue.after_book(applied)
                elif type(message) is Trade:
                    applied = venue_builder.apply(message, ts)
                    if type(applied) is BookEntry:
                        venue.on_trade(applied, message)
                else:
                    # A frame the decoder refused: its reader counted it.
                    venue_builder.apply(message, ts)
                if applied is None or type(applied) is BookEntry:
                    events += event.levels
                else:
                    # Refused by the book's sequence rules (an engine capture's
                    # gap, then its stale frames until the next snapshot).
                    reason = str(applied)
                    skipped[reason] = skipped.get(reason, 0) + 1
                if listening and symbol in venue_builder.books:
                    due = next_mark.get(symbol)
                    if due is None or ts >= due:
                        next_mark[symbol] = (ts // interval + 1) * interval
                        self.mark(symbol, ts)
                # The engine sees it a feed latency later, in the feed's order.
                at = max(ts + (feed_constant if feed_constant >= 0 else feed_latency()), feed_clear)
                feed_clear = at
                feed.append((at, event))
                self.run_due(ts, inclusive=True)
        finally:
            # A run that stops early (``to``, an error) closes the files it read.
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        # What was in flight when the data ended still arrives.
        self.run_due(feed_clear, inclusive=True)
        while self.heap or self.feed:
            self.run_due(max(self.heap[0][0] if self.heap else 0, feed_clear), inclusive=True)
        orders = self._order_records()
        positions = {
            key: position.quantity
            for key, position in sorted(engine.ledger.positions.by_strategy.items())
        }
        if trading:
            engine.stop_strategies()
        meta = BacktestMeta(
            data=self.data,
            from_ns=from_ns,
            to_ns=to_ns,
            first_ns=first_ns,
            last_ns=last_ns,
            events=events,
            frames=frames,
            wall_s=time.perf_counter() - started,
            sample_interval_ns=interval,
            fill_model=self.queue.name if self.queue is not None else "none",
            feed_latency=self.feed_latency.description,
            order_latency=f"{self.order_latency.description} to the venue, "
            f"{self.response_latency.description} back",
            skipped=self._all_skipped(),
            strategy_errors={
                runner.name: {
                    "errors": runner.errors,
                    "last": runner.last_error,
                    "disabled": runner.disabled_reason,
                }
                for runner in self.engine.dispatcher.runners
                if runner.errors
            },
            skipped_by_file={
                name: dict(sorted(counts.items()))
                for name, counts in self.skipped_by_file.items()
                if counts
            },
            denied={
                runner.name: {str(reason): n for reason, n in sorted(runner.denials.items())}
                for runner in self.engine.dispatcher.runners
                if runner.denials
            },
            parameters={
                f"{name}.{key}": value
                for name, values in sorted(self.options.parameters.items())
                for key, value in sorted(values.items())
            },
        )
        instruments = self.config.instrument_map()
        used = {f.symbol for f in self.fills} | {o.symbol for o in orders}
        used |= {m.symbol for m in self.marks} | {symbol for _, symbol in positions}
        return BacktestResult(
            meta=meta,
            instruments={symbol: instruments[symbol] for symbol in sorted(used)},
            strategies=tuple(item.name for item in self.config.strategies),
            fills=self.fills,
            orders=orders,
            marks=self.marks,
            end_positions=positions,
        )

    def _all_skipped(self) -> dict[str, int]:
        """Everything left out, by reason: the files' and the run's own."""
        total = dict(self.skipped)
        for counts in self.skipped_by_file.values():
            for reason, count in counts.items():
                total[reason] = total.get(reason, 0) + count
        return dict(sorted(total.items()))

    def _order_records(self) -> list[OrderRecord]:
        return self.recorder.records()


def _with_latency_effect(result: BacktestResult, baseline: BacktestResult) -> BacktestResult:
    """``result`` with, per strategy and symbol, its figures next to the zero-latency run's."""
    effect: dict[str, dict[str, int]] = {}

    def add(run: BacktestResult, suffix: str) -> None:
        for fill in run.fills:
            row = effect.setdefault(f"{fill.strategy} {fill.symbol}", _empty_effect())
            row["fills" + suffix] += 1
            row["filled_lots" + suffix] += fill.quantity
            row["fees" + suffix] += fill.fee
            signed = fill.quantity if fill.side == "buy" else -fill.quantity
            row["cash" + suffix] -= signed * fill.price
        for (strategy, symbol), lots in run.end_positions.items():
            row = effect.setdefault(f"{strategy} {symbol}", _empty_effect())
            row["position" + suffix] = lots

    add(result, "")
    add(baseline, "_zero_latency")
    instruments = dict(result.instruments)
    for symbol, inst in baseline.instruments.items():
        instruments.setdefault(symbol, inst)
    return BacktestResult(
        meta=result.meta,
        instruments=instruments,
        strategies=result.strategies,
        fills=result.fills,
        orders=result.orders,
        marks=result.marks,
        end_positions=result.end_positions,
        latency_effect=dict(sorted(effect.items())),
    )


def _empty_effect() -> dict[str, int]:
    names = ("fills", "filled_lots", "fees", "cash", "position")
    return {name + suffix: 0 for name in names for suffix in ("", "_zero_latency")}
