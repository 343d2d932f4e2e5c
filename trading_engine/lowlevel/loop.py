"""The priority event loop: the critical path runs ahead of background work.

:class:`PriorityEventLoop` is asyncio's selector loop with a second ready
queue. Work is *critical* when it runs in a context whose :data:`PRIORITY`
variable says so; everything else is *normal*. Critical work is:

* a task created with ``loop.create_task(coro, priority=Priority.CRITICAL)``
  or from a coroutine function decorated with :func:`critical`;
* everything such a task schedules: its own steps and wake-ups (asyncio
  passes the task's context to ``call_soon``), the tasks it creates (they
  copy its context) and its timers;
* the read callbacks of sockets marked with :func:`mark_critical` (the feed
  connections and the order connections), and whatever they schedule.

One loop iteration (compare ``BaseEventLoop._run_once``)::

    select(timeout)            I/O of critical sockets -> critical queue
    due timers                 each to its queue by its context
    run the critical queue     in rounds, each of the handles present when it
                               starts, until empty (at most 8 rounds, or
                               critical_drain_s)
    run the normal queue       the handles present when the batch starts;
                               every ``critical_poll_s``: poll the critical
                               sockets alone (select(0)) and drain the
                               critical queue, within the critical share

So a tick waits for at most one background callback plus
``critical_poll_s``, however long the normal queue is, and background work
is never starved: every normal handle ready when an iteration starts runs
in that iteration, and mid-batch critical drains are skipped while critical
work has used more than ``critical_share`` of the iteration's time.

The loop also times every callback (one clock read each) and counts those
slower than ``slow_callback_s``, which stock asyncio only does in debug
mode.

This builds on private attributes of ``asyncio.BaseEventLoop`` and
``asyncio.BaseSelectorEventLoop`` (``_ready``, ``_scheduled``,
``_selector``, ``_process_events``, ``_add_reader``...), which are the same
in CPython 3.11, 3.12 and 3.13; :data:`SUPPORTED_PYTHONS` pins them and
the constructor refuses any other version.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import enum
import heapq
import logging
import selectors
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final, Self, TypeVar

from ..core.errors import ConfigError

__all__ = [
    "PRIORITY",
    "SUPPORTED_PYTHONS",
    "LoopStats",
    "Priority",
    "PriorityEventLoop",
    "create_task",
    "critical",
    "critical_context",
    "mark_critical",
    "new_event_loop",
    "unmark_critical",
]

log = logging.getLogger("trading_engine.loop")

SUPPORTED_PYTHONS: Final = ((3, 11), (3, 12), (3, 13))

# BaseEventLoop's own limits for compacting cancelled timers.
_MIN_SCHEDULED_TIMER_HANDLES: Final = 100
_MIN_CANCELLED_TIMER_HANDLES_FRACTION: Final = 0.5
_MAXIMUM_SELECT_TIMEOUT: Final = 24 * 3600
_SLOW_LOG_EVERY_S: Final = 10.0
_CRITICAL_ROUNDS: Final = 8

T = TypeVar("T")
CoroutineFunction = TypeVar("CoroutineFunction", bound=Callable[..., Coroutine[Any, Any, Any]])


class Priority(enum.IntEnum):
    """How urgently the loop runs a piece of work."""

    NORMAL = 0
    CRITICAL = 1


#: The priority of the code running now; tasks and callbacks inherit it.
PRIORITY: contextvars.ContextVar[Priority] = contextvars.ContextVar(
    "trading_engine_priority", default=Priority.NORMAL
)

_CRITICAL_CODE: set[Any] = set()


def critical(function: CoroutineFunction) -> CoroutineFunction:
    """Mark a coroutine function critical: tasks created from it run first.

    The function itself is returned unchanged (no wrapper, no call cost);
    only ``create_task`` on a :class:`PriorityEventLoop` looks at the mark.
    Awaiting the coroutine inside another task runs it at that task's
    priority.
    """
    _CRITICAL_CODE.add(function.__code__)
    return function


def create_task(
    coro: Coroutine[Any, Any, T], *, priority: Priority | None = None, name: str | None = None
) -> asyncio.Task[T]:
    """``asyncio.create_task`` with a priority, on any loop.

    On a :class:`PriorityEventLoop` the task gets ``priority`` (None: the
    current context's); other loops have one priority and ignore it, so
    strategy code can say what it means and run anywhere.
    """
    loop = asyncio.get_running_loop()
    if isinstance(loop, PriorityEventLoop):
        return loop.create_task(coro, name=name, priority=priority)
    return loop.create_task(coro, name=name)


def critical_context(context: contextvars.Context | None = None) -> contextvars.Context:
    """A copy of ``context`` (default: the current one) in which work is critical."""
    result = (context if context is not None else contextvars.copy_context()).copy()
    result.run(PRIORITY.set, Priority.CRITICAL)
    return result


def _socket_of(transport: asyncio.BaseTransport) -> socket.socket | None:
    sock = transport.get_extra_info("socket")
    return sock if sock is not None and sock.fileno() >= 0 else None


def mark_critical(transport: asyncio.BaseTransport) -> bool:
    """Make a connection's reads critical work, if the running loop has priorities.

    Returns False (and does nothing) on other loops. Call :func:`unmark_critical`
    when the connection is lost, before its file descriptor can be reused.
    """
    loop = asyncio.get_running_loop()
    sock = _socket_of(transport)
    if not isinstance(loop, PriorityEventLoop) or sock is None:
        return False
    loop.add_critical_fd(sock.fileno())
    return True


def unmark_critical(transport: asyncio.BaseTransport) -> None:
    """Undo :func:`mark_critical` (safe to call on any loop, any number of times)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    if isinstance(loop, PriorityEventLoop):
        sock = _socket_of(transport)
        if sock is not None:
            loop.remove_critical_fd(sock.fileno())


class LoopStats:
    """Counters of a :class:`PriorityEventLoop` (plain ints, read by the collector)."""

    __slots__ = (
        "critical_callbacks",
        "critical_polls",
        "critical_polls_ready",
        "iterations",
        "normal_callbacks",
        "share_deferrals",
        "slow_callbacks",
    )

    def __init__(self) -> None:
        self.iterations = 0
        self.critical_callbacks = 0
        self.normal_callbacks = 0
        self.critical_polls = 0
        self.critical_polls_ready = 0
        self.share_deferrals = 0
        self.slow_callbacks = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class PriorityEventLoop(asyncio.SelectorEventLoop):
    """asyncio's selector loop with a critical ready queue (see the module docstring).

    ``critical_poll_s``: how often, at most, the critical sockets are polled
    while normal callbacks run. ``critical_share``: the share of an
    iteration's time critical work may take before mid-batch drains wait
    for the next iteration. ``critical_drain_s``: how long the drain at the
    start of an iteration may go on, round after round, while critical work
    queues more critical work (at most 8 rounds). ``busy_poll_s``: after any activity, poll
    without blocking for this long before sleeping in the selector (0: never
    spin); it keeps the core and its caches hot between ticks at the price
    of burning that core. ``slow_callback_s``: callbacks slower than this
    are counted in :attr:`stats`.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        # Refused before an instance exists: a half-built loop would fail in __del__.
        if sys.version_info[:2] not in SUPPORTED_PYTHONS:
            raise ConfigError(
                f"engine.loop: 'priority' supports Python "
                f"{', '.join('.'.join(map(str, v)) for v in SUPPORTED_PYTHONS)}, "
                f"not {sys.version_info[0]}.{sys.version_info[1]}; use 'asyncio' or 'uvloop'",
                [],
            )
        return super().__new__(cls)

    def __init__(
        self,
        selector: selectors.BaseSelector | None = None,
        *,
        critical_poll_s: float = 50e-6,
        critical_share: float = 0.9,
        critical_drain_s: float = 0.0005,
        slow_callback_s: float = 0.001,
        busy_poll_s: float = 0.0,
    ) -> None:
        if not 0 < critical_share < 1:
            raise ValueError("critical_share must be between 0 and 1")
        # asyncio's private attributes are untyped: reach them through an Any view.
        self._base: Any = self
        # Set before the base constructor, which already adds a reader.
        self._critical: collections.deque[asyncio.Handle] = collections.deque()
        self._critical_fds: set[int] = set()
        self._critical_selector = selectors.DefaultSelector()
        self._critical_context = critical_context(contextvars.Context())
        super().__init__(selector)
        self.critical_poll_s = critical_poll_s
        self.critical_share = critical_share
        self.critical_drain_s = critical_drain_s
        self.slow_callback_s = slow_callback_s
        self.busy_poll_s = busy_poll_s
        self._busy_until = 0.0
        self.stats = LoopStats()
        self._last_slow_log = 0.0

    # -- public API --------------------------------------------------------------

    def create_task(  # type: ignore[override]
        self,
        coro: Coroutine[Any, Any, T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
        priority: Priority | None = None,
    ) -> asyncio.Task[T]:
        """``asyncio``'s ``create_task``, plus ``priority``.

        Without ``priority`` the task inherits the creating context's
        priority, or is critical if its coroutine function is marked with
        :func:`critical`.
        """
        if priority is None and getattr(coro, "cr_code", None) in _CRITICAL_CODE:
            priority = Priority.CRITICAL
        if priority is not None:
            context = (context if context is not None else contextvars.copy_context()).copy()
            context.run(PRIORITY.set, priority)
        return super().create_task(coro, name=name, context=context)

    def call_critical(
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        """``call_soon`` as critical work."""
        return self.call_soon(callback, *args, context=critical_context(context))

    def add_critical_fd(self, fd: int) -> None:
        """Treat reads on ``fd`` as critical (see :func:`mark_critical`)."""
        if fd in self._critical_fds:
            return
        self._critical_fds.add(fd)
        try:
            key = self._base._selector.get_key(fd)
        except KeyError:
            return  # the transport registers its reader later: _add_reader sees the mark
        reader = key.data[0]
        if reader is not None:
            # Register the reader again, now critical: what it schedules inherits that.
            self._add_reader(fd, reader._callback, *reader._args)

    def remove_critical_fd(self, fd: int) -> None:
        self._critical_fds.discard(fd)
        if fd in self._critical_selector.get_map():
            self._critical_selector.unregister(fd)

    def close(self) -> None:
        super().close()
        self._critical_selector.close()
        self._critical.clear()

    # -- asyncio internals ---------------------------------------------------------

    def _call_soon(
        self,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        context: contextvars.Context | None,
    ) -> asyncio.Handle:
        handle = asyncio.Handle(callback, args, self, context)
        if self._base._debug:
            traceback = getattr(handle, "_source_traceback", None)
            if traceback:
                del traceback[-1]
        if (PRIORITY.get() if context is None else context.get(PRIORITY)) == Priority.CRITICAL:
            self._critical.append(handle)
        else:
            self._base._ready.append(handle)
        return handle

    def _add_reader(self, fd: Any, callback: Callable[..., object], *args: Any) -> asyncio.Handle:
        if fd not in self._critical_fds:
            handle: asyncio.Handle = super()._add_reader(fd, callback, *args)  # type: ignore[misc]
            return handle
        self._base._check_closed()
        handle = asyncio.Handle(callback, args, self, self._critical_context)
        try:
            key = self._base._selector.get_key(fd)
        except KeyError:
            self._base._selector.register(fd, selectors.EVENT_READ, (handle, None))
        else:
            reader, writer = key.data
            self._base._selector.modify(fd, key.events | selectors.EVENT_READ, (handle, writer))
            if reader is not None:
                reader.cancel()
        if fd not in self._critical_selector.get_map():
            self._critical_selector.register(fd, selectors.EVENT_READ)
        return handle

    def _remove_reader(self, fd: Any) -> bool:
        # A paused or closing transport stops reading: stop polling it too
        # (the mark itself stays until remove_critical_fd).
        if fd in self._critical_fds:
            polled = self._critical_selector.get_map()
            if polled is not None and fd in polled:
                self._critical_selector.unregister(fd)
        removed: bool = super()._remove_reader(fd)  # type: ignore[misc]
        return removed

    def _process_events(self, event_list: list[tuple[selectors.SelectorKey, int]]) -> None:
        critical_fds = self._critical_fds
        critical = self._critical
        ready = self._base._ready
        for key, mask in event_list:
            reader, writer = key.data
            if mask & selectors.EVENT_READ and reader is not None:
                if reader._cancelled:
                    self._remove_reader(key.fileobj)
                elif key.fd in critical_fds:
                    critical.append(reader)
                else:
                    ready.append(reader)
            if mask & selectors.EVENT_WRITE and writer is not None:
                if writer._cancelled:
                    self._base._remove_writer(key.fileobj)
                else:
                    ready.append(writer)

    def _poll_critical(self) -> None:
        """Queue the reads of critical sockets that are ready now (no waiting)."""
        self.stats.critical_polls += 1
        events = self._critical_selector.select(0)
        if not events:
            return
        self.stats.critical_polls_ready += 1
        get_key = self._base._selector.get_key
        critical = self._critical
        for key, _ in events:
            try:
                reader = get_key(key.fd).data[0]
            except KeyError:
                continue
            if reader is not None and not reader._cancelled:
                critical.append(reader)

    def _run_critical(self) -> int:
        """Run the critical handles queued now; returns the time taken in ns."""
        critical = self._critical
        stats = self.stats
        clock = time.perf_counter_ns
        slow_ns = self.slow_callback_s * 1e9
        start = last = clock()
        for _ in range(len(critical)):
            handle = critical.popleft()
            if handle._cancelled:
                continue
            handle._run()
            now = clock()
            if now - last > slow_ns:
                self._slow(handle, now - last)
            last = now
            stats.critical_callbacks += 1
        return last - start

    def _slow(self, handle: asyncio.Handle, elapsed_ns: int) -> None:
        self.stats.slow_callbacks += 1
        now = time.monotonic()
        if now - self._last_slow_log >= _SLOW_LOG_EVERY_S:
            self._last_slow_log = now
            log.warning(
                "slow callback: %s took %.3f ms (engine.slow_callback_s = %s)",
                handle,
                elapsed_ns / 1e6,
                self.slow_callback_s,
            )

    def _run_once(self) -> None:
        scheduled: list[Any] = self._base._scheduled
        ready: collections.deque[asyncio.Handle] = self._base._ready
        critical = self._critical
        stats = self.stats
        stats.iterations += 1

        sched_count = len(scheduled)
        cancelled_count: int = self._base._timer_cancelled_count
        if (
            sched_count > _MIN_SCHEDULED_TIMER_HANDLES
            and cancelled_count / sched_count > _MIN_CANCELLED_TIMER_HANDLES_FRACTION
        ):
            kept = []
            for timer in scheduled:
                if timer._cancelled:
                    timer._scheduled = False
                else:
                    kept.append(timer)
            heapq.heapify(kept)
            self._base._scheduled = scheduled = kept
            self._base._timer_cancelled_count = 0
        else:
            while scheduled and scheduled[0]._cancelled:
                self._base._timer_cancelled_count -= 1
                timer = heapq.heappop(scheduled)
                timer._scheduled = False

        timeout: float | None = None
        if ready or critical or self._base._stopping:
            timeout = 0
        elif scheduled:
            timeout = min(max(0.0, scheduled[0].when() - self.time()), _MAXIMUM_SELECT_TIMEOUT)
        busy = self.busy_poll_s
        if busy and timeout != 0 and self.time() < self._busy_until:
            timeout = 0  # keep polling: the core and its caches stay hot

        event_list = self._base._selector.select(timeout)
        if busy and (event_list or ready):
            self._busy_until = self.time() + busy
        self._process_events(event_list)
        del event_list  # break cycles on error

        end_time = self.time() + self._base._clock_resolution
        while scheduled:
            timer = scheduled[0]
            if timer.when() >= end_time:
                break
            timer = heapq.heappop(scheduled)
            timer._scheduled = False
            context = timer._context
            if context is not None and context.get(PRIORITY) == Priority.CRITICAL:
                critical.append(timer)
            else:
                ready.append(timer)

        # Drain in rounds, so that a chain of critical steps (a tick, then the
        # strategy task it wakes) completes before background work; each
        # round runs only what was queued when it started, and the rounds
        # stop after critical_drain_s, so a task that reschedules itself
        # forever cannot hold the loop.
        first_ns = 0
        rounds = 0
        drain_ns = self.critical_drain_s * 1e9
        while critical and rounds < _CRITICAL_ROUNDS and first_ns <= drain_ns:
            first_ns += self._run_critical()
            rounds += 1

        ntodo = len(ready)
        if not ntodo:
            return
        clock = time.perf_counter_ns
        slow_ns = self.slow_callback_s * 1e9
        poll_ns = self.critical_poll_s * 1e9
        share = self.critical_share
        polling = bool(self._critical_fds)
        critical_ns = first_ns
        start = last = last_poll = clock()
        # The callback loop is written out here and in _run_critical rather
        # than shared: a function call per callback is what it must not cost.
        for _ in range(ntodo):
            handle = ready.popleft()
            if handle._cancelled:
                continue
            handle._run()
            now = clock()
            if now - last > slow_ns:
                self._slow(handle, now - last)
            last = now
            if now - last_poll >= poll_ns:
                # Background work has had its share if critical work stayed
                # under critical_share of the time spent this iteration.
                if critical_ns <= share * (first_ns + now - start):
                    if polling:
                        self._poll_critical()
                    if critical:
                        critical_ns += self._run_critical()
                    last = clock()
                else:
                    stats.share_deferrals += 1
                last_poll = last
        stats.normal_callbacks += ntodo
        del handle  # break cycles on error


def new_event_loop(
    choice: str, *, slow_callback_s: float = 0.001, busy_poll_s: float = 0.0
) -> asyncio.AbstractEventLoop:
    """A new loop of the kind ``[engine] loop`` names: priority, asyncio or uvloop.

    On a Python the priority loop is not pinned to (see
    :data:`SUPPORTED_PYTHONS`), ``priority`` gives the stock asyncio loop and
    a warning, so the default configuration runs everywhere. Raises
    :class:`ConfigError` when uvloop is asked for and not installed.
    """
    if choice == "priority":
        if sys.version_info[:2] not in SUPPORTED_PYTHONS:
            log.warning(
                "engine.loop = 'priority' is built on asyncio internals checked for Python "
                "3.11-3.13 only; running the stock asyncio loop on Python %d.%d",
                *sys.version_info[:2],
            )
            return asyncio.SelectorEventLoop()
        return PriorityEventLoop(slow_callback_s=slow_callback_s, busy_poll_s=busy_poll_s)
    if choice == "uvloop":
        try:
            import uvloop
        except ImportError:
            message = (
                "engine.loop: 'uvloop' is not installed (pip install 'trading-engine[uvloop]')"
            )
            raise ConfigError(message, [message]) from None
        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return loop
    if choice == "asyncio":
        return asyncio.SelectorEventLoop()
    raise ConfigError(f"engine.loop: unknown loop {choice!r}", [])
