"""The SQLite order journal: schema, batching, migration and bad state."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from trading_engine import Instrument
from trading_engine.core.orders import Order, OrderStatus, OrderType, TimeInForce
from trading_engine.core.protocol import Side
from trading_engine.io.journal import (
    SCHEMA_V1,
    SCHEMA_VERSION,
    Journal,
    JournalError,
    VenueIdentity,
)

BTC = Instrument("BTC-USD", "0.01", "0.001")


def order(n: int, strategy: str = "s", run: str = "r1") -> Order:
    return Order(
        f"{strategy}-{run}-{n}", strategy, "BTC-USD", Side.BUY, OrderType.LIMIT, 5, 10_000,
        TimeInForce.GTC,
    )  # fmt: skip


def test_a_new_journal_is_created_with_its_folder_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "state" / "journal.db"
    journal = Journal.open(str(path))
    journal.begin_run("r1", [BTC])
    journal.close()
    assert path.is_file()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("SELECT run_id FROM runs").fetchall() == [("r1",)]
    assert db.execute("SELECT * FROM instruments").fetchall() == [("BTC-USD", "0.01", "0.001")]


def test_rows_wait_for_the_flush_then_go_in_one_transaction(tmp_path: Path) -> None:
    path = str(tmp_path / "j.db")
    journal = Journal.open(path)
    journal.begin_run("r1", [BTC])
    first = order(1)
    journal.order_submitted(first)
    first.transition(OrderStatus.NEW)
    journal.order_status(first)
    first.add_fill(10_000, 2)
    journal.fill(first.client_order_id, "s", "BTC-USD", "buy", 10_000, 2, fill_id=7)
    first.transition(OrderStatus.PARTIALLY_FILLED)
    journal.order_status(first)
    reader = sqlite3.connect(path)
    assert reader.execute("SELECT count(*) FROM orders").fetchone()[0] == 0
    assert journal.pending == 7
    assert journal.flush()
    assert journal.pending == 0
    assert reader.execute("SELECT status, filled FROM orders").fetchall() == [
        ("partially_filled", 2)
    ]
    assert [row[0] for row in reader.execute("SELECT status FROM order_events ORDER BY seq")] == [
        "new",
        "partially_filled",
    ]
    state = journal.load()
    assert state.runs == {"r1"}
    assert list(state.open_orders) == [first.client_order_id]
    assert state.fills_cursor == 7
    assert [(f.fill_id, f.quantity) for f in state.fills] == [(7, 2)]
    # A fill_id is recorded once; the cursor never goes back.
    journal.fill(first.client_order_id, "s", "BTC-USD", "buy", 10_000, 2, fill_id=7)
    journal.fills_cursor(3)
    journal.flush()
    state = journal.load()
    assert len(state.fills) == 1
    assert state.fills_cursor == 7
    journal.close()


def test_trading_state_changes_are_written_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "j.db")
    journal = Journal.open(path)
    journal.trading_state("halted", "admin")
    reader = sqlite3.connect(path)
    assert reader.execute("SELECT state, who FROM trading_state").fetchall() == [
        ("halted", "admin")
    ]
    assert journal.load().trading_state == ("halted", "admin", None)
    journal.close()


def test_the_venues_pauses_are_written_at_once_per_base_url_the_last_one_heard(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "j.db")
    journal = Journal.open(path)
    journal.venue = VenueIdentity.of("https://api.binance.com", "k")
    assert journal.venue_pauses() == ((0.0, 0.0), (0.0, 0.0))
    journal.venue_paused(1_700_000_000.0, 1_700_000_030.25)
    journal.venue_paused(1_700_000_005.0, 1_700_000_010.0)  # the last one heard counts
    journal.venue_paused(1_700_000_000.0, 1_700_000_120.0, banned=True)
    assert journal.pending == 0  # each was written when it came
    journal.close()
    again = Journal.open(path)
    again.venue = VenueIdentity.of("https://api.binance.com", "another key")
    assert again.venue_pauses() == ((1_700_000_005.0, 1_700_000_010.0),
                                    (1_700_000_000.0, 1_700_000_120.0))  # fmt: skip
    again.venue = VenueIdentity.of("https://testnet.binance.vision", "k")
    assert again.venue_pauses() == ((0.0, 0.0), (0.0, 0.0))
    for spelling in ("https://API.Binance.com:443/", "HTTPS://api.binance.com/"):
        again.venue = VenueIdentity.of(spelling, "k")  # the same base URL
        assert again.venue_pauses()[1] == (1_700_000_000.0, 1_700_000_120.0)
    again.venue = VenueIdentity.of("https://api.binance.com:8443", "k")
    assert again.venue_pauses() == ((0.0, 0.0), (0.0, 0.0))
    again.close()


@pytest.mark.asyncio
async def test_the_periodic_flush_writes_within_a_few_milliseconds(tmp_path: Path) -> None:
    path = str(tmp_path / "j.db")
    journal = Journal.open(path, flush_s=0.002)
    journal.begin_run("r1", [BTC])
    journal.start()
    journal.order_submitted(order(1))
    reader = sqlite3.connect(path)
    for _ in range(500):
        written = reader.execute("SELECT count(*) FROM orders").fetchone()[0]
        if written == 1 and journal.rows_written >= 2:
            break
        await asyncio.sleep(0.002)
    assert reader.execute("SELECT count(*) FROM orders").fetchone()[0] == 1
    assert journal.rows_written >= 2  # the run's rows, then the order's
    await journal.stop()
    journal.close()


def test_a_version_1_journal_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_V1)
    db.execute(
        "INSERT INTO orders VALUES ('s-old-1', 'old', 's', 'BTC-USD', 'buy', 'limit', 100, 3,"
        " 'GTC', 'new', 0, 'X-1', NULL, 5, 5)"
    )
    db.execute(
        "INSERT INTO trading_state (state, who, reason, ts_ns) VALUES ('halted', 'admin', NULL, 6)"
    )
    db.commit()
    db.close()
    journal = Journal.open(str(path))
    assert journal.schema_version() == SCHEMA_VERSION
    state = journal.load()
    assert state.runs == {"old"}
    assert list(state.open_orders) == ["s-old-1"]
    assert state.trading_state == ("halted", "admin", None)
    journal.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    Journal.open(str(path)).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    db.commit()
    db.close()
    with pytest.raises(JournalError, match=rf"schema version {SCHEMA_VERSION + 1} is newer"):
        Journal.open(str(path))


def test_a_corrupt_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    journal = Journal.open(str(path))
    journal.begin_run("r1", [BTC])
    for n in range(300):
        journal.order_submitted(order(n))
    journal.close()
    data = bytearray(path.read_bytes())
    # Overwrite the middle pages (b-tree pages of the tables) with garbage.
    for i in range(4096, len(data) - 1024, 7):
        data[i] = 0xA5
    path.write_bytes(bytes(data))
    with pytest.raises(JournalError, match=r"corrupt"):
        Journal.open(str(path))


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "text.db"
    path.write_text("this is not SQLite\n" * 100)
    with pytest.raises(JournalError, match=r"corrupt or not an SQLite database"):
        Journal.open(str(path))


def test_a_database_of_something_else_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(JournalError, match=r"not a trading-engine journal"):
        Journal.open(str(path))


def test_a_folder_that_cannot_be_created_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(JournalError, match=r"cannot create its folder"):
        Journal.open(str(blocker / "state" / "journal.db"))


def test_a_failing_write_reports_once_and_keeps_the_rows(tmp_path: Path) -> None:
    path = str(tmp_path / "j.db")
    journal = Journal.open(path)
    journal.begin_run("r1", [BTC])
    reasons: list[str] = []
    journal.on_failure = reasons.append
    # The disk is full: SQLite may not grow the file by one more page.
    pages = journal._db.execute("PRAGMA page_count").fetchone()[0]
    journal._db.execute(f"PRAGMA max_page_count = {pages}")
    for n in range(2000):
        journal.order_submitted(order(n))
    assert not journal.flush()
    assert not journal.flush()
    assert len(reasons) == 1
    assert "write failed" in reasons[0]
    assert "full" in reasons[0]
    assert journal.write_errors == 2
    assert journal.pending == 2000
    journal._db.execute("PRAGMA max_page_count = 1073741823")
    assert journal.flush()
    assert journal.failed is None
    assert len(journal.orders()) == 2000
    journal.close()


def test_readers_see_committed_rows_while_the_writer_is_open(tmp_path: Path) -> None:
    path = str(tmp_path / "j.db")
    writer = Journal.open(path)
    writer.begin_run("r1", [BTC])
    writer.order_submitted(order(1))
    writer.flush()
    reader = Journal.open(path, read_only=True)
    assert [o.client_order_id for o in reader.orders()] == ["s-r1-1"]
    writer.order_submitted(order(2, strategy="t"))
    writer.flush()
    assert [o.client_order_id for o in reader.orders(strategy="t")] == ["t-r1-2"]
    assert reader.instruments()["BTC-USD"].lot_size == "0.001"
    reader.close()
    writer.close()


def test_another_grid_for_a_journaled_instrument_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "journal.db")
    journal = Journal.open(path)
    journal.begin_run("r1", [Instrument("BTC-USD", "0.01", "0.001")])
    journal.close()
    journal = Journal.open(path)
    # The same grid written differently is the same grid.
    journal.begin_run("r2", [Instrument("BTC-USD", "0.010", "0.0010")])
    with pytest.raises(JournalError, match=r"BTC-USD was journaled with tick_size 0.01 and lot"):
        journal.begin_run("r3", [Instrument("BTC-USD", "0.01", "0.01")])
    # Nothing was rewritten: the journal keeps the grid of its rows.
    assert journal.instruments()["BTC-USD"].lot_size == "0.001"
    journal.close()


def test_a_fill_id_reused_for_another_fill_halts_and_a_repeat_does_not(tmp_path: Path) -> None:
    journal = Journal.open(str(tmp_path / "journal.db"))
    journal.begin_run("r1", [Instrument("BTC-USD", "0.01", "0.001")])
    failures: list[str] = []
    journal.on_failure = failures.append
    journal.fill("t-r1-1", "t", "BTC-USD", "buy", 10000, 5, fill_id=7)
    journal.flush()
    journal.fill("t-r1-1", "t", "BTC-USD", "buy", 10000, 5, fill_id=7)  # the same fill again
    journal.flush()
    assert failures == []
    # A venue that restarted numbers its fills from 1 again.
    journal.fill("t-r1-2", "t", "BTC-USD", "sell", 10010, 3, fill_id=7)
    journal.flush()
    assert len(failures) == 1
    assert "fill_id 7 was journaled for t-r1-1" in failures[0]
    assert journal.fill_id_conflicts == 1
    journal.close()
