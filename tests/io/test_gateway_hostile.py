"""The gateway against a venue that answers in ways meant to break it."""

from __future__ import annotations

import httpx
import orjson
import pytest
import respx

from tests.io.test_gateway import BASE, Listener, S, answer, make_gateway, make_order


@pytest.mark.asyncio
@respx.mock(base_url=BASE, assert_all_called=False)
async def test_fills_listed_out_of_order_are_all_handed_on(respx_mock: respx.MockRouter) -> None:
    listener = Listener()
    gw = make_gateway(listener)
    order = make_order()
    listener.known[order.client_order_id] = order
    fills = [{"fill_id": n, "client_order_id": "s-r-1", "symbol": "BTC-USD", "side": "buy",
              "price": "100.01", "quantity": "0.100", "ts": 1} for n in (5, 3)]  # fmt: skip
    respx_mock.get("/fills").mock(return_value=httpx.Response(200, content=orjson.dumps(fills)))
    assert await gw.poll_fills() == 2
    assert gw.fills_cursor == 5
    await gw.close()


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_an_unknown_order_is_never_sent_again_past_the_retry_deadline(
    respx_mock: respx.MockRouter,
) -> None:
    listener = Listener()
    gw = make_gateway(listener, order_retry_deadline_s=0.01, timeout_s=0.05, settle_backoff_s=0.1)
    post = respx_mock.post("/orders").mock(side_effect=[httpx.Response(503), answer("new")])
    respx_mock.get("/orders/s-r-1").mock(return_value=httpx.Response(404))
    order = make_order()
    listener.orders[order.client_order_id] = order
    gw.submit(order)
    assert await gw.drain(3)
    assert post.call_count == 1  # not placed late
    assert listener.reasons["s-r-1"] == "resend_expired"
    assert listener.statuses() == ["unknown", "rejected"]
    assert gw.counts["resend_expired"] == 1
    assert order.status is S.REJECTED
    await gw.close()
