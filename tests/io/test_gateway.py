"""The httpx gateway's outcome paths, against respx-mocked exchange answers."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from fractions import Fraction

import httpx
import orjson
import pytest
import pytest_asyncio
import respx

from tests.helpers import wait_until
from trading_engine import Instrument
from trading_engine.config import BreakerConfig, GatewayConfig
from trading_engine.core.breaker import BreakerState, CircuitBreaker
from trading_engine.core.clock import ManualClock
from trading_engine.core.orders import Order, OrderStatus, OrderType, TimeInForce
from trading_engine.core.protocol import Side
from trading_engine.core.reports import FillReport, OrderReport
from trading_engine.io.gateway import HttpGateway

BASE = "http://exchange.test"
BTC = Instrument("BTC-USD", "0.01", "0.001")
S = OrderStatus


class Listener:
    """An ExecutionListener that records what the gateway reports, in order.

    An order answer is recorded as the old three events (accepted,
    report, status); the status only when it changes the order (or adds
    fills), as the ledger would take it. Orders in ``orders`` follow the
    statuses reported, as the engine's do.
    """

    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []
        self.reasons: dict[str, str | None] = {}
        #: Orders whose status follows the reported one.
        self.orders: dict[str, Order] = {}
        #: Every order submitted (what the ledger would know).
        self.known: dict[str, Order] = {}
        self.resting: list[Order] = []

    def on_written(self, order: Order) -> None:
        self.events.append(("written", order.client_order_id))

    def on_report(self, report: OrderReport) -> bool:
        cid = report.client_order_id
        if report.exchange_order_id is not None:
            self.events.append(("accepted", cid, report.exchange_order_id))
        avg = report.avg_price
        text = "None"
        if avg is not None:
            exact = Fraction(avg)
            text = str(Decimal(exact.numerator) / Decimal(exact.denominator) / 100)
        self.events.append(("report", cid, str(report.filled_lots), text))
        order = self.orders.get(cid)
        if order is not None:
            order.reported = max(order.reported, report.filled_lots)
            if report.status is order.status and report.status is not S.PARTIALLY_FILLED:
                return True
        self.on_status(cid, report.status, report.reason)
        return True

    def on_fill(self, fill: FillReport) -> None:
        self.events.append(("fill", fill.client_order_id, str(fill.price), str(fill.lots)))
        order = self.orders.get(fill.client_order_id)
        if order is not None:
            order.feed_filled += fill.lots

    def on_status(self, client_order_id: str, status: OrderStatus, reason: str | None) -> None:
        self.events.append(("status", client_order_id, status.value))
        self.reasons[client_order_id] = reason
        order = self.orders.get(client_order_id)
        if order is not None:
            order.status = status  # as the engine does

    def on_order_fault(self, client_order_id: str, kind: str) -> None:
        self.events.append(("fault", client_order_id, kind))

    def resting_orders(self) -> list[Order]:
        return list(self.resting)

    def order(self, client_order_id: str) -> Order | None:
        return self.known.get(client_order_id)

    def attach(self, gw: HttpGateway) -> HttpGateway:
        """Route ``gw.submit`` through here: known orders, refusals as the ledger closes them."""
        submit = gw.submit

        def tracked(order: Order) -> str | None:
            self.known[order.client_order_id] = order
            reason = submit(order)
            if reason is not None:
                self.on_status(order.client_order_id, S.REJECTED, reason)
            return reason

        gw.submit = tracked  # type: ignore[method-assign]
        return gw

    def statuses(self) -> list[str]:
        return [e[2] for e in self.events if e[0] == "status"]


def answer(status: str, filled: str = "0.000", cid: str | None = None) -> httpx.Response:
    """An order body; without ``cid`` it names no client order id (any order's answer)."""
    body = {"order_id": "X-1", "status": status, "filled_quantity": filled, "avg_price": None,
            "reason": None}  # fmt: skip
    if cid is not None:
        body["client_order_id"] = cid
    return httpx.Response(200, content=orjson.dumps(body))


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
    listener.attach(gw)
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
    # Every fill of the symbol reaches the ledger, which tells the others apart.
    assert [e[1] for e in listener.events if e[0] == "fill"] == ["s-r-1", "someone-else"]


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


@pytest.mark.asyncio
@respx.mock(base_url=BASE, assert_all_called=False)
async def test_an_answer_is_reported_before_its_status_and_fills_carry_their_id(
    respx_mock: respx.MockRouter, gateway: tuple[HttpGateway, Listener]
) -> None:
    gw, listener = gateway
    body = {"order_id": "X-1", "client_order_id": "s-r-1", "status": "filled",
            "filled_quantity": "0.500", "avg_price": "100.015", "reason": None}  # fmt: skip
    respx_mock.post("/orders").mock(return_value=httpx.Response(200, content=orjson.dumps(body)))
    fills = [{"fill_id": 4, "client_order_id": "s-r-1", "symbol": "BTC-USD", "side": "buy",
              "price": "100.01", "quantity": "0.500", "ts": 1}]  # fmt: skip
    respx_mock.get("/fills").mock(return_value=httpx.Response(200, content=orjson.dumps(fills)))
    seen: list[int | None] = []
    record = listener.on_fill

    def on_fill(fill: FillReport) -> None:
        seen.append(fill.fill_id)
        record(fill)

    listener.on_fill = on_fill  # type: ignore[method-assign]
    gw.start()
    gw.submit(make_order())
    await wait_until(lambda: bool(seen))
    kinds = [event[0] for event in listener.events]
    assert kinds.index("report") < kinds.index("status")
    assert ("report", "s-r-1", "500", "100.015") in listener.events
    assert seen == [4]


@pytest.mark.asyncio
@respx.mock(base_url=BASE, assert_all_called=False)
async def test_an_unreadable_average_is_an_order_fault(
    respx_mock: respx.MockRouter, gateway: tuple[HttpGateway, Listener]
) -> None:
    gw, listener = gateway
    body = {"order_id": "X-1", "client_order_id": "s-r-1", "status": "filled",
            "filled_quantity": "0.500", "avg_price": "NaN", "reason": None}  # fmt: skip
    respx_mock.post("/orders").mock(return_value=httpx.Response(200, content=orjson.dumps(body)))
    gw.submit(make_order())
    assert await gw.drain()
    assert ("fault", "s-r-1", "unreadable_answer") in listener.events
    assert not [e for e in listener.events if e[0] == "report"]


# -- every answer has an outcome --------------------------------------------------------


def make_gateway(
    listener: Listener, breaker: CircuitBreaker | None = None, **settings: object
) -> HttpGateway:
    options: dict[str, object] = {
        "base_url": BASE, "timeout_s": 0.2, "settle_backoff_s": 0.001, "fills_poll_s": 0.01,
        "read_backoff_max_s": 0.05, **settings,
    }  # fmt: skip
    gw = HttpGateway(
        GatewayConfig.model_validate(options),
        listener,
        {"BTC-USD": BTC},
        breaker
        or CircuitBreaker(
            BreakerConfig(window_size=4, minimum_calls=2, open_s=60).settings(), clock=lambda: 0
        ),
        api_key="secret",
        rng=random.Random(1),
    )
    return listener.attach(gw)


def timed(times: list[float], *responses: httpx.Response) -> object:
    """A respx side effect that answers ``responses`` in turn and notes when."""
    queue = list(responses)

    def effect(request: httpx.Request) -> httpx.Response:
        times.append(time.monotonic())
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return effect


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_post_500_then_read_429_then_200_ends_filled(
    respx_mock: respx.MockRouter, gateway: tuple[HttpGateway, Listener]
) -> None:
    # Taken and filled, but the POST answered 500; the first GET answers 429
    # Retry-After: 1, later ones 200 filled. It stays unknown, is read again
    # after the delay, and ends filled (never rejected).
    gw, listener = gateway
    respx_mock.post("/orders").mock(return_value=httpx.Response(500))
    reads: list[float] = []
    get = respx_mock.get("/orders/s-r-1").mock(
        side_effect=timed(
            reads,
            httpx.Response(429, headers={"Retry-After": "1"}),
            answer("filled", "0.500"),
        )
    )
    gw.submit(make_order())
    assert await gw.drain()
    assert listener.statuses() == ["unknown", "filled"]
    assert get.call_count == 2
    assert reads[1] - reads[0] >= 0.99  # the whole venue waited for Retry-After
    assert gw.counts["venue_rate_limited"] == 1
    assert gw.counts["settled"] == 1
    assert gw.read_failures["order"] == 1
    assert gw.scheduler.paused_ns_total == 10**9
    assert ("report", "s-r-1", "500", "None") in listener.events


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "nothing",
    [
        httpx.Response(400, content=b'{"error": "bad"}'),
        httpx.Response(401),
        httpx.Response(403),
        httpx.Response(500),
        httpx.Response(503),
        httpx.Response(200, content=b"<html>oops</html>"),
        httpx.Response(200, content=b'{"status": "weird", "filled_quantity": "0"}'),
        httpx.Response(429, headers={"Retry-After": "0"}),
    ],
)
@respx.mock(base_url=BASE)
async def test_a_read_that_says_nothing_leaves_the_order_unknown(
    respx_mock: respx.MockRouter, gateway: tuple[HttpGateway, Listener], nothing: httpx.Response
) -> None:
    gw, listener = gateway
    post = respx_mock.post("/orders").mock(side_effect=httpx.ReadTimeout("slow"))
    respx_mock.get("/orders/s-r-1").mock(side_effect=[nothing, answer("canceled")])
    gw.submit(make_order())
    assert await gw.drain()
    assert listener.statuses() == ["unknown", "canceled"]
    assert post.call_count == 1  # never sent again: no read answered 404
    assert gw.counts["settled"] == 1


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_cancel_404_then_read_404_closes_the_order_locally(
    respx_mock: respx.MockRouter, gateway: tuple[HttpGateway, Listener]
) -> None:
    gw, listener = gateway
    delete = respx_mock.delete("/orders/s-r-1").mock(return_value=httpx.Response(404))
    get = respx_mock.get("/orders/s-r-1").mock(return_value=httpx.Response(404))
    order = make_order()
    order.status = OrderStatus.NEW
    gw.cancel(order)
    assert await gw.drain(2)
    assert (delete.call_count, get.call_count) == (1, 1)
    assert listener.statuses() == ["canceled"]
    assert listener.reasons["s-r-1"] == "not_found"
    assert ("fault", "s-r-1", "not_found") in listener.events
    assert gw.counts["not_found"] == 1


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_cancel_404_then_read_200_applies_the_state_read(
    respx_mock: respx.MockRouter, gateway: tuple[HttpGateway, Listener]
) -> None:
    gw, listener = gateway
    respx_mock.delete("/orders/s-r-1").mock(return_value=httpx.Response(404))
    respx_mock.get("/orders/s-r-1").mock(return_value=answer("filled", "0.500"))
    order = make_order()
    order.status = OrderStatus.NEW
    listener.orders[order.client_order_id] = order
    gw.cancel(order)
    assert await gw.drain(2)
    assert listener.statuses() == ["filled"]
    assert gw.counts["not_found"] == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("code", [400, 401, 403, 409])
