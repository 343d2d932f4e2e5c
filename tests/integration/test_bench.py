"""``trading-engine bench``: the report, the baseline and the plot, on a short run."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from tests.integration.test_cli import ROOT, command
from trading_engine.commands.bench import percentiles, wire_to_wire
from trading_engine.commands.bench.orchestration import pin_sets
from trading_engine.core.instruments import Instrument
from trading_engine.sim.binance import BinanceSimulator
from trading_engine.sim.exchange_sim import ExchangeSimulator


def test_wire_to_wire_pairs_each_order_with_its_tick() -> None:
    ticks = [[2, "1000.01", 1_000], [3, "1000.02", 3_000], [4001, "1000.01", 9_000]]
    arrivals = [
        {"price": "1000.01", "arrival_ns": 1_500},  # the first tick of that price
        {"price": "1000.02", "arrival_ns": 3_250},
        {"price": "1000.01", "arrival_ns": 9_100},  # the later tick of the same price
        {"price": "1000.03", "arrival_ns": 9_500},  # no such tick: ignored
        {"price": "1000.02", "arrival_ns": 2_000},  # before its tick was sent: ignored
    ]
    assert wire_to_wire(ticks, arrivals) == [0.5, 0.25, 0.1]


def test_percentiles_use_the_nearest_rank() -> None:
    result = percentiles([float(x) for x in range(1, 1001)])
    assert (result["p50"], result["p90"], result["p99"], result["p99.9"]) == (500, 900, 990, 999)
    assert result["max"] == 1000
    assert result["n"] == 1000


def test_bench_reports_engine_baseline_and_metrics_cost(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    report_path, plot_path = tmp_path / "bench.json", tmp_path / "bench.png"
    done = subprocess.run(
        command("bench", "--ticks", "60", "--rounds", "1", "--burst", "3000",
                "--background-rate", "1000", "--baseline", "--baseline-ticks", "5",
                "--baseline-interval-ms", "100", "--compare-metrics",
                "--json", str(report_path), "--plot", str(plot_path)),
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "wire to wire" in done.stdout
    assert "baseline / engine" in done.stdout
    report = json.loads(report_path.read_text())
    assert report["machine"]["python"]
    assert report["machine"]["build"] in ("compiled", "pure")
    engine = report["engine"]
    # One order per tick (and one for the snapshot), each paired with its tick.
    assert engine["orders_per_round"] == [61]
    assert 0 < engine["wire_to_wire_us"]["p50"] <= engine["wire_to_wire_us"]["p99"]
    assert set(engine["stages_us"]) >= {"tick_to_trade", "risk", "strategy", "roundtrip"}
    assert engine["stages_us"]["tick_to_trade"]["p50"] < engine["wire_to_wire_us"]["p50"]
    assert engine["throughput_msg_per_s"] > 0
    assert report["baseline"]["ratio_p50"] > 1
    assert "cost_pct_internal_p50" in report["metrics_off"]
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_refuses_nonsense() -> None:
    done = subprocess.run(
        command("bench", "--ticks", "1"), cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "--ticks >= 10" in done.stderr


def _own_order(client_order_id: str) -> tuple[bytes, bytes]:
    """A raw order request of the own API: (head, body)."""
    body = json.dumps(
        {"client_order_id": client_order_id, "symbol": "BTC-USD", "side": "buy",
         "type": "limit", "price": "1.00", "quantity": "0.001", "time_in_force": "IOC"}
    ).encode()  # fmt: skip
    head = (
        f"POST /orders HTTP/1.1\r\nHost: x\r\nX-API-Key: k\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head, body


def _binance_order(client_order_id: str) -> tuple[bytes, bytes]:
    """A raw signed new-order request of Binance spot: (head, body)."""
    from tests.sim.binance.helpers import API_KEY, sign_hmac

    payload = urlencode(
        {"symbol": "BTC-USD", "side": "BUY", "type": "LIMIT", "timeInForce": "IOC",
         "price": "99.00", "quantity": "0.001", "newClientOrderId": client_order_id,
         "timestamp": str(time.time_ns() // 1_000_000)}
    )  # fmt: skip
    body = f"{payload}&signature={sign_hmac(payload)}".encode()
    head = (
        f"POST /api/v3/order HTTP/1.1\r\nHost: x\r\nX-MBX-APIKEY: {API_KEY}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head, body


def _simulator(dialect: str) -> ExchangeSimulator:
    instrument = Instrument("BTC-USD", "0.01", "0.001")
    if dialect == "own":
        return ExchangeSimulator([instrument], api_key="k", port=0, stamp_arrivals=True)
    from tests.sim.binance.helpers import keys

    return BinanceSimulator([instrument], keys=keys(), port=0, stamp_arrivals=True)


@pytest.mark.asyncio
@pytest.mark.parametrize("dialect", ["own", "binance"])
async def test_simulator_stamps_each_request_at_its_first_bytes(dialect: str) -> None:
    request = _own_order if dialect == "own" else _binance_order
    sim = _simulator(dialect)
    await sim.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)

        async def answer() -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            await reader.readuntil(b"}")

        # The head first, the body 50 ms later: stamped at the head.
        head, body = request("a-1")
        first_sent = time.monotonic_ns()
        writer.write(head)
        await asyncio.sleep(0.05)
        writer.write(body)
        await answer()
        # The next request on the connection gets its own stamp, not the body's.
        await asyncio.sleep(0.05)
        head, body = request("a-2")
        second_sent = time.monotonic_ns()
        writer.write(head + body)
        await answer()
        writer.close()
        stamps = {o.client_order_id: o.arrival_ns for o in sim.orders.values()}
        assert first_sent <= stamps["a-1"] < first_sent + 40_000_000
        assert second_sent <= stamps["a-2"] < second_sent + 40_000_000
        auth = {"X-API-Key": "k"}  # the own API's key; Binance's dialect asks none here
        async with httpx.AsyncClient() as client:
            listed = (
                await client.get(f"http://127.0.0.1:{sim.port}/bench/arrivals", headers=auth)
            ).json()
        assert sorted((a["client_order_id"], a["arrival_ns"]) for a in listed) == sorted(
            stamps.items()
        )
    finally:
        await sim.stop()


def test_pin_splits_the_cpus() -> None:
    pins = pin_sets()
    cpus = os.sched_getaffinity(0)
    if len(cpus) < 2:
        assert pins is None
        return
    assert pins is not None
    engine, others = pins
    assert len(engine) == 1
    assert engine | others == cpus
    assert not engine & others


def test_bench_pins_the_engine(tmp_path: Path) -> None:
    report_path = tmp_path / "bench.json"
    done = subprocess.run(
        command("bench", "--ticks", "20", "--rounds", "1", "--burst", "0",
                "--background-rate", "0", "--pin", "--json", str(report_path)),
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(report_path.read_text())
    assert report["settings"]["pinned"] is True
    assert report["engine"]["orders_per_round"] == [21]
    assert os.sched_getaffinity(0)  # this process was never pinned


@pytest.mark.slow
def test_bench_runs_both_dialects_in_one_run(tmp_path: Path) -> None:
    report_path = tmp_path / "bench.json"
    done = subprocess.run(
        command("bench", "--dialect", "both", "--ticks", "30", "--rounds", "2", "--burst", "500",
                "--background-rate", "500", "--json", str(report_path)),
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "binance over own" in done.stdout
    report = json.loads(report_path.read_text())
    assert report["settings"]["dialects"] == ["own", "binance"]
    for section in (report["engine"], report["binance"]):
        # Every tick's order reached the venue, stamped, and was paired with its tick.
        assert section["orders_per_round"] == [31, 31]
        assert 0 < section["wire_to_wire_us"]["p50"] <= section["wire_to_wire_us"]["p99"]
        assert section["stages_us"]["tick_to_trade"]["p50"] < section["wire_to_wire_us"]["p50"]
        assert section["throughput_msg_per_s"] > 0
    assert set(report["binance"]["added_us"]) == {
        "wire_to_wire_p50", "wire_to_wire_p99", "tick_to_trade_p50", "tick_to_trade_p99",
    }  # fmt: skip
