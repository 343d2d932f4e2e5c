"""The order gateway's circuit breaker, with resilience4j's semantics.

A pure state machine with an injected clock (monotonic nanoseconds)::

           failure rate >= threshold, or slow-call rate >= threshold,
           once the window holds at least minimum_calls
    CLOSED ───────────────────────────────────────────────────► OPEN
      ▲                                                          │
      │ the half_open_calls trial calls                          │ open_s
      │ complete below both thresholds                           │ elapsed
      │                                                          ▼
      └──────────────────────────────────────────────────── HALF_OPEN
                   a trial outcome that reaches a threshold ───► OPEN

* CLOSED: every call is permitted; its outcome enters a sliding window of
  the last ``window_size`` calls (a count-based window).
* OPEN: every call is denied at once (the gateway answers
  ``circuit_open``; nothing is queued). After ``open_s`` the next request
  for permission moves the breaker to HALF_OPEN.
* HALF_OPEN: exactly ``half_open_calls`` trial calls are permitted; the
  rest are denied. When all of them have completed, the breaker closes if
  their failure rate and slow-call rate are both below the thresholds, and
  opens again otherwise.

The gateway records order placements only (first sends and re-sends of an
order; not 429 retries, reads, cancels or fill polls), so the trial calls
while half-open are placements too. A failure is a 5xx answer, a timeout
or a connection error; a 4xx answer is a success for the breaker (the
venue is healthy, the order was bad). An answer the client itself could
not parse is not recorded at all (its permit is released): it says
nothing about the venue. A call is slow when it took at
least ``slow_call_s``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

__all__ = ["BreakerSettings", "BreakerState", "CircuitBreaker"]

log = logging.getLogger("trading_engine.breaker")


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """The breaker's thresholds (``[breaker]`` in the configuration file).

    ``window_size`` and ``minimum_calls`` count calls; the rates are
    fractions in (0, 1]; ``slow_call_s`` and ``open_s`` are seconds;
    ``half_open_calls`` is the number of trial calls while half-open.
    """

    window_size: int = 20
    minimum_calls: int = 10
    failure_rate_threshold: float = 0.5
    slow_call_s: float = 0.25
    slow_call_rate_threshold: float = 1.0
    open_s: float = 5.0
    half_open_calls: int = 3


class BreakerState(IntEnum):
    """The breaker's state; the value is the exported gauge value."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2

    @property
    def label(self) -> str:
        return self.name.lower()


class CircuitBreaker:
    """Count-window circuit breaker. ``O(1)`` per call."""

    def __init__(self, config: BreakerSettings, clock: Callable[[], int]) -> None:
        self.config = config
        self._clock = clock
        self.state = BreakerState.CLOSED
        self._window: deque[tuple[bool, bool]] = deque(maxlen=config.window_size)
        self._failures = 0
        self._slow = 0
        self._opened_ns = 0
        self._open_ns = round(config.open_s * 1e9)
        self._slow_ns = round(config.slow_call_s * 1e9)
        self._trials_permitted = 0
        self._trial_outcomes: list[tuple[bool, bool]] = []
        #: Transitions by (from, to) label, and calls denied while not closed.
        self.transitions: dict[tuple[str, str], int] = {}
        self.denied = 0

    # -- the gateway's side ---------------------------------------------------

    def allow(self) -> bool:
        """Ask permission for one call. Denied calls are counted."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            if self._clock() - self._opened_ns < self._open_ns:
                self.denied += 1
                return False
            self._transition(BreakerState.HALF_OPEN)
        if self._trials_permitted < self.config.half_open_calls:
            self._trials_permitted += 1
            return True
        self.denied += 1
        return False

    def release(self) -> None:
        """Give back a permission for a call that was not made (refused locally).

        While half-open this returns the trial slot, so the trials that are
        made still decide between closed and open; otherwise a no-op.
        """
        if self.state is BreakerState.HALF_OPEN and self._trials_permitted > len(
            self._trial_outcomes
        ):
            self._trials_permitted -= 1

    def record(self, duration_ns: int, failed: bool) -> None:
        """Record the outcome of a permitted call."""
        slow = duration_ns >= self._slow_ns
        if self.state is BreakerState.HALF_OPEN:
            self._trial_outcomes.append((failed, slow))
            if len(self._trial_outcomes) >= self.config.half_open_calls:
                failures = sum(1 for f, _ in self._trial_outcomes if f)
                slows = sum(1 for _, s in self._trial_outcomes if s)
                count = len(self._trial_outcomes)
                if self._tripped(failures, slows, count):
                    self._transition(BreakerState.OPEN)
                else:
                    self._transition(BreakerState.CLOSED)
            return
        if self.state is BreakerState.OPEN:
            return  # a call permitted before the breaker opened: too late to count
        window = self._window
        if len(window) == window.maxlen:
            old_failed, old_slow = window[0]
            self._failures -= old_failed
            self._slow -= old_slow
        window.append((failed, slow))
        self._failures += failed
        self._slow += slow
        count = len(window)
        if count >= self.config.minimum_calls and self._tripped(self._failures, self._slow, count):
            self._transition(BreakerState.OPEN)

    # -- internals --------------------------------------------------------------

    def _tripped(self, failures: int, slows: int, count: int) -> bool:
        config = self.config
        return (
            failures / count >= config.failure_rate_threshold
            or slows / count >= config.slow_call_rate_threshold
        )

    def _transition(self, state: BreakerState) -> None:
        previous = self.state
        if previous is state:
            return
        self.state = state
        key = (previous.label, state.label)
        self.transitions[key] = self.transitions.get(key, 0) + 1
        if state is BreakerState.OPEN:
            self._opened_ns = self._clock()
        if state is BreakerState.HALF_OPEN:
            self._trials_permitted = 0
            self._trial_outcomes = []
        if state is BreakerState.CLOSED:
            self._window.clear()
            self._failures = 0
            self._slow = 0
        level = logging.WARNING if state is not BreakerState.CLOSED else logging.INFO
        log.log(level, "circuit breaker %s -> %s", previous.label, state.label)

    @property
    def failure_rate(self) -> float:
        """Share of failures in the current window (0 when empty)."""
        return self._failures / len(self._window) if self._window else 0.0
