"""``run --workers N``: sharding, one admin API, restart, clean stop (real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import free_port_ranges
from tests.integration.test_cli import ROOT, command, wait_for
from trading_engine.core.sharding import shard_of


def _status(admin: int) -> Any:
    return httpx.get(f"http://127.0.0.1:{admin}/status", timeout=5).json()


def _wait(admin: int, predicate: Any, within_s: float = 30.0, logs: tuple[Path, ...] = ()) -> Any:
    """The supervisor's ``/status`` once ``predicate`` holds; on timeout, the workers and logs."""
    deadline = time.monotonic() + within_s
    while True:
        status = _status(admin)
        if predicate(status):
            return status
        if time.monotonic() >= deadline:
            tails = "\n".join(
                f"--- {log.name}:\n" + log.read_text(errors="replace")[-3000:] for log in logs
            )
            raise AssertionError(f"workers: {status['workers']}\n{tails}")
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # An exited process nobody has reaped yet (a zombie) is not running.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _environment(tmp_path: Path, feed: int, admin: int, api: int) -> dict[str, str]:
    """``run``'s environment: ports, the venue, the token, the journal under ``tmp_path``."""
    return {
        **os.environ,
        "EXCHANGE_API_KEY": "workers-key",
        "TRADING_ENGINE_ADMIN_TOKEN": "workers-token",
        "TRADING_ENGINE__FEED__PORT": str(feed),
        "TRADING_ENGINE__ADMIN__PORT": str(admin),
        "TRADING_ENGINE__GATEWAY__BASE_URL": f"http://127.0.0.1:{api}",
        "TRADING_ENGINE__ENGINE__LOG_LEVEL": "warning",
        "TRADING_ENGINE__JOURNAL__PATH": str(tmp_path / "journal.db"),
    }


