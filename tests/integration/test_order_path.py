"""The order path against the exchange simulator: the hostile inputs, end to end.

Each test is one hostile input, run through the real engine, gateway and
simulator on loopback, with the value it must give.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.fakes import config
from tests.helpers import wait_until
from trading_engine import Instrument
from trading_engine.core.breaker import BreakerState
from trading_engine.core.orders import Order, OrderStatus, TimeInForce
from trading_engine.core.risk import Denial, TradingState
from trading_engine.core.strategy import BookView, Strategy
from trading_engine.engine.engine import Engine
from trading_engine.engine.runner import build_engine
from trading_engine.engine.telemetry import registry_for
from trading_engine.io.gateway import HttpGateway
from trading_engine.sim.exchange_sim import ExchangeSimulator, Faults

KEY = "order-path-key"
MODES = pytest.mark.parametrize("mode", ["fast", "httpx"])


class Updates(Strategy):
    """Trades only when the test says so; records its order updates."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.updates: list[tuple[str, str, str | None]] = []

    def on_book(self, book: BookView) -> None:
        pass

    def on_order_update(self, order: Order) -> None:
        self.updates.append((order.client_order_id, order.status.value, order.reason))


STRATEGY = [{"name": "probe", "class": "tests.integration.test_order_path:Updates",
             "symbols": ["BTC-USD"]}]  # fmt: skip


@pytest_asyncio.fixture
async def simulator() -> AsyncIterator[ExchangeSimulator]:
    sim = ExchangeSimulator(
        [Instrument("BTC-USD", "0.01", "0.001"), Instrument("ETH-USD", "0.01", "0.001")],
        api_key=KEY, port=0, rate=200, seed=5,
    )  # fmt: skip
    await sim.start()
    yield sim
    await sim.stop()


def make_engine(sim: ExchangeSimulator, mode: str, **gateway: Any) -> Engine:
    cfg = config(
        STRATEGY,
        feed={"host": "127.0.0.1", "port": 0},
        gateway={"base_url": f"http://127.0.0.1:{sim.port}", "timeout_s": 0.3, "mode": mode,
                 "settle_backoff_s": 0.01, "read_backoff_max_s": 0.2, **gateway},
        breaker={"window_size": 20, "minimum_calls": 10, "open_s": 0.5},
        risk={"max_orders_per_s": 1000, "max_position": "1000", "max_order_notional": "10000000",
              "max_order_quantity": "100"},
    )  # fmt: skip
    return build_engine(cfg, environ={"EXCHANGE_API_KEY": KEY})


async def started(engine: Engine, sim: ExchangeSimulator) -> HttpGateway:
    gateway = engine.sink
    assert isinstance(gateway, HttpGateway)
    await engine.start()
    assert engine.feed is not None
    sim.publish_to("127.0.0.1", engine.feed.port)
    await wait_until(lambda: engine.builder.books["BTC-USD"].state.value == "live", 10, "live")
    if gateway.fast is not None:
        fast = gateway.fast
        await wait_until(lambda: len(list(fast.connections())) == fast.size, 5, "warm")
    return gateway


def probe(engine: Engine) -> Updates:
    strategy = engine.runners["probe"].strategy
    assert isinstance(strategy, Updates)
    return strategy


def resting_buy_price(engine: Engine) -> int:
    """A limit price inside the risk band that will not fill soon (GTC rests)."""
    book = engine.builder.books["BTC-USD"].book
    assert book.best_bid is not None
    return int(book.best_bid * 0.97)


def most_in_any_second(times_ns: list[int]) -> int:
    times_ns = sorted(times_ns)
    return max(
        (sum(1 for t in times_ns[i:] if t - start < 10**9) for i, start in enumerate(times_ns)),
        default=0,
    )


@pytest.mark.asyncio
@MODES
async def test_a_burst_never_exceeds_the_budget_and_the_rest_is_refused_now(
    simulator: ExchangeSimulator, mode: str
) -> None:
    # Input: max_requests_per_s = 10, idle engine, a burst of 50 order decisions.
    engine = make_engine(simulator, mode, max_requests_per_s=10, fills_poll_s=0.1)
    gateway = await started(engine, simulator)
    await asyncio.sleep(1.1)  # idle: only fill polls in the window
    ctx = engine.contexts["probe"]
    price = resting_buy_price(engine)
    first_ns = time.monotonic_ns()
    results = [ctx.buy("BTC-USD", 1, price) for _ in range(50)]
    denials = engine.risk.denied[Denial.RATE_LIMITED]
    sent = [order for order in results if order is not None]
    # Polls hold at most half the window, so at least half is there for orders.
    assert 5 <= len(sent) <= 10
    assert denials == 50 - len(sent)
    assert ctx.last_denial == "rate_limited"
    refused = [u for u in probe(engine).updates if u[2] == "rate_limited"]
    assert len(refused) == denials
    assert all(status == "rejected" for _, status, _ in refused)
    await asyncio.sleep(1.5)
    log = [entry for entry in simulator.request_log if entry[0] >= first_ns - 10**9]
    assert most_in_any_second([t for t, _, _ in log]) <= 10  # a token bucket sent 19-20
    assert sum(1 for _, method, _ in log if method == "POST") == len(sent)
    metrics = registry_for(engine)
    assert metrics.get_sample_value(
        "trading_engine_risk_denied_total", {"reason": "rate_limited"}
    ) == float(denials)
    assert gateway.counts["rate_limited"] == denials
    await engine.stop(2)


