"""The venue's request budget: one scheduler for every request the gateway makes.

The exchange allows so many requests per second, whatever they are. One
:class:`RequestScheduler` owns that budget for the whole gateway: no more
than ``limit`` requests start in any window of one second (a sliding
window, as risk's order-rate limit keeps; a token bucket would let a full
bucket plus its refill through within one second). When requests wait for
a slot they are served by priority::

    cancel  >  order  >  settle  >  poll

A slot once used cannot be taken back, so priority also needs headroom:
reads (``SETTLE`` and ``POLL``) may hold at most half the window
(``read_share``), and the rest is always there for cancels and new
orders. With the shipped budget of 50/s, fill polls at 10/s and
settlement reads never make a new order wait.

* ``CANCEL``: a cancel takes risk off; it goes first.
* ``ORDER``: a new order, a re-send of an unsettled order, the retry of
  an order answered 429. A *new* order never waits here: it takes a slot
  at once (:meth:`RequestScheduler.try_now`) or within
  ``gateway.max_order_wait_s``, or it is refused ``rate_limited``.
* ``SETTLE``: reading back an order whose outcome is unknown.
* ``POLL``: the fills feed and reconciliation reads.

A 429 answer pauses the whole venue (:meth:`RequestScheduler.pause`)
until its ``Retry-After``; only the retry of the order that was answered
429 may go at the end of its own delay even if a later 429 extended the
pause (``exempt``). After a halt or a stop begins
(:meth:`RequestScheduler.stop_orders`) no new order gets a slot, and
queued order and poll work is dropped (:class:`Dropped` is raised in
the waiters); cancels and settlement reads keep their places.

Waiting costs one future per waiter and one timer for the scheduler;
granting is ``O(priorities)`` per slot.
"""

from __future__ import annotations

import asyncio
import email.utils
from collections import deque
from collections.abc import Callable
from datetime import UTC
from enum import IntEnum

__all__ = ["Dropped", "Priority", "RequestScheduler", "retry_after_s"]


class Priority(IntEnum):
    """A request's class; lower values are served first."""

    CANCEL = 0
    ORDER = 1
    SETTLE = 2
    POLL = 3


class Dropped(Exception):
    """Queued work dropped because a halt or a stop began."""


_DROPPED_ON_STOP = (Priority.ORDER, Priority.POLL)

_Waiter = tuple["asyncio.Future[None]", Priority]


