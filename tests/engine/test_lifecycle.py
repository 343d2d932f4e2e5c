"""Start-up order and halts: sockets before reconciliation, halts that stick, task crashes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest

from tests.fakes import NullSink, Recorder, config, snapshot, update
from tests.helpers import free_port, wait_until
from trading_engine import Instrument
from trading_engine.config import Config
from trading_engine.core.breaker import CircuitBreaker
from trading_engine.core.builder import BookState
from trading_engine.core.orders import Order, OrderSink, OrderStatus, OrderType, TimeInForce
from trading_engine.core.protocol import Side
from trading_engine.core.risk import TradingState
from trading_engine.engine.engine import Engine
from trading_engine.engine.runner import build_engine
from trading_engine.engine.telemetry import registry_for
from trading_engine.io.gateway import HttpGateway
from trading_engine.io.journal import Journal
from trading_engine.sim.exchange_sim import ExchangeSimulator
from trading_engine.sim.venue import simulated_venue

KEY = "lifecycle-key"
BTC = Instrument("BTC-USD", "0.01", "0.001")
ETH = Instrument("ETH-USD", "0.01", "0.001")
RECORDER = [{"name": "rec", "class": "tests.fakes:Recorder", "symbols": ["BTC-USD"]}]


def _previous_run(path: Path, state: str, who: str, reason: str | None = None) -> None:
    """A journal whose last run left the trading state ``state``."""
    journal = Journal.open(str(path))
    journal.begin_run("runA", [BTC, ETH])
    journal.trading_state(state, who, reason)
    journal.close()


def _unreachable_venue_engine(path: Path, venue_port: int) -> Engine:
    cfg = config(
        RECORDER,
        feed={"port": 0},
        gateway={"base_url": f"http://127.0.0.1:{venue_port}", "timeout_s": 0.3},
        journal={"path": str(path)},
        engine={"shutdown_s": 2.0},
    )
    return build_engine(cfg, environ={"EXCHANGE_API_KEY": KEY})


def _recorder(engine: Engine) -> Recorder:
    strategy = engine.runners["rec"].strategy
    assert isinstance(strategy, Recorder)
    return strategy


@pytest.mark.asyncio
async def test_the_feed_listens_during_reconciliation_but_strategies_see_frames_once_started(
    tmp_path: Path,
) -> None:
    venue_port = free_port()
    engine = _unreachable_venue_engine(tmp_path / "j.db", venue_port)
    recorder = _recorder(engine)
    starting = asyncio.get_running_loop().create_task(engine.start())
    simulator: ExchangeSimulator | None = None
    writer: asyncio.StreamWriter | None = None
    try:
        await wait_until(lambda: engine.order_counts["reconciliation_failed"] >= 1, 5, "a failure")
        # Bound before reconciliation: a publisher can connect and the book builds...
        assert engine.feed is not None
        assert engine.feed.listening
        _, writer = await asyncio.open_connection("127.0.0.1", engine.feed.port)
        writer.write(snapshot(1, [["100.00", "1"]], [["100.10", "1"]]) + b"\n")
        await writer.drain()
        book = engine.builder.books["BTC-USD"]
        await wait_until(lambda: book.state is BookState.LIVE, 5, "the book live")
        # ...but no strategy has started or seen a frame, and the engine is not ready.
        assert recorder.calls == []
        reason = engine.not_ready()
        assert reason is not None
        assert "reconciliation" in reason
        simulator = ExchangeSimulator([BTC, ETH], api_key=KEY, port=venue_port, seed=5)
        await simulator.start()
        await asyncio.wait_for(starting, 10)
        assert recorder.calls == ["start"]
        writer.write(update(2, [["100.01", "1"]], []) + b"\n")
        await writer.drain()
        await wait_until(lambda: "book:2" in recorder.calls, 5, "the update delivered")
        assert recorder.calls == ["start", "book:2"]
    finally:
        if writer is not None:
            writer.close()
        if not starting.done():
            starting.cancel()
            await asyncio.wait({starting})
        await engine.stop()
        if simulator is not None:
            await simulator.stop()


class SlowVenue(NullSink):
    """An order sink and venue reader whose open-orders read waits until released."""

    def __init__(self) -> None:
        self.reading = asyncio.Event()
        self.release = asyncio.Event()

    def submit(self, order: Order) -> str | None:
        raise AssertionError("no order may leave during start-up")

    async def open_orders(self) -> list[dict[str, Any]]:
        self.reading.set()
        await self.release.wait()
        return []

    async def fills(self, since: int) -> list[dict[str, Any]]:
        return []

    async def read_order(self, client_order_id: str) -> dict[str, Any] | None:
        return None

    async def cancel_order(self, client_order_id: str) -> dict[str, Any] | None:
        return None

    def resume(self, fills_cursor: int, orders: Iterable[Order] = ()) -> None:
        pass


@pytest.mark.asyncio
async def test_a_halt_during_reconciliation_is_not_undone_by_the_journaled_state(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.db"
    _previous_run(path, "active", "admin")
    venue = SlowVenue()
    engine = Engine(
        config(journal={"path": str(path)}, feed={"port": 0}), run_id="runB", sink=venue
    )
    engine.attach_journal(Journal.open(str(path)))
    starting = asyncio.get_running_loop().create_task(engine.start())
    try:
        # The journal is loaded; the venue is being read.
        await asyncio.wait_for(venue.reading.wait(), 5)
        engine.set_trading_state(TradingState.HALTED)  # what POST /halt does
        venue.release.set()
        await asyncio.wait_for(starting, 5)
        assert engine.risk.state is TradingState.HALTED
        assert engine.status()["trading_state_by"] == {"who": "admin", "reason": None}
        assert engine.status()["reconciliation"]["trading_state"] == "halted"
    finally:
        if not starting.done():
            starting.cancel()
            await asyncio.wait({starting})
        await engine.stop()
    # The next start keeps it: the halt is the journal's last state.
    again = _simulated(path)
    await again.start(serve_feed=False)
    try:
        assert again.risk.state is TradingState.HALTED
    finally:
        await again.stop()


def _simulated(path: Path, **engine_settings: Any) -> Engine:
    cfg = config(journal={"path": str(path)}, feed={"port": 0}, engine=engine_settings)
    engine = Engine(cfg, run_id="runB", sink_factory=simulated_venue)
    engine.attach_journal(Journal.open(str(path)))
    return engine


@pytest.mark.parametrize(
    ("journaled", "initial", "expected", "by"),
    [
        # A restarted worker keeps its own risk halt when the supervisor says active.
        (("halted", "risk", "loss limit"), "active", "halted", ("risk", "loss limit")),
        (("reducing", "journal", None), "active", "reducing", ("journal", None)),
        # The initial state (the operator's, in the file or through the supervisor)
        # wins when stricter, as the operator's: no alert on a self-halt.
        (("active", "admin", None), "halted", "halted", ("admin", "engine.initial_trading_state")),
        (
            ("active", "risk", None),
            "reducing",
            "reducing",
            ("admin", "engine.initial_trading_state"),
        ),
        # Among equals the journaled halt keeps its own author and reason.
        (("halted", "admin", None), "halted", "halted", ("admin", None)),
        (("halted", "risk", "loss limit"), "halted", "halted", ("risk", "loss limit")),
        (("reducing", "admin", None), None, "reducing", ("admin", None)),
    ],
)
@pytest.mark.asyncio
async def test_start_up_takes_the_strictest_of_journal_and_initial_state(
    tmp_path: Path,
    journaled: tuple[str, str, str | None],
    initial: str | None,
    expected: str,
    by: tuple[str, str | None],
) -> None:
    path = tmp_path / "j.db"
    _previous_run(path, *journaled)
    engine = _simulated(path, initial_trading_state=initial)
    await engine.start(serve_feed=False)
    try:
        assert engine.risk.state.value == expected
        assert engine.state_by == by
    finally:
        await engine.stop()


def _crashing_gateway(engine: Engine) -> OrderSink:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            raise RuntimeError("a bug in the placement path")
        return httpx.Response(404, json={"error": "unknown order"})

    settings = engine.config.gateway
    return HttpGateway(
        settings,
        engine,
        engine.instruments,
        CircuitBreaker(engine.config.breaker.settings(), engine.clock.monotonic_ns),
        api_key=KEY,
        transport=httpx.MockTransport(handler),
        crashes=engine.task_crashes,
    )


def _gateway_config() -> Config:
    return config(
        risk={"max_order_quantity": "0.05", "max_order_notional": "1000000",
              "max_position": "0.05", "max_orders_per_s": 1000},
        gateway={"mode": "httpx", "base_url": "http://exchange.test"},
    )  # fmt: skip


@pytest.mark.asyncio
async def test_a_crashed_placement_task_is_counted_and_halts_trading() -> None:
    engine = Engine(_gateway_config(), run_id="t", sink_factory=_crashing_gateway)
    engine.builder.handle(snapshot(1, [["100.00", "5"]], [["100.10", "5"]]))
    order, denial = engine.submit(
        engine.runners["probe"], "BTC-USD", Side.BUY, 1, 10000, OrderType.LIMIT, TimeInForce.GTC
    )
    assert order is not None
    assert denial is None
    try:
        await wait_until(lambda: engine.risk.state is TradingState.HALTED, 5, "the halt")
        who, reason = engine.state_by
        assert who == "gateway"
        assert reason is not None
        assert f"place:{order.client_order_id}" in reason
        assert "RuntimeError" in reason
        assert engine.task_crashes.counts["place"] == 1
        text = generate_latest(registry_for(engine)).decode()
        assert 'trading_engine_task_crashes_total{task="place"} 1.0' in text
        assert 'trading_engine_task_crashes_total{task="cancel"} 0.0' in text
        # The halt canceled the order: no exposure is left behind by the dead task.
        await wait_until(lambda: not order.is_open, 5, "the order closed")
        assert order.status is OrderStatus.CANCELED or order.status is OrderStatus.REJECTED
        assert engine.exposure["BTC-USD"] == [0, 0]
    finally:
        assert isinstance(engine.sink, HttpGateway)
        await engine.sink.close()


@pytest.mark.asyncio
async def test_a_crashed_one_shot_journal_write_is_counted_and_halts_trading(
    tmp_path: Path,
) -> None:
    """A trading-state row written before the journal's writer runs goes through a task
    whose crash is counted (``task_crashes{task="journal"}``) and halts: rows would be lost."""
    engine = Engine(config(), sink=NullSink())
    journal = Journal.open(str(tmp_path / "journal.db"))
    engine.attach_journal(journal)

    async def broken(*, raise_errors: bool = False) -> bool:
        raise RuntimeError("the journal's thread is gone")

    journal.write_pending = broken  # type: ignore[method-assign]
    journal.trading_state("reducing", "admin")  # no writer yet: a one-shot write
    await wait_until(lambda: engine.task_crashes.counts["journal"] >= 1)
    assert engine.risk.state is TradingState.HALTED
    assert engine.state_by[0] == "journal"
    journal.close()