def test_two_workers_shard_restart_and_stop(tmp_path: Path) -> None:
    feed, admin, api = free_port_ranges(2, 3, 1)
    env = _environment(tmp_path, feed, admin, api)
    # The default config's two symbols fall in different shards of 2.
    assert {shard_of("BTC-USD", 2), shard_of("ETH-USD", 2)} == {0, 1}
    with (tmp_path / "sim.log").open("wb") as sim_log, (tmp_path / "run.log").open("wb") as log:
        sim = subprocess.Popen(
            command("exchange-sim", "--port", str(api), "--feed", f"127.0.0.1:{feed}",
                    "--feed-shards", "2", "--rate", "400", "--duration", "90"),
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=sim_log,
        )  # fmt: skip
        supervisor = subprocess.Popen(
            command("run", "--workers", "2", "--duration", "90"), cwd=ROOT, env=env, stderr=log
        )
    try:
        wait_for(f"http://127.0.0.1:{admin}/healthz")
        status = _wait(
            admin,
            lambda s: (
                len(s["books"]) == 2
                and all(book["state"] == "live" for book in s["books"].values())
            ),
        )
        workers = {w["worker"]: w for w in status["workers"]}
        assert {w["feed_port"] for w in workers.values()} == {feed, feed + 1}
        # Each worker owns exactly its shard's symbol.
        for worker in workers.values():
            own = httpx.get(f"http://127.0.0.1:{worker['admin_port']}/status").json()
            assert [shard_of(s, 2) for s in own["books"]] == [worker["worker"]]
        metrics = httpx.get(f"http://127.0.0.1:{admin}/metrics").text
        assert 'trading_engine_worker_up{worker="0"} 1.0' in metrics
        assert 'trading_engine_worker_up{worker="1"} 1.0' in metrics
        assert 'trading_engine_feed_messages_total{type="update",worker="1"}' in metrics
        ready = httpx.get(f"http://127.0.0.1:{admin}/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"ready": True, "workers": 2}  # as one engine's, plus workers

        # A crashed worker is restarted and its shard comes back.
        victim = workers[1]["pid"]
        os.kill(victim, signal.SIGKILL)
        status = _wait(
            admin,
            lambda s: (
                s["workers"][1]["restarts"] == 1
                and s["workers"][1]["alive"]
                and len(s["books"]) == 2
                and all(book["state"] == "live" for book in s["books"].values())
            ),
        )
        assert status["workers"][1]["pid"] != victim

        # The switches reach every worker; the token is checked first.
        url = f"http://127.0.0.1:{admin}/halt"
        assert httpx.post(url).status_code == 401
        halt = httpx.post(url, headers={"Authorization": "Bearer workers-token"})
        assert halt.status_code == 200, halt.text
        for worker in status["workers"]:
            own = httpx.get(f"http://127.0.0.1:{worker['admin_port']}/status").json()
            assert own["trading_state"] == "halted"
        assert _status(admin)["trading_state"] == "halted"

        # A worker restarted after the halt comes back halted, not active.
        victim = status["workers"][0]["pid"]
        os.kill(victim, signal.SIGKILL)
        status = _wait(
            admin,
            lambda s: (
                s["workers"][0]["restarts"] == 1
                and s["workers"][0]["pid"] != victim
                and s["workers"][0]["trading_state"] is not None
            ),
        )
        assert [w["trading_state"] for w in status["workers"]] == ["halted", "halted"]
        own = httpx.get(f"http://127.0.0.1:{status['workers'][0]['admin_port']}/status").json()
        assert own["trading_state"] == "halted"
        # The operator's halt, as the worker journaled it: not a halt the engine made.
        assert own["trading_state_by"] == {"who": "admin", "reason": None}
        # Each worker keeps its own journal.
        assert (tmp_path / "journal.0.db").is_file()
        assert (tmp_path / "journal.1.db").is_file()
        # The supervisor only validates: it keeps no journal of its own.
        assert not (tmp_path / "journal.db").exists()

        pids = [w["pid"] for w in status["workers"]]
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(30) == 0
        assert not any(_alive(pid) for pid in pids)
    finally:
        for process in (supervisor, sim):
            if process.poll() is None:
                process.kill()
                process.wait()
        sim.wait()


def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    feed, admin, api = free_port_ranges(2, 3, 1)
    env = _environment(tmp_path, feed, admin, api)
    with (tmp_path / "run.log").open("wb") as log:
        sim = subprocess.Popen(
            command("exchange-sim", "--port", str(api), "--duration", "60"),
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        supervisor = subprocess.Popen(
            command("run", "--workers", "2", "--duration", "60"), cwd=ROOT, env=env, stderr=log
        )
    pids: list[int] = []
    try:
        wait_for(f"http://127.0.0.1:{admin}/healthz")
        status = _wait(admin, lambda s: all(w["pid"] for w in s["workers"]))
        pids = [w["pid"] for w in status["workers"]]
        assert all(_alive(pid) for pid in pids)
        # SIGKILL: the supervisor cannot stop them; the kernel tells them (SIGTERM).
        supervisor.kill()
        supervisor.wait()
        deadline = time.monotonic() + 20
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in pids), (tmp_path / "run.log").read_text()[-2000:]
    finally:
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        for process in (supervisor, sim):
            if process.poll() is None:
                process.kill()
            process.wait()


def _venue_positions(api: int) -> dict[str, Decimal]:
    """The venue's fills of the deployment's (``te-``) orders, per symbol."""
    fills = httpx.get(
        f"http://127.0.0.1:{api}/fills?since=0", headers={"X-API-Key": "workers-key"}, timeout=5
    ).json()
    positions: dict[str, Decimal] = {}
    for fill in fills:
        if fill["client_order_id"].startswith("te-"):
            signed = Decimal(fill["quantity"]) * (1 if fill["side"] == "buy" else -1)
            positions[fill["symbol"]] = positions.get(fill["symbol"], Decimal(0)) + signed
    return positions


@pytest.mark.slow
def test_resharding_from_two_workers_to_three_keeps_every_position(tmp_path: Path) -> None:
    """``run --workers 2`` trades, stops; ``run --workers 3`` starts with the venue's positions.

    Both symbols change workers (and journals) between the layouts.
    """
    assert (shard_of("BTC-USD", 2), shard_of("ETH-USD", 2)) == (0, 1)
    assert (shard_of("BTC-USD", 3), shard_of("ETH-USD", 3)) == (2, 0)
    feed, admin, api = free_port_ranges(3, 4, 1)
    env = _environment(tmp_path, feed, admin, api)
    with (tmp_path / "sim.log").open("wb") as sim_log:
        sim = subprocess.Popen(
            command("exchange-sim", "--port", str(api), "--feed", f"127.0.0.1:{feed}",
                    "--feed-shards", "2", "--rate", "400", "--duration", "120"),
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=sim_log,
        )  # fmt: skip
    processes = [sim]
    try:
        with (tmp_path / "run2.log").open("wb") as log:
            two = subprocess.Popen(
                command("run", "--workers", "2", "--duration", "60"), cwd=ROOT, env=env, stderr=log
            )
        processes.append(two)
        wait_for(f"http://127.0.0.1:{admin}/healthz")
        # Trade until the venue holds a position in both symbols.
        deadline = time.monotonic() + 40
        while not all(_venue_positions(api).get(s) for s in ("BTC-USD", "ETH-USD")):
            assert time.monotonic() < deadline, _venue_positions(api)
            time.sleep(0.5)
        two.send_signal(signal.SIGTERM)
        assert two.wait(30) == 0
        before = _venue_positions(api)

        with (tmp_path / "run3.log").open("wb") as log:
            three = subprocess.Popen(
                command("run", "--workers", "3", "--duration", "60"), cwd=ROOT, env=env, stderr=log
            )
        processes.append(three)
        wait_for(f"http://127.0.0.1:{admin}/healthz")
        status = _wait(
            admin,
            lambda s: (
                len(s["workers"]) == 3
                and all(w["alive"] and w["trading_state"] is not None for w in s["workers"])
            ),
            logs=(tmp_path / "run3.log", tmp_path / "sim.log"),
        )
        # The feed still goes to two ports: nothing trades, and the venue is as it was.
        assert _venue_positions(api) == before
        merged = _status(admin)["positions"]
        for symbol in ("BTC-USD", "ETH-USD"):
            assert Decimal(merged[symbol]["quantity"]) == before[symbol], (symbol, merged)
        for worker in status["workers"]:
            own = _status(worker["admin_port"])
            report = own["reconciliation"]
            assert report["positions_from"] == "venue", report
            assert report["layout"]["shards"] == 3
        three.send_signal(signal.SIGTERM)
        assert three.wait(30) == 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()