@respx.mock(base_url=BASE)
async def test_a_refused_cancel_is_counted_and_the_order_read_back(
    respx_mock: respx.MockRouter, gateway: tuple[HttpGateway, Listener], code: int
) -> None:
    gw, listener = gateway
    delete = respx_mock.delete("/orders/s-r-1").mock(return_value=httpx.Response(code))
    get = respx_mock.get("/orders/s-r-1").mock(return_value=answer("new"))
    order = make_order()
    order.status = OrderStatus.NEW
    gw.cancel(order)
    assert await gw.drain(2)
    assert (delete.call_count, get.call_count) == (1, 1)
    assert gw.counts["cancel_refused"] == 1
    assert ("fault", "s-r-1", "cancel_refused") in listener.events
    assert ("report", "s-r-1", "0", "None") in listener.events


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_an_unreadable_order_answer_is_settled_by_reading(
    respx_mock: respx.MockRouter, gateway: tuple[HttpGateway, Listener]
) -> None:
    gw, listener = gateway
    post = respx_mock.post("/orders").mock(
        return_value=httpx.Response(200, content=b'{"status": "filled", "filled_quantity": 0.5}')
    )
    respx_mock.get("/orders/s-r-1").mock(return_value=answer("filled", "0.500"))
    gw.submit(make_order())
    assert await gw.drain()
    assert post.call_count == 1
    assert listener.statuses() == ["unknown", "filled"]
    assert ("fault", "s-r-1", "unreadable_answer") in listener.events
    assert gw.counts["unreadable_answer"] == 1


