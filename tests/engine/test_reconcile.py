"""Start-up reconciliation and the journal's engine side, against the real simulator."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import pytest_asyncio
from prometheus_client import generate_latest

from tests.fakes import config
from tests.helpers import free_port, wait_until
from trading_engine import BookView, Instrument, Strategy
from trading_engine.core.orders import Order, OrderStatus, OrderType, TimeInForce
from trading_engine.core.protocol import Side
from trading_engine.core.risk import TradingState
from trading_engine.engine.engine import Engine
from trading_engine.engine.runner import build_engine
from trading_engine.engine.telemetry import registry_for
from trading_engine.io.journal import Journal
from trading_engine.sim.exchange_sim import ExchangeSimulator

KEY = "reconcile-key"
BTC = Instrument("BTC-USD", "0.01", "0.001")
ETH = Instrument("ETH-USD", "0.01", "0.001")


class StartProbe(Strategy):
    """Notes what its context holds when ``on_start`` runs."""

    seen: ClassVar[dict[str, Any]] = {}

    def on_start(self) -> None:
        StartProbe.seen[self.name] = {
            "position": self.ctx.position("BTC-USD").quantity,
            "open_orders": sorted(o.client_order_id for o in self.ctx.open_orders()),
        }

    def on_book(self, book: BookView) -> None:
        pass


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[ExchangeSimulator]:
    simulator = ExchangeSimulator([BTC, ETH], api_key=KEY, port=0, seed=5)
    await simulator.start()
    yield simulator
    await simulator.stop()


def make_engine(sim: ExchangeSimulator, journal: Path, **journal_settings: Any) -> Engine:
    cfg = config(
        [{"name": "maker", "class": "tests.engine.test_reconcile:StartProbe",
          "symbols": ["BTC-USD"]}],
        feed={"port": 0},
        gateway={"base_url": f"http://127.0.0.1:{sim.port}", "timeout_s": 0.3,
                 "settle_backoff_s": 0.01, "fills_poll_s": 0.02, "max_requests_per_s": 500},
        journal={"path": str(journal), "flush_ms": 2, **journal_settings},
        engine={"shutdown_s": 2.0},
    )  # fmt: skip
    return build_engine(cfg, environ={"EXCHANGE_API_KEY": KEY})


async def place(
    sim: ExchangeSimulator, client_order_id: str, side: str, price: str, tif: str = "GTC"
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{sim.port}") as client:
        answer = await client.post(
            "/orders",
            headers={"X-API-Key": KEY},
            json={"client_order_id": client_order_id, "symbol": "BTC-USD", "side": side,
                  "type": "limit", "price": price, "quantity": "0.005", "time_in_force": tif},
        )  # fmt: skip
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def journal_order(journal: Journal, client_order_id: str, side: Side, price: int) -> Order:
    order = Order(
        client_order_id, "maker", "BTC-USD", side, OrderType.LIMIT, 5, price, TimeInForce.GTC
    )
    journal.order_submitted(order)
    return order


def exchange_position(sim: ExchangeSimulator, prefix: str) -> int:
    lots = 0
    for fill in sim.fills:
        if fill["client_order_id"].startswith(prefix):
            size = BTC.size_to_lots(fill["quantity"])
            lots += size if fill["side"] == "buy" else -size
    return lots


@pytest.mark.asyncio
async def test_restart_rebuilds_positions_and_open_orders_from_journal_and_venue(
    sim: ExchangeSimulator, tmp_path: Path
) -> None:
    path = tmp_path / "journal.db"
    walk = sim.walks["BTC-USD"]
    resting_bid = BTC.format_price(walk.best_bid - 50)
    crossing = BTC.format_price(walk.best_ask + 50)
    # The previous run: what its journal holds, and what the venue holds.
    journal = Journal.open(str(path))
    journal.begin_run("runA", [BTC, ETH])
    journal_order(journal, "maker-runA-1", Side.BUY, walk.best_bid - 50)  # rests on the venue
    journal_order(journal, "maker-runA-2", Side.BUY, walk.best_ask + 50)  # filled, unanswered
    lost = journal_order(journal, "maker-runA-3", Side.BUY, walk.best_bid - 50)
    lost.transition(OrderStatus.UNKNOWN, "no answer")  # never reached the venue
    journal.order_status(lost)
    journal.trading_state("reducing", "admin")
    journal.close()
    await place(sim, "maker-runA-1", "buy", resting_bid)
    await place(sim, "maker-runA-2", "buy", crossing, "IOC")
    # Killed before its journal row was written: the venue has it, the journal does not.
    await place(sim, "maker-runA-4", "sell", BTC.format_price(walk.best_ask + 60))
    # Another client's order on the same venue.
    await place(sim, "someone-else-1", "buy", resting_bid)
    assert exchange_position(sim, "maker-") > 0

    engine = make_engine(sim, path)
    StartProbe.seen.clear()
    await engine.start()
    try:
        expected = exchange_position(sim, "maker-")
        assert engine.positions.quantity("BTC-USD") == expected
        assert engine.positions.of_strategy("maker", "BTC-USD").quantity == expected
        open_ids = {o.client_order_id for o in engine.open_orders["maker"].values()}
        venue_open = {cid for cid, o in sim.orders.items() if o.is_open}
        assert open_ids == {"maker-runA-1", "maker-runA-4"}
        assert venue_open == open_ids  # the unknown order was canceled (policy "cancel")
        assert sim.orders["someone-else-1"].status == "canceled"
        assert engine.exposure["BTC-USD"] == [5, 5]
        assert engine.risk.state is TradingState.REDUCING
        assert StartProbe.seen["maker"] == {"position": expected, "open_orders": sorted(open_ids)}
        report = engine.status()["reconciliation"]
        assert report["found"]["never_reached"] == 1
        assert report["found"]["canceled_unknown"] == 1
        assert report["found"]["restored_unjournaled"] == 1
        assert report["unknown_orders"]["client_order_ids"] == ["someone-else-1"]
        assert report["trading_state"] == "reducing"
        assert engine.not_ready() is None
    finally:
        await engine.stop()
    rows = dict(
        sqlite3.connect(path).execute("SELECT client_order_id, status FROM orders").fetchall()
    )
    assert rows["maker-runA-2"] == "filled"
    assert rows["maker-runA-3"] == "rejected"
    # The clean stop canceled what was open.
    assert rows["maker-runA-1"] == rows["maker-runA-4"] == "canceled"
    runs = dict(
        sqlite3.connect(path).execute("SELECT client_order_id, run_id FROM orders").fetchall()
    )
    assert runs["maker-runA-4"] == "runA"  # journaled by reconciliation, under its own run
    assert not any(o.is_open for o in sim.orders.values())


@pytest.mark.asyncio
async def test_refuse_keeps_the_engine_not_ready_and_strategies_unstarted(
    sim: ExchangeSimulator, tmp_path: Path
) -> None:
    await place(sim, "someone-else-1", "buy", BTC.format_price(sim.walks["BTC-USD"].best_bid - 9))
    engine = make_engine(sim, tmp_path / "j.db", unknown_orders="refuse")
    StartProbe.seen.clear()
    await engine.start()
    try:
        reason = engine.not_ready()
        assert reason is not None
        assert "refused" in reason
        assert "someone-else-1" in reason
        assert StartProbe.seen == {}
        assert sim.orders["someone-else-1"].is_open
    finally:
        assert await engine.stop() == []


@pytest.mark.asyncio
async def test_adopt_tracks_unknown_orders_and_their_exposure(
    sim: ExchangeSimulator, tmp_path: Path
) -> None:
    await place(sim, "someone-else-1", "buy", BTC.format_price(sim.walks["BTC-USD"].best_bid - 9))
    engine = make_engine(sim, tmp_path / "j.db", unknown_orders="adopt")
    await engine.start()
    try:
        adopted = engine.open_orders["adopted"]
        assert list(adopted) == ["someone-else-1"]
        assert engine.exposure["BTC-USD"] == [5, 0]
        assert sim.orders["someone-else-1"].is_open
    finally:
        await engine.stop()
    assert sim.orders["someone-else-1"].status == "canceled"


@pytest.mark.asyncio
async def test_the_trading_state_survives_a_restart(sim: ExchangeSimulator, tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    first = make_engine(sim, path)
    await first.start()
    first.set_trading_state(TradingState.HALTED)
    await first.stop()

    second = make_engine(sim, path)
    await second.start()
    assert second.risk.state is TradingState.HALTED
    assert second.status()["trading_state_by"] == {"who": "admin", "reason": None}
    second.set_trading_state(TradingState.ACTIVE)
    await second.stop()

    third = make_engine(sim, path)
    await third.start()
    assert third.risk.state is TradingState.ACTIVE
    await third.stop()


@pytest.mark.asyncio
async def test_a_journal_write_failing_at_run_time_halts_trading(
    sim: ExchangeSimulator, tmp_path: Path
) -> None:
    engine = make_engine(sim, tmp_path / "j.db")
    await engine.start()
    try:
        journal = engine.journal
        assert journal is not None
        pages = journal._db.execute("PRAGMA page_count").fetchone()[0]
        journal._db.execute(f"PRAGMA max_page_count = {pages}")
        for n in range(3000):
            journal.fills_cursor(n)
            journal.reconciliation("x" * 100)
        await wait_until(lambda: engine.risk.state is TradingState.HALTED, 5, "the halt")
        status = engine.status()
        assert status["trading_state_by"]["who"] == "journal"
        assert "write failed" in status["trading_state_by"]["reason"]
        assert status["journal"]["write_errors"] >= 1
        exposition = generate_latest(registry_for(engine)).decode()
        assert "trading_engine_journal_write_errors_total" in exposition
        assert 'trading_engine_trading_state{state="halted"} 1.0' in exposition
        journal._db.execute("PRAGMA max_page_count = 1073741823")
    finally:
        await engine.stop()


@pytest.mark.asyncio
async def test_shutdown_with_a_hung_exchange_names_the_orders_still_open(
    sim: ExchangeSimulator, tmp_path: Path
) -> None:
    path = tmp_path / "j.db"
    journal = Journal.open(str(path))
    journal.begin_run("runA", [BTC, ETH])
    journal_order(journal, "maker-runA-1", Side.BUY, sim.walks["BTC-USD"].best_bid - 50)
    journal.close()
    await place(sim, "maker-runA-1", "buy", BTC.format_price(sim.walks["BTC-USD"].best_bid - 50))
    engine = make_engine(sim, path)
    await engine.start()
    assert [o.client_order_id for o in engine.open_orders["maker"].values()] == ["maker-runA-1"]
    sim.faults.latency_s = 2.0  # every answer now comes after the shutdown bound
    still_open = await engine.stop(shutdown_drain_s=0.5)
    assert [o.client_order_id for o in still_open] == ["maker-runA-1"]
    assert engine.order_counts["open_at_shutdown"] == 1
    sim.faults.latency_s = 0.0


@pytest.mark.asyncio
async def test_an_unreachable_venue_keeps_the_engine_not_ready_until_it_answers(
    tmp_path: Path,
) -> None:
    port = free_port()
    cfg = config(
        [{"name": "maker", "class": "tests.engine.test_reconcile:StartProbe",
          "symbols": ["BTC-USD"]}],
        feed={"port": 0},
        gateway={"base_url": f"http://127.0.0.1:{port}", "timeout_s": 0.3},
        journal={"path": str(tmp_path / "j.db")},
    )  # fmt: skip
    engine = build_engine(cfg, environ={"EXCHANGE_API_KEY": KEY})
    StartProbe.seen.clear()
    assert engine.status()["positions"] == {}  # an engine that is not started: its ledger's
    engine.mark_reconciliation_pending()  # the service, before its admin API serves
    assert engine.status()["positions"] is None
    starting = asyncio.get_running_loop().create_task(engine.start())
    await wait_until(lambda: engine.order_counts["reconciliation_failed"] >= 1, 5, "a failure")
    reason = engine.not_ready()
    assert reason is not None
    assert "could not be read" in reason
    assert StartProbe.seen == {}
    # Unknown, not flat: no positions in /status and no position samples in the metrics.
    status = engine.status()
    assert status["positions"] is None
    assert status["fees_unconverted"] is None
    assert status["strategies"]["maker"]["positions"] is None
    assert status["strategies"]["maker"]["realized_pnl"] is None
    text = generate_latest(registry_for(engine)).decode()
    assert "trading_engine_positions_known 0.0" in text
    assert 'trading_engine_position{symbol="BTC-USD"}' not in text
    assert 'trading_engine_strategy_position{strategy="maker"' not in text
    simulator = ExchangeSimulator([BTC, ETH], api_key=KEY, port=port, seed=5)
    await simulator.start()
    try:
        await asyncio.wait_for(starting, 10)
        assert engine.not_ready() is None
        assert "maker" in StartProbe.seen
        assert engine.status()["positions"] == {}
        assert engine.status()["strategies"]["maker"]["positions"]["BTC-USD"]["quantity"] == "0.000"
        text = generate_latest(registry_for(engine)).decode()
        assert "trading_engine_positions_known 1.0" in text
        assert 'trading_engine_position{symbol="BTC-USD"} 0.0' in text
    finally:
        await engine.stop()
        await simulator.stop()


@pytest.mark.asyncio
async def test_an_own_order_for_an_instrument_no_longer_configured_is_canceled(
    sim: ExchangeSimulator, tmp_path: Path
) -> None:
    path = tmp_path / "journal.db"
    journal = Journal.open(str(path))
    journal.begin_run("runA", [BTC, ETH])
    journal.close()
    walk = sim.walks["ETH-USD"]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{sim.port}") as client:
        answer = await client.post(
            "/orders",
            headers={"X-API-Key": KEY},
            json={"client_order_id": "maker-runA-9", "symbol": "ETH-USD", "side": "buy",
                  "type": "limit", "price": ETH.format_price(walk.best_bid - 50),
                  "quantity": "0.005", "time_in_force": "GTC"},
        )  # fmt: skip
    assert answer.status_code == 200, answer.text
    # The next run trades BTC-USD only, in one process (no other shard).
    cfg = config(
        [{"name": "maker", "class": "tests.engine.test_reconcile:StartProbe",
          "symbols": ["BTC-USD"]}],
        instruments=[{"symbol": "BTC-USD", "tick_size": "0.01", "lot_size": "0.001"}],
        feed={"port": 0},
        gateway={"base_url": f"http://127.0.0.1:{sim.port}", "timeout_s": 0.3,
                 "settle_backoff_s": 0.01, "fills_poll_s": 0.02, "max_requests_per_s": 500},
        journal={"path": str(path), "flush_ms": 2},
        engine={"shutdown_s": 2.0},
    )  # fmt: skip
    engine = build_engine(cfg, environ={"EXCHANGE_API_KEY": KEY})
    await engine.start()
    try:
        report = engine.status()["reconciliation"]
        assert report["found"]["canceled_unconfigured"] == 1
        assert sim.orders["maker-runA-9"].status == "canceled"
    finally:
        await engine.stop()


@pytest.mark.asyncio
async def test_the_service_shows_no_positions_before_the_engine_starts_reconciling(
    tmp_path: Path,
) -> None:
    """The admin API serves before the engine binds its feed and reconciles."""
    from trading_engine.engine.runner import Service

    cfg = config(
        feed={"port": 0}, admin={"port": 0}, journal={"path": str(tmp_path / "j.db")},
        gateway={"mode": "simulated"},
    )  # fmt: skip
    from trading_engine.sim.venue import simulated_venue

    engine = build_engine(cfg, environ={"EXCHANGE_API_KEY": KEY}, venue=simulated_venue)
    service = Service(engine)
    held = asyncio.Event()

    async def start_later(serve_feed: bool = True) -> None:
        await held.wait()

    engine.start = start_later  # type: ignore[method-assign]
    starting = asyncio.get_running_loop().create_task(service.start())
    try:
        await wait_until(lambda: service.admin.port != 0 and service.admin._runner is not None)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.admin.port}") as client:
            status = (await client.get("/status")).json()
        assert status["positions"] is None
    finally:
        held.set()
        await starting
        await service.admin.stop()
