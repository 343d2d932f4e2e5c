from __future__ import annotations

import random
from fractions import Fraction

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from trading_engine import InvariantError, OrderBook


def make_book() -> OrderBook:
    book = OrderBook("BTC-USD")
    book.replace([(100, 5), (99, 3), (97, 1)], [(101, 2), (102, 4), (105, 7)])
    book._check()
    return book


def test_top_of_book() -> None:
    book = make_book()
    assert book.best_bid == 100
    assert book.best_ask == 101
    assert book.best_bid_level() == (100, 5)
    assert book.best_ask_level() == (101, 2)
    assert book.spread() == 1
    assert book.mid() == Fraction(201, 2)
    # (100 * 2 + 101 * 5) / 7: leans to the ask, which has less size.
    assert book.microprice() == Fraction(705, 7)
    assert book.imbalance() == pytest.approx((5 - 2) / 7)
    assert book.imbalance(levels=2) == pytest.approx((8 - 6) / 14)
    assert book.top() == (100, 5, 101, 2)
    assert not book.is_crossed()


def test_imbalance_sums_exactly_the_best_levels_of_each_side() -> None:
    rng = random.Random(5)
    for _ in range(300):
        book = OrderBook("X")
        bids = {rng.randint(1, 60): rng.randint(1, 10**6) for _ in range(rng.randint(1, 12))}
        asks = {rng.randint(61, 120): rng.randint(1, 10**6) for _ in range(rng.randint(1, 12))}
        book.replace(bids.items(), asks.items())
        for levels in (1, 2, 3, 5, 50):
            bid_size = sum(size for _, size in sorted(bids.items(), reverse=True)[:levels])
            ask_size = sum(size for _, size in sorted(asks.items())[:levels])
            # The same float as dividing the two exact sums.
            assert book.imbalance(levels) == (bid_size - ask_size) / (bid_size + ask_size)


def test_depth_and_iteration_in_price_order() -> None:
    book = make_book()
    assert list(book.bids()) == [(100, 5), (99, 3), (97, 1)]
    assert list(book.asks()) == [(101, 2), (102, 4), (105, 7)]
    assert book.depth(2) == ([(100, 5), (99, 3)], [(101, 2), (102, 4)])
    assert book.bid_levels == 3
    assert book.ask_levels == 3


def test_set_removes_on_zero_and_moves_best() -> None:
    book = make_book()
    book.set_bid(100, 0)
    assert book.best_bid == 99
    book.set_ask(101, 0)
    assert book.best_ask == 102
    book.set_bid(101, 1)
    assert book.best_bid == 101
    book.set_ask(100, 9)
    assert book.best_ask == 100
    assert book.is_crossed()
    book.set_ask(7777, 0)  # removing an absent level is a no-op
    book._check()


def test_size_change_keeps_level_count() -> None:
    book = make_book()
    book.set_bid(99, 8)
    assert book.bid_size(99) == 8
    assert book.bid_levels == 3
    book._check()


def test_empty_book() -> None:
    book = OrderBook("X")
    assert book.best_bid_level() is None
    assert book.best_ask_level() is None
    assert book.mid() is None
    assert book.spread() is None
    assert book.microprice() is None
    assert book.imbalance() is None
    assert book.top() is None
    book.set_bid(5, 1)
    assert book.top() is None  # one side only
    book.set_bid(5, 0)
    assert book.best_bid is None
    book._check()


def test_clear() -> None:
    book = make_book()
    book.clear()
    assert book.bid_levels == book.ask_levels == 0
    assert book.best_bid is None
    book._check()


def test_check_catches_corruption() -> None:
    book = make_book()
    book.best_bid = 98
    with pytest.raises(InvariantError, match="best bid"):
        book._check()
    book = make_book()
    book._asks[103] = 1  # level without an index entry
    with pytest.raises(InvariantError):
        book._check()
    book = make_book()
    book._bids[100] = 0
    with pytest.raises(InvariantError, match="size"):
        book._check()


class BookMachine(RuleBasedStateMachine):
    """OrderBook against a trivial model: two dicts, sorted on demand."""

    def __init__(self) -> None:
        super().__init__()
        self.book = OrderBook("M")
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}

    prices = st.integers(min_value=1, max_value=40)
    sizes = st.integers(min_value=0, max_value=5)

    @rule(price=prices, size=sizes)
    def set_bid(self, price: int, size: int) -> None:
        self.book.set_bid(price, size)
        if size:
            self.bids[price] = size
        else:
            self.bids.pop(price, None)

    @rule(price=prices, size=sizes)
    def set_ask(self, price: int, size: int) -> None:
        self.book.set_ask(price, size)
        if size:
            self.asks[price] = size
        else:
            self.asks.pop(price, None)

    @rule(
        bids=st.dictionaries(prices, st.integers(min_value=1, max_value=5), max_size=8),
        asks=st.dictionaries(prices, st.integers(min_value=1, max_value=5), max_size=8),
    )
    def replace(self, bids: dict[int, int], asks: dict[int, int]) -> None:
        self.book.replace(bids.items(), asks.items())
        self.bids = dict(bids)
        self.asks = dict(asks)

    @rule(
        bids=st.lists(st.tuples(prices, sizes), max_size=5),
        asks=st.lists(st.tuples(prices, sizes), max_size=5),
    )
    def apply(self, bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> None:
        self.book.apply(bids, asks)
        for price, size in bids:
            if size:
                self.bids[price] = size
            else:
                self.bids.pop(price, None)
        for price, size in asks:
            if size:
                self.asks[price] = size
            else:
                self.asks.pop(price, None)

    @invariant()
    def matches_model(self) -> None:
        self.book._check()
        bids = sorted(self.bids.items(), reverse=True)
        asks = sorted(self.asks.items())
        assert list(self.book.bids()) == bids
        assert list(self.book.asks()) == asks
        assert self.book.best_bid_level() == (bids[0] if bids else None)
        assert self.book.best_ask_level() == (asks[0] if asks else None)
        assert self.book.depth(3) == (bids[:3], asks[:3])


TestBookMachine = BookMachine.TestCase


def test_seeded_stress_against_model() -> None:
    rng = random.Random(20261129)
    book = OrderBook("S")
    model: dict[bool, dict[int, int]] = {True: {}, False: {}}
    for step in range(20_000):
        is_bid = rng.random() < 0.5
        price = rng.randint(1, 200)
        size = rng.choice((0, 0, rng.randint(1, 9)))
        (book.set_bid if is_bid else book.set_ask)(price, size)
        if size:
            model[is_bid][price] = size
        else:
            model[is_bid].pop(price, None)
        if step % 500 == 0:
            book._check()
    book._check()
    assert list(book.bids()) == sorted(model[True].items(), reverse=True)
    assert list(book.asks()) == sorted(model[False].items())
