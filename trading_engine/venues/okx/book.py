"""One OKX instrument's order book as the ``books`` channel builds it.

Levels keep the venue's own price and size strings (the checksum is
computed over them, and the engine's decoder puts them on the grid);
they are ordered by their decimal value, best first on each side.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from operator import neg
from typing import Final

from sortedcontainers import SortedDict

from .checksum import CHECKSUM_LEVELS, checksum

__all__ = ["PLAIN_DECIMAL", "MalformedLevel", "OkxBook"]

#: A price or size as OKX writes them: plain decimal text. ``Decimal`` alone
#: would also take ``1E+2``, `` 100``, ``1_00`` and ``0x``-less oddities,
#: which the engine refuses (and a refused frame leaves its book stale).
PLAIN_DECIMAL: Final = re.compile(r"\d{1,40}(?:\.\d{1,40})?")


class MalformedLevel(ValueError):
    """A level that is not ``[price, size, ...]`` with a positive price and a size >= 0."""


def _decimal(text: str, what: str) -> Decimal:
    if type(text) is not str or PLAIN_DECIMAL.fullmatch(text) is None:
        raise MalformedLevel(f"{what} {text!r} is not a plain decimal >= 0")
    return Decimal(text)


class OkxBook:
    """Bids and asks of one instrument: ``{Decimal price: (price, size)}`` per side.

    Apply and remove are O(log n) per level (sortedcontainers); the
    checksum reads the 25 best levels of each side, O(25 log n).
    """

    __slots__ = ("asks", "bids")

    def __init__(self) -> None:
        # Bids sort by negated price so that index 0 is the best on both sides.
        self.bids: SortedDict = SortedDict(neg)
        self.asks: SortedDict = SortedDict()

    def clear(self) -> None:
        """Forget every level (a new snapshot follows)."""
        self.bids.clear()
        self.asks.clear()

    def replace(self, bids: Sequence[Sequence[str]], asks: Sequence[Sequence[str]]) -> None:
        """Make the book exactly these levels (a snapshot); size ``0`` levels are skipped.

        Builds each side in one sort, O(n log n), rather than n inserts.
        Raises :class:`MalformedLevel` (the book is then empty).
        """
        self.clear()
        try:
            self.bids.update(_levels(bids))
            self.asks.update(_levels(asks))
        except MalformedLevel:
            self.clear()
            raise

    def apply(
        self, bids: Sequence[Sequence[str]], asks: Sequence[Sequence[str]]
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """Apply levels as the venue sent them: size ``0`` removes the price, else sets it.

        Returns the ``(price, size)`` pairs applied per side (bids, asks).
        Raises :class:`MalformedLevel` (the book is then partly applied:
        the caller resynchronizes it).
        """
        return _apply_side(self.bids, bids), _apply_side(self.asks, asks)

    def levels(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """Every level, best first: ``(bids, asks)`` of ``(price, size)``."""
        return list(self.bids.values()), list(self.asks.values())

    def checksum(self) -> int:
        """OKX's signed CRC32 of the 25 best levels of each side."""
        top_bids = [f"{p}:{s}" for p, s in self.bids.values()[:CHECKSUM_LEVELS]]
        top_asks = [f"{p}:{s}" for p, s in self.asks.values()[:CHECKSUM_LEVELS]]
        return checksum(top_bids, top_asks)


def _levels(levels: Sequence[Sequence[str]]) -> dict[Decimal, tuple[str, str]]:
    out: dict[Decimal, tuple[str, str]] = {}
    for level in levels:
        if len(level) < 2:
            raise MalformedLevel(f"level {level!r} has no price and size")
        price_text = level[0]
        size_text = level[1]
        price = _decimal(price_text, "price")
        if not price:
            raise MalformedLevel(f"price {price_text!r} is zero")
        if _decimal(size_text, "size"):
            out[price] = (price_text, size_text)
        else:
            out.pop(price, None)
    return out


def _apply_side(side: SortedDict, levels: Sequence[Sequence[str]]) -> list[tuple[str, str]]:
    applied: list[tuple[str, str]] = []
    for level in levels:
        if len(level) < 2:
            raise MalformedLevel(f"level {level!r} has no price and size")
        price_text = level[0]
        size_text = level[1]
        price = _decimal(price_text, "price")
        if not price:
            raise MalformedLevel(f"price {price_text!r} is zero")
        if _decimal(size_text, "size"):
            side[price] = (price_text, size_text)
        else:
            side.pop(price, None)
            size_text = "0"
        applied.append((price_text, size_text))
    return applied
