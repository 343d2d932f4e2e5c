"""Start-up with real processes: ports checked first, halts that reach and stay."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import free_port_ranges
from tests.integration.test_cli import ROOT, command, wait_for
from trading_engine import Instrument
from trading_engine.io.journal import Journal

pytestmark = pytest.mark.slow

TOKEN = "lifecycle-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _env(tmp_path: Path, feed: int, admin: int, api: int) -> dict[str, str]:
    return {
        **os.environ,
        "EXCHANGE_API_KEY": "lifecycle-key",
        "TRADING_ENGINE_ADMIN_TOKEN": TOKEN,
        "TRADING_ENGINE__FEED__PORT": str(feed),
        "TRADING_ENGINE__ADMIN__PORT": str(admin),
        "TRADING_ENGINE__GATEWAY__BASE_URL": f"http://127.0.0.1:{api}",
        "TRADING_ENGINE__GATEWAY__TIMEOUT_S": "0.5",
        "TRADING_ENGINE__ENGINE__LOG_LEVEL": "warning",
        "TRADING_ENGINE__JOURNAL__PATH": str(tmp_path / "journal.db"),
    }


def _status_when(port: int, predicate: Callable[[Any], bool], within_s: float = 30.0) -> Any:
    """The ``/status`` of the admin API on ``port`` once ``predicate`` holds (polled)."""
    deadline = time.monotonic() + within_s
    status: Any = None
    while True:
        try:
            status = httpx.get(f"http://127.0.0.1:{port}/status", timeout=2).json()
        except httpx.TransportError:
            status = None
        if status is not None and predicate(status):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.1)


def _stop(*processes: subprocess.Popen[bytes]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_run_exits_2_at_once_when_the_feed_port_is_in_use_and_the_venue_unreachable(
    tmp_path: Path,
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        feed = busy.getsockname()[1]
        env = _env(tmp_path, feed, *free_port_ranges(1, 1))  # nothing listens on the API port
        started = time.monotonic()
        done = subprocess.run(
            command("run", "--duration", "40"), cwd=ROOT, env=env, capture_output=True,
            text=True, timeout=60, check=False,
        )  # fmt: skip
        elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"feed.port {feed} is already in use" in done.stderr
    # At once: not after retrying an unreachable venue until the duration ends.
    assert elapsed < 20


def test_a_halt_reaches_a_worker_still_starting_and_outlasts_its_reconciliation(
    tmp_path: Path,
) -> None:
    feed, admin, api = free_port_ranges(2, 3, 1)
    # Worker 0's previous run left it active.
    journal = Journal.open(str(tmp_path / "journal.0.db"))
    journal.begin_run("runA", [Instrument("BTC-USD", "0.01", "0.001")])
    journal.trading_state("active", "admin")
    journal.close()
    env = _env(tmp_path, feed, admin, api)
    with (tmp_path / "run.log").open("wb") as log:
        supervisor = subprocess.Popen(
            command("run", "--workers", "2", "--duration", "90"), cwd=ROOT, env=env, stderr=log
        )
    sim: subprocess.Popen[bytes] | None = None
    try:
        # The supervisor answers before its workers (new processes) listen.
        wait_for(f"http://127.0.0.1:{admin}/healthz")
        halt = httpx.post(f"http://127.0.0.1:{admin}/halt", headers=AUTH, timeout=5)
        assert halt.status_code in (200, 202), halt.text
        # Worker 0 gets it once its admin API listens; the venue is still unreachable.
        status = _status_when(admin + 1, lambda s: s["trading_state"] == "halted")
        assert status["reconciliation"] is None
        sim = subprocess.Popen(
            command("exchange-sim", "--port", str(api), "--duration", "90"),
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        # Reconciliation ends with the journal's "active": the halt stays.
        status = _status_when(admin + 1, lambda s: s["reconciliation"] is not None)
        assert status["trading_state"] == "halted", status["trading_state_by"]
        merged = _status_when(admin, lambda s: all(w["trading_state"] for w in s["workers"]))
        assert [w["trading_state"] for w in merged["workers"]] == ["halted", "halted"]
        metrics = httpx.get(f"http://127.0.0.1:{admin}/metrics", timeout=5).text
        assert 'trading_engine_worker_trading_state_pending{worker="0"} 0.0' in metrics
        assert 'trading_engine_worker_trading_state_pending{worker="1"} 0.0' in metrics
    finally:
        _stop(supervisor, *([sim] if sim is not None else []))


def test_a_restarted_worker_keeps_its_own_halt_over_the_supervisors_resume(
    tmp_path: Path,
) -> None:
    feed, admin, api = free_port_ranges(2, 3, 1)
    env = _env(tmp_path, feed, admin, api)
    with (tmp_path / "run.log").open("wb") as log:
        sim = subprocess.Popen(
            command("exchange-sim", "--port", str(api), "--duration", "90"),
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        supervisor = subprocess.Popen(
            command("run", "--workers", "2", "--duration", "90"), cwd=ROOT, env=env, stderr=log
        )
    try:
        wait_for(f"http://127.0.0.1:{admin}/healthz")
        _status_when(admin, lambda s: all(w["trading_state"] for w in s["workers"]))
        resume = httpx.post(f"http://127.0.0.1:{admin}/resume", headers=AUTH, timeout=5)
        assert resume.status_code == 200, resume.text
        # The worker halts on its own (journaled at once), then dies.
        own = httpx.post(f"http://127.0.0.1:{admin + 1}/halt", headers=AUTH, timeout=5)
        assert own.status_code == 200
        victim = _status_when(admin, lambda s: s["workers"][0]["pid"])["workers"][0]["pid"]
        os.kill(victim, signal.SIGKILL)
        _status_when(
            admin,
            lambda s: s["workers"][0]["restarts"] == 1 and s["workers"][0]["pid"] != victim,
        )
        status = _status_when(admin + 1, lambda s: s["reconciliation"] is not None)
        # Restarted with the supervisor's "active", it keeps its own journaled halt.
        assert status["trading_state"] == "halted", status["trading_state_by"]
        assert status["trading_state_by"]["who"] == "admin"
    finally:
        _stop(supervisor, sim)