def fills(*items: tuple[int, str, str]) -> httpx.Response:
    return httpx.Response(
        200,
        content=orjson.dumps(
            [
                {"fill_id": fid, "client_order_id": "s-r-1", "symbol": "BTC-USD", "side": "buy",
                 "price": price, "quantity": quantity, "ts": 1}
                for fid, price, quantity in items
            ]
        ),
    )  # fmt: skip


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_an_unreadable_fill_is_counted_and_its_order_read_back(
    respx_mock: respx.MockRouter, gateway: tuple[HttpGateway, Listener]
) -> None:
    gw, listener = gateway
    respx_mock.post("/orders").mock(return_value=answer("new"))
    respx_mock.get("/fills").mock(side_effect=[fills((1, "100.01", "0.25x")), fills()])
    get = respx_mock.get("/orders/s-r-1").mock(return_value=answer("partially_filled", "0.250"))
    gw.submit(make_order())
    assert await gw.drain()
    await gw.poll_fills()
    assert await gw.drain()
    assert ("fault", "s-r-1", "unreadable_fill") in listener.events
    assert get.call_count == 1
    assert ("report", "s-r-1", "250", "None") in listener.events
    assert gw.counts["unreadable_fill"] == 1
    assert not [e for e in listener.events if e[0] == "fill"]


