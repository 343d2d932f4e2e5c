"""The matching engine the exchange simulator and the replay venue share."""

from __future__ import annotations

from trading_engine.sim.matching import MatchingEngine, MatchOrder, SortedLevels

BOOK = SortedLevels({99: 3, 98: 5}, {101: 2, 102: 4, 104: 10})


def order(side: str, kind: str, price: int | None, quantity: int, tif: str) -> MatchOrder:
    return MatchOrder(f"{side}-{price}-{quantity}", "X", side, kind, price, quantity, tif)


def test_a_limit_ioc_sweeps_crossing_levels_and_cancels_the_rest() -> None:
    engine = MatchingEngine()
    buy = order("buy", "limit", 102, 10, "IOC")
    fills = engine.submit(buy, BOOK)
    assert [(f.price, f.lots) for f in fills] == [(101, 2), (102, 4)]
    assert (buy.status, buy.filled, buy.cost) == ("canceled", 6, 101 * 2 + 102 * 4)
    assert engine.resting == {}


def test_a_market_order_crosses_every_level() -> None:
    engine = MatchingEngine()
    sell = order("sell", "market", None, 7, "IOC")
    fills = engine.submit(sell, BOOK)
    assert [(f.price, f.lots) for f in fills] == [(99, 3), (98, 4)]
    assert sell.status == "filled"


def test_a_gtc_remainder_rests_and_fills_as_the_book_moves_through_it() -> None:
    engine = MatchingEngine()
    buy = order("buy", "limit", 100, 5, "GTC")
    assert engine.submit(buy, BOOK) == []
    assert buy.status == "new"
    assert engine.resting == {buy.client_order_id: buy}
    # Another symbol's move does nothing to it.
    assert engine.on_book("Y", SortedLevels({}, {100: 9})) == []
    # The ask comes down to 100: one level per move, without consuming it.
    moved = SortedLevels({99: 1}, {100: 3, 101: 9})
    assert [(f.price, f.lots) for f in engine.on_book("X", moved)] == [(100, 3)]
    assert buy.status == "partially_filled"
    assert [(f.price, f.lots) for f in engine.on_book("X", moved)] == [(100, 2)]
    assert buy.status == "filled"
    assert engine.resting == {}


def test_a_partly_filled_gtc_rests_and_a_cancel_takes_it_off() -> None:
    engine = MatchingEngine()
    sell = order("sell", "limit", 99, 5, "GTC")
    engine.submit(sell, BOOK)
    assert (sell.status, sell.filled) == ("partially_filled", 3)
    assert engine.cancel(sell.client_order_id) is sell
    assert sell.status == "canceled"
    assert engine.cancel(sell.client_order_id) is None
    assert engine.on_book("X", BOOK) == []


def test_an_order_canceled_outside_the_engine_leaves_the_resting_set() -> None:
    engine = MatchingEngine()
    buy = order("buy", "limit", 100, 5, "GTC")
    engine.submit(buy, BOOK)
    buy.status = "canceled"  # the simulator's DELETE handler
    assert engine.on_book("X", SortedLevels({}, {100: 5})) == []
    assert engine.resting == {}


def test_a_fill_or_kill_fills_whole_at_once_or_not_at_all() -> None:
    engine = MatchingEngine()
    # 2 + 4 lots cross at 102 or better: 7 cannot fill whole, so nothing fills.
    killed = order("buy", "limit", 102, 7, "FOK")
    assert engine.submit(killed, BOOK) == []
    assert (killed.status, killed.filled, killed.cost) == ("canceled", 0, 0)
    filled = order("buy", "limit", 102, 6, "FOK")
    fills = engine.submit(filled, BOOK)
    assert [(f.price, f.lots) for f in fills] == [(101, 2), (102, 4)]
    assert filled.status == "filled"
    assert engine.resting == {}


def test_resting_of_lists_one_symbols_resting_orders_in_arrival_order() -> None:
    engine = MatchingEngine()
    first, second = order("buy", "limit", 90, 1, "GTC"), order("buy", "limit", 91, 1, "GTC")
    other = MatchOrder("o", "Y", "sell", "limit", 500, 1, "GTC")
    for each in (first, second):
        engine.submit(each, BOOK)
    engine.submit(other, SortedLevels({}, {}))
    assert engine.resting_of("X") == [first, second]
    assert engine.resting_of("nothing") == []


def test_would_fill_is_false_only_when_the_book_move_does_nothing() -> None:
    import copy
    import random

    from trading_engine.backtest.models import queue_model

    rng = random.Random(7)
    moved = 0
    for trial in range(400):
        engine = MatchingEngine(queue_model("front", 1.0) if trial % 2 else None)
        for i in range(rng.randint(1, 4)):
            side = rng.choice(("buy", "sell"))
            price = rng.randint(95, 105)
            # Rest it against an empty book, then maybe cancel it outside the engine.
            resting = MatchOrder(f"o{i}", "X", side, "limit", price, rng.randint(1, 9), "GTC")
            engine.submit(resting, SortedLevels({}, {}))
            if rng.random() < 0.05:
                resting.status = "canceled"
        bid = rng.randint(90, 104)
        book = SortedLevels({bid: rng.randint(1, 9)}, {bid + rng.randint(1, 5): 4})
        best_bid = next(iter(book.bids()))[0]
        best_ask = next(iter(book.asks()))[0]
        expected = engine.would_fill("X", best_bid, best_ask)
        before = copy.deepcopy(engine.resting)
        fills = engine.on_book("X", book)
        changed = bool(fills) or engine.resting.keys() != before.keys()
        # Never a false "nothing to do"; and when it says so, nothing happens.
        assert changed <= expected
        if not expected:
            assert fills == []
            assert engine.resting.keys() == before.keys()
        moved += changed
    assert moved > 50  # the random books do reach resting orders
    assert MatchingEngine().would_fill("X", 100, 101) is False
