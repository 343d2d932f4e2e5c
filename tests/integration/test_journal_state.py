"""Bad journal state stops ``trading-engine run`` with a clear message and exit 2."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import free_port
from trading_engine import Instrument
from trading_engine.io.journal import SCHEMA_VERSION, Journal

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder under /tmp that an unprivileged user can reach."""
    path = Path(tempfile.mkdtemp(prefix="journal-state-"))
    path.chmod(0o755)
    yield path
    path.chmod(0o755)
    shutil.rmtree(path)


def run(folder: Path, journal: Path, **popen: Any) -> subprocess.CompletedProcess[str]:
    config = folder / "engine.toml"
    config.write_text(
        f"[feed]\nport = {free_port()}\n[admin]\nport = {free_port()}\n"
        f'[journal]\npath = "{journal}"\n'
        '[[instruments]]\nsymbol = "BTC-USD"\ntick_size = "0.01"\nlot_size = "0.001"\n'
    )
    config.chmod(0o644)
    return subprocess.run(
        [sys.executable, "-m", "trading_engine", "run", "--config", str(config), "--duration", "5"],
        cwd=ROOT, env={**os.environ, "EXCHANGE_API_KEY": "k"}, capture_output=True, text=True,
        timeout=60, check=False, **popen,
    )  # fmt: skip


def a_journal(path: Path) -> None:
    journal = Journal.open(str(path))
    journal.begin_run("r1", [Instrument("BTC-USD", "0.01", "0.001")])
    journal.close()


def test_a_corrupt_journal_stops_start_up(folder: Path) -> None:
    path = folder / "journal.db"
    a_journal(path)
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xa5" * (4096 - 100)  # the first page's b-tree: the schema
    path.write_bytes(bytes(data))
    done = run(folder, path)
    assert done.returncode == 2, done.stderr
    assert f"journal {path}: corrupt" in done.stderr


def test_a_newer_journal_stops_start_up(folder: Path) -> None:
    path = folder / "journal.db"
    a_journal(path)
    db = sqlite3.connect(path)
    db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 5,))
    db.commit()
    db.close()
    done = run(folder, path)
    assert done.returncode == 2, done.stderr
    assert f"schema version {SCHEMA_VERSION + 5} is newer" in done.stderr


@contextmanager
def read_only_disk(disk: Path) -> Iterator[None]:
    """``disk`` becomes read-only with the journal on it.

    As root (whom file modes do not stop) it is a tmpfs mounted there and
    remounted read-only; otherwise the folder and file lose their write bits.
    """
    disk.mkdir()
    if os.geteuid() != 0:
        a_journal(disk / "journal.db")
        (disk / "journal.db").chmod(0o444)
        disk.chmod(0o555)
        try:
            yield
        finally:
            disk.chmod(0o755)
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)],
        capture_output=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a file system here: {mounted.stderr!r}")
    try:
        a_journal(disk / "journal.db")
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_journal_on_a_read_only_disk_stops_start_up(folder: Path) -> None:
    path = folder / "disk" / "journal.db"
    with read_only_disk(folder / "disk"):
        done = run(folder, path)
    assert done.returncode == 2, done.stderr
    assert f"journal {path}: read-only" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_journal_that_cannot_be_created_stops_start_up(folder: Path) -> None:
    (folder / "file").write_text("")
    done = run(folder, folder / "file" / "state" / "journal.db")
    assert done.returncode == 2, done.stderr
    assert "cannot create its folder" in done.stderr
