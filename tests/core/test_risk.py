from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fakes import config, snapshot
from trading_engine.core.clock import ManualClock
from trading_engine.core.orders import OrderType, TimeInForce
from trading_engine.core.protocol import Side
from trading_engine.core.risk import Denial, SlidingWindowLimit, TradingState
from trading_engine.engine.engine import Engine
from trading_engine.sim.venue import simulated_venue

RISK = {
    "max_order_quantity": "2",
    "max_order_notional": "300",
    "max_position": "3",
    "price_band": 0.05,
    "max_orders_per_s": 5,
}


def make_engine(**risk: object) -> tuple[Engine, ManualClock]:
    clock = ManualClock(start_ns=10**12)
    engine = Engine(
        config(risk={**RISK, **risk}), clock=clock, run_id="test", sink_factory=simulated_venue
    )
    # A book far from any order price so that nothing fills by accident.
    engine.builder.handle(snapshot(1, [["100.00", "5"]], [["100.10", "5"]]))
    return engine, clock


def submit(
    engine: Engine,
    side: Side = Side.BUY,
    lots: int = 1000,
    price: int | None = 9900,
    order_type: OrderType = OrderType.LIMIT,
    strategy: str = "probe",
) -> Denial | None:
    runner = engine.runners[strategy]
    _, denial = engine.submit(runner, "BTC-USD", side, lots, price, order_type, TimeInForce.GTC)
    return denial


def test_an_ordinary_order_passes() -> None:
    engine, _ = make_engine()
    assert submit(engine) is None
    assert engine.risk.passed == 1


@pytest.mark.parametrize(
    ("kwargs", "denial"),
    [
        ({"lots": 0}, Denial.INVALID_ORDER),
        ({"price": None}, Denial.INVALID_ORDER),
        ({"lots": 2001}, Denial.MAX_QUANTITY),
        ({"lots": 1000, "price": 15001}, Denial.PRICE_BAND),
        ({"lots": 1000, "price": 9000}, Denial.PRICE_BAND),
    ],
)
def test_order_limits(kwargs: dict[str, object], denial: Denial) -> None:
    engine, _ = make_engine()
    assert submit(engine, **kwargs) is denial  # type: ignore[arg-type]
    assert engine.risk.denied[denial] == 1


def test_max_notional() -> None:
    engine, _ = make_engine(max_order_notional="150")
    assert submit(engine, lots=1500, price=10000) is None  # 150.00 exactly
    assert submit(engine, lots=1501, price=10000) is Denial.MAX_NOTIONAL


def test_market_orders_are_priced_at_the_band_edge() -> None:
    # Mid 100.05, band 5%: a market buy may fill up to 105.05, not the touch's 100.10.
    engine, _ = make_engine(max_order_notional="150")
    assert submit(engine, lots=1450, price=None, order_type=OrderType.MARKET) is Denial.MAX_NOTIONAL
    assert submit(engine, lots=1420, price=None, order_type=OrderType.MARKET) is None
    entry = engine.builder.books["BTC-USD"]
    assert engine.risk.band_edge(entry, Side.BUY) == 10505
    assert engine.risk.band_edge(entry, Side.SELL) == 9505  # 95.0475 rounded up to a tick


def test_max_position_counts_open_orders() -> None:
    engine, _ = make_engine(max_orders_per_s=100)
    assert submit(engine, lots=2000) is None
    assert submit(engine, lots=1000) is None
    assert submit(engine, lots=1) is Denial.MAX_POSITION  # 3.000 open buys already
    assert submit(engine, side=Side.SELL, lots=2000, price=10100) is None  # sells are fine


def test_book_must_be_live() -> None:
    engine, _ = make_engine()
    engine.builder.mark_stale(["BTC-USD"])
    assert submit(engine) is Denial.BOOK_NOT_LIVE


def test_halted_and_reducing() -> None:
    engine, _ = make_engine()
    engine.positions.fill("probe", "BTC-USD", Side.BUY, 10000, 1000)
    engine.set_trading_state(TradingState.HALTED)
    assert submit(engine) is Denial.HALTED
    engine.set_trading_state(TradingState.REDUCING)
    assert submit(engine) is Denial.REDUCING  # a buy grows a long
    assert submit(engine, side=Side.SELL, lots=2000, price=10100) is Denial.REDUCING  # flips
    assert submit(engine, side=Side.SELL, lots=1000, price=10100) is None  # shrinks
    assert (
        submit(engine, side=Side.SELL, lots=1, price=10100) is Denial.REDUCING
    )  # open sells count
    engine.set_trading_state(TradingState.ACTIVE)
    assert submit(engine) is None


