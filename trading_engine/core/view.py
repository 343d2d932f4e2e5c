"""What a strategy reads of a book: :class:`BookView`.

Compiled with the core (``setup.py``): strategies read the book through
it on every update. :mod:`trading_engine.core.strategy` re-exports it.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from fractions import Fraction
from typing import Final

from .book import Level
from .builder import BookEntry, BookState

__all__ = ["BookView"]

_LIVE: Final = BookState.LIVE


class BookView:
    """A read-only view of one symbol's book for strategies.

    Every read answers ``None`` (or empty) unless the book is live right
    now. Prices are ticks, sizes lots.
    """

    __slots__ = ("_entry", "instrument", "symbol")

    def __init__(self, entry: BookEntry) -> None:
        self._entry = entry
        self.symbol = entry.symbol
        self.instrument = entry.instrument

    def __repr__(self) -> str:
        return f"BookView({self.symbol!r}, {self._entry.state.value})"

    @property
    def live(self) -> bool:
        return self._entry.state is _LIVE

    @property
    def state(self) -> BookState:
        return self._entry.state

    @property
    def seq(self) -> int | None:
        return self._entry.seq

    @property
    def best_bid(self) -> int | None:
        entry = self._entry
        return entry.book.best_bid if entry.state is _LIVE else None

    @property
    def best_ask(self) -> int | None:
        entry = self._entry
        return entry.book.best_ask if entry.state is _LIVE else None

    def best_bid_level(self) -> Level | None:
        return self._entry.book.best_bid_level() if self.live else None

    def best_ask_level(self) -> Level | None:
        return self._entry.book.best_ask_level() if self.live else None

    def spread(self) -> int | None:
        return self._entry.book.spread() if self.live else None

    def top(self) -> tuple[int, int, int, int] | None:
        """``(best bid, bid size, best ask, ask size)`` in ticks and lots, or None.

        None unless the book is live and both sides have a level. One call
        for what ``best_bid_level()`` and ``best_ask_level()`` give in two:
        the cheapest read of the top of the book.
        """
        entry = self._entry
        return entry.book.top() if entry.state is _LIVE else None

    def mid(self) -> Fraction | None:
        return self._entry.book.mid() if self.live else None

    def microprice(self) -> Fraction | None:
        return self._entry.book.microprice() if self.live else None

    def imbalance(self, levels: object = 1) -> float | None:
        """Top-``levels`` size imbalance in [-1, 1] (a ratio, so a float), or None.

        Raises ``ValueError`` for ``levels`` below 1 and ``TypeError`` for
        one that is not an integer (numpy integers are integers).
        """
        count = _count(levels, "levels")
        if count < 1:
            raise ValueError(f"imbalance: levels must be at least 1, got {count}")
        return self._entry.book.imbalance(count) if self.live else None

    def bids(self, depth: object = None) -> Iterator[Level]:
        """Bid levels ``(ticks, lots)`` from the best down (``depth``: at most that many)."""
        count = None if depth is None else _count(depth, "depth")
        return self._entry.book.bids(count) if self.live else iter(())

    def asks(self, depth: object = None) -> Iterator[Level]:
        """Ask levels ``(ticks, lots)`` from the best up (``depth``: at most that many)."""
        count = None if depth is None else _count(depth, "depth")
        return self._entry.book.asks(count) if self.live else iter(())

    def depth(self, levels: object) -> tuple[list[Level], list[Level]]:
        """The best ``levels`` bids and asks, each from the best price outward."""
        count = _count(levels, "levels")
        return self._entry.book.depth(count) if self.live else ([], [])


def _count(value: object, name: str) -> int:
    """``value`` as an int (anything with ``__index__``); ``TypeError`` naming ``name`` else."""
    if type(value) is int:
        return value
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
