"""``feed`` and ``run`` with ``[[feeds]]`` as a user runs them, against a scripted venue.

Real processes on loopback: the engine (``run``), the feed handler (its
child, or ``feed`` on its own), and in this process a venue that replays
a recorded Binance session.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.helpers import free_port, free_port_ranges
from tests.venues.fake_venue import FakeVenue

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "venues" / "binance"
SNAPSHOT = (DATA / "xmrbtc_depth_snapshot.json").read_bytes()
MESSAGES = [
    line.split("\t", 3)[3]
    for line in (DATA / "xmrbtc_session.capture").read_text().splitlines()
    if line.split("\t", 3)[1] == "ws"
]

pytestmark = pytest.mark.slow


def engine_config(tmp_path: Path, feed_port: int, admin_port: int, feeds: str = "") -> Path:
    path = tmp_path / "engine.toml"
    path.write_text(
        f"""
[engine]
log_level = "warning"
[feed]
port = {feed_port}
[admin]
port = {admin_port}
[gateway]
mode = "simulated"
[journal]
path = "{tmp_path / "journal.db"}"

[[instruments]]
symbol = "XMR-BTC"
tick_size = "0.000001"
lot_size = "0.001"
{feeds}
"""
    )
    return path


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "trading_engine", *args]


@pytest_asyncio.fixture
async def venue() -> AsyncIterator[FakeVenue]:
    fake = FakeVenue()
    fake.rest["/api/v3/depth"] = [(200, SNAPSHOT)]
    await fake.start()
    yield fake
    await fake.stop()


async def poll(url: str, check: Any, within_s: float = 30.0) -> Any:
    """GET ``url`` (JSON) until ``check(document)`` is true; fail after ``within_s``."""
    deadline = time.monotonic() + within_s
    last: Any = None
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            try:
                response = await client.get(url)
                last = response.json() if url.endswith("/status") else response.text
                if check(last):
                    return last
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"timed out polling {url}: {last}"
            await asyncio.sleep(0.1)


def book(status: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = status["books"]["XMR-BTC"]
    return result


def spawn(args: list[str], **options: Any) -> subprocess.Popen[bytes]:
    """Start a process (outside the test's coroutine, which must not block)."""
    return subprocess.Popen(args, **options)


def stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


@pytest.mark.asyncio
async def test_run_starts_its_feeds_and_the_book_follows_the_venue(
    venue: FakeVenue, tmp_path: Path
) -> None:
    feed_port, admin_port, metrics_port = free_port_ranges(1, 1, 1)
    feeds = f"""
[[feeds]]
venue = "binance"
symbols = ["XMRBTC"]
symbol_map = {{ XMRBTC = "XMR-BTC" }}
ws_url = "{venue.ws_url}"
rest_url = "{venue.rest_url}"
metrics_port = {metrics_port}
"""
    config = engine_config(tmp_path, feed_port, admin_port, feeds)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_ENGINE__")}
    env["EXCHANGE_API_KEY"] = "k"
    log = (tmp_path / "engine.log").open("wb")
    engine = spawn(
        command("run", "--config", str(config), "--duration", "120"), cwd=tmp_path, env=env,
        stderr=log,
    )  # fmt: skip
    status_url = f"http://127.0.0.1:{admin_port}/status"
    try:
        await venue.connected(within_s=30)
        await venue.send(*MESSAGES)
        # The recorded session ends with best bid 0.005773 x 16.196, best ask 0.00578 x 37.51.
        # The book is live from the snapshot's first update on: wait for the last one too.
        final = (["0.005773", "16.196"], ["0.005780", "37.510"])
        await poll(
            status_url,
            lambda s: (
                book(s)["state"] == "live" and (book(s)["best_bid"], book(s)["best_ask"]) == final
            ),
        )
        # A gap: ids 717720871..717720874 never arrive.
        newer = json.loads(SNAPSHOT)
        newer["lastUpdateId"] = 717720880
        newer["bids"][0] = ["0.00577300", "20.00000000"]
        venue.rest["/api/v3/depth"] = [(200, json.dumps(newer).encode())]
        gap = {"e": "depthUpdate", "E": 1, "s": "XMRBTC", "U": 717720875, "u": 717720875,
               "b": [["0.00577100", "1.00000000"]], "a": []}  # fmt: skip
        await venue.send(json.dumps({"stream": "xmrbtc@depth@100ms", "data": gap}))
        await poll(status_url, lambda s: book(s)["state"] == "stale")
        confirm = {"e": "depthUpdate", "E": 1, "s": "XMRBTC", "U": 717720881, "u": 717720881,
                   "b": [], "a": []}  # fmt: skip
        await poll(status_url, lambda s: len(venue.requests) >= 2)
        await venue.send(json.dumps({"stream": "xmrbtc@depth@100ms", "data": confirm}))
        await poll(
            status_url,
            lambda s: book(s)["state"] == "live" and book(s)["best_bid"] == ["0.005773", "20.000"],
        )
        metrics = await poll(
            f"http://127.0.0.1:{metrics_port}/metrics",
            lambda text: (
                'trading_engine_feed_handler_resyncs_total{reason="gap",venue="binance"} 1.0'
                in text
            ),
        )
        assert "trading_engine_feed_handler_messages_total" in metrics
        assert await asyncio.to_thread(stop, engine) == 0
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait()
        log.close()


@pytest.mark.asyncio
async def test_the_feed_command_publishes_to_an_engine_and_records_a_capture(
    venue: FakeVenue, tmp_path: Path
) -> None:
    feed_port, admin_port = free_port_ranges(1, 1)
    config = engine_config(tmp_path, feed_port, admin_port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_ENGINE__")}
    env["EXCHANGE_API_KEY"] = "k"
    capture = tmp_path / "binance.capture"
    feed_config = tmp_path / "feed.toml"
    feed_config.write_text(
        '[[feeds]]\nvenue = "binance"\nsymbols = ["XMRBTC"]\nto = ["127.0.0.1:1"]\n'
        'symbol_map = { XMRBTC = "XMR-BTC" }\n'
    )
    engine = spawn(
        command("run", "--config", str(config), "--duration", "120"), cwd=tmp_path, env=env
    )
    feed = spawn(
        command("feed", "binance", "--config", str(feed_config), "--to", f"127.0.0.1:{feed_port}",
                "--ws-url", venue.ws_url, "--rest-url", venue.rest_url, "--capture", str(capture),
                "--duration", "120"),
        cwd=tmp_path, env=env,
    )  # fmt: skip
    try:
        await venue.connected(within_s=30)
        await venue.send(*MESSAGES)
        # Live from the snapshot's first update on: wait for the session's last one too.
        await poll(
            f"http://127.0.0.1:{admin_port}/status",
            lambda s: book(s)["state"] == "live" and book(s)["best_bid"] == ["0.005773", "16.196"],
        )
        assert await asyncio.to_thread(stop, feed) == 0
        kinds = [line.split("\t", 3)[1] for line in capture.read_text().splitlines()]
        assert kinds.count("ws") == len(MESSAGES)
        assert "snapshot" in kinds
        assert "out" in kinds
        assert await asyncio.to_thread(stop, engine) == 0
    finally:
        for process in (feed, engine):
            if process.poll() is None:
                process.kill()
                process.wait()


def test_instruments_prints_toml_and_check_config_compares(tmp_path: Path) -> None:
    """The venue here is a plain HTTP server serving the recorded exchangeInfo."""
    import http.server
    import threading

    body = (DATA / "exchange_info.json").read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    rest = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        out = subprocess.run(
            command("instruments", "binance", "BTCUSDT", "ETHUSDT", "--rest-url", rest),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert '[[instruments]]\nsymbol = "BTCUSDT"\ntick_size = "0.01"\nlot_size = "0.00001"\n' \
            'min_quantity = "0.00001"\nmin_notional = "10"\n' in out.stdout  # fmt: skip
        config = tmp_path / "engine.toml"
        config.write_text(out.stdout)
        ok = subprocess.run(
            command("check-config", str(config), "--venue", "binance", "--rest-url", rest),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert ok.returncode == 0, ok.stderr
        assert "instruments agree with binance's" in ok.stdout
        config.write_text(out.stdout.replace('tick_size = "0.01"', 'tick_size = "0.1"', 1))
        bad = subprocess.run(
            command("check-config", str(config), "--venue", "binance", "--rest-url", rest),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert bad.returncode == 2
        assert "instruments[BTCUSDT].tick_size: 0.1 here, 0.01 on binance (BTCUSDT)" in bad.stderr
        config.write_text(
            out.stdout + '\n[[instruments]]\nsymbol = "NOPEUSDT"\ntick_size = "1"\nlot_size = "1"\n'
        )
        unlisted = subprocess.run(
            command("check-config", str(config), "--venue", "binance", "--rest-url", rest),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert unlisted.returncode == 2
        assert "instruments[NOPEUSDT]: binance exchangeInfo: NOPEUSDT: the venue does not list it" \
            in unlisted.stderr  # fmt: skip
        assert "BTCUSDT" not in unlisted.stderr
        unreachable = subprocess.run(
            command("check-config", str(config), "--venue", "binance", "--rest-url",
                    f"http://127.0.0.1:{free_port()}"),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert unreachable.returncode == 1
        assert "cannot read" in unreachable.stderr
        # The walk-through of docs/venues.md: its configuration plus the printed table.
        guide = (ROOT / "docs" / "venues.md").read_text()
        heredoc = guide.split("cat > binance.toml <<'TOML'\n", 1)[1].split("\nTOML\n", 1)[0]
        walk = tmp_path / "binance.toml"
        walk.write_text(heredoc + "\n" + out.stdout)
        checked = subprocess.run(
            command("check-config", str(walk), "--venue", "binance", "--rest-url", rest),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert checked.returncode == 0, checked.stderr
        missing = subprocess.run(
            command("instruments", "binance", "NOPEUSDT", "--rest-url", rest),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert missing.returncode == 1
        assert "NOPEUSDT: the venue does not list it" in missing.stderr
    finally:
        server.shutdown()
        server.server_close()


def okx_script() -> list[str]:
    message = json.loads((DATA.parent / "okx" / "books_snapshot_2022.json").read_text())
    message["data"][0].update(prevSeqId=-1, seqId=10)  # as OKX numbers a snapshot today
    return [json.dumps(message)]


def kraken_script() -> list[str]:
    from tests.venues.kraken.messages import instrument_snapshot

    return [
        instrument_snapshot({"BTC/USD": (1, 8)}),
        (DATA.parent / "kraken" / "book_snapshot_docs.json").read_text().strip(),
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("name", "symbol", "tick", "lot", "best_bid"),
    [
        ("okx", "BTC-USDT", "0.00001", "1", ["0.07014", "56"]),
        ("kraken", "BTC/USD", "0.1", "0.00000001", ["45283.5", "0.10000000"]),
    ],
)
async def test_the_feed_command_for_okx_and_kraken(
    venue: FakeVenue, tmp_path: Path, name: str, symbol: str, tick: str, lot: str,
    best_bid: list[str],
) -> None:  # fmt: skip
    feed_port, admin_port = free_port_ranges(1, 1)
    config = engine_config(tmp_path, feed_port, admin_port)
    text = config.read_text().replace('"XMR-BTC"', f'"{symbol}"')
    text = text.replace('"0.000001"', f'"{tick}"').replace('"0.001"', f'"{lot}"')
    config.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_ENGINE__")}
    env["EXCHANGE_API_KEY"] = "k"
    engine = spawn(
        command("run", "--config", str(config), "--duration", "120"), cwd=tmp_path, env=env
    )
    feed = spawn(
        command("feed", name, "--symbols", symbol, "--to", f"127.0.0.1:{feed_port}",
                "--ws-url", f"{venue.ws_url}/stream", "--rest-url", venue.rest_url,
                "--duration", "120"),
        cwd=tmp_path, env=env,
    )  # fmt: skip
    status_url = f"http://127.0.0.1:{admin_port}/status"
    try:
        await venue.connected(within_s=30)
        for message in okx_script() if name == "okx" else kraken_script():
            await poll(status_url, lambda s: bool(venue.received))  # subscribed first
            await venue.send(message)
        await poll(
            status_url,
            lambda s: (
                s["books"][symbol]["state"] == "live" and s["books"][symbol]["best_bid"] == best_bid
            ),
        )
        assert await asyncio.to_thread(stop, feed) == 0
        assert await asyncio.to_thread(stop, engine) == 0
    finally:
        for process in (feed, engine):
            if process.poll() is None:
                process.kill()
                process.wait()
