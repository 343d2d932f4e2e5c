"""One Kraken pair's order book as the v2 ``book`` channel builds it.

Kraken's maintenance rules (https://docs.kraken.com/api/docs/guides/spot-ws-book-v2):
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

__all__ = ["KrakenBook", "LevelIn", "MalformedLevel"]


class MalformedLevel(ValueError):
    """A level whose price is not > 0 or whose quantity is not >= 0 (or not finite)."""


class LevelIn(Protocol):
    """A level as decoded from the wire."""

    @property
    def price(self) -> Decimal: ...

    @property
    def qty(self) -> Decimal: ...


class KrakenBook:
    """Bids and asks of one pair, at most ``depth`` levels a side.

    Each level is kept as ``{price: (price text, qty text, checksum field)}``
    so that the checksum, after every message, only joins 20 prepared
    strings. Apply is O(log n) per level (sortedcontainers).
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

    def _apply_side(self, side: SortedDict, levels: Sequence[LevelIn]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        pp, qp = self.price_places, self.qty_places
        for level in levels:
            price, qty = level.price, level.qty
            if not price.is_finite() or price <= 0 or not qty.is_finite() or qty < 0:
                raise MalformedLevel(f"level price={price} qty={qty}")
            price_text = format(price, "f")
            if qty:
                qty_text = format(qty, "f")
                side[price] = (price_text, qty_text, field(price, pp) + field(qty, qp))
            else:
                side.pop(price, None)
                qty_text = "0"
            out.append((price_text, qty_text))
        while len(side) > self.depth:
            _, (price_text, _, _) = side.popitem(-1)
            out.append((price_text, "0"))
        return out

    def levels(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """Every level, best first: ``(bids, asks)`` of ``(price, qty)``."""
        return (
            [(p, q) for p, q, _ in self.bids.values()],
            [(p, q) for p, q, _ in self.asks.values()],
        )

    def checksum(self) -> int:
        """Kraken's CRC32 of the 10 best asks then the 10 best bids."""
        return checksum(
            [f for _, _, f in self.asks.values()[:CHECKSUM_LEVELS]],
            [f for _, _, f in self.bids.values()[:CHECKSUM_LEVELS]],
        )
