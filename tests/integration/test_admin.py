"""The admin API on loopback, in front of a running engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
import pytest_asyncio

import trading_engine
from tests.fakes import config
from tests.helpers import wait_until
from trading_engine.engine.engine import Engine
from trading_engine.engine.runner import Service
from trading_engine.sim.publisher import Publisher
from trading_engine.sim.venue import simulated_venue

REQUIRED = [
    "trading_engine_tick_to_trade_seconds_bucket",
    "trading_engine_feed_messages_total",
    "trading_engine_feed_rejected_total",
    "trading_engine_orders_total",
    "trading_engine_order_roundtrip_seconds_bucket",
    "trading_engine_risk_denied_total",
    "trading_engine_circuit_breaker_state",
    "trading_engine_strategy_seconds_bucket",
    "trading_engine_loop_lag_seconds_bucket",
    "trading_engine_stage_seconds_bucket",
    "trading_engine_tasks",
]


async def make_service(token: str | None) -> Service:
    cfg = config(
        [
            {
                "name": "taker",
                "class": "threshold",
                "symbols": ["BTC-USD"],
                "params": {"side": "buy", "trigger_price": "100.00", "quantity": "0.5"},
            }
        ],
        feed={"port": 0},
        admin={"port": 0, "token_env": "TEST_ADMIN_TOKEN"},
        gateway={"mode": "simulated"},
    )
    service = Service(
        Engine(cfg, sink_factory=simulated_venue),
        environ={"TEST_ADMIN_TOKEN": token} if token else {},
    )
    await service.start()
    return service


@pytest_asyncio.fixture
async def running() -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    service = await make_service("s3cret")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.admin.port}") as client:
        yield service, client
    await service.shutdown()


def frame(obj: dict[str, object]) -> bytes:
    return orjson.dumps(obj) + b"\n"


@pytest.mark.asyncio
async def test_health_readiness_status_and_metrics(
    running: tuple[Service, httpx.AsyncClient],
) -> None:
    service, client = running
    assert (await client.get("/healthz")).text == "ok\n"
    assert (await client.get("/readyz")).status_code == 200
    feed = service.engine.feed
    assert feed is not None
    async with Publisher("127.0.0.1", feed.port) as pub:
        await pub.send(
            frame({"type": "snapshot", "symbol": "BTC-USD", "seq": 1,
                   "bids": [["99.98", "1"]], "asks": [["100.00", "2"]]})
            + b"garbage\n"
        )  # fmt: skip
        await wait_until(lambda: service.engine.builder.rejected["malformed_json"] == 1)
        status = (await client.get("/status")).json()
    assert status["trading_state"] == "active"
    assert status["breaker"] == "closed"
    assert status["books"]["BTC-USD"]["best_ask"] == ["100.00", "2.000"]
    assert status["positions"]["BTC-USD"]["quantity"] == "0.500"
    assert status["open_orders"] == 0
    assert status["strategies"]["taker"]["orders"] == 1
    assert status["build"]["kind"] == ("compiled" if trading_engine.compiled else "pure")
    metrics = (await client.get("/metrics")).text
    for name in REQUIRED:
        assert name in metrics, name
    assert 'trading_engine_feed_rejected_total{reason="malformed_json"} 1.0' in metrics
    assert 'trading_engine_feed_messages_total{type="snapshot"} 1.0' in metrics
    assert 'trading_engine_orders_total{status="filled"} 1.0' in metrics
    assert 'trading_engine_strategy_seconds_count{strategy="taker"} 1.0' in metrics
    assert 'le="1e-06"' in metrics  # microsecond buckets
    assert 'trading_engine_stage_seconds_count{stage="risk"} 1.0' in metrics


@pytest.mark.asyncio
async def test_state_switches_need_the_token(running: tuple[Service, httpx.AsyncClient]) -> None:
    service, client = running
    assert (await client.post("/halt")).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await client.post("/halt", headers=wrong)).status_code == 401
    assert service.engine.risk.state.value == "active"
    right = {"Authorization": "Bearer s3cret"}
    for path, state in (("/reduce", "reducing"), ("/halt", "halted"), ("/resume", "active")):
        response = await client.post(path, headers=right)
        assert response.status_code == 200
        assert response.json() == {"trading_state": state}
        assert (await client.get("/status")).json()["trading_state"] == state
    # The scheme is case-insensitive (RFC 9110, section 11.1); the token is not.
    assert (await client.post("/reduce", headers={"Authorization": "bearer s3cret"})).json() == {
        "trading_state": "reducing"
    }
    assert (
        await client.post("/halt", headers={"Authorization": "bearer S3CRET"})
    ).status_code == 401


@pytest.mark.asyncio
async def test_no_token_configured_means_403() -> None:
    service = await make_service(None)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.admin.port}") as client:
            response = await client.post("/halt", headers={"Authorization": "Bearer x"})
            assert response.status_code == 403
    finally:
        await service.shutdown()


@pytest.mark.asyncio
async def test_readyz_is_503_without_a_feed() -> None:
    service = await make_service("t")
    try:
        assert service.engine.feed is not None
        await service.engine.feed.stop()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.admin.port}") as client:
            response = await client.get("/readyz")
            assert response.status_code == 503
            assert "feed" in response.json()["reason"]
    finally:
        await service.shutdown()


@pytest.mark.asyncio
async def test_readyz_is_503_until_the_gateway_reaches_the_exchange() -> None:
    from tests.helpers import free_port
    from trading_engine import Instrument
    from trading_engine.engine.runner import build_engine
    from trading_engine.sim.exchange_sim import ExchangeSimulator

    api = free_port()
    cfg = config(
        feed={"port": 0},
        admin={"port": 0},
        gateway={"base_url": f"http://127.0.0.1:{api}", "fills_poll_s": 0.02},
    )
    service = Service(build_engine(cfg, environ={"EXCHANGE_API_KEY": "k"}), environ={})
    # Start-up waits for the exchange (reconciliation reads it): the admin
    # API answers meanwhile.
    starting = asyncio.create_task(service.start())
    simulator = ExchangeSimulator([Instrument("BTC-USD", "0.01", "0.001")], api_key="k", port=api)
    try:
        await wait_until(lambda: service.admin.port != 0, 10, "admin API")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.admin.port}") as client:
            response = await client.get("/readyz")
            assert response.status_code == 503  # nothing answers at api
            assert response.json()["reason"]
            await simulator.start()

            async def ready() -> bool:
                return (await client.get("/readyz")).status_code == 200

            deadline = 200
            while not await ready():
                deadline -= 1
                assert deadline > 0, "never ready"
                await asyncio.sleep(0.05)
        await starting
    finally:
        if not starting.done():
            starting.cancel()
        await asyncio.wait({starting})
        await service.shutdown()
        await simulator.stop()


@pytest.mark.asyncio
async def test_metrics_say_ready_as_readyz_does_and_who_set_the_trading_state() -> None:
    """``trading_engine_ready`` and ``trading_state_by{who}``, which the alert rules read."""
    from trading_engine.core.risk import TradingState

    service = await make_service("t")

    def sample(text: str, series: str) -> float:
        line = next(line for line in text.splitlines() if line.startswith(series + " "))
        return float(line.rsplit(" ", 1)[1])

    def who(text: str) -> list[str]:
        return [
            line.split('"')[1]
            for line in text.splitlines()
            if line.startswith("trading_engine_trading_state_by{") and line.endswith(" 1.0")
        ]

    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.admin.port}") as client:
            assert (await client.get("/readyz")).status_code == 200
            text = (await client.get("/metrics")).text
            assert sample(text, "trading_engine_ready") == 1
            assert who(text) == ["start-up"]
            auth = {"Authorization": "Bearer t"}
            assert (await client.post("/halt", headers=auth)).status_code == 200
            text = (await client.get("/metrics")).text
            assert who(text) == ["admin"]
            assert sample(text, 'trading_engine_trading_state{state="halted"}') == 1
            service.engine.set_trading_state(TradingState.HALTED, "journal", "disk full")
            assert who((await client.get("/metrics")).text) == ["journal"]
            # A name outside the known setters (an older journal's) stays one series.
            service.engine.set_trading_state(TradingState.ACTIVE, "someone", None)
            text = (await client.get("/metrics")).text
            assert who(text) == ["other"]
            assert text.count("trading_engine_trading_state_by{") == 7
            assert service.engine.feed is not None
            await service.engine.feed.stop()
            assert (await client.get("/readyz")).status_code == 503
            assert sample((await client.get("/metrics")).text, "trading_engine_ready") == 0
    finally:
        await service.shutdown()
