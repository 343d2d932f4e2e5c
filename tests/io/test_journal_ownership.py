"""The journal's owner lock, writes that never block the loop, and its file's identity."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import time
from pathlib import Path

import pytest

from tests.helpers import wait_until
from trading_engine import Instrument
from trading_engine.io import journal as journal_module
from trading_engine.io.journal import Journal, JournalError

BTC = Instrument("BTC-USD", "0.01", "0.001")


def test_a_second_writer_is_refused_naming_the_holder_and_readers_still_read(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "journal.db")
    first = Journal.open(path)
    first.begin_run("r1", [BTC])
    with pytest.raises(JournalError) as refused:
        Journal.open(path)
    message = str(refused.value)
    assert type(refused.value).__name__ == "JournalLocked"
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in message
    assert "journal.path" in message
    reader = Journal.open(path, read_only=True)
    assert reader.load().runs == {"r1"}
    reader.close()
    first.close()
    # Released with the file: the next engine opens it.
    Journal.open(path).close()


@pytest.mark.asyncio
async def test_a_trading_state_change_never_waits_for_a_locked_journal(tmp_path: Path) -> None:
    path = str(tmp_path / "journal.db")
    journal = Journal.open(path, flush_s=0.002, write_timeout_s=0.3)
    journal.begin_run("r1", [BTC])
    failures: list[str] = []
    journal.on_failure = failures.append
    journal.start()
    # Another process (a backup, sqlite3 at a prompt) holds a write transaction.
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        started = time.perf_counter()
        journal.trading_state("halted", "admin", "by hand")
        assert time.perf_counter() - started < 0.05
        # The loop runs on while the writer waits; the stall is reported once.
        await wait_until(lambda: journal.stalls == 1, 3.0, "the stall")
        assert len(failures) == 1
        assert "journal.write_timeout_s" in failures[0]
        assert journal.failed is not None
    finally:
        other.execute("ROLLBACK")
        other.close()
    reader = sqlite3.connect(path)
    await wait_until(
        lambda: reader.execute("SELECT count(*) FROM trading_state").fetchone()[0] == 1,
        10.0,
        "the trading state row once the lock is gone",
    )
    await wait_until(lambda: journal.failed is None, 3.0, "writes to succeed again")
    reader.close()
    await journal.stop()
    journal.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["removed", "replaced"])
async def test_a_journal_file_removed_or_replaced_under_the_writer_halts(
    tmp_path: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "_FILE_CHECK_S", 0.01)
    path = tmp_path / "journal.db"
    journal = Journal.open(str(path), flush_s=0.002)
    journal.begin_run("r1", [BTC])
    failures: list[str] = []
    journal.on_failure = failures.append
    journal.start()
    await asyncio.sleep(0.02)  # a few idle checks pass on the right file
    assert failures == []
    if how == "removed":
        path.unlink()
    else:
        (tmp_path / "other.db").write_bytes(b"")
        (tmp_path / "other.db").replace(path)
    await wait_until(lambda: bool(failures), 3.0, "the file check to notice")
    assert failures == [journal.failed]
    assert f"journal file removed/replaced: {path}" in failures[0]
    assert journal.file_replaced == 1
    # Writes into the old file succeed, yet the journal stays failed.
    journal.fills_cursor(5)
    await wait_until(lambda: journal.pending == 0, 3.0, "the next write")
    assert journal.failed is not None
    assert len(failures) == 1
    await journal.stop()
    journal.close()
