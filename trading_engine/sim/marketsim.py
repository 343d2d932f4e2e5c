"""Seeded random-walk L2 books that speak the market-data protocol.

:class:`RandomWalkBook` keeps a true book for one symbol and produces a
stream of snapshots, updates and trades from a seeded random walk of the
mid price: levels appear, change and disappear around the mid, roughly
``levels`` a side, and the book is never crossed. The same seed always
gives the same stream, so tests, benchmarks, the publisher and the
exchange simulator share reproducible data.
"""

from __future__ import annotations

import random
from typing import Any

import orjson

from ..core.instruments import Instrument

__all__ = ["RandomWalkBook"]


class RandomWalkBook:
    """A publisher-side book of one symbol, driven by a seeded random walk.

    ``mid`` and every level are in ticks; sizes in lots. ``step()`` moves
    the book and returns the changed levels; ``update_frame()`` and
    ``snapshot_frame()`` render protocol frames (with the newline).
    """

    def __init__(
        self,
        instrument: Instrument,
        seed: int = 0,
        mid: int = 10_000,
        levels: int = 20,
        max_size: int = 5_000,
        trade_probability: float = 0.0,
    ) -> None:
        if mid <= 2 * levels + 2:
            raise ValueError("mid must leave room for the levels above zero")
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.rng = random.Random(seed)
        self.mid = mid
        self.levels = levels
        self.max_size = max_size
        self.trade_probability = trade_probability
        self.seq = 0
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        rng = self.rng
        for offset in range(1, levels + 1):
            self.bids[mid - offset] = rng.randint(1, max_size)
            self.asks[mid + offset] = rng.randint(1, max_size)
        self._price_text: dict[int, str] = {}
        self._size_text: dict[int, str] = {}

    # -- the walk -------------------------------------------------------

    @property
    def best_bid(self) -> int:
        return max(self.bids)

    @property
    def best_ask(self) -> int:
        return min(self.asks)

    def step(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Move the book once; return the changed (bids, asks), size 0 = removed."""
        rng = self.rng
        bids: dict[int, int] = {}
        asks: dict[int, int] = {}
        roll = rng.random()
        if roll < 0.1:
            self.mid += 1 if rng.random() < 0.5 else -1
            mid = self.mid
            for price in [p for p in self.bids if p >= mid]:
                del self.bids[price]
                bids[price] = 0
            for price in [p for p in self.asks if p <= mid]:
                del self.asks[price]
                asks[price] = 0
        side, changes, other = (self.bids, bids, -1) if rng.random() < 0.5 else (self.asks, asks, 1)
        count = len(side)
        action = rng.random()
        if count and (action < 0.5 or count >= self.levels + 5):
            price = rng.choice(list(side)) if count < 64 else next(iter(side))
            if action < 0.3 and count > self.levels - 3:
                del side[price]
                changes[price] = 0
            else:
                size = rng.randint(1, self.max_size)
                side[price] = size
                changes[price] = size
        else:
            price = self.mid + other * rng.randint(1, self.levels + 10)
            size = rng.randint(1, self.max_size)
            side[price] = size
            changes[price] = size
        return list(bids.items()), list(asks.items())

    def trade(self) -> tuple[int, int, str]:
        """A print at the touch: (price, size, aggressor side)."""
        rng = self.rng
        if rng.random() < 0.5:
            return self.best_ask, rng.randint(1, self.max_size), "buy"
        return self.best_bid, rng.randint(1, self.max_size), "sell"

    # -- frames ---------------------------------------------------------

    def _price(self, ticks: int) -> str:
        text = self._price_text.get(ticks)
        if text is None:
            text = self._price_text[ticks] = self.instrument.format_price(ticks)
        return text

    def _size(self, lots: int) -> str:
        text = self._size_text.get(lots)
        if text is None:
            text = self._size_text[lots] = self.instrument.format_size(lots)
        return text

    def _levels(self, levels: list[tuple[int, int]]) -> list[list[str]]:
        price, size = self._price, self._size
        return [[price(p), size(s)] for p, s in levels]

    def snapshot_message(self, ts: int | None = None) -> dict[str, Any]:
        """A snapshot of the whole book at the current sequence number."""
        self.seq += 1
        message: dict[str, Any] = {
            "type": "snapshot",
            "symbol": self.symbol,
            "seq": self.seq,
            "bids": self._levels(sorted(self.bids.items(), reverse=True)),
            "asks": self._levels(sorted(self.asks.items())),
        }
        if ts is not None:
            message["ts"] = ts
        return message

    def next_message(self, ts: int | None = None) -> dict[str, Any]:
        """The next update (or, with ``trade_probability``, trade) message."""
        self.seq += 1
        if self.trade_probability and self.rng.random() < self.trade_probability:
            price, size, side = self.trade()
            message: dict[str, Any] = {
                "type": "trade",
                "symbol": self.symbol,
                "seq": self.seq,
                "price": self._price(price),
                "size": self._size(size),
                "side": side,
            }
        else:
            bids, asks = self.step()
            message = {
                "type": "update",
                "symbol": self.symbol,
                "seq": self.seq,
                "bids": self._levels(bids),
                "asks": self._levels(asks),
            }
        if ts is not None:
            message["ts"] = ts
        return message

    def snapshot_frame(self, ts: int | None = None) -> bytes:
        """:meth:`snapshot_message` as a protocol frame with its newline."""
        return orjson.dumps(self.snapshot_message(ts), option=orjson.OPT_APPEND_NEWLINE)

    def next_frame(self, ts: int | None = None) -> bytes:
        """:meth:`next_message` as a protocol frame with its newline."""
        return orjson.dumps(self.next_message(ts), option=orjson.OPT_APPEND_NEWLINE)
