"""Injected clocks: the core never reads the time itself.

A clock is any object with ``monotonic_ns()`` and ``time_ns()``. The
system clock reads ``time``; tests use :class:`ManualClock` and move it.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """What the engine needs of a clock."""

    def monotonic_ns(self) -> int:
        """Nanoseconds from an arbitrary start; never goes backwards."""
        ...

    def time_ns(self) -> int:
        """Wall-clock nanoseconds since the Unix epoch."""
        ...


class SystemClock:
    """The real clocks of this machine."""

    monotonic_ns = staticmethod(time.monotonic_ns)
    time_ns = staticmethod(time.time_ns)


class ManualClock:
    """A clock that moves only when told to (for tests and replay)."""

    def __init__(self, start_ns: int = 0, wall_offset_ns: int = 1_700_000_000 * 10**9) -> None:
        self.now_ns = start_ns
        self.wall_offset_ns = wall_offset_ns

    def monotonic_ns(self) -> int:
        return self.now_ns

    def time_ns(self) -> int:
        return self.now_ns + self.wall_offset_ns

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("a clock never goes backwards")
        self.now_ns += round(seconds * 1e9)