# -- admission and pacing ------------------------------------------------------------------


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_an_order_without_a_slot_is_refused_at_once(
    respx_mock: respx.MockRouter,
) -> None:
    listener = Listener()
    gw = make_gateway(listener, max_requests_per_s=3)
    post = respx_mock.post("/orders").mock(return_value=answer("new"))
    for i in range(5):
        gw.submit(make_order(f"s-r-{i}"))
    # The refusals are synchronous: the strategy knows before submit returns.
    assert [listener.reasons.get(f"s-r-{i}") for i in (3, 4)] == ["rate_limited"] * 2
    assert await gw.drain()
    assert post.call_count == 3
    assert gw.counts["rate_limited"] == 2
    await gw.close()


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_an_order_may_wait_up_to_max_order_wait_s(respx_mock: respx.MockRouter) -> None:
    listener = Listener()
    gw = make_gateway(listener, max_requests_per_s=1, max_order_wait_s=0.5)
    post = respx_mock.post("/orders").mock(return_value=answer("new"))
    gw.submit(make_order("s-r-1"))
    gw.submit(make_order("s-r-2"))  # waits for the window: about 1 s, beyond 0.5 s
    assert await gw.drain()
    assert post.call_count == 1
    assert listener.reasons["s-r-2"] == "rate_limited"
    await gw.close()


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_a_429_pauses_the_venue_and_retries_only_that_order(
    respx_mock: respx.MockRouter,
) -> None:
    listener = Listener()
    gw = make_gateway(listener)
    posts: list[float] = []
    post = respx_mock.post("/orders").mock(
        side_effect=timed(posts, httpx.Response(429, headers={"Retry-After": "1"}), answer("new"))
    )
    deletes: list[float] = []
    respx_mock.delete("/orders/other").mock(side_effect=timed(deletes, answer("canceled")))
    gw.submit(make_order())
    await wait_until(lambda: post.call_count == 1)
    await wait_until(gw.scheduler.paused, what="the 429's pause")
    gw.submit(make_order("s-r-2"))  # paused: refused at once
    assert listener.reasons["s-r-2"] == "rate_limited"
    resting = make_order("other")
    resting.status = OrderStatus.NEW
    gw.cancel(resting)
    assert await gw.drain(3)
    assert post.call_count == 2  # the retry of the same order, nothing else
    assert {orjson.loads(c.request.content)["client_order_id"] for c in post.calls} == {"s-r-1"}
    assert posts[1] - posts[0] >= 0.99
    assert deletes[0] - posts[0] >= 0.99  # the cancel waited for the pause too
    assert sorted(listener.statuses()) == ["canceled", "new", "rejected"]
    await gw.close()


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_retry_after_is_capped_by_config(respx_mock: respx.MockRouter) -> None:
    listener = Listener()
    gw = make_gateway(listener, max_retry_after_s=0.2)
    post = respx_mock.post("/orders").mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "3600"}), answer("new")]
    )
    gw.submit(make_order())
    async with asyncio.timeout(2):
        assert await gw.drain()
    assert post.call_count == 2
    assert gw.scheduler.paused_ns_total == 200_000_000
    await gw.close()


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_after_a_halt_no_order_leaves(respx_mock: respx.MockRouter) -> None:
    listener = Listener()
    gw = make_gateway(listener, timeout_s=0.05)
    post = respx_mock.post("/orders").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "1"}),  # s-r-1: waits to retry
            httpx.ReadTimeout("slow"),  # s-r-2: unknown
        ]
    )
    respx_mock.get("/orders/s-r-2").mock(return_value=httpx.Response(404))
    gw.submit(make_order("s-r-1"))
    gw.submit(make_order("s-r-2"))
    await wait_until(lambda: post.call_count == 2 and "s-r-2" in listener.reasons)
    gw.stop_orders()
    gw.submit(make_order("s-r-3"))
    assert await gw.drain(3)
    assert post.call_count == 2  # no retry, no re-send, no new order
    assert listener.reasons == {"s-r-1": "halted", "s-r-2": "halted", "s-r-3": "halted"}
    assert listener.statuses() == ["unknown", "rejected", "rejected", "rejected"]
    assert gw.counts["halted_unsent"] == 3
    await gw.close()