@pytest.mark.asyncio
@MODES
async def test_a_filled_order_answered_500_then_read_429_ends_filled(
    simulator: ExchangeSimulator, mode: str
) -> None:
    # Input: the exchange takes and fills the order but answers its POST with
    # 500; the first GET answers 429 Retry-After: 1, later ones 200 filled.
    engine = make_engine(simulator, mode)
    gateway = await started(engine, simulator)
    simulator.faults = Faults(fail_after=1.0, read_rate_limit=1.0, retry_after_s=1)
    book = engine.builder.books["BTC-USD"].book
    assert book.best_ask is not None
    order = engine.contexts["probe"].buy("BTC-USD", 1, book.best_ask, TimeInForce.IOC)
    assert order is not None
    await wait_until(lambda: simulator.counts.get("read_rate_limited", 0) >= 1, 5, "a 429 read")
    first_429 = time.monotonic()
    simulator.faults = Faults()
    assert order.status is OrderStatus.UNKNOWN  # never rejected for a filled order
    await wait_until(lambda: order.status is OrderStatus.FILLED, 5, "filled")
    assert time.monotonic() - first_429 >= 0.9  # read again only after Retry-After
    assert simulator.orders[order.client_order_id].status == "filled"
    assert [u[1] for u in probe(engine).updates] == ["unknown", "filled"]
    assert gateway.counts["settled"] == 1
    assert gateway.counts["venue_rate_limited"] >= 1
    await wait_until(lambda: engine.positions.quantity("BTC-USD") == 1, 5, "position")
    metrics = registry_for(engine)

    def sample(name: str, **labels: str) -> float | None:
        return metrics.get_sample_value("trading_engine_" + name, labels)

    assert sample("gateway_events_total", event="unknown") == 1
    assert sample("gateway_events_total", event="settled") == 1
    assert sample("gateway_events_total", event="venue_rate_limited") == float(
        gateway.counts["venue_rate_limited"]
    )
    assert sample("gateway_read_failures_total", request="order") == float(
        gateway.read_failures["order"]
    )
    assert (sample("gateway_paused_seconds_total") or 0) >= 1.0
    assert (sample("gateway_requests_total", priority="settle") or 0) >= 2
    await engine.stop(2)


@pytest.mark.asyncio
@MODES
async def test_an_order_the_venue_lost_is_closed_locally_on_halt(
    simulator: ExchangeSimulator, mode: str
) -> None:
    # Input: a GTC order acknowledged new; the exchange then answers DELETE and
    # GET for it with 404; POST /halt.
    engine = make_engine(simulator, mode)
    gateway = await started(engine, simulator)
    simulator.faults = Faults(forget=1.0)
    order = engine.contexts["probe"].buy("BTC-USD", 2, resting_buy_price(engine))
    assert order is not None
    await wait_until(lambda: order.status is OrderStatus.NEW, 5, "acknowledged")
    assert engine.exposure["BTC-USD"] == [2, 0]
    engine.set_trading_state(TradingState.HALTED)  # what POST /halt does
    await wait_until(lambda: not order.is_open, 5, "closed locally")
    assert (order.status, order.reason) == (OrderStatus.CANCELED, "not_found")
    assert engine.exposure["BTC-USD"] == [0, 0]
    assert engine.status()["open_orders"] == 0
    assert gateway.counts["not_found"] == 1
    assert engine.order_faults["not_found"] == 1
    deletes = [e for e in simulator.request_log if e[1] == "DELETE"]
    assert len(deletes) == 1  # not once a second forever
    started_stop = time.monotonic()
    await engine.stop(10)
    assert time.monotonic() - started_stop < 2  # nothing left to drain


@pytest.mark.asyncio
@MODES
@pytest.mark.parametrize("how", ["halt", "stop"])
async def test_no_order_reaches_the_venue_after_a_halt_or_stop(
    simulator: ExchangeSimulator, mode: str, how: str
) -> None:
    engine = make_engine(
        simulator, mode, max_requests_per_s=40, max_order_wait_s=0.2, fills_poll_s=0.05
    )
    await started(engine, simulator)
    simulator.faults = Faults(rate_limit=0.3, retry_after_s=1, fail_before=0.2)
    ctx = engine.contexts["probe"]
    for _ in range(20):
        ctx.buy("BTC-USD", 1, resting_buy_price(engine))
        await asyncio.sleep(0.01)
    if how == "halt":
        engine.set_trading_state(TradingState.HALTED)
        halted_ns = time.monotonic_ns()
        for _ in range(5):
            assert ctx.buy("BTC-USD", 1, resting_buy_price(engine)) is None
        assert ctx.last_denial == "halted"
        simulator.faults = Faults()
        await engine.stop(5)
    else:
        halted_ns = time.monotonic_ns()
        stopping = asyncio.create_task(engine.stop(5))
        await asyncio.sleep(0)
        simulator.faults = Faults()
        await stopping
    posts_after = [e for e in simulator.request_log if e[1] == "POST" and e[0] > halted_ns]
    assert posts_after == []
    assert all(not order.is_open for order in engine.orders.values())