class RequestScheduler:
    """At most ``limit`` request starts in any 1 s, granted by :class:`Priority`.

    ``clock`` is monotonic nanoseconds (injected). Every method is called
    on the event loop's thread.
    """

    def __init__(
        self,
        limit: int,
        clock: Callable[[], int],
        *,
        window_ns: int = 10**9,
        read_share: float = 0.5,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._clock = clock
        self._window_ns = window_ns
        #: Start times of the requests in the current window, oldest first.
        self._starts: deque[int] = deque()
        reads = max(1, round(limit * read_share))
        self._caps = {
            Priority.CANCEL: limit,
            Priority.ORDER: limit,
            Priority.SETTLE: reads,
            Priority.POLL: reads,
        }
        self._queues: tuple[deque[_Waiter], ...] = tuple(deque() for _ in Priority)
        self._exempt: deque[_Waiter] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self.paused_until_ns = 0
        self.accepting_orders = True
        #: Requests granted, by priority; refusals and drops.
        self.granted: dict[Priority, int] = dict.fromkeys(Priority, 0)
        self.dropped = 0
        #: Seconds of pause asked for by 429 answers (overlaps counted once).
        self.paused_ns_total = 0

    # -- asking for a slot ------------------------------------------------------------

    def paused(self, now_ns: int | None = None) -> bool:
        """True while a 429 pause is in force."""
        return (self._clock() if now_ns is None else now_ns) < self.paused_until_ns

    def try_now(self, priority: Priority = Priority.ORDER) -> bool:
        """Take a slot at once, or return False (nothing is queued).

        False while paused, after :meth:`stop_orders` for orders, when work
        of the same or a higher priority is already waiting, or when the
        window is full.
        """
        if priority is Priority.ORDER and not self.accepting_orders:
            return False
        now = self._clock()
        if now < self.paused_until_ns:
            return False
        if self._exempt:
            return False
        for queue in self._queues[: priority + 1]:
            if queue:
                return False
        if not self._room(priority, now):
            return False
        self._starts.append(now)
        self.granted[priority] += 1
        return True

    def _room(self, priority: Priority, now_ns: int) -> bool:
        """May a request of ``priority`` start now? ``O(1)`` amortized."""
        starts = self._starts
        oldest = now_ns - self._window_ns
        while starts and starts[0] <= oldest:
            starts.popleft()
        return len(starts) < self._caps[priority]

    def _free_at(self, priority: Priority) -> int:
        """When a request of ``priority`` will have room (call after ``_room`` said no)."""
        starts = self._starts
        return starts[len(starts) - self._caps[priority]] + self._window_ns

    @property
    def in_window(self) -> int:
        """Requests started in the last window."""
        self._room(Priority.CANCEL, self._clock())
        return len(self._starts)

    async def acquire(self, priority: Priority, *, exempt: bool = False) -> None:
        """Wait for a slot. ``exempt``: ignore a 429 pause (the 429'd order's own retry).

        Exempt waiters are served before all others, paused or not. Raises
        :class:`Dropped` if the work is dropped by :meth:`stop_orders`
        (orders and polls only) while it waits, or at once for an order
        after it.
        """
        if priority is Priority.ORDER and not self.accepting_orders:
            raise Dropped("orders are stopped")
        if exempt:
            now = self._clock()
            if not self._exempt and self._room(priority, now):
                self._starts.append(now)
                self.granted[priority] += 1
                return
            queue = self._exempt
        elif self.try_now(priority):
            return
        else:
            queue = self._queues[priority]
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (future, priority)
        queue.append(entry)
        self._schedule()
        try:
            await future
        except asyncio.CancelledError:
            if entry in queue:
                queue.remove(entry)
            raise

    # -- pause and stop -----------------------------------------------------------------

    def pause(self, seconds: float) -> None:
        """Hold every request (but exempt ones) for ``seconds`` from now (a 429)."""
        now = self._clock()
        until = now + round(seconds * 1e9)
        if until > self.paused_until_ns:
            self.paused_ns_total += until - max(now, self.paused_until_ns)
            self.paused_until_ns = until
        self._schedule()

    def stop_orders(self) -> int:
        """No new order from now on; drop queued order and poll work. Returns how many."""
        self.accepting_orders = False
        dropped = 0
        for queue in (self._exempt, *(self._queues[p] for p in _DROPPED_ON_STOP)):
            while queue:
                future, _ = queue.popleft()
                if not future.done():
                    future.set_exception(Dropped("halted or stopping"))
                    dropped += 1
        self.dropped += dropped
        return dropped

    def resume_orders(self) -> None:
        """Orders may have slots again (trading resumed)."""
        self.accepting_orders = True

    def close(self) -> None:
        """Cancel the timer (the gateway is closing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- granting --------------------------------------------------------------------------

    def _schedule(self) -> None:
        """Grant what can be granted now; arm the timer for the next slot."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        wake_ns = self._grant()
        if wake_ns is not None:
            delay = max(0.0, (wake_ns - self._clock()) / 1e9)
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._schedule()

    def _grant(self) -> int | None:
        """Grant slots, exempt waiters first, then by priority; returns when to look again."""
        queues = (self._exempt, *self._queues)
        while True:
            now = self._clock()
            paused = now < self.paused_until_ns
            chosen = None
            for i, queue in enumerate(queues):
                while queue and queue[0][0].done():
                    queue.popleft()  # cancelled or dropped
                if queue and (i == 0 or not paused):
                    chosen = queue
                    break
            if chosen is None:
                if paused and any(self._queues):
                    return self.paused_until_ns
                return None
            priority = chosen[0][1]
            if not self._room(priority, now):
                return self._free_at(priority)
            future, _ = chosen.popleft()
            self._starts.append(now)
            self.granted[priority] += 1
            future.set_result(None)


def retry_after_s(
    value: str | None, now_s: float, default_s: float, cap_s: float, date: str | None = None
) -> float:
    """Seconds to wait for a ``Retry-After`` header (RFC 9110, section 10.2.3).

    ``value`` is delay-seconds (``"120"``) or an HTTP-date
    (``"Fri, 31 Dec 1999 23:59:59 GMT"``, or the obsolete RFC 850 and
    asctime forms RFC 9110 asks recipients to accept). An HTTP-date is
    measured against ``date``, the same answer's ``Date`` header: both are
    stamped by the venue's clock, so the host's clock offset cancels out.
    Only without a readable ``date`` is it measured against ``now_s``, the
    host's wall clock (Unix seconds). A missing or unreadable value gives
    ``default_s``; a date in the past gives 0; the result is never above
    ``cap_s``. Raises nothing.
    """
    if value is None:
        return min(default_s, cap_s)
    text = value.strip()
    if text.isascii() and text.isdigit():
        # More digits than any float's precision: beyond any cap (and int() refuses
        # strings of over 4300 digits).
        return cap_s if len(text) > 15 else min(float(int(text)), cap_s)
    when = _http_date_s(text)
    if when is None:
        return min(default_s, cap_s)
    sent = _http_date_s(date.strip()) if date is not None else None
    return min(max(0.0, when - (now_s if sent is None else sent)), cap_s)


def _http_date_s(text: str) -> float | None:
    """An HTTP-date (any of its three forms) as Unix seconds; None if unreadable."""
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # RFC 9110: an HTTP-date is always UTC ("GMT"); asctime carries no zone.
        when = when.replace(tzinfo=UTC)
    return when.timestamp()
