"""Start-up against the venue the journal belongs to, missing fills, and halts that never wait
for the journal; with the real simulator in the test's loop."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client import generate_latest

from tests.engine.test_reconcile import BTC, ETH, KEY, journal_order, make_engine, place
from tests.helpers import wait_until
from trading_engine.core.orders import OrderStatus
from trading_engine.core.protocol import Side
from trading_engine.core.risk import TradingState
from trading_engine.engine.telemetry import registry_for
from trading_engine.io.journal import Journal, JournalError
from trading_engine.sim.exchange_sim import ExchangeSimulator


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[ExchangeSimulator]:
    simulator = ExchangeSimulator([BTC, ETH], api_key=KEY, port=0, seed=5)
    await simulator.start()
    yield simulator
    await simulator.stop()


def journal_with_fills(path: Path, fill_ids: list[int]) -> None:
    """A previous run's journal: one filled order per fill id (5 lots each, bought)."""
    journal = Journal.open(str(path))
    journal.begin_run("runA", [BTC, ETH])
    for n in fill_ids:
        order = journal_order(journal, f"maker-runA-{n}", Side.BUY, 10_000)
        order.add_fill(10_000, 5)
        order.transition(OrderStatus.FILLED)
        journal.fill(order.client_order_id, "maker", "BTC-USD", "buy", 10_000, 5, fill_id=n)
        journal.order_status(order)
    journal.close()


async def start_and_stop(sim: ExchangeSimulator, path: Path, **settings: Any) -> None:
    engine = make_engine(sim, path, **settings)
    await engine.start(serve_feed=False)
    await engine.stop()


@pytest.mark.asyncio
async def test_a_reset_venue_stops_start_up_with_what_to_do(
    sim: ExchangeSimulator, tmp_path: Path
) -> None:
    path = tmp_path / "journal.db"
    journal_with_fills(path, [1, 2, 3])  # the venue's log went up to 3; this one is empty
    engine = make_engine(sim, path)
    with pytest.raises(JournalError) as refused:
        await engine.start(serve_feed=False)
    await engine.stop()
    message = str(refused.value)
    assert "journal.path" in message
    assert "--accept-new-venue" in message
    assert "read its fills up to 3" in message
    assert engine.order_faults["venue_changed"] == 1


@pytest.mark.asyncio
async def test_a_reset_venue_accepted_keeps_positions_and_reads_its_fills_from_the_start(
    sim: ExchangeSimulator, tmp_path: Path
) -> None:
    path = tmp_path / "journal.db"
    journal_with_fills(path, [1, 2, 3])
    walk = sim.walks["BTC-USD"]
    # Traded on the reset venue (its fill ids start at 1 again), never journaled.
    await place(sim, "maker-runA-9", "buy", BTC.format_price(walk.best_ask + 50), "IOC")
    assert sim.fills[0]["fill_id"] == 1
    engine = make_engine(sim, path, accept_new_venue=True)
    await engine.start(serve_feed=False)
    try:
        assert engine.positions.quantity("BTC-USD") == 15 + 5
        # Fill id 1 of the new venue is not taken for the journaled fill id 1.
        assert engine.risk.state is TradingState.ACTIVE
        assert engine.journal is not None
        assert engine.journal.fill_id_conflicts == 0
    finally:
        await engine.stop()
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM cursor WHERE name = 'fills'").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM fills").fetchone()[0] == 4
    db.close()
    # Recorded: the next start needs no flag.
    await start_and_stop(sim, path)


@pytest.mark.asyncio
async def test_another_venue_stops_start_up_and_the_key_is_never_journaled(
    sim: ExchangeSimulator, tmp_path: Path
) -> None:
    path = tmp_path / "journal.db"
    await start_and_stop(sim, path)
    db = sqlite3.connect(path)
    rows = db.execute("SELECT base_url, key_fingerprint FROM venues").fetchall()
    assert rows == [(f"http://127.0.0.1:{sim.port}", hashlib.sha256(KEY.encode()).hexdigest()[:16])]
    assert KEY.encode() not in path.read_bytes()
    other = ExchangeSimulator([BTC, ETH], api_key=KEY, port=0, seed=6)
    await other.start()
    try:
        engine = make_engine(other, path)
        with pytest.raises(JournalError) as refused:
            await engine.start(serve_feed=False)
        await engine.stop()
        message = str(refused.value)
        assert f"written against http://127.0.0.1:{sim.port}" in message
        assert f"trades on http://127.0.0.1:{other.port}" in message
        assert "--accept-new-venue" in message
        # Accepted: recorded as the journal's venue from then on.
        await start_and_stop(other, path, accept_new_venue=True)
        await start_and_stop(other, path)
    finally:
        await other.stop()
    assert len(db.execute("SELECT * FROM venues").fetchall()) == 2
    db.close()