@pytest.mark.asyncio
@MODES
async def test_failing_placements_open_the_breaker_whatever_the_reads_do(
    simulator: ExchangeSimulator, mode: str
) -> None:
    # Input: exchange-sim --fail-before 0.7 (70% of POST /orders fail).
    engine = make_engine(simulator, mode, max_requests_per_s=200, fills_poll_s=0.02)
    gateway = await started(engine, simulator)
    simulator.faults = Faults(fail_before=0.7)
    ctx = engine.contexts["probe"]
    deadline = time.monotonic() + 10
    while gateway.breaker.state is BreakerState.CLOSED and time.monotonic() < deadline:
        ctx.buy("BTC-USD", 1, resting_buy_price(engine))
        await asyncio.sleep(0.02)
    assert gateway.breaker.state is BreakerState.OPEN
    assert engine.risk.denied[Denial.CIRCUIT_OPEN] == 0
    assert ctx.buy("BTC-USD", 1, resting_buy_price(engine)) is None
    assert ctx.last_denial == "circuit_open"
    metrics = registry_for(engine)
    assert metrics.get_sample_value(
        "trading_engine_circuit_breaker_transitions_total", {"from": "closed", "to": "open"}
    ) == float(gateway.breaker.transitions[("closed", "open")])
    assert (metrics.get_sample_value("trading_engine_circuit_breaker_denied_total") or 0) >= 1
    simulator.faults = Faults()
    await engine.stop(5)


@pytest.mark.asyncio
async def test_httpx_tick_to_trade_ends_at_the_real_write(simulator: ExchangeSimulator) -> None:
    engine = make_engine(simulator, "httpx")
    await started(engine, simulator)
    written: list[int] = []
    inner = engine.on_written

    def on_written(order: Order) -> None:
        written.append(sum(1 for entry in simulator.request_log if entry[1] == "POST"))
        inner(order)

    engine.on_written = on_written  # type: ignore[method-assign]
    order = engine.contexts["probe"].buy("BTC-USD", 1, resting_buy_price(engine))
    assert order is not None
    assert written == []  # handed to httpx is not written
    await wait_until(lambda: order.status is OrderStatus.NEW, 5, "acknowledged")
    assert written == [0]  # written once, before the venue had it
    assert engine.tick_to_trade.count == (1 if order.recv_ns else 0)
    await engine.stop(2)


@pytest.mark.asyncio
async def test_httpx_never_reports_a_write_that_did_not_happen() -> None:
    from tests.helpers import free_port
    from tests.io.test_gateway import Listener, make_order

    listener = Listener()
    cfg = config(gateway={"base_url": f"http://127.0.0.1:{free_port()}", "mode": "httpx",
                          "timeout_s": 0.2, "settle_backoff_s": 0.01})  # fmt: skip
    gateway = build_engine(cfg, environ={"EXCHANGE_API_KEY": KEY}).sink
    assert isinstance(gateway, HttpGateway)
    gateway = HttpGateway(
        gateway.config, listener, {"BTC-USD": Instrument("BTC-USD", "0.01", "0.001")},
        gateway.breaker, api_key=KEY,
    )  # fmt: skip
    gateway.submit(make_order())
    await wait_until(lambda: gateway.counts["connection_error"] >= 2, 5, "refused connects")
    assert [e for e in listener.events if e[0] == "written"] == []
    assert listener.statuses() == ["unknown"]
    await gateway.close()


@pytest.mark.asyncio
async def test_an_overfill_halts_trading_and_stops_new_orders(
    simulator: ExchangeSimulator,
) -> None:
    engine = make_engine(simulator, "fast")
    gateway = await started(engine, simulator)
    order = engine.contexts["probe"].buy("BTC-USD", 2, resting_buy_price(engine))
    assert order is not None
    await wait_until(lambda: order.status is OrderStatus.NEW, 5, "acknowledged")
    # The venue reports more than the order's quantity in its fills log.
    inst = simulator.instruments["BTC-USD"]
    for fill_id, lots in ((len(simulator.fills) + 1, 2), (len(simulator.fills) + 2, 1)):
        simulator.fills.append(
            {"fill_id": fill_id, "client_order_id": order.client_order_id, "symbol": "BTC-USD",
             "side": "buy", "price": inst.format_price(order.price or 0),
             "quantity": inst.format_size(lots), "ts": 0}
        )  # fmt: skip
    await wait_until(lambda: engine.risk.state is TradingState.HALTED, 5, "halted")
    assert engine.order_faults["overfill"] == 1
    assert not gateway.scheduler.accepting_orders
    assert engine.contexts["probe"].buy("BTC-USD", 1, resting_buy_price(engine)) is None
    await engine.stop(5)
