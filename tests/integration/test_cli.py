"""The commands as a user runs them: real processes on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port, free_port_ranges

ROOT = Path(__file__).resolve().parents[2]


def wait_for(url: str, within_s: float = 20.0) -> httpx.Response:
    deadline = time.monotonic() + within_s
    while True:
        try:
            return httpx.get(url, timeout=1.0)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "trading_engine", *args]


def test_run_against_the_exchange_simulator_and_stop_on_sigterm(tmp_path: Path) -> None:
    feed, api, admin = free_port_ranges(1, 1, 1)
    env = {
        **os.environ,
        "EXCHANGE_API_KEY": "cli-key",
        "TRADING_ENGINE_ADMIN_TOKEN": "cli-token",
        "TRADING_ENGINE__FEED__PORT": str(feed),
        "TRADING_ENGINE__ADMIN__PORT": str(admin),
        "TRADING_ENGINE__GATEWAY__BASE_URL": f"http://127.0.0.1:{api}",
        "TRADING_ENGINE__ENGINE__LOG_LEVEL": "warning",
        "TRADING_ENGINE__JOURNAL__PATH": str(tmp_path / "journal.db"),
    }
    engine_log = tmp_path / "engine.log"
    with (tmp_path / "sim.log").open("wb") as sim_log, engine_log.open("wb") as log:
        sim = subprocess.Popen(
            command("exchange-sim", "--port", str(api), "--feed", f"127.0.0.1:{feed}",
                    "--rate", "400", "--duration", "60"),
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=sim_log,
        )  # fmt: skip
        engine = subprocess.Popen(command("run", "--duration", "60"), cwd=ROOT, env=env, stderr=log)
    try:
        assert wait_for(f"http://127.0.0.1:{admin}/healthz").text == "ok\n"
        deadline = time.monotonic() + 30
        while True:
            status = httpx.get(f"http://127.0.0.1:{admin}/status").json()
            if status["strategies"]["maker"]["orders"] >= 2:
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert status["books"]["ETH-USD"]["state"] == "live"
        metrics = httpx.get(f"http://127.0.0.1:{admin}/metrics").text
        assert "trading_engine_order_roundtrip_seconds_count" in metrics
        halt = httpx.post(
            f"http://127.0.0.1:{admin}/halt", headers={"Authorization": "Bearer cli-token"}
        )
        assert halt.status_code == 200
        engine.send_signal(signal.SIGTERM)
        assert engine.wait(30) == 0
        sim.send_signal(signal.SIGTERM)
        assert sim.wait(30) == 0
    finally:
        for process in (engine, sim):
            if process.poll() is None:
                process.kill()
                process.wait()
    assert b"cli-key" not in engine_log.read_bytes()  # the API key is never logged


def test_run_without_the_api_key_is_a_configuration_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "EXCHANGE_API_KEY"}
    done = subprocess.run(
        command("run", "--config", str(ROOT / "config" / "engine.toml"), "--duration", "1"),
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "EXCHANGE_API_KEY" in done.stderr
    assert not (tmp_path / "state").exists()  # a refused configuration opens no journal


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--fail-before", "2", "between 0 and 1"),
        # Retry-After is whole seconds: a fraction is refused, not cut down to 0.
        ("--retry-after-s", "0.5", "expected whole seconds (0, 1, 2, ...), got '0.5'"),
    ],
)
def test_exchange_sim_rejects_bad_flags(flag: str, value: str, says: str) -> None:
    done = subprocess.run(
        command("exchange-sim", flag, value), cwd=ROOT, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert says in done.stderr


def test_demo_runs_for_its_duration_and_prints_a_summary(tmp_path: Path) -> None:
    import json
    import re
    import socket

    from tests.integration.test_cli_validation import console_script

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = taken.getsockname()[1]
    env = {
        **os.environ,
        "TRADING_ENGINE__FEED__PORT": str(busy),  # taken: the demo moves to a free one
        "TRADING_ENGINE__ADMIN__PORT": str(free_port()),
    }
    log = tmp_path / "demo.log"
    # From an empty directory: no config/engine.toml, so the built-in default.
    with taken:
        done = subprocess.run(
            [console_script(), "demo", "--duration", "4", "--log", str(log)], cwd=tmp_path,
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert re.search(rf"^feed.port {busy} is in use; the demo uses \d+$", out, re.MULTILINE)
    assert f"logs: {log}" in out
    assert "trading-engine demo" in out  # the status screen
    assert "BTC-USD" in out
    # Log lines went to the file, none over the screen.
    assert not [line for line in out.splitlines() + done.stderr.splitlines() if '"ts"' in line]
    lines = log.read_text(encoding="utf-8").splitlines()
    assert lines
    assert all(json.loads(line)["ts"] for line in lines)
    # Measured latencies, never a bucket bound or infinity.
    for line in out.splitlines():
        if line.startswith("tick-to-trade"):
            assert "(measured)" in line
            assert "<=" not in line
            assert "inf" not in line
    text = out.split("summary:", 1)[1].rsplit("logs:", 1)[0]

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the summary")

    summary = json.loads(text, parse_constant=refuse)
    assert summary["orders"]["submitted"] > 0  # the default strategies traded
    assert summary["frames"] > 0
    # What the engine knows of fills is what the exchange did.
    assert summary["orders"].get("fills", 0) == summary["exchange_fills"]
    latency = summary["tick_to_trade"]
    assert latency["n"] > 0
    assert 0 < latency["p50_us"] <= latency["p99_us"] <= latency["max_us"]
    # The per-strategy view; the shipped strategies trade within their limits.
    assert re.search(r"^strategy\s+state\s+orders\s+fills\s+denied", out, re.MULTILINE)
    assert set(summary["strategies"]) == {"taker", "maker"}
    for name, view in summary["strategies"].items():
        assert view["state"] == "running", (name, view)
        assert view["denials"] == {}, (name, view)
        assert view["last_decision_at"] is not None, name
    assert summary["strategies"]["maker"]["orders"] > 0
    assert summary["risk_denied"] == {}


def test_demo_with_faults_shows_how_the_gateway_handled_them(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "TRADING_ENGINE__FEED__PORT": str(free_port()),
        "TRADING_ENGINE__ADMIN__PORT": str(free_port()),
    }
    done = subprocess.run(
        command("demo", "--duration", "4", "--faults", "--log", str(tmp_path / "demo.log")),
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "gateway: unknown" in done.stdout  # the faults, and how they were handled
    summary = json.loads(done.stdout.split("summary:", 1)[1].rsplit("logs:", 1)[0])
    assert summary["frames"] > 0
    assert summary["orders"]["submitted"] > 0  # the default strategies traded


def test_demo_screen_on_a_terminal_redraws_in_place_with_no_log_lines(tmp_path: Path) -> None:
    import pty
    import re
    import select

    primary, secondary = pty.openpty()
    env = {
        **os.environ,
        "TRADING_ENGINE__FEED__PORT": str(free_port()),
        "TRADING_ENGINE__ADMIN__PORT": str(free_port()),
    }
    process = subprocess.Popen(
        command("demo", "--duration", "3", "--log", str(tmp_path / "demo.log")),
        cwd=tmp_path, env=env, stdin=secondary, stdout=secondary, stderr=secondary,
    )  # fmt: skip
    os.close(secondary)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 1.0)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                data = os.read(primary, 65536)
            except OSError:  # the terminal closed: the demo exited
                break
            if not data:
                break
            chunks.append(data)
    finally:
        code = process.wait(timeout=60)
        os.close(primary)
    out = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    assert code == 0, out
    screens = out.split("\x1b[H\x1b[2J")[1:]
    assert len(screens) >= 2, out  # cleared and redrawn each refresh
    for screen in screens:
        body = screen.split("summary:", 1)[0]
        assert body.startswith("trading-engine demo"), body
        assert re.search(r"^taker\s+running\s", body, re.MULTILINE), body
        assert re.search(r"^maker\s+running\s", body, re.MULTILINE), body
        assert '"ts"' not in body  # no log line over the screen
