"""Post-only orders on the wire: the gateway's body and answer, the exchange simulator."""

from __future__ import annotations

import httpx
import orjson
import pytest
import respx

from tests.helpers import wait_until
from tests.io.test_gateway import BASE, BTC, Listener, make_gateway
from trading_engine.core.orders import Order, OrderType, TimeInForce
from trading_engine.core.protocol import Side
from trading_engine.sim.exchange_sim import ExchangeSimulator

KEY = "post-only-key"


def post_only_order(cid: str = "s-r-1") -> Order:
    order = Order(cid, "s", "BTC-USD", Side.BUY, OrderType.LIMIT, 5, 10001, TimeInForce.GTC)
    order.post_only = True
    return order


def test_the_body_carries_post_only_only_when_asked() -> None:
    gw = make_gateway(Listener())
    assert orjson.loads(gw.order_body(post_only_order())) == {
        "client_order_id": "s-r-1", "symbol": "BTC-USD", "side": "buy", "type": "limit",
        "time_in_force": "GTC", "quantity": "0.005", "price": "100.01", "post_only": True,
    }  # fmt: skip
    plain = Order("s-r-2", "s", "BTC-USD", Side.BUY, OrderType.LIMIT, 5, 10001, TimeInForce.GTC)
    assert "post_only" not in orjson.loads(gw.order_body(plain))


@pytest.mark.asyncio
@respx.mock(base_url=BASE, assert_all_called=False)
async def test_a_refused_post_only_order_is_rejected_with_the_venues_reason(
    respx_mock: respx.MockRouter,
) -> None:
    listener = Listener()
    gw = make_gateway(listener)
    body = {"order_id": "X-1", "client_order_id": "s-r-1", "status": "rejected",
            "filled_quantity": "0.000", "avg_price": None,
            "reason": "post_only_would_take"}  # fmt: skip
    respx_mock.post("/orders").mock(return_value=httpx.Response(200, content=orjson.dumps(body)))
    try:
        assert gw.submit(post_only_order()) is None
        await wait_until(lambda: "rejected" in listener.statuses())
        assert listener.reasons["s-r-1"] == "post_only_would_take"
    finally:
        await gw.close()


@pytest.mark.asyncio
async def test_the_simulator_refuses_a_post_only_order_that_would_take() -> None:
    sim = ExchangeSimulator([BTC], api_key=KEY, port=0, seed=2)
    await sim.start()
    try:
        walk = sim.walks["BTC-USD"]
        best_ask = min(walk.asks)
        best_bid = max(walk.bids)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{sim.port}", headers={"X-API-Key": KEY}
        ) as client:

            async def post(cid: str, price: int, **extra: object) -> httpx.Response:
                return await client.post(
                    "/orders",
                    json={"client_order_id": cid, "symbol": "BTC-USD", "side": "buy",
                          "type": "limit", "price": BTC.format_price(price),
                          "quantity": "0.001", **extra},
                )  # fmt: skip

            taking = await post("p-1", best_ask, post_only=True)
            assert taking.status_code == 200
            assert taking.json()["status"] == "rejected"
            assert taking.json()["reason"] == "post_only_would_take"
            assert taking.json()["filled_quantity"] == "0.000"
            resting = await post("p-2", best_bid, post_only=True)
            assert resting.json()["status"] == "new"
            refused = await post("p-3", best_bid, post_only=True, time_in_force="IOC")
            assert refused.status_code == 400
            assert "post_only" in refused.json()["error"]
            assert (await post("p-4", best_bid, post_only="yes")).status_code == 400
        assert sim.counts["post_only_rejected"] == 1
    finally:
        await sim.stop()
