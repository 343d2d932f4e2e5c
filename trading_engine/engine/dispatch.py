"""Fan-out: every strategy watching a symbol, on every live update.

The semantics are those of ``asyncio.gather(..., return_exceptions=True)``
over the watching strategies, each isolated from the others, without its
cost. ``gather`` wraps every coroutine in a Task (tens of microseconds for
a handful of strategies); here:

* a plain ``def`` hook is called directly;
* an ``async def`` hook's coroutine is started eagerly, in place, with
  ``coro.send(None)``. If it finishes without suspending (the common case
  for a strategy that only computes and places orders) no Task is ever
  created;
* only a coroutine that actually suspends is handed to the loop, as a
  Task that resumes it exactly where it stopped (:class:`_Resume`), with a
  deadline of the strategy's time budget. At the deadline the Task is
  canceled and the late answer dropped: orders it asks for after the
  deadline are denied with the reason ``late`` and counted.

Python 3.12's ``eager_task_factory`` does the same eager start, but still
allocates a Task for every call; starting the coroutine by hand costs
less and behaves the same on 3.11 to 3.13, so it is used on all of them.

A strategy that raises is isolated: the exception is counted and logged
(rate-limited), the other strategies still run, and after
``error_limit`` consecutive errors the strategy is disabled. While a
strategy has a suspended evaluation in flight, further updates for it are
skipped (counted): it sees the latest book when it next runs.

Strategy callbacks about their own orders (``on_fill``,
``on_order_update``) are queued while a fan-out is running and delivered
right after it, so a hook never runs inside another hook.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from ..core.builder import BookEntry, BookState
from ..core.errors import StrategyError
from ..core.protocol import Trade
from ..core.strategy import BookView, Strategy
from ..lowlevel.metrics import LatencyHistogram

__all__ = ["Dispatcher", "StrategyRunner"]

log = logging.getLogger("trading_engine.dispatch")

_LOG_EVERY_NS = 10 * 10**9


class _Resume:
    """Awaitable that continues a coroutine already started by hand.

    The coroutine yielded ``first`` (a future, or None for a bare yield)
    to whoever stepped it; this generator hands that value to the Task
    driving it, and forwards every later send or throw, exactly as
    ``await coro`` would have done from the start.
    """

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self._coro = coro
        self._first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro = self._coro
        value = self._first
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # forward cancellation and errors
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _drive(resume: _Resume) -> Any:
    return await resume


class StrategyRunner:
    """One loaded strategy: its hooks, health counters and time budget.

    ``clock`` (ns) times each hook for its latency histogram and its time
    budget; None leaves hooks untimed: a backtest's time is the data's, in
    which a hook takes no time, and its wall time decides nothing there
    (``latency`` stays empty, ``last_evaluation_ns`` 0).
    """

    def __init__(
        self,
        strategy: Strategy,
        *,
        budget_s: float,
        error_limit: int,
        clock: Callable[[], int] | None = time.perf_counter_ns,
    ) -> None:
        self.strategy = strategy
        self.name = strategy.name
        self.budget_ns = round(budget_s * 1e9)
        self.error_limit = error_limit
        self._clock = clock
        self.enabled = True
        self.errors = 0
        self.consecutive_errors = 0
        self.evaluations = 0
        self.suspended = 0
        self.late = 0
        self.late_orders = 0
        self.skipped_busy = 0
        self.orders = 0
        #: Order requests refused, by reason (a Denial's value): risk, lateness,
        #: the breaker, the sink's refusals. Incremented by the engine.
        self.denials: dict[str, int] = {}
        #: Credits of this strategy's fills to its position (this process).
        self.fills = 0
        #: ``clock`` time of the last hook evaluation and the last order
        #: request (0: never); the engine turns them into wall time for reports.
        self.last_evaluation_ns = 0
        self.last_order_ns = 0
        #: The last exception a hook raised (``Type: message``), and why the
        #: strategy was disabled, for ``/status`` and the demo.
        self.last_error: str | None = None
        self.disabled_reason: str | None = None
        self.latency = LatencyHistogram()
        self.in_flight: asyncio.Task[Any] | None = None
        self._callbacks: set[asyncio.Task[Any]] = set()
        #: True while the in-flight evaluation is past its deadline.
        self.expired = False
        self._last_error_log_ns = 0
        cls = type(strategy)
        self._on_book = strategy.on_book
        self._on_book_async = asyncio.iscoroutinefunction(self._on_book)
        self._on_trade = None if cls.on_trade is Strategy.on_trade else strategy.on_trade
        self._on_trade_async = asyncio.iscoroutinefunction(strategy.on_trade)
        #: Per hook name: None when the class does not override it, else whether
        #: it is a coroutine function (decided once: ``iscoroutinefunction`` is
        #: several microseconds, and order callbacks come once per report).
        self._hooks: dict[str, bool | None] = {}

    def __repr__(self) -> str:
        return f"StrategyRunner({self.name!r}, enabled={self.enabled})"

    # -- evaluation ---------------------------------------------------------

    def book(self, view: BookView) -> None:
        """Evaluate ``on_book`` for one update.

        A plain ``def`` hook (the common case) runs here, inline: the same
        steps as :meth:`_run` without its argument tuple, its extra call
        and its async branches (about a fifth of a strategy's fixed cost per
        update, measured by ``benchmarks/backtest.py``).
        """
        if self._on_book_async:
            self._run(self._on_book, True, (view,))
            return
        if not self.enabled:
            return
        if self.in_flight is not None:
            self.skipped_busy += 1
            return
        clock = self._clock
        start = 0 if clock is None else clock()
        self.last_evaluation_ns = start
        self.evaluations += 1
        try:
            result = self._on_book(view)
            if result is not None:
                self._returned(result, start, True)
            self.consecutive_errors = 0
        except Exception as exc:
            self._failed(exc)
        if clock is not None:
            self.latency.observe_ns(clock() - start)

    def trade(self, view: BookView, trade: Trade) -> None:
        """Evaluate ``on_trade`` for one print (if the strategy has it)."""
        hook = self._on_trade
        if hook is not None:
            self._run(hook, self._on_trade_async, (view, trade))

    def call(self, hook_name: str, *args: Any) -> None:
        """Run any hook (lifecycle and order callbacks) with the same isolation."""
        hooks = self._hooks
        if hook_name in hooks:
            is_async = hooks[hook_name]
        else:
            overridden = getattr(Strategy, hook_name, None) is not getattr(
                type(self.strategy), hook_name
            )
            is_async = (
                asyncio.iscoroutinefunction(getattr(self.strategy, hook_name))
                if overridden
                else None
            )
            hooks[hook_name] = is_async
        if is_async is None:
            return  # not overridden: nothing to do
        self._run(getattr(self.strategy, hook_name), is_async, args, evaluation=False)

    def _run(
        self,
        hook: Callable[..., Any],
        is_async: bool,
        args: tuple[Any, ...],
        evaluation: bool = True,
    ) -> None:
        if not self.enabled:
            return
        if evaluation and self.in_flight is not None:
            self.skipped_busy += 1
            return
        clock = self._clock
        start = 0 if clock is None else clock()
        self.last_evaluation_ns = start
        self.evaluations += 1
        try:
            if is_async:
                coro = hook(*args)
                try:
                    yielded = coro.send(None)
                except StopIteration:
                    self.consecutive_errors = 0
                except RuntimeError as exc:
                    raise self._needs_loop(exc) from exc
                else:
                    self._suspend(coro, yielded, start, evaluation)
            else:
                result = hook(*args)
                if result is not None:
                    self._returned(result, start, evaluation)
                self.consecutive_errors = 0
        except Exception as exc:
            self._failed(exc)
        if clock is not None:
            self.latency.observe_ns(clock() - start)

    def _returned(self, result: object, start_ns: int, evaluation: bool) -> None:
        """A plain ``def`` hook returned ``result``: a coroutine runs like an async hook's."""
        if asyncio.iscoroutine(result):
            try:
                yielded = result.send(None)
            except StopIteration:
                return
            except RuntimeError as exc:
                raise self._needs_loop(exc) from exc
            self._suspend(result, yielded, start_ns, evaluation)

    def _needs_loop(self, exc: RuntimeError) -> Exception:
        """What a hook's first step raising ``exc`` means: with no event loop
        running (backtest, replay, the test harness), an await that needs one
        (``asyncio.sleep(0.01)`` asks for the loop): the same error as a hook
        that suspends there; else ``exc`` itself."""
        if "no running event loop" not in str(exc):
            return exc  # the hook's own error
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            return exc
        return StrategyError(
            f"strategy {self.name}: an async hook awaited something that needs the event loop, "
            f"and none runs (backtest, replay, test harness): there a hook must not await ({exc})"
        )

    def _suspend(
        self, coro: Coroutine[Any, Any, Any], yielded: Any, start_ns: int, evaluation: bool
    ) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # backtest, replay and the test harness step hooks by hand, with no loop.
            coro.close()
            raise StrategyError(
                f"strategy {self.name}: an async hook suspended with no event loop running "
                "(backtest, replay, test harness): there a hook must not await"
            ) from None
        self.suspended += 1
        task = loop.create_task(_drive(_Resume(coro, yielded)), name=f"strategy:{self.name}")
        if evaluation:
            self.expired = False
            self.in_flight = task
        else:
            self._callbacks.add(task)
        clock = self._clock
        spent = 0 if clock is None else clock() - start_ns
        remaining_s = max(0, self.budget_ns - spent) / 1e9
        timer = task.get_loop().call_later(remaining_s, self._expire, task)
        task.add_done_callback(lambda done: self._finished(done, timer))

    def _expire(self, task: asyncio.Task[Any]) -> None:
        if not task.done():
            if task is self.in_flight:
                self.expired = True
            self.late += 1
            task.cancel()

    def _finished(self, task: asyncio.Task[Any], timer: asyncio.TimerHandle) -> None:
        timer.cancel()
        self._callbacks.discard(task)
        if self.in_flight is task:
            self.in_flight = None
            self.expired = False
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            self.consecutive_errors = 0
        elif isinstance(exc, Exception):
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        self.consecutive_errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:200]
        now = time.monotonic_ns()
        if now - self._last_error_log_ns >= _LOG_EVERY_NS:
            self._last_error_log_ns = now
            log.error(
                "strategy %s raised %s: %s (%d errors so far)",
                self.name,
                type(exc).__name__,
                exc,
                self.errors,
                exc_info=exc,
            )
        if self.consecutive_errors >= self.error_limit and self.enabled:
            self.enabled = False
            self.disabled_reason = (
                f"{self.error_limit} consecutive errors, the last {self.last_error}"
            )
            log.error(
                "strategy %s disabled after %d consecutive errors", self.name, self.error_limit
            )

    def denied(self, reason: str) -> None:
        """Count one refused order request under ``reason``. ``O(1)``."""
        denials = self.denials
        denials[reason] = denials.get(reason, 0) + 1

    @property
    def state(self) -> str:
        """``running`` or ``disabled`` (see :attr:`disabled_reason`)."""
        return "running" if self.enabled else "disabled"

    def cancel_in_flight(self) -> None:
        """Cancel every suspended hook of this strategy (at shutdown)."""
        if self.in_flight is not None:
            self.in_flight.cancel()
        for task in list(self._callbacks):
            task.cancel()


