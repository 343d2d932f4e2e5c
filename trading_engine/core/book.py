"""The L2 order book: price levels of one symbol, in ticks and lots.

Design (chosen by ``benchmarks/book.py``): each side keeps a plain ``dict``
from price to size, a :class:`sortedcontainers.SortedList` of its prices,
and the cached best price. A size change at an existing level touches only
the dict (``O(1)``); the sorted list is touched only when a level appears
or disappears (``O(log n)``), and the best price is re-read from the list
only when the best level itself disappears. Reading the best bid or ask is
``O(1)``.

The book is pure data: it does not know sequence numbers, staleness or the
wire. :class:`trading_engine.builder.BookBuilder` owns those rules and only
hands the book whole, validated changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction

from sortedcontainers import SortedList

from .errors import InvariantError

__all__ = ["Level", "OrderBook"]

#: A price level: (price in ticks, size in lots).
Level = tuple[int, int]


class OrderBook:
    """L2 book of one symbol. Prices are ticks, sizes are lots (``int``).

    Bids are read from the highest price down, asks from the lowest up.
    """

    __slots__ = (
        "_ask_prices",
        "_asks",
        "_bid_prices",
        "_bids",
        "best_ask",
        "best_bid",
        "symbol",
    )

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self._bids: dict[int, int] = {}
        self._asks: dict[int, int] = {}
        self._bid_prices: SortedList = SortedList()
        self._ask_prices: SortedList = SortedList()
        #: Best bid price in ticks, or None. Read directly on hot paths.
        self.best_bid: int | None = None
        #: Best ask price in ticks, or None. Read directly on hot paths.
        self.best_ask: int | None = None

    # -- mutation -------------------------------------------------------

    def clear(self) -> None:
        """Remove every level. ``O(n)``."""
        self._bids.clear()
        self._asks.clear()
        self._bid_prices.clear()
        self._ask_prices.clear()
        self.best_bid = None
        self.best_ask = None

    def replace(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Replace the whole book (a snapshot). ``O(n log n)``.

        Sizes must be positive; the caller validates them.
        """
        self._bids = dict(bids)
        self._asks = dict(asks)
        self._bid_prices = SortedList(self._bids)
        self._ask_prices = SortedList(self._asks)
        self.best_bid = self._bid_prices[-1] if self._bids else None
        self.best_ask = self._ask_prices[0] if self._asks else None

    def set_bid(self, price: int, size: int) -> None:
        """Set the bid level at ``price`` to ``size``; size 0 removes it.

        ``O(1)`` when the level exists and stays, ``O(log n)`` when it
        appears or disappears. Removing a level that is absent does nothing.
        """
        levels = self._bids
        if size:
            if price not in levels:
                self._bid_prices.add(price)
                best = self.best_bid
                if best is None or price > best:
                    self.best_bid = price
            levels[price] = size
        elif price in levels:
            del levels[price]
            prices = self._bid_prices
            prices.remove(price)
            if price == self.best_bid:
                self.best_bid = prices[-1] if levels else None

    def set_ask(self, price: int, size: int) -> None:
        """Set the ask level at ``price`` to ``size``; size 0 removes it.

        Same complexity as :meth:`set_bid`.
        """
        levels = self._asks
        if size:
            if price not in levels:
                self._ask_prices.add(price)
                best = self.best_ask
                if best is None or price < best:
                    self.best_ask = price
            levels[price] = size
        elif price in levels:
            del levels[price]
            prices = self._ask_prices
            prices.remove(price)
            if price == self.best_ask:
                self.best_ask = prices[0] if levels else None

    def apply(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Apply changed levels (an update), in order. ``O(k log n)``.

        The same as calling :meth:`set_bid` and :meth:`set_ask` per level,
        inlined: this is the hot path of every update.
        """
        levels = self._bids
        for price, size in bids:
            if size:
                if price not in levels:
                    self._bid_prices.add(price)
                    best = self.best_bid
                    if best is None or price > best:
                        self.best_bid = price
                levels[price] = size
            elif price in levels:
                del levels[price]
                self._bid_prices.remove(price)
                if price == self.best_bid:
                    self.best_bid = self._bid_prices[-1] if levels else None
        levels = self._asks
        for price, size in asks:
            if size:
                if price not in levels:
                    self._ask_prices.add(price)
                    best = self.best_ask
                    if best is None or price < best:
                        self.best_ask = price
                levels[price] = size
            elif price in levels:
                del levels[price]
                self._ask_prices.remove(price)
                if price == self.best_ask:
                    self.best_ask = self._ask_prices[0] if levels else None

    # -- top of book ----------------------------------------------------

    def best_bid_level(self) -> Level | None:
        """Best bid as (price, size), or None when there are no bids. ``O(1)``."""
        price = self.best_bid
        return None if price is None else (price, self._bids[price])

    def best_ask_level(self) -> Level | None:
        """Best ask as (price, size), or None when there are no asks. ``O(1)``."""
        price = self.best_ask
        return None if price is None else (price, self._asks[price])

    def bid_size(self, price: int) -> int:
        """Size at a bid price, 0 when there is no level. ``O(1)``."""
        return self._bids.get(price, 0)

    def ask_size(self, price: int) -> int:
        """Size at an ask price, 0 when there is no level. ``O(1)``."""
        return self._asks.get(price, 0)

    def is_crossed(self) -> bool:
        """True when both sides exist and best bid >= best ask. ``O(1)``."""
        bid, ask = self.best_bid, self.best_ask
        return bid is not None and ask is not None and bid >= ask

    def spread(self) -> int | None:
        """Best ask minus best bid in ticks, or None if a side is empty. ``O(1)``."""
        bid, ask = self.best_bid, self.best_ask
        if bid is None or ask is None:
            return None
        return ask - bid

    def mid(self) -> Fraction | None:
        """Exact mid price in ticks (may be a half tick), or None. ``O(1)``."""
        bid, ask = self.best_bid, self.best_ask
        if bid is None or ask is None:
            return None
        return Fraction(bid + ask, 2)

    def microprice(self) -> Fraction | None:
        """Size-weighted mid in ticks, or None. ``O(1)``.

        ``(bid * ask_size + ask * bid_size) / (bid_size + ask_size)``: it
        leans toward the side with less size, where the next trade is likelier.
        """
        bid, ask = self.best_bid, self.best_ask
        if bid is None or ask is None:
            return None
        bid_size = self._bids[bid]
        ask_size = self._asks[ask]
        return Fraction(bid * ask_size + ask * bid_size, bid_size + ask_size)

    def imbalance(self, levels: int = 1) -> float | None:
        """Top-``levels`` size imbalance in [-1, 1], or None. ``O(levels)``.

        ``(bid_size - ask_size) / (bid_size + ask_size)`` over the best
        ``levels`` of each side. A ratio, not money, so a float.
        """
        if self.best_bid is None or self.best_ask is None:
            return None
        bid_size = sum(size for _, size in self.bids(levels))
        ask_size = sum(size for _, size in self.asks(levels))
        return (bid_size - ask_size) / (bid_size + ask_size)

    # -- depth and iteration --------------------------------------------

    @property
    def bid_levels(self) -> int:
        """Number of bid levels. ``O(1)``."""
        return len(self._bids)

    @property
    def ask_levels(self) -> int:
        """Number of ask levels. ``O(1)``."""
        return len(self._asks)

    def bids(self, depth: int | None = None) -> Iterator[Level]:
        """Bid levels from the best (highest) price down. ``O(log n + depth)``."""
        levels = self._bids
        count = len(levels)
        start = 0 if depth is None else max(0, count - depth)
        # islice slices [start:count] first, then walks it backwards.
        for price in self._bid_prices.islice(start, count, reverse=True):
            yield price, levels[price]

    def asks(self, depth: int | None = None) -> Iterator[Level]:
        """Ask levels from the best (lowest) price up. ``O(log n + depth)``."""
        levels = self._asks
        stop = None if depth is None else depth
        for price in self._ask_prices.islice(0, stop):
            yield price, levels[price]

    def depth(self, levels: int) -> tuple[list[Level], list[Level]]:
        """The best ``levels`` bids and asks, each from the best price outward."""
        return list(self.bids(levels)), list(self.asks(levels))

    # -- invariants -----------------------------------------------------

    def _check(self) -> None:
        """Raise :class:`InvariantError` unless every invariant holds. ``O(n)``.

        Does not require the book to be uncrossed: a crossed book is a
        state the builder tracks, not a corrupt structure.
        """

        def fail(what: str) -> None:
            raise InvariantError(f"{self.symbol}: {what}")

        for name, levels, prices in (
            ("bid", self._bids, self._bid_prices),
            ("ask", self._asks, self._ask_prices),
        ):
            prices._check()
            if len(prices) != len(levels):
                fail(f"{name} index has {len(prices)} prices, levels {len(levels)}")
            for price in prices:
                if price not in levels:
                    fail(f"{name} index price {price} has no level")
            for price, size in levels.items():
                if type(price) is not int or price <= 0:
                    fail(f"{name} price {price!r} is not a positive int")
                if type(size) is not int or size <= 0:
                    fail(f"{name} size {size!r} at {price} is not a positive int")
        expected_bid = self._bid_prices[-1] if self._bids else None
        expected_ask = self._ask_prices[0] if self._asks else None
        if self.best_bid != expected_bid:
            fail(f"cached best bid {self.best_bid} != {expected_bid}")
        if self.best_ask != expected_ask:
            fail(f"cached best ask {self.best_ask} != {expected_ask}")