@pytest.mark.asyncio
async def test_an_order_journaled_filled_without_its_fills_starts_halted(
    sim: ExchangeSimulator, tmp_path: Path
) -> None:
    path = tmp_path / "journal.db"
    journal = Journal.open(str(path))
    journal.begin_run("runA", [BTC, ETH])
    order = journal_order(journal, "maker-runA-1", Side.BUY, 10_000)
    order.add_fill(10_000, 5)
    order.transition(OrderStatus.FILLED)
    journal.order_status(order)  # filled, and no fill row: the venue's log lost it
    journal.close()
    engine = make_engine(sim, path)
    await engine.start(serve_feed=False)
    try:
        assert engine.risk.state is TradingState.HALTED
        who, reason = engine.state_by
        assert who == "journal"
        assert reason is not None
        assert "maker-runA-1" in reason
        assert engine.order_faults["fills_missing"] == 1
        assert engine.reconciliation is not None
        assert engine.reconciliation["fills_missing"] == ["maker-runA-1"]
        text = generate_latest(registry_for(engine)).decode()
        assert 'trading_engine_order_faults_total{kind="fills_missing"} 1.0' in text
    finally:
        await engine.stop()
    assert Journal.open(str(path), read_only=True).load().trading_state == (
        "halted",
        "journal",
        reason,
    )


@pytest.mark.asyncio
async def test_a_halt_cancels_at_once_while_another_process_holds_the_journal(
    sim: ExchangeSimulator, tmp_path: Path
) -> None:
    path = tmp_path / "journal.db"
    walk = sim.walks["BTC-USD"]
    journal = Journal.open(str(path))
    journal.begin_run("runA", [BTC, ETH])
    journal_order(journal, "maker-runA-1", Side.BUY, walk.best_bid - 50)
    journal.close()
    await place(sim, "maker-runA-1", "buy", BTC.format_price(walk.best_bid - 50))
    engine = make_engine(sim, path, write_timeout_s=0.3)
    await engine.start(serve_feed=False)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        assert engine.open_orders["maker"]
        other.execute("BEGIN IMMEDIATE")
        started = time.perf_counter()
        engine.set_trading_state(TradingState.HALTED, "admin", "by hand")
        assert time.perf_counter() - started < 0.05
        await wait_until(lambda: sim.orders["maker-runA-1"].status == "canceled", 2.0, "the cancel")
        # The journal cannot be written within its bound: counted and reported.
        assert engine.journal is not None
        await wait_until(lambda: engine.journal is not None and engine.journal.stalls == 1, 3.0)
        status = engine.status()["journal"]
        assert "journal.write_timeout_s" in status["failed"]
        text = generate_latest(registry_for(engine)).decode()
        assert "trading_engine_journal_stalls_total 1.0" in text
    finally:
        if other.in_transaction:
            other.execute("ROLLBACK")
        other.close()
        await engine.stop()
    # Both halts are journaled once the lock is gone, in order.
    db = sqlite3.connect(path)
    rows = db.execute("SELECT state, who, reason FROM trading_state ORDER BY seq").fetchall()
    db.close()
    assert rows[0] == ("halted", "admin", "by hand")
    assert rows[1][:2] == ("halted", "journal")


@pytest.mark.asyncio
async def test_a_refused_key_stops_start_up_at_once_and_never_becomes_the_journals(
    sim: ExchangeSimulator, tmp_path: Path
) -> None:
    """A wrong API key: start-up stops at its first refused read (exit 2, one line
    naming the variable), with no retry, and the journal records no venue; the
    next start with the right key goes on as a first start."""
    from trading_engine.core.errors import ConfigError
    from trading_engine.engine.runner import build_engine

    path = tmp_path / "journal.db"
    right = make_engine(sim, path)  # for its configuration
    assert right.journal is not None
    right.journal.close()
    engine = build_engine(right.config, environ={"EXCHANGE_API_KEY": "not-the-key"})
    with pytest.raises(ConfigError) as refused:
        await engine.start(serve_feed=False)
    await engine.stop()
    assert refused.value.problems == [
        "gateway.api_key_env: the venue refuses GET /orders?status=open "
        "(401: bad or missing API key): check EXCHANGE_API_KEY"
    ]
    assert engine.sink.counts["auth_failed"] == 1  # type: ignore[attr-defined]
    journal = Journal.open(str(path))
    assert journal.recorded_venue() is None
    journal.close()
    await start_and_stop(sim, path)  # the right key: no "another venue"


@pytest.mark.asyncio
async def test_a_start_stopped_by_a_refused_key_leaves_the_restored_orders_alone(
    sim: ExchangeSimulator, tmp_path: Path
) -> None:
    """The journal's open order is restored before the venue refuses the key: the
    stop that follows must not try to cancel it (with the refused key, for the
    whole shutdown bound); the next start reconciles it."""
    from trading_engine.core.errors import ConfigError
    from trading_engine.engine.runner import build_engine

    path = tmp_path / "journal.db"
    journal = Journal.open(str(path))
    journal.begin_run("runA", [BTC, ETH])
    journal_order(journal, "maker-runA-1", Side.BUY, 10_000)
    journal.close()
    right = make_engine(sim, path)  # for its configuration
    assert right.journal is not None
    right.journal.close()
    engine = build_engine(right.config, environ={"EXCHANGE_API_KEY": "not-the-key"})
    with pytest.raises(ConfigError):
        await engine.start(serve_feed=False)
    started = time.monotonic()
    await engine.stop()
    assert time.monotonic() - started < 1.0
    assert [m for _, m, _ in sim.request_log if m == "DELETE"] == []
