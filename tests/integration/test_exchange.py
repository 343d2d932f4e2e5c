"""Engine + httpx gateway + exchange simulator on loopback, with faults on."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from fractions import Fraction
from typing import Any

import pytest
import pytest_asyncio

from tests.fakes import config
from tests.helpers import wait_until
from trading_engine.core.breaker import BreakerState
from trading_engine.core.orders import OrderStatus
from trading_engine.core.risk import TradingState
from trading_engine.engine.engine import Engine
from trading_engine.engine.runner import build_engine as runner_build_engine
from trading_engine.io.gateway import HttpGateway
from trading_engine.sim.exchange_sim import ExchangeSimulator, Faults

KEY = "test-key"


def build_engine(
    sim: ExchangeSimulator, strategies: list[dict[str, Any]], mode: str = "httpx", **breaker: Any
) -> Engine:
    cfg = config(
        strategies,
        feed={"host": "127.0.0.1", "port": 0},
        gateway={"base_url": f"http://127.0.0.1:{sim.port}", "timeout_s": 0.2, "mode": mode,
                 "settle_backoff_s": 0.01, "fills_poll_s": 0.05, "max_requests_per_s": 500},
        breaker={"window_size": 20, "minimum_calls": 10, "open_s": 0.3, **breaker},
        risk={"max_orders_per_s": 200, "max_position": "1000", "max_order_notional": "10000000"},
        journal={"path": ":memory:"},
    )  # fmt: skip

    return runner_build_engine(cfg, environ={"EXCHANGE_API_KEY": KEY})


TRADERS = [
    {"name": "taker", "class": "threshold", "symbols": ["BTC-USD"],
     "params": {"side": "buy", "trigger_price": "100000", "quantity": "0.01", "cooldown_s": 0.02}},
    {"name": "seller", "class": "threshold", "symbols": ["BTC-USD"],
     "params": {"side": "sell", "trigger_price": "0.01", "quantity": "0.01", "cooldown_s": 0.03}},
    {"name": "maker", "class": "market_maker", "symbols": ["ETH-USD"],
     "params": {"quantity": "0.02", "max_inventory": "5", "half_spread_ticks": 1}},
]  # fmt: skip


@pytest_asyncio.fixture
async def simulator() -> AsyncIterator[ExchangeSimulator]:
    from trading_engine import Instrument

    sim = ExchangeSimulator(
        [Instrument("BTC-USD", "0.01", "0.001"), Instrument("ETH-USD", "0.01", "0.001")],
        api_key=KEY, port=0, rate=400, seed=3,
    )  # fmt: skip
    await sim.start()
    yield sim
    await sim.stop()


async def run_engine(engine: Engine, sim: ExchangeSimulator, seconds: float) -> HttpGateway:
    gateway = engine.sink
    assert isinstance(gateway, HttpGateway)
    await engine.start()
    assert engine.feed is not None
    sim.publish_to("127.0.0.1", engine.feed.port)
    await asyncio.sleep(seconds)
    return gateway


async def shut_down(engine: Engine, sim: ExchangeSimulator, gateway: HttpGateway) -> None:
    try:
        await asyncio.wait_for(_shut_down(engine, sim, gateway), 45)
    except TimeoutError:
        for task in asyncio.all_tasks():
            task.print_stack()
        raise


async def _shut_down(engine: Engine, sim: ExchangeSimulator, gateway: HttpGateway) -> None:
    sim.faults = Faults()  # let the settling finish
    engine.set_trading_state(TradingState.HALTED)  # cancel_on_halt
    await engine.stop(shutdown_drain_s=30)  # drains, reads the last fills, closes
    assert gateway.client.is_closed
    still_open = [
        (o, sim.orders.get(o.client_order_id)) for o in engine.orders.values() if o.is_open
    ]
    assert not still_open, still_open


def assert_engine_equals_exchange(engine: Engine, sim: ExchangeSimulator) -> None:
    ours = engine.orders
    theirs = sim.orders
    # Zero duplicates: the exchange created each client order id once.
    assert sim.counts.get("orders", 0) == len(theirs)
    # Zero lost: every engine order is final and agrees with the exchange.
    for cid, order in ours.items():
        assert order.status not in (OrderStatus.UNKNOWN, OrderStatus.PENDING_NEW), order
        if cid in theirs:
            assert order.status.value == theirs[cid].status, (order, theirs[cid])
            assert order.filled == theirs[cid].filled, (order, theirs[cid])
        elif order.status is OrderStatus.CANCELED:
            # Answered 429, then canceled while it waited for its retry: never sent again.
            assert order.reason == "canceled_unsent", (order, order.reason)
        else:
            assert order.status is OrderStatus.REJECTED, (order, order.reason)
    assert set(theirs) <= set(ours)
    # The exchange never reports fills beyond an order or after its final count.
    assert engine.order_faults["overfill"] == engine.order_faults["fill_after_final"] == 0
    # Positions equal the exchange's fills.
    expected: dict[str, int] = defaultdict(int)
    for fill in sim.fills:
        inst = sim.instruments[fill["symbol"]]
        lots = inst.size_to_lots(fill["quantity"])
        expected[fill["symbol"]] += lots if fill["side"] == "buy" else -lots
    for symbol in sim.instruments:
        assert engine.positions.quantity(symbol) == expected[symbol], symbol
    # And PnL is exact: what every fill cost at its real price (answers' rounded
    # averages were repriced by the fills feed), marked at an arbitrary price.
    cash: dict[str, int] = defaultdict(int)
    for fill in sim.fills:
        inst = sim.instruments[fill["symbol"]]
        value = inst.price_to_ticks(fill["price"]) * inst.size_to_lots(fill["quantity"])
        cash[fill["symbol"]] += -value if fill["side"] == "buy" else value
    mark = Fraction(300_001, 3)
    for symbol, held in engine.positions.by_symbol.items():
        pnl = held.realized + held.unrealized(mark)
        assert pnl == cash[symbol] + mark * held.quantity, symbol


MODES = pytest.mark.parametrize("mode", ["httpx", "fast"])


@pytest.mark.asyncio
@MODES
async def test_clean_run_matches_the_exchange(simulator: ExchangeSimulator, mode: str) -> None:
    engine = build_engine(simulator, TRADERS, mode)
    gateway = await run_engine(engine, simulator, 1.5)
    await shut_down(engine, simulator, gateway)
    assert len(engine.orders) > 20
    assert len(simulator.fills) > 5
    assert_engine_equals_exchange(engine, simulator)
    gateway = engine.sink
    assert isinstance(gateway, HttpGateway)
    if mode == "fast":
        assert gateway.fast is not None
        assert gateway.fast.sent > len(engine.orders) // 2  # most orders took the fast path


@pytest.mark.asyncio
@MODES
async def test_faults_lose_and_duplicate_nothing(simulator: ExchangeSimulator, mode: str) -> None:
    simulator.faults = Faults(
        fail_before=0.05, fail_after=0.05, hang=0.03, hang_s=0.4, rate_limit=0.05,
        retry_after_s=0, reset=0.03, feed_gap=0.01, feed_duplicate=0.02, feed_cross=0.01,
    )  # fmt: skip
    # A tolerant breaker: this test is about outcomes, the next about the breaker.
    engine = build_engine(simulator, TRADERS, mode, failure_rate_threshold=1.0)
    gateway = await run_engine(engine, simulator, 1.0)
    kinds = ("fail_before", "fail_after", "hang", "reset", "rate_limited")
    # Run until every kind of fault has happened at least once (bounded).
    await wait_until(lambda: all(simulator.counts.get(k) for k in kinds), 20, "every fault")
    await shut_down(engine, simulator, gateway)
    counts = simulator.counts
    assert counts.get("fail_before", 0)
    assert counts.get("fail_after", 0)
    assert counts.get("hang", 0)
    assert counts.get("reset", 0)
    assert counts.get("rate_limited", 0)
    assert counts.get("idempotent_replay", 0) + gateway.counts.get("settled", 0) > 0
    assert engine.builder.rejected["gap"] + engine.builder.rejected["duplicate"] > 0
    assert_engine_equals_exchange(engine, simulator)


@pytest.mark.asyncio
@MODES
async def test_breaker_opens_on_failures_and_recovers(
    simulator: ExchangeSimulator, mode: str
) -> None:
    simulator.faults = Faults(fail_before=1.0)
    engine = build_engine(simulator, TRADERS[:1], mode)
    gateway = await run_engine(engine, simulator, 0.0)
    await wait_until(lambda: gateway.breaker.state is BreakerState.OPEN, 10, "breaker open")
    assert engine.status()["breaker"] == "open"
    await wait_until(lambda: engine.risk.denied["circuit_open"] > 0, 5, "local denials")
    simulator.faults = Faults()
    await wait_until(lambda: gateway.breaker.state is BreakerState.CLOSED, 10, "breaker closed")
    transitions = gateway.breaker.transitions
    assert transitions[("closed", "open")] >= 1
    assert transitions[("open", "half_open")] >= 1
    assert transitions[("half_open", "closed")] == 1
    await shut_down(engine, simulator, gateway)
    assert_engine_equals_exchange(engine, simulator)


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["httpx", "fast"])
@pytest.mark.parametrize("latency_s", [0.005, 0.02])
async def test_the_exchange_side_position_never_exceeds_max_position(
    simulator: ExchangeSimulator, latency_s: float, mode: str
) -> None:
    """A taker firing on every tick, max_position 50 lots, answers 5 ms (then 20 ms) late."""
    simulator.faults = Faults(latency_s=latency_s)
    cfg = config(
        [{"name": "taker", "class": "threshold", "symbols": ["BTC-USD"],
          "params": {"side": "buy", "trigger_price": "100000", "quantity": "0.01"}}],
        feed={"host": "127.0.0.1", "port": 0},
        gateway={"base_url": f"http://127.0.0.1:{simulator.port}", "timeout_s": 1.0,
                 "mode": mode, "fills_poll_s": 0.5, "max_requests_per_s": 500},
        risk={"max_orders_per_s": 200, "max_position": "0.05", "max_order_quantity": "0.01",
              "max_order_notional": "10000000"},
    )  # fmt: skip
    engine = runner_build_engine(cfg, environ={"EXCHANGE_API_KEY": KEY})
    gateway = await run_engine(engine, simulator, 0.0)
    inst = simulator.instruments["BTC-USD"]

    def exchange_position() -> int:
        return sum(
            inst.size_to_lots(fill["quantity"]) * (1 if fill["side"] == "buy" else -1)
            for fill in simulator.fills
            if fill["symbol"] == "BTC-USD"
        )

    # Run until risk has stopped orders at the limit for a while (bounded).
    await wait_until(lambda: engine.risk.denied["max_position"] >= 50, 20, "the limit reached")
    peak = exchange_position()
    await shut_down(engine, simulator, gateway)
    assert all(fill["side"] == "buy" for fill in simulator.fills)  # so the last sum is the peak
    assert peak == exchange_position()
    assert peak <= 50
    assert peak > 40  # the limit was really approached
    assert engine.positions.quantity("BTC-USD") == peak
    assert_engine_equals_exchange(engine, simulator)


@pytest.mark.asyncio
async def test_closed_orders_leave_the_engine_and_the_gateway(
    simulator: ExchangeSimulator,
) -> None:
    cfg = config(
        [{"name": "taker", "class": "threshold", "symbols": ["BTC-USD"],
          "params": {"side": "buy", "trigger_price": "100000", "quantity": "0.001",
                     "cooldown_s": 0.01}}],
        feed={"host": "127.0.0.1", "port": 0},
        gateway={"base_url": f"http://127.0.0.1:{simulator.port}", "timeout_s": 1.0,
                 "fills_poll_s": 0.05, "max_requests_per_s": 500},
        risk={"max_orders_per_s": 200, "max_position": "1000", "max_order_notional": "10000000"},
        engine={"closed_order_retention_s": 0.1},
    )  # fmt: skip
    engine = runner_build_engine(cfg, environ={"EXCHANGE_API_KEY": KEY})
    gateway = await run_engine(engine, simulator, 0.0)
    await wait_until(lambda: engine.order_counts["submitted"] >= 60, 20, "60 orders")
    submitted = engine.order_counts["submitted"]
    held = set(engine.orders)
    # The gateway keeps nothing but requests in flight.
    assert gateway.orders_in_flight <= len(engine.open_order_list()) + gateway.tasks_in_flight
    await shut_down(engine, simulator, gateway)
    assert gateway.orders_in_flight == 0
    # About 0.1 s of closed orders stay (one order per 10 ms), not all of them.
    assert len(held) < submitted // 2, (len(held), submitted)
    inst = simulator.instruments["BTC-USD"]
    position = sum(inst.size_to_lots(fill["quantity"]) for fill in simulator.fills)
    assert engine.positions.quantity("BTC-USD") == position


@pytest.mark.asyncio
@MODES
async def test_orders_filled_at_several_prices_give_exact_pnl(
    simulator: ExchangeSimulator, mode: str
) -> None:
    """Answers report an average rounded to the tick; the fills feed reprices to the cent."""
    sweeper = [{"name": "sweeper", "class": "tests.fakes:Sweeper", "symbols": ["BTC-USD"]}]
    engine = build_engine(simulator, sweeper, mode)
    gateway = await run_engine(engine, simulator, 0.0)
    prices: dict[str, set[str]] = defaultdict(set)

    def several_prices() -> int:
        prices.clear()
        for fill in simulator.fills:
            prices[fill["client_order_id"]].add(fill["price"])
        return sum(len(seen) > 1 for seen in prices.values())

    await wait_until(lambda: several_prices() >= 10, 20, "10 orders filled at several prices")
    await shut_down(engine, simulator, gateway)
    assert_engine_equals_exchange(engine, simulator)
    held = engine.positions.get("BTC-USD")
    assert held.realized != 0  # lots were closed, so the FIFO split was tested