def test_halt_cancels_open_orders_and_cancels_always_pass() -> None:
    engine, _ = make_engine()
    order, _ = engine.submit(
        engine.runners["probe"], "BTC-USD", Side.BUY, 1000, 9900, OrderType.LIMIT, TimeInForce.GTC
    )
    assert order is not None
    assert order.is_open
    engine.set_trading_state(TradingState.HALTED)
    assert not order.is_open
    assert engine.open_orders["probe"] == {}


def test_rate_limits() -> None:
    engine, clock = make_engine(max_orders_per_s=5, strategy_max_orders_per_s=3)
    assert [submit(engine, lots=1) for _ in range(4)] == [
        None,
        None,
        None,
        Denial.STRATEGY_RATE_LIMIT,
    ]
    clock.advance(1.0)  # the first three are still in the window [t, t + 1 s]
    assert submit(engine, lots=1) is Denial.STRATEGY_RATE_LIMIT
    clock.advance(0.001)
    assert submit(engine, lots=1) is None


def test_sliding_window_never_exceeds_its_count() -> None:
    limit = SlidingWindowLimit(3, window_ns=1000)
    for now in (0, 10, 20):
        assert limit.allows(now)
        limit.record(now)
    assert not limit.allows(999)
    # [0, 1000] is one window: an event at 1000 would be its fourth.
    assert not limit.allows(1000)
    assert limit.allows(1001)


def test_sliding_window_admits_exactly_count_per_window_after_the_first() -> None:
    # 20 per second asked every 50 ms: the window [t, t + 1 s] never holds 21.
    limit = SlidingWindowLimit(20, window_ns=10**9)
    sent = []
    for step in range(100):
        now = step * 50_000_000
        if limit.allows(now):
            limit.record(now)
            sent.append(now)
    for start in sent:
        assert sum(1 for t in sent if start <= t <= start + 10**9) <= 20
    # Each full window still admits its 20: the limit is not stricter than asked.
    assert len(sent) == 20 + 80 * 20 // 21


def _window_model(times: list[int], count: int, window_ns: int) -> list[bool]:
    """Brute force: admit an event iff the closed window ending at it has room."""
    accepted: list[int] = []
    decisions = []
    for now in times:
        inside = sum(1 for t in accepted if now - window_ns <= t <= now)
        ok = inside < count
        decisions.append(ok)
        if ok:
            accepted.append(now)
    return decisions


@given(
    st.integers(1, 6),
    st.integers(1, 50),
    st.lists(st.integers(0, 30), max_size=80),
)
def test_sliding_window_matches_a_brute_force_model(
    count: int, window_ns: int, gaps: list[int]
) -> None:
    times = []
    now = 0
    for gap in gaps:
        now += gap
        times.append(now)
    limit = SlidingWindowLimit(count, window_ns=window_ns)
    decisions = []
    for t in times:
        ok = limit.allows(t)
        decisions.append(ok)
        if ok:
            limit.record(t)
    assert decisions == _window_model(times, count, window_ns)
    accepted = [t for t, ok in zip(times, decisions, strict=True) if ok]
    for start in accepted:
        assert sum(1 for t in accepted if start <= t <= start + window_ns) <= count


def test_limits_off_the_lot_grid_round_down() -> None:
    # 1.0005 and 2.0005 are not multiples of the 0.001 lot: 1.000 and 2.000 hold.
    engine, _ = make_engine(
        max_order_quantity="1.0005", max_position="2.0005", max_orders_per_s=100
    )
    assert submit(engine, lots=1001) is Denial.MAX_QUANTITY
    assert submit(engine, lots=1000) is None
    assert submit(engine, lots=1000) is None
    assert submit(engine, lots=1) is Denial.MAX_POSITION
    assert engine.risk.denied[Denial.MAX_QUANTITY] == 1
    assert engine.risk.denied[Denial.MAX_POSITION] == 1


