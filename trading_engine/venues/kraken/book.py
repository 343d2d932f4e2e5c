"""One Kraken pair's order book as the v2 ``book`` channel builds it.

Kraken's maintenance rules (https://docs.kraken.com/exchange/guides/websockets/book-checksum-v2):
apply every level of a message in order (quantity 0 removes the price),
then truncate each side to the subscribed depth, since the venue sends
no removal for a level that falls out of scope.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from operator import neg
from typing import Protocol

from sortedcontainers import SortedDict

from .checksum import CHECKSUM_LEVELS, checksum, field

__all__ = ["KrakenBook", "LevelIn", "MalformedLevel", "plain"]


def plain(value: Decimal) -> str:
    """``value`` as plain decimal text, never in exponent form (``1E-9`` -> ``0.000000001``).

    ``str`` is several times faster than ``format(value, "f")`` and agrees
    with it except where it picks exponent form.
    """
    text = str(value)
    return format(value, "f") if "E" in text else text


class MalformedLevel(ValueError):
    """A level whose price is not > 0 or whose quantity is not >= 0 (or not finite)."""


class LevelIn(Protocol):
    """A level as decoded from the wire."""

    @property
    def price(self) -> Decimal: ...

    @property
    def qty(self) -> Decimal: ...


#: A level: (price text, quantity text, quantity, checksum field or "" until needed).
_Entry = tuple[str, str, Decimal, str]


class KrakenBook:
    """Bids and asks of one pair, at most ``depth`` levels a side.

    Each level is kept as ``{price: (price text, qty text, qty, checksum
    field)}``; the field is written once, when the level is first among the
    10 the checksum reads, so the checksum after every message mostly joins
    20 prepared strings. Apply is O(log n) per level (sortedcontainers).
    """

    __slots__ = ("asks", "bids", "depth", "price_places", "qty_places")

    def __init__(self, depth: int, price_places: int | None, qty_places: int | None) -> None:
        self.depth = depth
        self.price_places = price_places
        self.qty_places = qty_places
        # Bids sort by negated price so that index 0 is the best on both sides.
        self.bids: SortedDict = SortedDict(neg)
        self.asks: SortedDict = SortedDict()

    def clear(self) -> None:
        """Forget every level (a new snapshot follows)."""
        self.bids.clear()
        self.asks.clear()

    def replace(self, bids: Sequence[LevelIn], asks: Sequence[LevelIn]) -> None:
        """Make the book exactly these levels (a snapshot), truncated to ``depth``.

        Builds each side in one sort, O(n log n), rather than n inserts.
        Raises :class:`MalformedLevel` (the book is then empty).
        """
        self.clear()
        try:
            for side, levels in ((self.bids, bids), (self.asks, asks)):
                fresh: dict[Decimal, _Entry] = {}
                self._apply_side(fresh, levels)
                side.update(fresh)
                while len(side) > self.depth:
                    side.popitem(-1)
        except MalformedLevel:
            self.clear()
            raise

    def apply(
        self, bids: Sequence[LevelIn], asks: Sequence[LevelIn]
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """Apply levels in order, then truncate to ``depth``.

        Returns the ``(price, qty)`` decimal strings to publish per side
        (bids, asks): the levels applied, then a ``"0"`` for each level the
        truncation removed. Raises :class:`MalformedLevel` (the book is then
        partly applied: the caller resynchronizes it).
        """
        return self._apply_side(self.bids, bids), self._apply_side(self.asks, asks)

    def _apply_side(
        self, side: SortedDict | dict[Decimal, _Entry], levels: Sequence[LevelIn]
    ) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for level in levels:
            price, qty = level.price, level.qty
            if not price.is_finite() or price <= 0 or not qty.is_finite() or qty < 0:
                raise MalformedLevel(f"level price={price} qty={qty}")
            price_text = plain(price)
            if qty:
                qty_text = plain(qty)
                # The checksum field is written when the level first reaches the top 10.
                side[price] = (price_text, qty_text, qty, "")
            else:
                side.pop(price, None)
                qty_text = "0"
            out.append((price_text, qty_text))
        if isinstance(side, SortedDict):
            while len(side) > self.depth:
                _, (price_text, _, _, _) = side.popitem(-1)
                out.append((price_text, "0"))
        return out

    def levels(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """Every level, best first: ``(bids, asks)`` of ``(price, qty)``."""
        return (
            [(p, q) for p, q, _, _ in self.bids.values()],
            [(p, q) for p, q, _, _ in self.asks.values()],
        )

    def checksum(self) -> int:
        """Kraken's CRC32 of the 10 best asks then the 10 best bids."""
        return checksum(self._fields(self.asks), self._fields(self.bids))

    def _fields(self, side: SortedDict) -> list[str]:
        fields: list[str] = []
        for price in side.keys()[:CHECKSUM_LEVELS]:
            price_text, qty_text, qty, text = side[price]
            if not text:
                text = field(price, self.price_places) + field(qty, self.qty_places)
                side[price] = (price_text, qty_text, qty, text)
            fields.append(text)
        return fields