# -- the breaker's scope ---------------------------------------------------------------------


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_reads_never_feed_the_breaker(respx_mock: respx.MockRouter) -> None:
    listener = Listener()
    gw = make_gateway(listener)
    respx_mock.get("/fills").mock(return_value=httpx.Response(503))
    for _ in range(10):
        assert await gw.poll_fills() == -1
    assert gw.breaker.state is BreakerState.CLOSED
    assert gw.read_failures["fills"] == 10
    await gw.close()


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_the_round_trip_histogram_times_order_requests_not_reads(
    respx_mock: respx.MockRouter,
) -> None:
    listener = Listener()
    gw = make_gateway(listener)
    respx_mock.get("/fills").mock(return_value=httpx.Response(200, content=b"[]"))
    respx_mock.post("/orders").mock(return_value=answer("new", cid="s-r-1"))
    respx_mock.delete("/orders/s-r-1").mock(return_value=answer("canceled", cid="s-r-1"))
    for _ in range(5):
        assert await gw.poll_fills() == 0
    assert gw.roundtrip.count == 0
    order = make_order()
    listener.attach(gw)
    gw.submit(order)
    await wait_until(lambda: "new" in listener.statuses())
    assert gw.roundtrip.count == 1
    gw.cancel(order)
    await wait_until(lambda: "canceled" in listener.statuses())
    assert gw.roundtrip.count == 2
    await gw.close()


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_failed_placements_open_the_breaker_among_successful_reads(
    respx_mock: respx.MockRouter,
) -> None:
    listener = Listener()
    gw = make_gateway(listener)
    respx_mock.post("/orders").mock(return_value=httpx.Response(503))
    respx_mock.get("/fills").mock(return_value=fills())
    respx_mock.get(url__regex=r"/orders/.*").mock(return_value=answer("rejected"))
    for i in range(2):
        assert gw.allow()
        gw.submit(make_order(f"s-r-{i}"))
        for _ in range(5):
            await gw.poll_fills()
    assert await gw.drain()
    assert gw.breaker.state is BreakerState.OPEN
    await gw.close()


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_while_open_resends_wait_and_the_order_is_read_instead(
    respx_mock: respx.MockRouter,
) -> None:
    listener = Listener()
    gw = make_gateway(listener)
    post = respx_mock.post("/orders").mock(side_effect=[httpx.ConnectError("reset"), answer("new")])
    get = respx_mock.get("/orders/s-r-1").mock(return_value=httpx.Response(404))
    gw.breaker._transition(BreakerState.OPEN)  # as if other placements failed
    gw.submit(make_order())
    await wait_until(lambda: gw.counts["resend_held"] >= 3)
    assert post.call_count == 1
    assert get.call_count >= 3
    gw.breaker._transition(BreakerState.CLOSED)
    assert await gw.drain()
    assert post.call_count == 2
    assert listener.statuses() == ["unknown", "new"]
    await gw.close()


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_half_open_trials_are_placements_and_alone_decide(
    respx_mock: respx.MockRouter,
) -> None:
    clock = ManualClock(start_ns=10**12)
    breaker = CircuitBreaker(
        BreakerConfig(window_size=4, minimum_calls=2, open_s=1, half_open_calls=2).settings(),
        clock=clock.monotonic_ns,
    )
    listener = Listener()
    gw = make_gateway(listener, breaker)
    respx_mock.post("/orders").mock(return_value=answer("new"))
    respx_mock.get("/fills").mock(return_value=httpx.Response(500))
    breaker._transition(BreakerState.OPEN)
    clock.advance(1.0)
    for i in range(2):
        assert gw.allow()  # half-open: the two trial placements
        gw.submit(make_order(f"s-r-{i}"))
    assert not gw.allow()
    for _ in range(3):
        await gw.poll_fills()  # failing reads change nothing
    assert breaker.state is BreakerState.HALF_OPEN
    assert await gw.drain()
    assert breaker.state is BreakerState.CLOSED
    await gw.close()


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_a_refused_trial_gives_its_permit_back(respx_mock: respx.MockRouter) -> None:
    clock = ManualClock(start_ns=10**12)
    breaker = CircuitBreaker(
        BreakerConfig(window_size=4, minimum_calls=2, open_s=1, half_open_calls=1).settings(),
        clock=clock.monotonic_ns,
    )
    listener = Listener()
    gw = make_gateway(listener, breaker, max_requests_per_s=1)
    assert gw.scheduler.try_now()  # the window is full
    breaker._transition(BreakerState.OPEN)
    clock.advance(1.0)
    assert gw.allow()
    gw.submit(make_order())  # refused rate_limited: the trial was not made
    assert listener.reasons["s-r-1"] == "rate_limited"
    assert gw.allow()  # so another placement may be the trial
    await gw.close()


# -- closed orders leave the gateway's maps -------------------------------------------------


