"""Soak: the shipped configuration against the simulator with faults, for 60 s.

Real processes, as a user runs them: ``trading-engine exchange-sim`` with
every order-path fault on, and ``trading-engine run --config
config/engine.toml``. Over 60 s of trading, open orders, tasks and memory
stay bounded and tick-to-trade p99 stays under 10 ms; then ``POST /halt``
closes every order and no order reaches the venue after it.

This is the suite's one long test. The machine it runs on is shared and
may be loaded far beyond its two cores; the 10 ms bound is about the
engine (an order that waits for anything is refused, never queued), not
about how long the kernel leaves a runnable process waiting. So the
simulator runs at a lower priority (nice +10), and the engine at a higher
one (nice -5) where the test may raise it, as a latency-critical process
is deployed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import free_port_ranges
from tests.integration.test_cli import ROOT, command, wait_for

SOAK_S = 60.0
FAULTS = {
    "--fail-before": "0.02", "--fail-after": "0.02", "--hang": "0.01", "--hang-s": "0.6",
    "--rate-limit": "0.005", "--retry-after-s": "1", "--read-rate-limit": "0.01",
    "--reset": "0.01", "--late-answer": "0.03", "--forget": "0.02", "--accept-close": "0.02",
}  # fmt: skip


def _metrics(admin: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    text = httpx.get(f"http://127.0.0.1:{admin}/metrics", timeout=5).text
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[key] = sample.value
    return samples


def _one(samples: dict[str, dict[Any, float]], name: str, **labels: str) -> float:
    return samples[name][tuple(sorted(labels.items()))]


def _raise_priority() -> None:
    with contextlib.suppress(PermissionError):
        os.nice(-5)


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_shipped_config_against_a_faulty_venue_for_a_minute(tmp_path: Path) -> None:
    feed, api, admin = free_port_ranges(1, 1, 1)
    env = {
        **os.environ,
        "EXCHANGE_API_KEY": "soak-key",
        "TRADING_ENGINE_ADMIN_TOKEN": "soak-token",
        "TRADING_ENGINE__FEED__PORT": str(feed),
        "TRADING_ENGINE__ADMIN__PORT": str(admin),
        "TRADING_ENGINE__GATEWAY__BASE_URL": f"http://127.0.0.1:{api}",
        "TRADING_ENGINE__ENGINE__LOG_LEVEL": "warning",
        "TRADING_ENGINE__JOURNAL__PATH": str(tmp_path / "journal.db"),
    }
    faults = [item for pair in FAULTS.items() for item in pair]
    with (tmp_path / "sim.log").open("wb") as sim_log, (tmp_path / "run.log").open("wb") as log:
        sim = subprocess.Popen(
            command("exchange-sim", "--port", str(api), "--feed", f"127.0.0.1:{feed}",
                    "--duration", str(SOAK_S + 60), *faults),
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=sim_log,
            # The venue is the harness, not the product: on a busy machine the
            # engine, not the simulator, gets the processor first.
            preexec_fn=lambda: os.nice(10),
        )  # fmt: skip
        engine = subprocess.Popen(
            command("run", "--config", "config/engine.toml", "--duration", str(SOAK_S + 50)),
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log, preexec_fn=_raise_priority,
        )  # fmt: skip
    try:
        wait_for(f"http://127.0.0.1:{admin}/healthz")
        start = time.monotonic()
        samples: list[tuple[float, int, float, int]] = []  # (t, open orders, tasks, rss)
        while (elapsed := time.monotonic() - start) < SOAK_S:
            time.sleep(2.0)
            status = httpx.get(f"http://127.0.0.1:{admin}/status", timeout=5).json()
            metrics = _metrics(admin)
            samples.append(
                (
                    elapsed,
                    status["open_orders"],
                    _one(metrics, "trading_engine_tasks"),
                    _rss_bytes(engine.pid),
                )
            )
            assert engine.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
        metrics = _metrics(admin)
        submitted = _one(metrics, "trading_engine_orders_total", status="submitted")
        events = {
            dict(key)["event"]: value
            for key, value in metrics["trading_engine_gateway_events_total"].items()
        }
        count = _one(metrics, "trading_engine_tick_to_trade_seconds_count")
        within_10ms = _one(metrics, "trading_engine_tick_to_trade_seconds_bucket", le="0.01")
        tick_buckets = {
            dict(key)["le"]: value
            for key, value in metrics["trading_engine_tick_to_trade_seconds_bucket"].items()
        }
        fallbacks = _one(metrics, "trading_engine_gateway_fast_fallbacks_total")
        report = {
            "fallbacks": fallbacks, "submitted": submitted,
            "tick_to_trade": (within_10ms, count), "events": events,
            "tick_buckets": tick_buckets, "samples": samples,
        }  # fmt: skip

        # Trading happened, and the venue's faults were met and handled.
        assert submitted >= 300, report
        assert events["unknown"] >= 3, report
        assert events["settled"] + events["resent"] >= 1, report
        assert events["venue_rate_limited"] >= 1, report
        # Bounded: open orders, tasks, memory (after the first 20 s of warm-up).
        assert max(s[1] for s in samples) <= 40, report
        assert max(s[2] for s in samples) <= 60, report
        warm = [s[3] for s in samples if s[0] >= 20]
        assert max(warm) - min(warm) < 24 * 2**20, report
        # Tick-to-trade p99 under 10 ms.
        assert count >= 200, report
        assert within_10ms >= 0.99 * count, report

        # A halt: every order closes, none reaches the venue after it.
        halt = httpx.post(
            f"http://127.0.0.1:{admin}/halt",
            headers={"Authorization": "Bearer soak-token"},
            timeout=5,
        )
        assert halt.status_code == 200, halt.text
        halted = _one(_metrics(admin), "trading_engine_gateway_requests_total", priority="order")
        deadline = time.monotonic() + 15
        while httpx.get(f"http://127.0.0.1:{admin}/status", timeout=5).json()["open_orders"]:
            assert time.monotonic() < deadline, "orders still open 15 s after the halt"
            time.sleep(0.2)
        time.sleep(1.0)
        after = _one(_metrics(admin), "trading_engine_gateway_requests_total", priority="order")
        assert after == halted, "order requests after the halt"
        engine.send_signal(signal.SIGTERM)
        assert engine.wait(30) == 0
    finally:
        for process in (engine, sim):
            if process.poll() is None:
                process.kill()
                process.wait()