class Dispatcher:
    """The engine's :class:`~trading_engine.builder.BookListener`.

    Hands each live update to the strategies watching its symbol, and
    delivers order callbacks after the fan-out.
    """

    def __init__(self, runners: list[tuple[StrategyRunner, tuple[str, ...]]]) -> None:
        self.watchers: dict[str, tuple[StrategyRunner, ...]] = {}
        for runner, symbols in runners:
            for symbol in symbols:
                self.watchers[symbol] = (*self.watchers.get(symbol, ()), runner)
        self.runners = [runner for runner, _ in runners]
        self.views: dict[str, BookView] = {}
        self._pending: deque[tuple[StrategyRunner, str, tuple[Any, ...]]] = deque()
        self._dispatching = False
        #: Called after each fan-out with (entry, recv_ns); the engine uses
        #: it for tick-to-trade bookkeeping and the simulated venue.
        self.after_book: Callable[[BookEntry, int], None] | None = None
        #: Called after each trade's fan-out with (entry, recv_ns) (the simulated venue).
        self.after_trade: Callable[[BookEntry, int], None] | None = None
        #: Called with the entry before each update's or trade's fan-out
        #: (the simulated venue matches its resting orders there).
        self.before_fan_out: Callable[[BookEntry], None] | None = None
        self.updates = 0
        #: Receive time of the update being fanned out (0 outside a fan-out).
        self.recv_ns = 0

    def view(self, entry: BookEntry) -> BookView:
        view = self.views.get(entry.symbol)
        if view is None:
            view = self.views[entry.symbol] = BookView(entry)
        return view

    # -- BookListener ---------------------------------------------------------

    def on_book(self, entry: BookEntry, recv_ns: int) -> None:
        self.updates += 1
        if self.before_fan_out is not None:
            self.before_fan_out(entry)
        runners = self.watchers.get(entry.symbol)
        if runners:
            view = self.views.get(entry.symbol) or self.view(entry)
            self._dispatching = True
            self.recv_ns = recv_ns
            try:
                for runner in runners:
                    runner.book(view)
            finally:
                self._dispatching = False
                self.recv_ns = 0
        if self.after_book is not None:
            self.after_book(entry, recv_ns)
        if self._pending:
            self.flush()

    def on_trade(self, entry: BookEntry, trade: Trade, recv_ns: int) -> None:
        if self.before_fan_out is not None:
            self.before_fan_out(entry)
        runners = self.watchers.get(entry.symbol)
        if runners:
            view = self.views.get(entry.symbol) or self.view(entry)
            self._dispatching = True
            self.recv_ns = recv_ns
            try:
                for runner in runners:
                    runner.trade(view, trade)
            finally:
                self._dispatching = False
                self.recv_ns = 0
        if self.after_trade is not None:
            self.after_trade(entry, recv_ns)
        if self._pending:
            self.flush()

    def on_state(self, entry: BookEntry, previous: BookState) -> None:
        if entry.state is not BookState.LIVE and previous is BookState.LIVE:
            log.info("book %s: %s -> %s", entry.symbol, previous.value, entry.state.value)

    # -- order callbacks -------------------------------------------------------

    def post(self, runner: StrategyRunner, hook_name: str, *args: Any) -> None:
        """Deliver an order callback now, or after the running fan-out."""
        self._pending.append((runner, hook_name, args))
        if not self._dispatching:
            self.flush()

    def flush(self) -> None:
        pending = self._pending
        self._dispatching = True
        try:
            while pending:
                runner, hook_name, args = pending.popleft()
                runner.call(hook_name, *args)
        finally:
            self._dispatching = False