def test_order_bodies_are_exact_and_their_decimal_cache_is_bounded() -> None:
    import trading_engine.io.gateway as gateway_module

    gw = make_gateway(Listener())
    limit = make_order("s-r-7")
    assert orjson.loads(gw.order_body(limit)) == {
        "client_order_id": "s-r-7", "symbol": "BTC-USD", "side": "buy", "type": "limit",
        "time_in_force": "IOC", "quantity": "0.500", "price": "100.01",
    }  # fmt: skip
    market = Order("s-r-8", "s", "BTC-USD", Side.SELL, OrderType.MARKET, 3, None, TimeInForce.IOC)
    assert orjson.loads(gw.order_body(market)) == {
        "client_order_id": "s-r-8", "symbol": "BTC-USD", "side": "sell", "type": "market",
        "time_in_force": "IOC", "quantity": "0.003",
    }  # fmt: skip
    # Rendered once and kept: the same order renders the same bytes again.
    assert gw.order_body(limit) == gw.order_body(limit)
    cap = gateway_module._DECIMAL_TEXTS_MAX
    for ticks in range(1, cap + 10):
        order = Order("s-r-9", "s", "BTC-USD", Side.BUY, OrderType.LIMIT, 1, ticks, TimeInForce.GTC)
        assert orjson.loads(gw.order_body(order))["price"] == BTC.format_price(ticks)
        assert len(gw._decimal_texts) <= cap


@pytest.mark.asyncio
@respx.mock(base_url=BASE, assert_all_called=False)
async def test_the_gateway_keeps_nothing_of_an_order_once_its_requests_ended(
    respx_mock: respx.MockRouter,
) -> None:
    """Only requests in flight: no per-order state outlives them (memory stays flat)."""
    listener = Listener()
    gw = make_gateway(listener, max_requests_per_s=1000)
    respx_mock.post("/orders").mock(return_value=answer("filled", "0.500"))
    for i in range(200):
        gw.submit(make_order(f"s-r-{i}"))
    assert gw.orders_in_flight > 0
    assert await gw.drain()
    assert gw.orders_in_flight == 0
    assert not gw._last_sent_ns
    assert not gw._placing
    assert not gw._unsent
    assert not gw._canceling
    await gw.close()


@pytest.mark.asyncio
@respx.mock(base_url=BASE, assert_all_called=False)
async def test_fills_of_orders_the_ledger_does_not_know_reach_it_once(
    respx_mock: respx.MockRouter,
) -> None:
    """The ledger, not the gateway, tells the deployment's closed orders from others'."""
    listener = Listener()
    gw = make_gateway(listener)
    fills = [{"fill_id": 1, "client_order_id": "someone-else", "symbol": "BTC-USD",
              "side": "buy", "price": "100.01", "quantity": "0.500", "ts": 1},
             {"fill_id": 2, "client_order_id": "other-symbol", "symbol": "XRP-USD",
              "side": "buy", "price": "1.01", "quantity": "1", "ts": 1}]  # fmt: skip
    respx_mock.get("/fills").mock(return_value=httpx.Response(200, content=orjson.dumps(fills)))
    assert await gw.poll_fills() == 1
    assert [e[1] for e in listener.events if e[0] == "fill"] == ["someone-else"]
    assert gw.fills_cursor == 2  # read once, never again
    assert await gw.poll_fills() == 0
    await gw.close()


