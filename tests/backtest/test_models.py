"""Queue position and latency models against cases computed by hand (numbers in each test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trading_engine.backtest.models import (
    ConstantLatency,
    FrontQueue,
    LatencyError,
    ProbQueue,
    SampledLatency,
    load_latency_samples,
    queue_model,
)
from trading_engine.core.orders import OrderStatus, OrderType
from trading_engine.core.protocol import Side
from trading_engine.sim.matching import MatchingEngine, MatchOrder, QueuePosition, SortedLevels

BOOK = SortedLevels({100: 10}, {101: 5})


def resting_buy(engine: MatchingEngine, lots: int = 5, ahead: int = 10) -> MatchOrder:
    order = MatchOrder("b1", "X", Side.BUY, OrderType.LIMIT, 100, lots)
    assert engine.submit(order, BOOK, ahead) == []
    assert engine.positions["b1"].ahead == ahead
    return order


def test_trades_at_the_price_take_the_queue_ahead_first() -> None:
    engine = MatchingEngine(FrontQueue())
    order = resting_buy(engine)
    # 10 ahead; a sell of 4 leaves 6 ahead, nothing filled.
    assert engine.on_trade("X", 100, 4, Side.SELL) == []
    assert engine.positions["b1"].ahead == 6
    # A sell of 7: 6 ahead are filled, the 7th lot is ours: filled 1.
    fills = engine.on_trade("X", 100, 7, Side.SELL)
    assert [(f.price, f.lots) for f in fills] == [(100, 1)]
    assert order.filled == 1
    assert order.status == OrderStatus.PARTIALLY_FILLED
    # Now at the front: a sell of 3 fills 3 (4 of 5).
    assert [(f.price, f.lots) for f in engine.on_trade("X", 100, 3, Side.SELL)] == [(100, 3)]
    # A buy print does not trade against bids; a print at another price leaves the queue.
    assert engine.on_trade("X", 100, 9, Side.BUY) == []
    assert engine.on_trade("X", 101, 9, Side.SELL) == []
    assert order.filled == 4


def test_a_print_through_the_price_fills_the_remainder_at_the_order_price() -> None:
    engine = MatchingEngine(FrontQueue())
    order = resting_buy(engine)
    # A sell printing at 99 went through the whole level at 100: 5 lots at 100.
    assert [(f.price, f.lots) for f in engine.on_trade("X", 99, 1, Side.SELL)] == [(100, 5)]
    assert order.status == OrderStatus.FILLED
    assert engine.positions == {}
    assert engine.levels == {}


def test_a_book_reaching_the_price_fills_the_remainder() -> None:
    engine = MatchingEngine(FrontQueue())
    order = resting_buy(engine)
    fills = engine.on_book("X", SortedLevels({99: 3}, {100: 1}))
    # An ask at the bid's price: its queue is gone, all 5 fill at 100 (not 1, the ask's size).
    assert [(f.price, f.lots) for f in fills] == [(100, 5)]
    assert order.status == OrderStatus.FILLED


def test_front_model_every_decrease_is_ahead() -> None:
    position = QueuePosition(ahead=10)
    # The level 30 -> 25 with no trade: 5 left from the front, 5 ahead.
    assert FrontQueue().depth(position, 30, 25) == 5
    # 26 leave, all from the front: 0 ahead (not a fill: only trades fill).
    assert FrontQueue().depth(QueuePosition(ahead=10), 30, 4) == 0
    # Never more ahead than the level holds: 10 ahead, 4 traded, level 12 -> 8: 8.
    assert FrontQueue().depth(QueuePosition(ahead=10, traded=4), 12, 8) == 8
    # An increase joins behind: 10 ahead stays 10.
    assert FrontQueue().depth(QueuePosition(ahead=10), 10, 15) == 10


def test_a_trade_and_the_update_that_shows_it_move_the_order_once() -> None:
    engine = MatchingEngine(FrontQueue())
    resting_buy(engine)
    engine.on_trade("X", 100, 4, Side.SELL)  # 10 ahead -> 6, 4 traded
    # The venue's next update shows the level 30 -> 26: the same 4 lots. 6 ahead stays 6.
    engine.on_depth("X", Side.BUY, 100, 30, 26)
    assert engine.positions["b1"].ahead == 6
    assert engine.positions["b1"].traded == 0
    # A later decrease 26 -> 24 with no trade: 2 more from the front: 4.
    engine.on_depth("X", Side.BUY, 100, 26, 24)
    assert engine.positions["b1"].ahead == 4


def test_prob_model_splits_a_decrease_by_the_power_law() -> None:
    # 10 ahead, 20 behind (level 30), 10 leave: n=2: p(behind) = 20^2 / (20^2 + 10^2) = 0.8;
    # ahead = 10 - (1 - 0.8) * 10 + min(20 - 0.8 * 10, 0) = 10 - 2 + 0 = 8.
    assert ProbQueue(2).depth(QueuePosition(ahead=10), 30, 20) == 8
    # n=1: p = 20/30; ahead = 10 - 10/3 = 6.67, rounded up (never nearer the front): 7.
    assert ProbQueue(1).depth(QueuePosition(ahead=10), 30, 20) == 7
    # 10 ahead, 5 behind (level 15) -> 2 (13 leave), n=2: p = 25/125 = 0.2;
    # 10 - 0.8 * 13 + min(5 - 2.6, 0) = -0.4: nothing is ahead, 0 (not a fill).
    assert ProbQueue(2).depth(QueuePosition(ahead=10), 15, 2) == 0
    # At the front (0 ahead) a decrease is behind: stays 0.
    assert ProbQueue(3).depth(QueuePosition(ahead=0), 15, 10) == 0
    # An increase: unchanged.
    assert ProbQueue(3).depth(QueuePosition(ahead=7), 10, 12) == 7
    # Traded lots are taken out of the decrease first: 30 -> 20 after 10 traded: no move.
    assert ProbQueue(2).depth(QueuePosition(ahead=8, traded=10), 30, 20) == 8


def test_the_model_is_chosen_by_name() -> None:
    assert isinstance(queue_model("front", 3.0), FrontQueue)
    prob = queue_model("prob", 2.5)
    assert isinstance(prob, ProbQueue)
    assert prob.name == "prob(n=2.5)"
    assert queue_model("none", 3.0) is None
    with pytest.raises(ValueError, match=r"backtest\.queue_model"):
        queue_model("fifo", 3.0)
    with pytest.raises(ValueError, match="queue_power"):
        ProbQueue(0)


def test_latencies_are_constant_or_drawn_with_a_seed(tmp_path: Path) -> None:
    assert ConstantLatency(1500)() == 1500
    with pytest.raises(ValueError, match="never negative"):
        ConstantLatency(-1)
    samples = [100, 200, 300, 400]
    one = SampledLatency(samples, seed=7)
    two = SampledLatency(samples, seed=7)
    draws = [one() for _ in range(50)]
    assert draws == [two() for _ in range(50)]
    assert set(draws) <= set(samples)
    assert len(set(draws)) > 1
    assert draws != [SampledLatency(samples, seed=8)() for _ in range(50)]


def test_latency_samples_file_is_microseconds_per_line(tmp_path: Path) -> None:
    path = tmp_path / "lat.txt"
    path.write_text("# order round trips\n150\n\n212.5\n")
    assert load_latency_samples(path) == [150_000, 212_500]
    path.write_text("150\nfast\n")
    with pytest.raises(LatencyError, match=r"lat.txt:2"):
        load_latency_samples(path)
    with pytest.raises(LatencyError, match="cannot read"):
        load_latency_samples(tmp_path / "missing.txt")


def test_a_prometheus_histogram_becomes_samples_spread_in_its_buckets(tmp_path: Path) -> None:
    path = tmp_path / "metrics.txt"
    path.write_text(
        "# TYPE x_seconds histogram\n"
        'x_seconds_bucket{le="0.001"} 2\n'
        'x_seconds_bucket{le="0.002"} 4\n'
        'x_seconds_bucket{le="+Inf"} 4\n'
        "x_seconds_count 4\n"
    )
    # 2 in (0, 1 ms]: 0.25 and 0.75 ms; 2 in (1, 2 ms]: 1.25 and 1.75 ms.
    assert load_latency_samples(path) == [250_000, 750_000, 1_250_000, 1_750_000]
    path.write_text('x_seconds_bucket{le="+Inf"} 0\n')
    with pytest.raises(LatencyError, match="no observations"):
        load_latency_samples(path)


def test_resting_orders_are_kept_by_symbol_side_and_price_and_leave_no_empty_level() -> None:
    engine = MatchingEngine(FrontQueue())
    for cid, side, price in (("b1", Side.BUY, 100), ("b2", Side.BUY, 100), ("s1", Side.SELL, 102)):
        order = MatchOrder(cid, "X", side, OrderType.LIMIT, price, 1)
        assert engine.submit(order, BOOK, 3) == []
    assert {
        side: {p: list(o) for p, o in prices.items()} for side, prices in engine.levels["X"].items()
    } == {
        "buy": {100: ["b1", "b2"]},
        "sell": {102: ["s1"]},
    }
    # A decrease at a level with orders moves them; at another price or side, nothing.
    engine.on_depth("X", "buy", 100, 10, 8)
    engine.on_depth("X", "sell", 100, 10, 0)
    engine.on_depth("Y", "buy", 100, 10, 0)
    assert [engine.positions[cid].ahead for cid in ("b1", "b2", "s1")] == [1, 1, 3]
    engine.cancel("b1")
    assert list(engine.levels["X"]["buy"][100]) == ["b2"]
    engine.cancel("s1")
    assert list(engine.levels["X"]) == ["buy"]
    engine.cancel("b2")
    assert engine.levels == {}
