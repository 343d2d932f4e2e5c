"""The L2 order book: price levels of one symbol, in ticks and lots.

Design (chosen by ``benchmarks/book.py``): each side keeps a plain ``dict``
from price to size, a plain ``list`` of its prices kept sorted with
:mod:`bisect` so that the side's best price is the list's *last* item
(bids ascending; asks as negated prices, ascending), and the cached best
price. A size change at an existing level touches only the dict
(``O(1)``); the list is touched only when a level appears or disappears,
by ``bisect`` (``O(log n)`` comparisons) and a ``memmove`` of the prices
behind it (``O(n)`` words, in C), which near the best price, where most
changes land, is a few words: a new best is an ``append``, a removed best a
``pop``. Reading the best bid or ask is ``O(1)``.

Until a book holds tens of thousands of levels the memmove costs less
than one call into a pure-Python sorted container, and every step here
is a C call the compiled build makes directly.

The book is pure data: it does not know sequence numbers, staleness or the
wire. :class:`trading_engine.builder.BookBuilder` owns those rules and only
hands the book whole, validated changes.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Final, cast

from .errors import InvariantError

__all__ = ["Level", "OrderBook"]

#: A price level: (price in ticks, size in lots).
Level = tuple[int, int]


class OrderBook:
    """L2 book of one symbol. Prices are ticks, sizes are lots (``int``).

    Bids are read from the highest price down, asks from the lowest up.
    """

    __slots__ = (
        "_ask_keys",
        "_asks",
        "_bid_prices",
        "_bids",
        "best_ask",
        "best_bid",
        "symbol",
    )

    symbol: Final[str]
    _bids: dict[int, int]
    _asks: dict[int, int]
    #: Bid prices, ascending: the best bid is the last.
    _bid_prices: list[int]
    #: Ask prices negated, ascending: the best ask is minus the last.
    _ask_keys: list[int]
    best_bid: int | None
    best_ask: int | None

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self._bids = {}
        self._asks = {}
        self._bid_prices = []
        self._ask_keys = []
        #: Best bid price in ticks, or None. Read directly on hot paths.
        self.best_bid = None
        #: Best ask price in ticks, or None. Read directly on hot paths.
        self.best_ask = None

    # -- mutation -------------------------------------------------------

    def clear(self) -> None:
        """Remove every level. ``O(n)``."""
        self._bids.clear()
        self._asks.clear()
        self._bid_prices.clear()
        self._ask_keys.clear()
        self.best_bid = None
        self.best_ask = None

    def replace(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Replace the whole book (a snapshot). ``O(n log n)``.

        Sizes must be positive; the caller validates them.
        """
        self._bids = dict(bids)
        self._asks = dict(asks)
        self._bid_prices = sorted(self._bids)
        self._ask_keys = sorted([-price for price in self._asks])
        self.best_bid = self._bid_prices[-1] if self._bid_prices else None
        self.best_ask = -self._ask_keys[-1] if self._ask_keys else None

    def set_bid(self, price: int, size: int) -> None:
        """Set the bid level at ``price`` to ``size``; size 0 removes it.

        ``O(1)`` when the level exists and stays, ``O(log n)`` comparisons
        plus a short memmove when it appears or disappears. Removing a level
        that is absent does nothing.
        """
        levels = self._bids
        if size:
            if price not in levels:
                self._add_bid(price)
            levels[price] = size
        elif price in levels:
            del levels[price]
            self._remove_bid(price)

    def set_ask(self, price: int, size: int) -> None:
        """Set the ask level at ``price`` to ``size``; size 0 removes it.

        Same complexity as :meth:`set_bid`.
        """
        levels = self._asks
        if size:
            if price not in levels:
                self._add_ask(price)
            levels[price] = size
        elif price in levels:
            del levels[price]
            self._remove_ask(price)

    def apply(self, bids: list[Level], asks: list[Level]) -> None:
        """Apply changed levels (an update), in order. ``O(k log n)``.

        The same as calling :meth:`set_bid` and :meth:`set_ask` per level.
        Takes lists (what the decoder makes): the compiled build iterates
        them directly.
        """
        # Prices and sizes stay the int objects the decoder made: typed
        # ``int``, the compiled build would unbox them and box them again
        # (an allocation each) for every dict operation.
        levels = cast("dict[object, object]", self._bids)
        for level in cast("list[tuple[object, object]]", bids):
            price = level[0]
            size = level[1]
            if size:
                if price not in levels:
                    self._add_bid(cast(int, price))
                levels[price] = size
            elif price in levels:
                del levels[price]
                self._remove_bid(cast(int, price))
        levels = cast("dict[object, object]", self._asks)
        for level in cast("list[tuple[object, object]]", asks):
            price = level[0]
            size = level[1]
            if size:
                if price not in levels:
                    self._add_ask(cast(int, price))
                levels[price] = size
            elif price in levels:
                del levels[price]
                self._remove_ask(cast(int, price))

    def _add_bid(self, price: int) -> None:
        best = self.best_bid
        if best is None or price > best:
            self._bid_prices.append(price)
            self.best_bid = price
        else:
            insort(self._bid_prices, price)

    def _remove_bid(self, price: int) -> None:
        prices = self._bid_prices
        if price == self.best_bid:
            prices.pop()
            self.best_bid = prices[-1] if prices else None
        else:
            del prices[bisect_left(prices, price)]

    def _add_ask(self, price: int) -> None:
        best = self.best_ask
        if best is None or price < best:
            self._ask_keys.append(-price)
            self.best_ask = price
        else:
            insort(self._ask_keys, -price)

    def _remove_ask(self, price: int) -> None:
        keys = self._ask_keys
        if price == self.best_ask:
            keys.pop()
            self.best_ask = -keys[-1] if keys else None
        else:
            del keys[bisect_left(keys, -price)]

    # -- top of book ----------------------------------------------------

    def best_bid_level(self) -> Level | None:
        """Best bid as (price, size), or None when there are no bids. ``O(1)``."""
        price = self.best_bid
        return None if price is None else (price, self._bids[price])

    def best_ask_level(self) -> Level | None:
        """Best ask as (price, size), or None when there are no asks. ``O(1)``."""
        price = self.best_ask
        return None if price is None else (price, self._asks[price])

    def top(self) -> tuple[int, int, int, int] | None:
        """``(best bid, its size, best ask, its size)``, or None if a side is empty. ``O(1)``.

        The whole top of the book in one call and one tuple: what a quoting
        strategy reads on every update.
        """
        bid, ask = self.best_bid, self.best_ask
        if bid is None or ask is None:
            return None
        return bid, self._bids[bid], ask, self._asks[ask]

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
        # Index loops rather than sums over the level iterators: no generator
        # and no tuple per level (this runs on every update a strategy reads).
        bids = self._bids
        prices = self._bid_prices
        bid_size = 0
        for index in range(len(prices) - 1, len(prices) - 1 - min(len(prices), levels), -1):
            bid_size += bids[prices[index]]
        asks = self._asks
        keys = self._ask_keys
        ask_size = 0
        for index in range(len(keys) - 1, len(keys) - 1 - min(len(keys), levels), -1):
            ask_size += asks[-keys[index]]
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
        """Bid levels from the best (highest) price down. ``O(depth)``."""
        levels = self._bids
        prices = self._bid_prices
        count = len(prices) if depth is None else min(len(prices), max(0, depth))
        for index in range(len(prices) - 1, len(prices) - 1 - count, -1):
            price = prices[index]
            yield price, levels[price]

    def asks(self, depth: int | None = None) -> Iterator[Level]:
        """Ask levels from the best (lowest) price up. ``O(depth)``."""
        levels = self._asks
        keys = self._ask_keys
        count = len(keys) if depth is None else min(len(keys), max(0, depth))
        for index in range(len(keys) - 1, len(keys) - 1 - count, -1):
            price = -keys[index]
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
        sides = (
            ("bid", self._bids, self._bid_prices),
            ("ask", self._asks, [-key for key in self._ask_keys]),
        )
        for name, levels, prices in sides:
            keys = self._bid_prices if name == "bid" else self._ask_keys
            for index in range(1, len(keys)):
                if keys[index - 1] >= keys[index]:
                    self._fail(f"{name} index is not strictly sorted at {index}")
            if len(prices) != len(levels):
                self._fail(f"{name} index has {len(prices)} prices, levels {len(levels)}")
            for price in prices:
                if price not in levels:
                    self._fail(f"{name} index price {price} has no level")
            for price, size in levels.items():
                if type(price) is not int or price <= 0:
                    self._fail(f"{name} price {price!r} is not a positive int")
                if type(size) is not int or size <= 0:
                    self._fail(f"{name} size {size!r} at {price} is not a positive int")
        expected_bid = self._bid_prices[-1] if self._bid_prices else None
        expected_ask = -self._ask_keys[-1] if self._ask_keys else None
        if self.best_bid != expected_bid:
            self._fail(f"cached best bid {self.best_bid} != {expected_bid}")
        if self.best_ask != expected_ask:
            self._fail(f"cached best ask {self.best_ask} != {expected_ask}")

    def _fail(self, what: str) -> None:
        raise InvariantError(f"{self.symbol}: {what}")
