"""Positions belong to the deployment, not to a journal file or a worker index.

Engines of one deployment trade on the real simulator under one layout
(shard count), stop, and start again under another: every symbol's
position equals the venue's fills of the deployment's orders on it, and
``max_position`` holds across the change. The same for a moved journal.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio

from tests.engine.test_reconcile import BTC, ETH, KEY
from tests.fakes import config
from tests.helpers import wait_until
from trading_engine.core.orders import OrderType, TimeInForce
from trading_engine.core.protocol import Side
from trading_engine.core.risk import Denial, TradingState
from trading_engine.core.sharding import shard_of
from trading_engine.engine.engine import Engine
from trading_engine.engine.runner import build_engine
from trading_engine.sim.exchange_sim import ExchangeSimulator

#: The strategy trading each symbol (a strategy runs in the shard of its first symbol).
STRATEGY = {"BTC-USD": "mb", "ETH-USD": "me"}


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[ExchangeSimulator]:
    simulator = ExchangeSimulator([BTC, ETH], api_key=KEY, port=0, seed=11)
    await simulator.start()
    yield simulator
    await simulator.stop()


def make_engine(
    sim: ExchangeSimulator, journal: Path, shard: int, shards: int, deployment: str = "te"
) -> Engine:
    cfg = config(
        [{"name": name, "class": "tests.fakes:Recorder", "symbols": [symbol]}
         for symbol, name in STRATEGY.items()],
        feed={"port": 0},
        gateway={"base_url": f"http://127.0.0.1:{sim.port}", "timeout_s": 0.5,
                 "settle_backoff_s": 0.01, "fills_poll_s": 0.02, "max_requests_per_s": 500},
        journal={"path": str(journal), "flush_ms": 2},
        engine={"shutdown_s": 2.0, "shard": shard, "shards": shards,
                "deployment": deployment},
        risk={"max_position": "0.010", "max_order_quantity": "0.010"},
    )  # fmt: skip
    return build_engine(cfg, environ={"EXCHANGE_API_KEY": KEY})


def feed_book(engine: Engine, sim: ExchangeSimulator, symbol: str) -> None:
    """Make ``symbol``'s book live at the simulator's current prices."""
    walk = sim.walks[symbol]
    inst = engine.instruments[symbol]
    frame = {
        "type": "snapshot",
        "symbol": symbol,
        "seq": 1,
        "bids": [[inst.format_price(walk.best_bid), "5"]],
        "asks": [[inst.format_price(walk.best_ask), "5"]],
    }
    engine.builder.handle(orjson.dumps(frame))


async def buy(engine: Engine, sim: ExchangeSimulator, symbol: str, lots: int) -> Denial | None:
    """An IOC buy of ``lots`` that crosses the simulator's book; waits for its fills."""
    feed_book(engine, sim, symbol)
    before = engine.positions.quantity(symbol)
    price = sim.walks[symbol].best_ask + 100
    order, denial = engine.submit(
        engine.runners[STRATEGY[symbol]], symbol, Side.BUY, lots, price,
        OrderType.LIMIT, TimeInForce.IOC,
    )  # fmt: skip
    if order is None:
        return denial
    await wait_until(lambda: engine.positions.quantity(symbol) == before + lots, within_s=5.0)
    return None


