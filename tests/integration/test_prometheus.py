"""A real Prometheus scrapes a running engine; every dashboard query returns data,
and every alert rule evaluates."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from tests.fakes import config
from tests.helpers import ci_binary, free_port, wait_until
from tests.sim.binance.helpers import API_KEY, SECRET, keys
from tests.venues.fake_venue import FakeVenue
from trading_engine import Instrument
from trading_engine.core.risk import TradingState
from trading_engine.engine.runner import Service, build_engine
from trading_engine.io.feedhandler import (
    EngineAddress,
    FeedHandler,
    FeedHandlerSettings,
    serve_metrics,
)
from trading_engine.sim.binance import BinanceSimulator
from trading_engine.sim.exchange_sim import ExchangeSimulator
from trading_engine.venues.binance import BinanceMarketData

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.asyncio
async def test_every_dashboard_query_returns_data(tmp_path: Path) -> None:
    binary = ci_binary("prometheus")
    simulator = ExchangeSimulator(
        [Instrument("BTC-USD", "0.01", "0.001"), Instrument("ETH-USD", "0.01", "0.001")],
        api_key="k", port=0, rate=300, seed=5,
    )  # fmt: skip
    await simulator.start()
    cfg = config(
        [
            {"name": "taker", "class": "threshold", "symbols": ["BTC-USD"],
             "params": {"side": "buy", "trigger_price": "1000", "quantity": "0.01",
                        "cooldown_s": 0.05}},
            {"name": "maker", "class": "market_maker", "symbols": ["ETH-USD"],
             "params": {"quantity": "0.01", "max_inventory": "5"}},
        ],
        feed={"port": 0},
        admin={"port": 0},
        gateway={"base_url": f"http://127.0.0.1:{simulator.port}", "max_requests_per_s": 200},
        risk={"max_orders_per_s": 100},
        journal={"path": ":memory:"},
    )  # fmt: skip
    service = Service(build_engine(cfg, environ={"EXCHANGE_API_KEY": "k"}), environ={})
    await service.start()
    assert service.engine.feed is not None
    simulator.publish_to("127.0.0.1", service.engine.feed.port)

    # An engine on the Binance dialect, for the venue panels (user data stream, clock).
    binance = BinanceSimulator(
        [Instrument("BTCUSDT", "0.01", "0.001")], keys=keys(), port=0, rate=50, seed=5
    )
    await binance.start()
    binance_cfg = config(
        [],
        feed={"port": 0},
        admin={"port": 0},
        gateway={"venue": "binance", "base_url": f"http://127.0.0.1:{binance.port}",
                 "api_secret_env": "BINANCE_TEST_SECRET"},
        journal={"path": ":memory:"},
        instruments=[{"symbol": "BTCUSDT", "tick_size": "0.01", "lot_size": "0.001"}],
    )  # fmt: skip
    binance_env = {"EXCHANGE_API_KEY": API_KEY, "BINANCE_TEST_SECRET": SECRET}
    binance_service = Service(build_engine(binance_cfg, environ=binance_env), environ={})
    await binance_service.start()

    # A feed handler replaying a recorded Binance session, for the feed handler panels.
    data = ROOT / "tests" / "data" / "venues" / "binance"
    venue = FakeVenue()
    venue.rest["/api/v3/depth"] = [(200, (data / "xmrbtc_depth_snapshot.json").read_bytes())]
    await venue.start()
    handler_registry = CollectorRegistry()
    handler = FeedHandler(
        BinanceMarketData(["XMRBTC"], venue.rest_url),
        ws_url=venue.ws_url,
        engines=[EngineAddress("127.0.0.1", service.engine.feed.port)],
        symbol_map={"XMRBTC": "XMRBTC"},
        settings=FeedHandlerSettings(timer_s=0.1),
        registry=handler_registry,
    )
    handler_task = asyncio.create_task(handler.run())
    metrics_runner = await serve_metrics(handler_registry, "127.0.0.1", 0)
    handler_port = metrics_runner.addresses[0][1]
    await venue.connected()
    session = (data / "xmrbtc_session.capture").read_text().splitlines()
    await venue.send(*(line.split("\t", 3)[3] for line in session if "\tws\t" in line))

    port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files: ['{ROOT / 'config' / 'alerts.yml'}']\n"
        "scrape_configs:\n  - job_name: trading-engine\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{service.admin.port}', "
        f"'127.0.0.1:{binance_service.admin.port}']\n"
        "  - job_name: feed-handlers\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{handler_port}']\n"
    )
    log = (tmp_path / "prometheus.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        binary, f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    dashboard = json.loads((ROOT / "config/grafana/dashboards/trading-engine.json").read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

            async def query(expr: str) -> list[object]:
                try:
                    response = await client.get("/api/v1/query", params={"query": expr})
                except httpx.TransportError:
                    return []
                if response.status_code != 200:
                    return []  # still starting
                body = response.json()
                assert body["status"] == "success", (expr, body)
                result: list[object] = body["data"]["result"]
                return result

            async def scraped() -> bool:
                return bool(await query('up{job="trading-engine"} == 1'))

            deadline = time.monotonic() + 60
            while not await scraped():
                assert time.monotonic() < deadline, "Prometheus never scraped the engine"
                await asyncio.sleep(0.5)
            await wait_until(lambda: service.engine.tick_to_trade.count > 0, 30, "an order")
            missing: list[str] = queries
            deadline = time.monotonic() + 60
            while missing and time.monotonic() < deadline:
                await asyncio.sleep(1)
                missing = [expr for expr in queries if not await query(expr)]
            assert not missing, f"dashboard queries without data: {missing}"

            # Every alert rule evaluates without error on the real series.
            async def rule_health() -> dict[str, str]:
                body = (await client.get("/api/v1/rules")).json()
                return {
                    rule["name"]: rule["health"]
                    for group in body["data"]["groups"]
                    for rule in group["rules"]
                }

            deadline = time.monotonic() + 30
            while set((health := await rule_health()).values()) != {"ok"}:
                assert time.monotonic() < deadline, health
                await asyncio.sleep(0.5)
            assert len(health) >= 16
            # The halt rule joins two of the engine's series: it goes pending
            # (its "for" is 30 s) with who set the state as a label.
            halted = 'ALERTS{alertname="TradingHalted", who="risk", alertstate="pending"}'
            assert not await query(halted)
            service.engine.set_trading_state(TradingState.HALTED, "risk", "a test")
            deadline = time.monotonic() + 30
            while not await query(halted):
                assert time.monotonic() < deadline, "TradingHalted never went pending"
                await asyncio.sleep(0.5)
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)
        log.close()
        handler.stop()
        await handler_task
        await metrics_runner.cleanup()
        await venue.stop()
        await service.shutdown()
        await simulator.stop()
        await binance_service.shutdown()
        await binance.stop()
