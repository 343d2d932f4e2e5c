"""Operator warnings: one line each, counted in ``trading_engine_warnings_total{kind}``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from prometheus_client import generate_latest

from tests.engine.test_journal_venue import journal_with_fills
from tests.engine.test_reconcile import BTC, ETH, KEY, make_engine, place
from tests.fakes import config, snapshot
from trading_engine.core.builder import BookBuilder, BookState
from trading_engine.core.instruments import Instrument
from trading_engine.engine.engine import Engine
from trading_engine.engine.notices import (
    NO_TOKEN_ANSWER,
    BookGridWatch,
    Notices,
    journal_venues_notice,
)
from trading_engine.engine.runner import Service
from trading_engine.engine.telemetry import registry_for
from trading_engine.io.journal import Journal
from trading_engine.sim.exchange_sim import ExchangeSimulator
from trading_engine.sim.venue import simulated_venue


def warnings_metric(engine: Engine, kind: str) -> float:
    text = generate_latest(registry_for(engine)).decode()
    line = f'trading_engine_warnings_total{{kind="{kind}"}} '
    found = [row for row in text.splitlines() if row.startswith(line)]
    assert found, text
    return float(found[0].split()[-1])


# -- no admin token -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_no_admin_token_warns_once_with_what_the_admin_api_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = config(feed={"port": 0}, admin={"port": 0})
    engine = Engine(cfg, run_id="t", sink_factory=simulated_venue)
    service = Service(engine, environ={})
    with caplog.at_level(logging.WARNING, "trading_engine.notices"):
        await service.start()
    try:
        lines = [r.getMessage() for r in caplog.records if r.name == "trading_engine.notices"]
        assert len(lines) == 1
        assert "TRADING_ENGINE_ADMIN_TOKEN" in lines[0]
        assert "POST /halt, /reduce and /resume answer " + NO_TOKEN_ANSWER in lines[0]
        assert warnings_metric(engine, "admin_token") == 1
        # What the line says is what the admin API answers.
        async with httpx.AsyncClient() as client:
            for path in ("/halt", "/reduce", "/resume"):
                answer = await client.post(f"http://127.0.0.1:{service.admin.port}{path}")
                assert f"{answer.status_code} {answer.text}" == NO_TOKEN_ANSWER
    finally:
        await service.shutdown()


@pytest.mark.asyncio
async def test_a_configured_admin_token_gives_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    cfg = config(feed={"port": 0}, admin={"port": 0})
    engine = Engine(cfg, run_id="t", sink_factory=simulated_venue)
    service = Service(engine, environ={"TRADING_ENGINE_ADMIN_TOKEN": "secret"})
    with caplog.at_level(logging.WARNING, "trading_engine.notices"):
        await service.start()
    await service.shutdown()
    assert not [r for r in caplog.records if r.name == "trading_engine.notices"]
    assert engine.notices.counts["admin_token"] == 0


# -- books kept from going live by frames off their grid -------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def off_tick_snapshot(seq: int, symbol: str = "BTC-USD") -> bytes:
    return snapshot(seq, [["100.005", "1"]], [["100.10", "1"]], symbol)


def test_a_book_awaiting_its_snapshot_with_off_tick_frames_is_named_with_its_tick() -> None:
    builder = BookBuilder([BTC, ETH])
    notices = Notices()
    clock = FakeClock()
    watch = BookGridWatch(builder, notices, repeat_s=60.0, clock=clock)
    assert watch.check() == []
    for seq in (1, 2, 3):
        builder.handle(off_tick_snapshot(seq))
    assert builder.books["BTC-USD"].state is BookState.AWAITING_SNAPSHOT
    [line] = watch.check()
    assert line.startswith("book BTC-USD is awaiting_snapshot: 3 frame(s) rejected off its grid")
    assert "tick_size 0.01" in line
    assert "price '100.005' is not a multiple of tick_size 0.01" in line
    assert notices.counts["book_off_grid"] == 1
    # Rate-limited: more rejections within repeat_s say nothing more.
    builder.handle(off_tick_snapshot(4))
    clock.now += 59
    assert watch.check() == []
    clock.now += 1
    [again] = watch.check()
    assert "4 frame(s)" in again
    # Nothing new since: nothing said, however long it waits.
    clock.now += 600
    assert watch.check() == []
    assert notices.counts["book_off_grid"] == 2


def test_an_off_lot_size_of_a_stale_book_is_named_with_its_lot_size() -> None:
    builder = BookBuilder([BTC])
    watch = BookGridWatch(builder, Notices(), clock=FakeClock())
    builder.handle(snapshot(1, [["100.00", "1"]], [["100.10", "1"]]))
    builder.mark_stale(["BTC-USD"])
    builder.handle(snapshot(2, [["100.00", "0.0005"]], [["100.10", "1"]]))
    [line] = watch.check()
    assert line.startswith("book BTC-USD is stale: 1 frame(s)")
    assert "size '0.0005' is not a multiple of lot_size 0.001" in line


def test_a_live_book_with_some_off_tick_frames_is_not_reported() -> None:
    builder = BookBuilder([BTC])
    watch = BookGridWatch(builder, Notices(), clock=FakeClock())
    builder.handle(snapshot(1, [["100.00", "1"]], [["100.10", "1"]]))
    builder.handle(off_tick_snapshot(2))  # the book goes stale...
    builder.handle(snapshot(3, [["100.00", "1"]], [["100.10", "1"]]))  # ...and live again
    assert builder.off_grid["BTC-USD"][0] == 1
    assert builder.books["BTC-USD"].state is BookState.LIVE
    assert watch.check() == []


def test_many_books_off_grid_never_flood_the_log() -> None:
    instruments = [Instrument(f"S{i}-USD", "0.01", "0.001") for i in range(40)]
    builder = BookBuilder(instruments)
    notices = Notices()
    watch = BookGridWatch(builder, notices, max_lines=5, clock=FakeClock())
    for inst in instruments:
        builder.handle(off_tick_snapshot(1, inst.symbol))
    lines = watch.check()
    assert len(lines) == 6
    assert lines[-1].startswith("and 35 more book(s) not live with frames off their grid")
    assert notices.counts["book_off_grid"] == 40


def test_the_engine_exports_the_book_warnings() -> None:
    engine = Engine(config(), run_id="t", sink_factory=simulated_venue)
    watch = BookGridWatch(engine.builder, engine.notices, clock=FakeClock())
    engine.builder.handle(off_tick_snapshot(1))
    watch.check()
    assert warnings_metric(engine, "book_off_grid") == 1


# -- a journal reused across venues ---------------------------------------------------------


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[ExchangeSimulator]:
    simulator = ExchangeSimulator([BTC, ETH], api_key=KEY, port=0, seed=5)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.mark.asyncio
async def test_a_journal_accepted_for_a_reset_venue_warns_at_every_start(
    sim: ExchangeSimulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "journal.db"
    journal_with_fills(path, [1, 2, 3])
    walk = sim.walks["BTC-USD"]
    await place(sim, "maker-runA-9", "buy", BTC.format_price(walk.best_ask + 50), "IOC")
    for settings in ({"accept_new_venue": True}, {}):
        caplog.clear()
        engine = make_engine(sim, path, **settings)
        with caplog.at_level(logging.WARNING, "trading_engine.notices"):
            await engine.start(serve_feed=False)
        try:
            lines = [r.getMessage() for r in caplog.records if r.name == "trading_engine.notices"]
            assert len(lines) == 1
            assert lines[0].startswith(f"journal {path} has fills from 2 venue(s)")
            assert "[1: the venue before the first one recorded; 2: http://" in lines[0]
            assert "a new fills log" in lines[0]
            assert f"http://127.0.0.1:{sim.port}" in lines[0]
            assert warnings_metric(engine, "journal_venues") == 1
        finally:
            await engine.stop()


@pytest.mark.asyncio
async def test_a_journal_of_one_venue_gives_no_warning(
    sim: ExchangeSimulator, tmp_path: Path
) -> None:
    path = tmp_path / "journal.db"
    for _ in range(2):
        engine = make_engine(sim, path)
        await engine.start(serve_feed=False)
        await engine.stop()
        assert engine.notices.counts["journal_venues"] == 0


def test_two_venue_rows_are_described_in_one_line(tmp_path: Path) -> None:
    from trading_engine.io.journal import VenueIdentity

    journal = Journal.open(str(tmp_path / "j.db"))
    journal.begin_run("r", [BTC])
    assert journal_venues_notice(journal) is None
    journal.record_venue(VenueIdentity.of("http://a", "k1"), "first start", new_fills_log=False)
    journal.record_venue(VenueIdentity.of("http://b", "k2"), "accepted: x", new_fills_log=True)
    journal.flush()
    notice = journal_venues_notice(journal)
    journal.close()
    assert notice is not None
    assert "\n" not in notice
    assert "has fills from 2 venue(s)" in notice
    assert "1: http://a (API key fingerprint" in notice
    assert "2: http://b (API key fingerprint" in notice