async def venue_position(sim: ExchangeSimulator, symbol: str, prefix: str = "te-") -> int:
    """The venue's fills of the deployment's orders on ``symbol``, read over its API."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{sim.port}") as client:
        answer = await client.get("/fills?since=0", headers={"X-API-Key": KEY})
    lots = 0
    for fill in answer.json():
        if fill["symbol"] == symbol and fill["client_order_id"].startswith(prefix):
            size = BTC.size_to_lots(fill["quantity"])
            lots += size if fill["side"] == "buy" else -size
    return lots


async def run_layout(
    sim: ExchangeSimulator, tmp_path: Path, shards: int, name: str = "journal"
) -> list[Engine]:
    """Start one engine per shard, each on its own journal (as ``run --workers``)."""
    engines = []
    for shard in range(shards):
        engine = make_engine(sim, tmp_path / f"{name}.{shard}.db", shard, shards)
        await engine.start()
        engines.append(engine)
    return engines


def owner(engines: list[Engine], symbol: str) -> Engine:
    return engines[shard_of(symbol, len(engines))]


async def stop(engines: list[Engine]) -> None:
    for engine in engines:
        await engine.stop()


@pytest.mark.asyncio
async def test_resharding_keeps_every_position_and_max_position(
    sim: ExchangeSimulator, tmp_path: Path
) -> None:
    # Under 2 shards BTC and ETH trade in different workers' journals...
    engines = await run_layout(sim, tmp_path, 2)
    assert {shard_of("BTC-USD", 2), shard_of("ETH-USD", 2)} == {0, 1}
    # ETH's fill is older than BTC's: the journal ETH moves to has read the
    # venue's fills log past it.
    assert await buy(owner(engines, "ETH-USD"), sim, "ETH-USD", 7) is None
    assert await buy(owner(engines, "BTC-USD"), sim, "BTC-USD", 6) is None
    await stop(engines)

    # ... and under 3 both move: BTC to a new journal, ETH to the one BTC was in.
    assert (shard_of("BTC-USD", 3), shard_of("ETH-USD", 3)) == (2, 0)
    engines = await run_layout(sim, tmp_path, 3)
    try:
        btc, eth = owner(engines, "BTC-USD"), owner(engines, "ETH-USD")
        assert btc.positions.quantity("BTC-USD") == await venue_position(sim, "BTC-USD") == 6
        assert eth.positions.quantity("ETH-USD") == await venue_position(sim, "ETH-USD") == 7
        # Per strategy too: the strategy named in the client order id holds it.
        assert btc.positions.of_strategy("mb", "BTC-USD").quantity == 6
        report = btc.status()["reconciliation"]
        assert report["positions_from"] == "venue"
        assert report["layout"] == {"deployment": "te", "shard": 2, "shards": 3}
        # max_position (10 lots) holds across the change: 6 + 5 would be 11.
        assert await buy(btc, sim, "BTC-USD", 5) is Denial.MAX_POSITION
        assert await buy(btc, sim, "BTC-USD", 4) is None
    finally:
        await stop(engines)

    # Back to 2: each journal last reconciled under another layout is rebuilt again.
    engines = await run_layout(sim, tmp_path, 2)
    try:
        for symbol, lots in (("BTC-USD", 10), ("ETH-USD", 7)):
            assert owner(engines, symbol).positions.quantity(symbol) == lots
            assert await venue_position(sim, symbol) == lots
        assert all(not engine.open_order_list() for engine in engines)
    finally:
        await stop(engines)
    # Never above max_position on the venue, whatever the layout was.
    assert await venue_position(sim, "BTC-USD") <= 10


@pytest.mark.asyncio
async def test_a_restart_under_the_same_layout_takes_positions_from_its_journal(
    sim: ExchangeSimulator, tmp_path: Path
) -> None:
    engines = await run_layout(sim, tmp_path, 2)
    assert await buy(owner(engines, "BTC-USD"), sim, "BTC-USD", 3) is None
    first = owner(engines, "BTC-USD").status()["reconciliation"]
    await stop(engines)
    assert first["positions_from"] == "venue"  # new journals: nothing journaled yet

    engines = await run_layout(sim, tmp_path, 2)
    try:
        report = owner(engines, "BTC-USD").status()["reconciliation"]
        assert report["positions_from"] == "journal"
        assert "rebuild_reason" not in report
        assert owner(engines, "BTC-USD").positions.quantity("BTC-USD") == 3
    finally:
        await stop(engines)


@pytest.mark.asyncio
async def test_a_moved_journal_keeps_the_positions(sim: ExchangeSimulator, tmp_path: Path) -> None:
    engine = make_engine(sim, tmp_path / "old.db", 0, 1)
    await engine.start()
    assert await buy(engine, sim, "BTC-USD", 4) is None
    assert await buy(engine, sim, "ETH-USD", 2) is None
    await engine.stop()

    engine = make_engine(sim, tmp_path / "elsewhere" / "new.db", 0, 1)
    await engine.start()
    try:
        assert engine.positions.quantity("BTC-USD") == 4
        assert engine.positions.quantity("ETH-USD") == 2
        report: dict[str, Any] = engine.status()["reconciliation"]
        assert report["positions_from"] == "venue"
        assert report["rebuild_reason"].startswith("no layout journaled")
        assert await buy(engine, sim, "BTC-USD", 7) is Denial.MAX_POSITION
    finally:
        await engine.stop()


@pytest.mark.asyncio
async def test_another_deployments_fills_are_not_this_ones(
    sim: ExchangeSimulator, tmp_path: Path
) -> None:
    other = make_engine(sim, tmp_path / "other.db", 0, 1, deployment="blue")
    await other.start()
    assert await buy(other, sim, "BTC-USD", 5) is None
    await other.stop()

    engine = make_engine(sim, tmp_path / "mine.db", 0, 1)
    await engine.start()
    try:
        assert engine.positions.quantity("BTC-USD") == 0
        assert await venue_position(sim, "BTC-USD", "blue-") == 5
    finally:
        await engine.stop()


@pytest.mark.asyncio
async def test_a_venue_whose_fills_log_resets_while_running_halts_trading(
    sim: ExchangeSimulator, tmp_path: Path
) -> None:
    engine = make_engine(sim, tmp_path / "journal.db", 0, 1)
    await engine.start()
    try:
        assert await buy(engine, sim, "BTC-USD", 2) is None
        gateway: Any = engine.sink
        await wait_until(lambda: gateway.fills_cursor > 0)
        assert await gateway.check_fills_log() is True
        assert engine.risk.state.value == "active"
        # The venue restarts with an empty fills log: its next fills would
        # carry ids the poller takes as already read.
        sim.fills.clear()
        assert await gateway.check_fills_log() is False
        assert engine.risk.state.value == "halted"
        assert engine.status()["trading_state_by"]["reason"] == "fills_log_reset"
        assert engine.order_faults["fills_log_reset"] == 1
        # The positions no longer follow the venue's: unknown, not the last ones seen.
        assert engine.positions_known is False
        assert engine.status()["positions"] is None
        # Reported once, not at every check.
        assert await gateway.check_fills_log() is False
        assert engine.order_faults["fills_log_reset"] == 1
        # Fills the new log numbers at or below the cursor would be lost to this
        # process: the operator cannot resume it, only halt it and restart it.
        from prometheus_client import generate_latest

        from trading_engine.engine.telemetry import registry_for
        from trading_engine.io.admin import AdminServer

        registry = registry_for(engine)
        admin = AdminServer(engine, engine.config.admin.model_copy(update={"port": 0}), registry,
                            environ={"TRADING_ENGINE_ADMIN_TOKEN": "t"})  # fmt: skip
        await admin.start()
        try:
            headers = {"Authorization": "Bearer t"}
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin.port}") as client:
                for path in ("/resume", "/reduce"):
                    answer = await client.post(path, headers=headers)
                    assert answer.status_code == 409
                    assert answer.json()["trading_state"] == "halted"
                    assert "fills log was reset" in answer.json()["refused"]
                    assert "restart the engine" in answer.json()["refused"]
                assert engine.risk.state is TradingState.HALTED
                assert (await client.post("/halt", headers=headers)).status_code == 200
            text = generate_latest(registry).decode()
            assert 'trading_engine_admin_switches_refused_total{to="active"} 1.0' in text
            assert 'trading_engine_admin_switches_refused_total{to="reducing"} 1.0' in text
            assert "trading_engine_positions_known 0.0" in text
            assert "trading_engine_position{" not in text
        finally:
            await admin.stop()
        # The log growing past the old cursor again does not make it trustworthy.
        assert engine.switch_refusal(TradingState.ACTIVE) is not None
    finally:
        await engine.stop()


@pytest.mark.asyncio
async def test_an_overfill_of_a_closed_order_found_at_start_up_is_credited_and_halts(
    sim: ExchangeSimulator, tmp_path: Path
) -> None:
    for layout_changes in (False, True):
        journal = tmp_path / f"j{layout_changes}.db"
        engine = make_engine(sim, journal, 0, 1)
        await engine.start()
        assert await buy(engine, sim, "BTC-USD", 2) is None
        (order,) = [o for o in engine.orders.values() if o.symbol == "BTC-USD"]
        cid = order.client_order_id
        await engine.stop()
        # While it was stopped the venue filled the closed order once more.
        extra = dict(next(f for f in sim.fills if f["client_order_id"] == cid))
        extra["fill_id"] = len(sim.fills) + 1
        sim.fills.append(extra)
        venue = await venue_position(sim, "BTC-USD")

        # The same layout (fills since the cursor) and another one (the venue's whole log).
        shard, shards = (shard_of("BTC-USD", 2), 2) if layout_changes else (0, 1)
        engine = make_engine(sim, journal, shard, shards)
        await engine.start()
        try:
            assert engine.positions.quantity("BTC-USD") == venue  # the venue's position
            assert engine.order_faults["overfill"] == 1
            assert engine.risk.state is TradingState.HALTED
            assert engine.status()["reconciliation"]["found"]["overfills"] == 1
        finally:
            await engine.stop()


@pytest.mark.asyncio
async def test_another_workers_order_without_a_symbol_in_its_body_is_left_alone(
    sim: ExchangeSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The order API's body has no ``symbol``: the id's strategy names the shard."""
    btc_shard = shard_of("BTC-USD", 2)
    assert shard_of("ETH-USD", 2) != btc_shard
    # A resting order of the ETH strategy (the other worker's), under the deployment's ids.
    other = "te-me-run0001-1"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{sim.port}") as client:
        answer = await client.post(
            "/orders", headers={"X-API-Key": KEY},
            json={"client_order_id": other, "symbol": "ETH-USD", "side": "buy",
                  "type": "limit", "price": "1.00", "quantity": "0.005",
                  "time_in_force": "GTC"},
        )  # fmt: skip
    assert answer.status_code == 200, answer.text
    engine = make_engine(sim, tmp_path / "btc.db", btc_shard, 2)
    read_open = engine.sink.open_orders  # type: ignore[attr-defined]

    async def open_orders_without_symbols() -> list[dict[str, Any]]:
        bodies: list[dict[str, Any]] = await read_open()
        return [{k: v for k, v in body.items() if k != "symbol"} for body in bodies]

    monkeypatch.setattr(engine.sink, "open_orders", open_orders_without_symbols)
    await engine.start()
    try:
        assert engine.reconciliation is not None
        found = engine.reconciliation["found"]
        assert found.get("other_shard") == 1, found
        assert "canceled_unreadable" not in found
        assert sim.orders[other].is_open
    finally:
        await engine.stop()
