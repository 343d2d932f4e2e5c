"""The benchmark scripts run where an optional loop is missing."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(importlib.util.find_spec("uvloop") is not None, reason="uvloop installed")
def test_loop_priority_skips_uvloop_with_a_note_when_it_is_missing() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "loop_priority.py"), "--rounds", "1",
         "--ticks", "20", "--interval-ms", "1", "--loads", "0", "--loops", "asyncio,uvloop"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "uvloop not installed: skipping it" in done.stderr
    assert "asyncio" in done.stdout
    assert "uvloop" not in done.stdout


def test_feed_handler_and_book_depth_benchmarks_run() -> None:
    from benchmarks.book_depth import VARIANTS, make_stream, snapshot_engine, snapshot_sorted
    from benchmarks.feedhandler import run

    result = run(2_000)
    assert result["frames"] >= 1_999  # every update became a frame
    assert 0 < result["p50_us"] <= result["p99_us"]
    bids, asks, stream = make_stream(50, 2_000, seed=1)
    for variant in VARIANTS.values():
        assert variant(bids, asks, stream) == 2_000
    assert snapshot_engine(bids, asks, 2) == snapshot_sorted(bids, asks, 2) == 2


@pytest.mark.slow
def test_websocket_clients_benchmark_runs_every_installed_client_and_the_handler() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.ws_clients", "--count", "2000", "--paced", "50",
         "--rounds", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for client in ("aiohttp", "websockets", "picows"):
        installed = importlib.util.find_spec(client) is not None
        rows = [line for line in lines if line.strip().startswith(client + " ")]
        assert len(rows) == (3 if installed else 0), (client, done.stdout)
        if not installed:
            assert f"{client}: not installed, skipped" in done.stderr
    assert any(line.strip().startswith("FeedHandler (aiohttp)") for line in lines), done.stdout


def test_binance_order_benchmark_runs() -> None:
    from benchmarks.binance_order import run

    result = run(orders=300, runs=1)
    figures = result["variants"]
    assert set(figures) == {"own API body (unsigned)", "binance, HMAC-SHA256", "binance, Ed25519"}
    for variant in figures.values():
        assert 0 < variant["p50_ns"] <= variant["p99_ns"]
    assert figures["own API body (unsigned)"]["added_p50_ns"] == 0


@pytest.mark.slow
def test_sweep_benchmark_runs_serial_and_on_the_pool() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.sweep", "--messages", "2000", "--runs", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert len(figures["serial"]["fills"]) == 8  # one row per parameter set
    assert figures["serial"]["fills"] == figures["processes:2"]["fills"]
    assert figures["processes:2"]["ratio_to_serial"] > 0


def test_gateway_dialects_benchmark_runs() -> None:
    import asyncio

    from benchmarks.gateway_dialects import BINANCE, OWN, run

    result = asyncio.run(run(orders=50, runs=1))
    figures = result["variants"]
    assert set(figures) == {OWN, BINANCE}
    for variant in figures.values():
        assert variant["samples_per_run"] == 50  # every order on the fast path
        assert 0 < variant["p50_ns"] <= variant["p99_ns"]
    assert figures[OWN]["added_p50_ns"] == 0
