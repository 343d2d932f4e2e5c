"""What a strategy reads of a book: :class:`BookView`.

Compiled with the core (``setup.py``): strategies read the book through
it on every update. :mod:`trading_engine.core.strategy` re-exports it.
"""

from __future__ import annotations

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

    def imbalance(self, levels: int = 1) -> float | None:
        return self._entry.book.imbalance(levels) if self.live else None

    def bids(self, depth: int | None = None) -> Iterator[Level]:
        return self._entry.book.bids(depth) if self.live else iter(())

    def asks(self, depth: int | None = None) -> Iterator[Level]:
        return self._entry.book.asks(depth) if self.live else iter(())

    def depth(self, levels: int) -> tuple[list[Level], list[Level]]:
        return self._entry.book.depth(levels) if self.live else ([], [])
