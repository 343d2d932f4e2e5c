"""Capped exponential back-off with one jitter rule, for every retry loop.

The gateway's settlement reads, cancels and fills polls, the fast path's
reconnects and start-up reconciliation all wait the same way: the delay
doubles after each failure up to a cap, and each wait is drawn uniformly
from ``[delay / 2, delay)`` ("equal jitter"): never less than half the
nominal delay, so a failing venue is not hammered, and spread over the
other half, so clients that failed together do not retry together (see
the AWS Architecture Blog, "Exponential Backoff and Jitter", 2015).
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Delays for one retry loop: ``initial_s``, doubling to ``max_s``, with equal jitter.

    ``rng`` is injected (tests pass a seeded ``random.Random``). Raises
    ``ValueError`` unless ``0 < initial_s <= max_s``.
    """

    __slots__ = ("_delay", "_rng", "initial_s", "max_s")

    def __init__(self, initial_s: float, max_s: float, rng: random.Random | None = None) -> None:
        if not 0 < initial_s <= max_s:
            raise ValueError(f"back-off needs 0 < initial_s <= max_s, got {initial_s}, {max_s}")
        self.initial_s = initial_s
        self.max_s = max_s
        self._rng = rng or random.Random()
        self._delay = initial_s

    @property
    def nominal_s(self) -> float:
        """The delay the next :meth:`next_s` draws around (before jitter), in seconds."""
        return self._delay

    def next_s(self) -> float:
        """The next wait in seconds, in ``[d / 2, d)`` for the nominal ``d``; then ``d`` doubles."""
        delay = self._delay
        self._delay = min(delay * 2, self.max_s)
        return delay * (0.5 + 0.5 * self._rng.random())

    def reset(self) -> None:
        """A success: the next failure waits ``initial_s`` again."""
        self._delay = self.initial_s