# -- nothing is sent late ------------------------------------------------------------------


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_an_order_canceled_while_it_waits_for_a_slot_is_never_sent(
    respx_mock: respx.MockRouter,
) -> None:
    listener = Listener()
    gw = make_gateway(listener, max_requests_per_s=1, max_order_wait_s=1.0)
    post = respx_mock.post("/orders").mock(return_value=answer("new"))
    first, waiting = make_order("s-r-1"), make_order("s-r-2")
    assert gw.submit(first) is None
    assert gw.submit(waiting) is None  # waits for the next slot
    gw.cancel(waiting)
    assert listener.reasons["s-r-2"] == "canceled_unsent"
    assert await gw.drain(3)
    assert post.call_count == 1
    assert {orjson.loads(c.request.content)["client_order_id"] for c in post.calls} == {"s-r-1"}
    assert gw.counts["canceled_unsent"] == 1
    await gw.close()


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_an_order_canceled_while_it_waits_out_a_429_is_never_sent_again(
    respx_mock: respx.MockRouter,
) -> None:
    listener = Listener()
    gw = make_gateway(listener)
    post = respx_mock.post("/orders").mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "1"}), answer("new")]
    )
    order = make_order()
    listener.orders[order.client_order_id] = order
    gw.submit(order)
    await wait_until(lambda: post.call_count == 1 and "s-r-1" in gw._unsent)
    gw.cancel(order)
    assert await gw.drain(3)
    assert post.call_count == 1
    assert listener.reasons["s-r-1"] == "canceled_unsent"
    assert listener.statuses() == ["canceled"]
    await gw.close()


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_429_retries_are_bounded_in_count(respx_mock: respx.MockRouter) -> None:
    listener = Listener()
    gw = make_gateway(listener, order_retry_max=2)
    post = respx_mock.post("/orders").mock(
        return_value=httpx.Response(429, headers={"Retry-After": "0"})
    )
    gw.submit(make_order())
    async with asyncio.timeout(3):
        assert await gw.drain()
    assert post.call_count == 3  # the first send and two retries
    assert listener.reasons["s-r-1"] == "venue_rate_limited"
    assert gw.counts["retry_abandoned"] == 1
    await gw.close()


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_a_retry_after_beyond_the_deadline_closes_the_order_at_once(
    respx_mock: respx.MockRouter,
) -> None:
    listener = Listener()
    gw = make_gateway(listener, order_retry_deadline_s=0.5)
    post = respx_mock.post("/orders").mock(
        return_value=httpx.Response(429, headers={"Retry-After": "5"})
    )
    started = time.monotonic()
    gw.submit(make_order())
    assert await gw.drain(3)
    assert time.monotonic() - started < 1.0  # not after the 5 s it was told to wait
    assert post.call_count == 1
    assert listener.reasons["s-r-1"] == "venue_rate_limited"
    await gw.close()


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_a_cancel_outranks_the_retry_of_a_429d_order(respx_mock: respx.MockRouter) -> None:
    listener = Listener()
    gw = make_gateway(listener, max_requests_per_s=1)
    posts: list[float] = []
    post = respx_mock.post("/orders").mock(
        side_effect=timed(posts, httpx.Response(429, headers={"Retry-After": "1"}), answer("new"))
    )
    deletes: list[float] = []
    respx_mock.delete("/orders/other").mock(side_effect=timed(deletes, answer("canceled")))
    gw.submit(make_order())
    await wait_until(lambda: post.call_count == 1)
    resting = make_order("other")
    resting.status = S.NEW
    gw.cancel(resting)
    assert await gw.drain(4)
    assert len(posts) == 2
    assert len(deletes) == 1
    assert deletes[0] < posts[1]  # one slot per second: the cancel took the first
    await gw.close()


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_a_new_order_during_a_429_pause_is_refused_at_once_even_with_a_wait(
    respx_mock: respx.MockRouter,
) -> None:
    listener = Listener()
    gw = make_gateway(listener, max_order_wait_s=1.0)
    post = respx_mock.post("/orders").mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "1"}), answer("new")]
    )
    gw.submit(make_order())
    await wait_until(lambda: post.call_count == 1 and gw.scheduler.paused())
    assert gw.submit(make_order("s-r-2")) == "rate_limited"
    assert await gw.drain(3)
    assert post.call_count == 2
    await gw.close()


# -- answers that say nothing close nothing ----------------------------------------------------


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_a_cancel_404_then_a_read_that_says_nothing_does_not_close_the_order(
    respx_mock: respx.MockRouter,
) -> None:
    listener = Listener()
    gw = make_gateway(listener)
    respx_mock.delete("/orders/s-r-1").mock(return_value=httpx.Response(404))
    get = respx_mock.get("/orders/s-r-1").mock(
        side_effect=[httpx.Response(503), answer("canceled")]
    )
    order = make_order()
    order.status = S.NEW
    listener.orders[order.client_order_id] = order
    gw.cancel(order)
    assert await gw.drain(3)
    assert get.call_count == 2
    assert listener.statuses() == ["canceled"]
    assert listener.reasons["s-r-1"] is None  # the venue's answer, not a local not_found
    assert ("fault", "s-r-1", "not_found") not in listener.events
    await gw.close()


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_after_a_halt_an_unknown_order_closes_only_on_a_second_404(
    respx_mock: respx.MockRouter,
) -> None:
    listener = Listener()
    gw = make_gateway(listener, timeout_s=0.05)
    respx_mock.post("/orders").mock(side_effect=httpx.ReadTimeout("slow"))
    get = respx_mock.get("/orders/s-r-1").mock(return_value=httpx.Response(404))
    order = make_order()
    listener.orders[order.client_order_id] = order
    gw.submit(order)
    await wait_until(lambda: order.status is S.UNKNOWN)
    gw.stop_orders()
    assert await gw.drain(3)
    assert listener.reasons["s-r-1"] == "halted"
    # Its request may still have been in flight at the first 404.
    assert get.call_count >= 2
    await gw.close()


