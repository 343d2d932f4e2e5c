"""``trading-engine feed`` as a process against a hostile venue: memory, back-off, exit.

The venue (scripted, in this process) sends what a broken or hostile venue
could: a 500 MB snapshot body, one that never ends, 10 MB text frames, huge
depth events while a snapshot is awaited, a greeting and a close on every
connection. The feed handler is a real process publishing to an engine
feed server in this process; its peak memory is read from ``/proc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from aiohttp import web

from tests.helpers import free_port, wait_until
from tests.io.test_feedhandler import MESSAGES, XMRBTC, Engine, start_engine
from tests.io.test_feedhandler_hostile import ETH_SNAPSHOT, ETHBTC, by_symbol, eth
from tests.venues.fake_venue import FakeVenue
from trading_engine import BookState

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc"),
]

MB = 1_000_000


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / MB
    raise AssertionError("no VmHWM")


def spawn(venue: FakeVenue, engine: Engine, metrics_port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_ENGINE__")}
    return subprocess.Popen(
        [sys.executable, "-m", "trading_engine", "feed", "binance", "--symbols", "XMRBTC,ETHBTC",
         "--to", f"127.0.0.1:{engine.server.port}", "--ws-url", venue.ws_url,
         "--rest-url", venue.rest_url, "--metrics-port", str(metrics_port),
         "--log-level", "error", "--duration", "300"],
        env=env,
    )  # fmt: skip


def stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


async def metric(port: int, sample: str) -> float:
    """One sample of the feed process's /metrics (0 when absent or unreachable)."""
    async with httpx.AsyncClient(timeout=2.0) as client:
        with contextlib.suppress(httpx.TransportError):
            for line in (await client.get(f"http://127.0.0.1:{port}/metrics")).text.splitlines():
                if line.startswith(sample + " "):
                    return float(line.rsplit(" ", 1)[1])
    return 0.0


async def metric_at_least(port: int, sample: str, value: float, within_s: float = 60.0) -> None:
    deadline = time.monotonic() + within_s
    while (found := await metric(port, sample)) < value:
        assert time.monotonic() < deadline, f"{sample} = {found}, waited for {value}"
        await asyncio.sleep(0.1)


@pytest_asyncio.fixture
async def venue() -> AsyncIterator[FakeVenue]:
    fake = FakeVenue()
    await fake.start()
    yield fake
    await fake.stop()


@pytest_asyncio.fixture
async def engine() -> AsyncIterator[Engine]:
    made = await start_engine(XMRBTC, ETHBTC)
    yield made
    await made.server.stop()


@pytest.mark.asyncio
async def test_huge_snapshots_and_frames_leave_the_feed_process_small(
    venue: FakeVenue, engine: Engine
) -> None:
    sent = [0]

    async def body(request: web.Request, declared: bool) -> web.StreamResponse:
        headers = {"Content-Type": "application/json"}
        if declared:
            headers["Content-Length"] = str(500 * MB)
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        chunk = b'{"lastUpdateId":1,"bids":[' + b'["1.00000000","1.00000000"],' * 37_000
        with contextlib.suppress(ConnectionError):
            while sent[0] < 2_000 * MB:  # bounded, whatever the handler does
                await response.write(chunk)
                sent[0] += len(chunk)
        return response

    async def declared(request: web.Request) -> web.StreamResponse:
        return await body(request, True)

    async def endless(request: web.Request) -> web.StreamResponse:
        return await body(request, False)

    venue.rest["/api/v3/depth"] = [
        by_symbol({"XMRBTC": [declared, endless], "ETHBTC": [(200, ETH_SNAPSHOT)]})
    ]
    metrics_port = free_port()
    feed = await asyncio.to_thread(spawn, venue, engine, metrics_port)
    try:
        await venue.connected(within_s=30)
        labels = '{reason="too_large",venue="binance"}'
        await metric_at_least(
            metrics_port, f"trading_engine_feed_handler_snapshot_failures_total{labels}", 2
        )
        await venue.send(eth(11, 11, [["0.00910000", "1.000"]]))
        await wait_until(lambda: engine.state("ETHBTC") is BookState.LIVE, what="ETHBTC live")
        # 10 MB frames: junk, then XMRBTC depth events of 400,000 levels while its
        # snapshot is still awaited (the dialect buffers those).
        await venue.send('{"stream":"x","data":"' + "x" * 10 * MB + '"}')
        levels = [[f"0.{i:08d}", "1.000"] for i in range(1, 400_001)]
        for index in range(8):
            data = {"e": "depthUpdate", "E": 1, "s": "XMRBTC", "U": 717720900 + index,
                    "u": 717720900 + index, "b": levels, "a": []}  # fmt: skip
            await venue.send(json.dumps({"stream": "xmrbtc@depth@100ms", "data": data}))
            await venue.send(eth(12 + index, 12 + index, [["0.00920000", f"{index + 1}.000"]]))
        await wait_until(
            lambda: engine.levels("ETHBTC")[0].get(Decimal("0.0092")) == 8,
            within_s=60,
            what="ETHBTC flowing through the huge frames",
        )
        await metric_at_least(
            metrics_port, 'trading_engine_feed_handler_messages_total{venue="binance"}', 18
        )
        assert feed.poll() is None
        peak = peak_rss_mb(feed.pid)
        assert peak < 400, f"peak RSS {peak:.0f} MB"
        assert sent[0] < 200 * MB
        assert await asyncio.to_thread(stop, feed) == 0
    finally:
        if feed.poll() is None:
            feed.kill()
            feed.wait()


@pytest.mark.asyncio
async def test_a_venue_that_greets_and_closes_gets_a_growing_back_off(
    venue: FakeVenue, engine: Engine
) -> None:
    connected: list[float] = []

    async def greet_and_close(ws: web.WebSocketResponse) -> None:
        connected.append(time.monotonic())
        await ws.send_str(MESSAGES[0])
        await ws.close()

    venue.on_connect = greet_and_close
    metrics_port = free_port()
    feed = await asyncio.to_thread(spawn, venue, engine, metrics_port)
    try:
        await wait_until(lambda: len(connected) >= 1, within_s=30, what="the first connection")
        await asyncio.sleep(6.0)  # a window to count reconnections in, not a wait for an event
        # Waits of 0.25-0.5, 0.5-1, 1-2, 2-4 s...: at most five connections in 6 s
        # (a back-off reset by each greeting would make twelve or more).
        assert 3 <= len(connected) <= 5, connected
        await metric_at_least(
            metrics_port,
            'trading_engine_feed_handler_reconnects_total{reason="venue_closed",venue="binance"}',
            len(connected) - 1,
        )
        assert await asyncio.to_thread(stop, feed) == 0
    finally:
        if feed.poll() is None:
            feed.kill()
            feed.wait()