def test_notional_limit_off_the_tick_grid_rounds_down() -> None:
    # One tick*lot unit is 0.00001: 100.009995 holds 10,000,999 of them, not 10,001,000.
    engine, _ = make_engine(max_order_notional="100.009995")
    assert submit(engine, lots=1000, price=10001) is Denial.MAX_NOTIONAL
    assert submit(engine, lots=1000, price=10000) is None
    assert engine.risk.denied[Denial.MAX_NOTIONAL] == 1


@pytest.mark.parametrize("state", ["awaiting_snapshot", "crossed", "stale"])
def test_orders_on_a_book_that_is_not_live_are_denied_and_counted(state: str) -> None:
    clock = ManualClock(start_ns=10**12)
    engine = Engine(config(risk=RISK), clock=clock, run_id="t", sink_factory=simulated_venue)
    builder = engine.builder
    if state == "crossed":
        # Best bid above best ask: a mid exists and the price is inside the band.
        builder.handle(snapshot(1, [["100.10", "5"]], [["100.00", "5"]]))
    elif state == "stale":
        builder.handle(snapshot(1, [["100.00", "5"]], [["100.10", "5"]]))
        builder.mark_stale(["BTC-USD"])
    assert builder.books["BTC-USD"].state.value == state
    assert submit(engine, price=10005) is Denial.BOOK_NOT_LIVE
    assert engine.risk.denied[Denial.BOOK_NOT_LIVE] == 1
    # A market order too (with no mid it has no band edge to be priced at).
    expected = Denial.NO_PRICE if state == "awaiting_snapshot" else Denial.BOOK_NOT_LIVE
    assert submit(engine, order_type=OrderType.MARKET, price=None) is expected
    assert sum(engine.risk.denied.values()) == 2
    assert engine.risk.passed == 0


request = st.tuples(
    st.sampled_from([Side.BUY, Side.SELL]),
    st.integers(-500, 3000),  # lots
    st.integers(-800, 800),  # price offset from 100.00 in ticks
    st.sampled_from([OrderType.LIMIT, OrderType.MARKET]),
    st.sampled_from([TimeInForce.GTC, TimeInForce.IOC]),
    st.floats(0, 0.5),  # clock advance
    st.sampled_from(["active", "reducing", "halted", "active", "active"]),
)


@given(st.lists(request, max_size=60))
def test_no_sequence_of_requests_breaches_a_limit(
    requests: list[tuple[Side, int, int, OrderType, TimeInForce, float, str]],
) -> None:
    clock = ManualClock(start_ns=10**12)
    engine = Engine(config(risk=RISK), clock=clock, run_id="prop", sink_factory=simulated_venue)
    engine.builder.handle(snapshot(1, [["100.00", "2"], ["99.90", "2"]], [["100.05", "2"]]))
    runner = engine.runners["probe"]
    sent_times: list[int] = []
    for side, lots, offset, order_type, tif, advance, state in requests:
        clock.advance(advance)
        engine.set_trading_state(TradingState(state))
        before = engine.positions.quantity("BTC-USD")
        exposure = list(engine.exposure["BTC-USD"])
        price = 10000 + offset if order_type is OrderType.LIMIT else None
        order, denial = engine.submit(runner, "BTC-USD", side, lots, price, order_type, tif)
        if order is None:
            assert denial is not None
            continue
        sent_times.append(clock.now_ns)
        assert state != "halted"
        assert 0 < order.quantity <= 2000
        effective = order.price if order.price is not None else 10005 if side is Side.BUY else 10000
        assert effective * order.quantity <= 300 * 100 * 1000
        if order.price is not None:
            assert abs(2 * order.price - 20005) * 20 <= 20005
        if state == "reducing":
            if side is Side.BUY:
                assert before < 0
                assert exposure[0] + lots <= -before
            else:
                assert before > 0
                assert exposure[1] + lots <= before
        # The position, counting every open order, stays within the limit.
        position = engine.positions.quantity("BTC-USD")
        buys, sells = engine.exposure["BTC-USD"]
        assert position + buys <= 3000
        assert position - sells >= -3000
    # Never more than max_orders_per_s in any 1 s window.
    for i, start in enumerate(sent_times):
        window = [t for t in sent_times[i:] if t - start <= 10**9]
        assert len(window) <= 5
