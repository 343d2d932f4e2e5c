"""The workers' supervisor with stand-in worker commands: restart back-off and stopping."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from tests.fakes import config
from tests.helpers import free_port_ranges, wait_until
from trading_engine.core.errors import ConfigError
from trading_engine.engine.supervisor import Supervisor
from trading_engine.io.journal import Journal, JournalLocked


def _supervisor(command: list[str], workers: int = 2, **options: float) -> Supervisor:
    feed, admin = free_port_ranges(workers, 3)
    cfg = config(feed={"port": feed}, admin={"port": admin})
    return Supervisor(cfg, workers, environ={}, command=command, **options)


@pytest.mark.asyncio
async def test_a_crashing_worker_is_restarted_with_growing_back_off() -> None:
    supervisor = _supervisor([sys.executable, "-c", "import sys; sys.exit(3)"], workers=1)
    await supervisor.start()
    try:
        worker = supervisor.workers[0]
        await wait_until(lambda: worker.restarts >= 2, 10.0, "two restarts")
        # 0.5 s before the first restart, 1 s before the second.
        assert worker.backoff_s >= 2.0
    finally:
        await supervisor.shutdown()
    assert not worker.alive


@pytest.mark.asyncio
async def test_stop_escalates_to_kill_for_a_worker_that_ignores_sigterm() -> None:
    ignore = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    supervisor = _supervisor([sys.executable, "-c", ignore], stop_timeout_s=0.5)
    await supervisor.start()
    await asyncio.sleep(0.3)  # let the workers install their handler
    assert all(worker.alive for worker in supervisor.workers)
    started = time.monotonic()
    await supervisor.shutdown()
    assert time.monotonic() - started < 5
    assert not any(worker.alive for worker in supervisor.workers)
    assert all(worker.restarts == 0 for worker in supervisor.workers)


@pytest.mark.asyncio
async def test_accept_new_venue_reaches_each_workers_first_start_only(tmp_path: Path) -> None:
    # ``run --workers 2 --accept-new-venue``: the command line sets the key on
    # the supervisor's configuration; the workers read the file, so it must
    # reach them, and only once: a crashed worker's restart is checked again.
    record = tmp_path / "starts"
    stand_in = (
        "import os, sys; open(sys.argv[1], 'a').write(os.environ['TRADING_ENGINE__ENGINE__SHARD']"
        " + ':' + os.environ.get('TRADING_ENGINE__JOURNAL__ACCEPT_NEW_VENUE', '-') + '\\n');"
        " sys.exit(3)"
    )
    feed, admin = free_port_ranges(2, 3)
    cfg = config(feed={"port": feed}, admin={"port": admin}, journal={"accept_new_venue": True})
    supervisor = Supervisor(
        cfg, 2, environ={}, command=[sys.executable, "-c", stand_in, str(record)]
    )
    await supervisor.start()
    try:
        await wait_until(lambda: all(w.restarts >= 1 for w in supervisor.workers), 10.0)
        await wait_until(lambda: len(record.read_text().splitlines()) >= 4, 10.0)
    finally:
        await supervisor.shutdown()
    starts = record.read_text().splitlines()
    for shard in ("0", "1"):
        mine = [line.split(":")[1] for line in starts if line.startswith(shard + ":")]
        assert mine[0] == "true"
        assert set(mine[1:]) == {"-"}


def test_workers_need_fixed_ports() -> None:
    with pytest.raises(ConfigError) as caught:
        Supervisor(config(feed={"port": 0}, admin={"port": 0}), 2, environ={})
    assert len(caught.value.problems) == 2


@pytest.mark.asyncio
async def test_a_deployment_cannot_run_twice_on_one_journal_path(tmp_path: Path) -> None:
    """``run --workers 3`` beside a running ``--workers 2`` (or a single ``run``) exits 2."""
    path = str(tmp_path / "journal.db")
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]

    def make(workers: int) -> Supervisor:
        feed, admin = free_port_ranges(workers, workers + 1)
        cfg = config(
            feed={"port": feed},
            admin={"port": admin},
            journal={"path": path},
        )
        return Supervisor(cfg, workers, environ={}, command=sleeper, stop_timeout_s=0.5)

    first = make(2)
    await first.start()
    try:
        second = make(3)
        with pytest.raises(JournalLocked, match=f"journal {path} is in use.*pid {os.getpid()}"):
            await second.start()
        await second.shutdown()
        assert all(worker.process is None for worker in second.workers)
        # A single engine on the same path is refused as well.
        with pytest.raises(JournalLocked):
            Journal.open(path)
    finally:
        await first.shutdown()
    # Released on shutdown: the next deployment starts.
    Journal.open(path).close()
