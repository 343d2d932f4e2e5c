"""The supervisor's ``/status`` and start-up warning, with stand-in workers serving ``/status``."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes import config
from tests.helpers import free_port_ranges
from trading_engine.engine.notices import NO_TOKEN_ANSWER
from trading_engine.engine.supervisor import Supervisor

#: A worker that serves a fixed ``/status`` on its admin port, naming its shard and journal.
STAND_IN = """
import http.server, json, os
env = os.environ
doc = {
    "trading_state": "active", "breaker": "closed", "books": {}, "positions": {},
    "open_orders": 0, "strategies": {},
    "reconciliation": {
        "positions_from": "venue", "shard": int(env["TRADING_ENGINE__ENGINE__SHARD"]),
    },
    "journal": {"path": env["TRADING_ENGINE__JOURNAL__PATH"], "write_errors": 0},
}
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
port = int(env["TRADING_ENGINE__ADMIN__PORT"])
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def two_workers(folder: Path, script: str) -> Supervisor:
    """A supervisor of two stand-in workers running ``script``, not started."""
    feed, admin = free_port_ranges(2, 3)
    cfg = config(
        feed={"port": feed}, admin={"port": admin}, journal={"path": str(folder / "journal.db")}
    )
    return Supervisor(
        cfg, 2, environ={}, command=[sys.executable, "-c", script], stop_timeout_s=1.0
    )


async def _poll(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    """The supervisor's /status once every stand-in worker answered it (within 10 s)."""
    deadline = asyncio.get_running_loop().time() + 10.0
    while True:
        status: dict[str, Any] = (await client.get(url)).json()
        if all(worker["reconciliation"] is not None for worker in status["workers"]):
            return status
        assert asyncio.get_running_loop().time() < deadline, status
        await asyncio.sleep(0.05)


@pytest.mark.asyncio
async def test_status_shows_each_workers_reconciliation_and_journal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    supervisor = two_workers(tmp_path, STAND_IN)
    with caplog.at_level(logging.WARNING, "trading_engine.supervisor"):
        await supervisor.start()
    try:
        warned = [r.getMessage() for r in caplog.records if "no admin token" in r.getMessage()]
        assert len(warned) == 1
        assert NO_TOKEN_ANSWER in warned[0]
        url = f"http://127.0.0.1:{supervisor.port}/status"
        async with httpx.AsyncClient() as client:
            status = await _poll(client, url)
        for index, worker in enumerate(status["workers"]):
            assert worker["reconciliation"] == {"positions_from": "venue", "shard": index}
            assert worker["journal"] == {
                "path": str(tmp_path / f"journal.{index}.db"),
                "write_errors": 0,
            }
    finally:
        await supervisor.shutdown()


#: A worker whose ``/readyz`` says no, with its reason, on shard 1 (shard 0 is ready).
NOT_READY = STAND_IN.replace(
    "    def do_GET(self):\n",
    "    def do_GET(self):\n"
    "        if self.path == '/readyz' and env['TRADING_ENGINE__ENGINE__SHARD'] == '1':\n"
    "            body = json.dumps({'ready': False, 'reason': 'start-up waits: a ban'}).encode()\n"
    "            self.send_response(503)\n"
    "            self.send_header('Content-Length', str(len(body)))\n"
    "            self.end_headers()\n"
    "            self.wfile.write(body)\n"
    "            return\n",
)


@pytest.mark.asyncio
async def test_readyz_names_each_unready_workers_own_reason(tmp_path: Path) -> None:
    supervisor = two_workers(tmp_path, NOT_READY)
    await supervisor.start()
    try:
        url = f"http://127.0.0.1:{supervisor.port}/readyz"
        async with httpx.AsyncClient() as client:
            deadline = asyncio.get_running_loop().time() + 10.0
            while True:
                answer = await client.get(url)
                body = answer.json()
                if body.get("reason") == "worker 1: start-up waits: a ban":
                    break
                assert asyncio.get_running_loop().time() < deadline, body
                await asyncio.sleep(0.05)
        assert answer.status_code == 503
        assert body["failing_workers"] == [1]
    finally:
        await supervisor.shutdown()


@pytest.mark.asyncio
async def test_a_worker_that_exits_2_stops_the_supervisor_with_2_and_is_not_restarted(
    tmp_path: Path,
) -> None:
    """Exit 2 is a worker's configuration, or the venue refusing it (a key, another
    venue): restarting it would fail alike, each time one more refused request."""
    supervisor = two_workers(tmp_path, "import sys, time; time.sleep(0.2); sys.exit(2)")
    await asyncio.wait_for(supervisor.run(duration_s=30), 15)
    assert supervisor.exit_code == 2
    assert all(worker.restarts == 0 for worker in supervisor.workers)