@pytest.mark.asyncio
@respx.mock(base_url=BASE, assert_all_called=False)
async def test_fills_the_venue_lists_again_below_the_cursor_are_not_handed_on(
    respx_mock: respx.MockRouter,
) -> None:
    listener = Listener()
    gw = make_gateway(listener)
    order = make_order()
    listener.known[order.client_order_id] = order
    fills = [{"fill_id": n, "client_order_id": "s-r-1", "symbol": "BTC-USD", "side": "buy",
              "price": "100.01", "quantity": "0.100", "ts": 1} for n in (1, 2)]  # fmt: skip
    # A venue that ignores ``since`` and lists its whole log every time.
    respx_mock.get("/fills").mock(return_value=httpx.Response(200, content=orjson.dumps(fills)))
    assert await gw.poll_fills() == 2
    assert await gw.poll_fills() == 0
    assert [e for e in listener.events if e[0] == "fill"] == [("fill", "s-r-1", "10001", "100")] * 2
    await gw.close()


# -- resting orders the venue closed on its own ----------------------------------------------


@pytest.mark.asyncio
@respx.mock(base_url=BASE, assert_all_called=False)
async def test_a_venue_initiated_cancel_is_seen_within_resting_order_check_s(
    respx_mock: respx.MockRouter,
) -> None:
    listener = Listener()
    gw = make_gateway(listener, resting_order_check_s=0.2, fills_poll_s=10)
    order = make_order()
    order.status = S.NEW
    listener.orders[order.client_order_id] = order
    listener.resting.append(order)
    respx_mock.get("/fills").mock(return_value=httpx.Response(200, content=b"[]"))
    listing = respx_mock.get("/orders", params={"status": "open"}).mock(
        return_value=httpx.Response(200, content=b"[]")
    )
    read = respx_mock.get("/orders/s-r-1").mock(return_value=answer("canceled", cid="s-r-1"))
    gw.start()
    started = time.monotonic()
    await wait_until(lambda: order.status is S.CANCELED, within_s=2)
    assert time.monotonic() - started < 0.2 + 0.15
    assert listing.call_count >= 1
    assert read.call_count == 1
    assert gw.counts["resting_missing"] == 1
    await gw.close()


@pytest.mark.asyncio
@respx.mock(base_url=BASE, assert_all_called=False)
async def test_a_resting_order_the_venue_still_lists_is_not_read_back(
    respx_mock: respx.MockRouter,
) -> None:
    listener = Listener()
    gw = make_gateway(listener)
    order = make_order()
    order.status = S.NEW
    listener.resting.append(order)
    body = orjson.dumps([{"client_order_id": "s-r-1", "status": "new"}])
    respx_mock.get("/orders", params={"status": "open"}).mock(
        return_value=httpx.Response(200, content=body)
    )
    read = respx_mock.get("/orders/s-r-1").mock(return_value=answer("new"))
    assert await gw.audit_resting() == 0
    assert read.call_count == 0
    await gw.close()


@pytest.mark.asyncio
@respx.mock(base_url=BASE, assert_all_called=False)
async def test_an_unreachable_venue_is_one_log_line_per_outage_and_every_failure_counted(
    respx_mock: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    route = respx_mock.get("/orders").mock(side_effect=httpx.ConnectError("refused"))
    gw = make_gateway(Listener())
    caplog.set_level("WARNING", logger="trading_engine.gateway")
    try:
        for _ in range(3):
            with pytest.raises(ConnectionError):
                await gw.open_orders()
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"GET {BASE}/orders: ConnectError")
        assert gw.counts["connection_error"] == 3
        route.mock(return_value=httpx.Response(200, json=[]))
        assert await gw.open_orders() == []
        assert caplog.records[-1].getMessage() == f"the venue at {BASE} answers again"
    finally:
        await gw.close()


@pytest.mark.asyncio
@respx.mock(base_url=BASE)
async def test_a_401_on_the_own_api_halts_with_one_line_naming_the_key_variable(
    respx_mock: respx.MockRouter,
    gateway: tuple[HttpGateway, Listener],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The key was revoked while trading: not order after order refused in silence,
    but one log line and a halt (order fault ``venue_auth_failed``)."""
    gw, listener = gateway
    respx_mock.post("/orders").mock(return_value=httpx.Response(401, json={"error": "bad key"}))
    caplog.set_level("ERROR", logger="trading_engine.gateway")
    for i in range(3):
        gw.submit(make_order(f"s-r-{i}"))
    assert await gw.drain()
    assert listener.statuses() == ["rejected"] * 3
    lines = [r.getMessage() for r in caplog.records if "refused the API key" in r.getMessage()]
    assert len(lines) == 1
    assert "EXCHANGE_API_KEY" in lines[0]
    assert [e for e in listener.events if e[0] == "fault"] == [("fault", "*", "venue_auth_failed")]
