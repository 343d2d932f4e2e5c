"""Fills streams in the journal: one cursor per stream, fill ids unique per stream,
the migration of journals written with one cursor, and the venue's own fee."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from trading_engine import Instrument
from trading_engine.io.journal import SCHEMA_VERSION, Journal, JournalError
from trading_engine.io.order_api import ALL_SYMBOLS

DATA = Path(__file__).resolve().parents[1] / "data"
BTC = Instrument("BTCUSDT", "0.01", "0.00001")
ETH = Instrument("ETHUSDT", "0.01", "0.0001")
STREAMS = ("BTCUSDT", "ETHUSDT")


def copy(name: str, tmp_path: Path) -> str:
    """A journal file written by the release before fills streams (schema 4)."""
    target = tmp_path / name
    shutil.copy(DATA / name, target)
    return str(target)


def test_fills_of_two_symbols_with_the_same_ids_are_both_kept_each_with_its_cursor(
    tmp_path: Path,
) -> None:
    journal = Journal.open(str(tmp_path / "j.db"))
    journal.use_fill_streams(STREAMS)
    journal.begin_run("r1", [BTC, ETH])
    journal.fill("a-r1-1", "a", "BTCUSDT", "buy", 100, 2, fill_id=1, fee=1)
    journal.fill("a-r1-2", "a", "ETHUSDT", "sell", 200, 3, fill_id=1, fee=2)
    journal.fill("a-r1-2", "a", "ETHUSDT", "sell", 200, 1, fill_id=2, fee=1)
    journal.fill("a-r1-2", "a", "ETHUSDT", "sell", 200, 1, fill_id=2, fee=1)  # again: once
    journal.flush()
    fills = journal.fills()
    assert [(f.symbol, f.stream, f.fill_id, f.quantity) for f in fills] == [
        ("BTCUSDT", "BTCUSDT", 1, 2),
        ("ETHUSDT", "ETHUSDT", 1, 3),
        ("ETHUSDT", "ETHUSDT", 2, 1),
    ]
    assert journal.fill_id_conflicts == 0
    assert journal.fills_cursors(STREAMS) == {"BTCUSDT": 1, "ETHUSDT": 2}
    assert journal.load().fills_cursors == {"BTCUSDT": 1, "ETHUSDT": 2}
    assert journal.journaled_fill(1, "ETHUSDT").client_order_id == "a-r1-2"  # type: ignore[union-attr]
    journal.close()


def test_a_fill_id_reused_within_one_stream_is_still_a_conflict(tmp_path: Path) -> None:
    journal = Journal.open(str(tmp_path / "j.db"))
    journal.use_fill_streams(STREAMS)
    journal.fill("a-r1-1", "a", "BTCUSDT", "buy", 100, 2, fill_id=5)
    journal.flush()
    journal.fill("a-r1-9", "a", "BTCUSDT", "buy", 101, 2, fill_id=5)
    journal.flush()
    assert journal.fill_id_conflicts == 1
    journal.close()


def test_the_cursor_row_goes_in_the_same_transaction_as_its_fill(tmp_path: Path) -> None:
    path = str(tmp_path / "j.db")
    journal = Journal.open(path)
    journal.use_fill_streams(STREAMS)
    journal.fill("a-r1-1", "a", "ETHUSDT", "buy", 100, 2, fill_id=9)
    # A failing row after them: the whole batch is rolled back, cursor included.
    journal._pending.append(("INSERT INTO no_such_table VALUES (1)", ()))
    assert not journal.flush()
    reader = sqlite3.connect(path)
    assert reader.execute("SELECT count(*) FROM fills").fetchone()[0] == 0
    assert reader.execute("SELECT count(*) FROM cursor").fetchone()[0] == 0
    journal.close()


def test_an_own_api_journal_of_the_previous_release_migrates_and_keeps_its_cursor(
    tmp_path: Path,
) -> None:
    path = copy("journal-v4-own-api.db", tmp_path)
    before = sqlite3.connect(path)
    assert before.execute("SELECT version FROM schema_version").fetchone()[0] == 4
    assert before.execute("SELECT name, value FROM cursor").fetchall() == [("fills", 4)]
    before.close()
    journal = Journal.open(path)
    assert journal.schema_version() == SCHEMA_VERSION == 5
    assert journal.read_fills_cursor() == 4
    assert journal.fills_cursors() == {ALL_SYMBOLS: 4}
    state = journal.load()
    assert state.fills_cursor == 4
    assert state.fills_cursors == {ALL_SYMBOLS: 4}
    assert [(f.fill_id, f.stream, f.fee, f.venue_fee) for f in state.fills] == [
        (1, ALL_SYMBOLS, 3, None),
        (2, ALL_SYMBOLS, 2, None),
    ]
    # Still one id space: fill 2 again is the same fill, not a second one.
    journal.fill("acc-r1-1", "acc", "BTC-USD", "buy", 10_001, 1, fill_id=2, fee=2)
    journal.fill("acc-r1-1", "acc", "BTC-USD", "buy", 10_002, 1, fill_id=5, fee=2)
    journal.flush()
    assert [f.fill_id for f in journal.fills()] == [1, 2, 5]
    assert journal.read_fills_cursor() == 5
    assert journal.adopt_fill_streams((ALL_SYMBOLS,)) is None
    journal.close()
    # Migrated once: a second open finds schema 5 and changes nothing.
    again = Journal.open(path)
    assert again.read_fills_cursor() == 5
    again.close()


def test_a_binance_journal_of_the_previous_release_gives_its_cursor_to_its_symbol(
    tmp_path: Path,
) -> None:
    path = copy("journal-v4-binance.db", tmp_path)
    journal = Journal.open(path)
    journal.use_fill_streams(STREAMS)
    # Read before adopting: the one cursor is the one symbol's.
    assert journal.fills_cursors(STREAMS) == {"BTCUSDT": 4, "ETHUSDT": 0}
    assert journal.adopt_fill_streams(STREAMS) == "BTCUSDT"
    journal.flush()
    assert journal.fills_cursors(STREAMS) == {"BTCUSDT": 4, "ETHUSDT": 0}
    assert journal.load().fills_cursors == {"BTCUSDT": 4}
    assert [f.stream for f in journal.fills()] == ["BTCUSDT", "BTCUSDT"]
    assert journal.adopt_fill_streams(STREAMS) is None  # once
    # ETHUSDT's trade 1 is another fill than BTCUSDT's trade 1.
    journal.fill("acc-r2-1", "acc", "ETHUSDT", "buy", 300, 1, fill_id=1)
    journal.fill("acc-r1-1", "acc", "BTCUSDT", "buy", 10_000, 2, fill_id=1, fee=3)  # again
    journal.flush()
    assert [(f.stream, f.fill_id) for f in journal.fills()] == [
        ("BTCUSDT", 1), ("BTCUSDT", 2), ("ETHUSDT", 1),
    ]  # fmt: skip
    assert journal.fill_id_conflicts == 0
    journal.close()


def test_a_single_cursor_that_cannot_be_given_to_one_symbol_is_refused(tmp_path: Path) -> None:
    path = copy("journal-v4-binance.db", tmp_path)
    journal = Journal.open(path)
    with pytest.raises(JournalError, match=r"one fills cursor \(4\) was kept for BTCUSDT"):
        journal.fills_cursors(("ETHUSDT", "SOLUSDT"))
    journal.close()


def test_a_new_fills_log_sets_every_stream_cursor_back_to_0(tmp_path: Path) -> None:
    journal = Journal.open(str(tmp_path / "j.db"))
    journal.use_fill_streams(STREAMS)
    journal.fill("a-r1-1", "a", "BTCUSDT", "buy", 100, 2, fill_id=3)
    journal.fill("a-r1-2", "a", "ETHUSDT", "buy", 100, 2, fill_id=8)
    journal.flush()
    journal.record_venue(None, "reset", new_fills_log=True)
    journal.flush()
    assert journal.fills_cursors(STREAMS) == {"BTCUSDT": 0, "ETHUSDT": 0}
    journal.close()


def test_the_venues_fee_and_its_asset_are_kept_with_the_fill(tmp_path: Path) -> None:
    journal = Journal.open(str(tmp_path / "j.db"))
    journal.use_fill_streams(STREAMS)
    journal.fill(
        "a-r1-1", "a", "BTCUSDT", "buy", 100, 2, fill_id=3, fee=0,
        venue_fee="0.00075000", fee_asset="BNB",
    )  # fmt: skip
    journal.flush()
    (fill,) = journal.fills()
    assert (fill.fee, fill.venue_fee, fill.fee_asset) == (0, "0.00075000", "BNB")
    journal.close()
