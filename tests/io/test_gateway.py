"""The httpx gateway's outcome paths, against respx-mocked exchange answers."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
import pytest_asyncio
import respx

from tests.helpers import wait_until
from trading_engine import Instrument
from trading_engine.config import BreakerConfig, GatewayConfig
from trading_engine.core.breaker import BreakerState, CircuitBreaker
from trading_engine.core.orders import Order, OrderStatus, OrderType, TimeInForce
from trading_engine.core.protocol import Side
from trading_engine.io.gateway import HttpGateway

BASE = "http://exchange.test"
BTC = Instrument("BTC-USD", "0.01", "0.001")


class Listener:
    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    def on_written(self, order: Order) -> None:
        self.events.append(("written", order.client_order_id))

    def on_accepted(self, client_order_id: str, exchange_order_id: str | None) -> None:
        self.events.append(("accepted", client_order_id, str(exchange_order_id)))

    def on_fill(
        self, client_order_id: str, price: int, lots: int, fill_id: int | None = None
    ) -> None:
        self.events.append(("fill", client_order_id, str(price), str(lots)))

    def on_status(self, client_order_id: str, status: OrderStatus, reason: str | None) -> None:
        self.events.append(("status", client_order_id, status.value))

    def statuses(self) -> list[str]:
        return [e[2] for e in self.events if e[0] == "status"]


def answer(status: str, filled: str = "0.000", cid: str = "s-r-1") -> httpx.Response:
    return httpx.Response(
        200,
        content=orjson.dumps(
            {"order_id": "X-1", "client_order_id": cid, "status": status,
             "filled_quantity": filled, "avg_price": None, "reason": None}
        ),
    )  # fmt: skip


def make_order(cid: str = "s-r-1") -> Order:
    return Order(cid, "s", "BTC-USD", Side.BUY, OrderType.LIMIT, 500, 10001, TimeInForce.IOC)


@pytest_asyncio.fixture
async def gateway() -> AsyncIterator[tuple[HttpGateway, Listener]]:
    listener = Listener()
    breaker = CircuitBreaker(
        BreakerConfig(window_size=4, minimum_calls=2, open_s=60).settings(), clock=lambda: 0
    )
    gw = HttpGateway(
        GatewayConfig(base_url=BASE, timeout_s=0.2, settle_backoff_s=0.001, fills_poll_s=0.01),
        listener,
        {"BTC-USD": BTC},
        breaker,
        api_key="secret",
        rng=random.Random(1),
    )
    yield gw, listener
    await gw.close()


@pytest.mark.asyncio
@respx.mock(base_url=BASE, assert_all_called=False)
async def test_accepted_and_filled(
    respx_mock: respx.MockRouter, gateway: tuple[HttpGateway, Listener]
) -> None:
    gw, listener = gateway
    post = respx_mock.post("/orders").mock(return_value=answer("filled", "0.500"))
    respx_mock.get("/fills").mock(
        return_value=httpx.Response(200, content=orjson.dumps([
            {"fill_id": 1, "client_order_id": "s-r-1", "symbol": "BTC-USD", "side": "buy",
             "price": "100.01", "quantity": "0.500", "ts": 1},
            {"fill_id": 2, "client_order_id": "someone-else", "symbol": "BTC-USD", "side": "buy",
             "price": "100.01", "quantity": "1.000", "ts": 1},
        ]))
    )  # fmt: skip
    gw.start()
    gw.submit(make_order())
    await wait_until(lambda: ("fill", "s-r-1", "10001", "500") in listener.events)
    sent = orjson.loads(post.calls.last.request.content)
    assert sent == {
        "client_order_id": "s-r-1", "symbol": "BTC-USD", "side": "buy", "type": "limit",
        "quantity": "0.500", "time_in_force": "IOC", "price": "100.01",
    }  # fmt: skip
    assert post.calls.last.request.headers["X-API-Key"] == "secret"
    assert listener.statuses() == ["filled"]
    assert len([e for e in listener.events if e[0] == "fill"]) == 1  # not the other client's


@pytest.mark.asyncio
@pytest.mark.parametrize("code", [400, 401, 403])
@respx.mock(base_url=BASE)
async def test_client_errors_reject_and_are_not_breaker_failures(
    respx_mock: respx.MockRouter, gateway: tuple[HttpGateway, Listener], code: int
) -> None:
    gw, listener = gateway
    respx_mock.post("/orders").mock(return_value=httpx.Response(code, content=b'{"error": "no"}'))
    for i in range(3):
        gw.submit(make_order(f"s-r-{i}"))
    assert await gw.drain()
    assert listener.statuses() == ["rejected"] * 3
    assert gw.breaker.state is BreakerState.CLOSED


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_429_is_retried_after_retry_after_with_the_same_id(
    respx_mock: respx.MockRouter, gateway: tuple[HttpGateway, Listener]
) -> None:
    gw, listener = gateway
    post = respx_mock.post("/orders").mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "0"}), answer("new")]
    )
    gw.submit(make_order())
    assert await gw.drain()
    assert post.call_count == 2
    bodies = [orjson.loads(call.request.content) for call in post.calls]
    assert bodies[0] == bodies[1]  # same client_order_id, same order
    assert listener.statuses() == ["new"]


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_5xx_makes_unknown_then_settles_by_reading_the_order(
    respx_mock: respx.MockRouter, gateway: tuple[HttpGateway, Listener]
) -> None:
    gw, listener = gateway
    post = respx_mock.post("/orders").mock(return_value=httpx.Response(503))
    get = respx_mock.get("/orders/s-r-1").mock(
        side_effect=[httpx.Response(502), answer("filled", "0.500")]
    )
    gw.submit(make_order())
    assert await gw.drain()
    assert post.call_count == 1  # never resubmitted
    assert get.call_count == 2
    assert listener.statuses() == ["unknown", "filled"]


@pytest.mark.asyncio
@pytest.mark.parametrize("error", [httpx.ReadTimeout("slow"), httpx.ConnectError("reset")])
@respx.mock(base_url=BASE)
async def test_no_answer_then_404_resends_under_the_same_id(
    respx_mock: respx.MockRouter, gateway: tuple[HttpGateway, Listener], error: Exception
) -> None:
    gw, listener = gateway
    post = respx_mock.post("/orders").mock(side_effect=[error, answer("new")])
    respx_mock.get("/orders/s-r-1").mock(return_value=httpx.Response(404))
    gw.submit(make_order())
    assert await gw.drain()
    assert post.call_count == 2
    ids = {orjson.loads(call.request.content)["client_order_id"] for call in post.calls}
    assert ids == {"s-r-1"}
    assert listener.statuses() == ["unknown", "new"]


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_failures_open_the_breaker(
    respx_mock: respx.MockRouter, gateway: tuple[HttpGateway, Listener]
) -> None:
    gw, _ = gateway
    respx_mock.post("/orders").mock(return_value=httpx.Response(500))
    respx_mock.get(url__regex=r"/orders/.*").mock(return_value=answer("canceled"))
    assert gw.allow()
    gw.submit(make_order("a"))
    gw.submit(make_order("b"))
    await gw.drain()
    assert gw.breaker.state is BreakerState.OPEN
    assert not gw.allow()


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_cancel_applies_the_final_state(
    respx_mock: respx.MockRouter, gateway: tuple[HttpGateway, Listener]
) -> None:
    gw, listener = gateway
    respx_mock.delete("/orders/s-r-1").mock(return_value=answer("canceled"))
    order = make_order()
    order.status = OrderStatus.NEW
    gw.cancel(order)
    assert await gw.drain()
    assert listener.statuses() == ["canceled"]
    await asyncio.sleep(0)
