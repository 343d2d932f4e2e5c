"""The gateway's outcome table through both client paths, against real sockets.

Each test runs twice: ``mode = "httpx"`` (every request on httpx) and
``mode = "fast"`` (the default: an order's first ``POST /orders`` on the
fast path, the rest on httpx). The exchange is a scripted HTTP/1.1 server
on 127.0.0.1 (``tests/io/scripted_exchange.py``), so each path parses the
bytes a venue would send: 200, 4xx, 429, 5xx, no answer (timeout), a
reset, an unreadable body, chunked and interim answers.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import pytest
import pytest_asyncio

from tests.io.scripted_exchange import (
    CLOSE,
    HANG,
    RESET,
    ScriptedExchange,
    chunked,
    order,
    reply,
)
from tests.io.test_gateway import BTC, Listener, make_order
from trading_engine.config import BreakerConfig, GatewayConfig
from trading_engine.core.breaker import BreakerState, CircuitBreaker
from trading_engine.core.orders import OrderStatus
from trading_engine.io.fastpath import FastOrderChannel
from trading_engine.io.gateway import HttpGateway

ORDER = "/orders"
ONE = "/orders/s-r-1"


@dataclass
class Venue:
    exchange: ScriptedExchange
    gw: HttpGateway
    listener: Listener
    mode: str

    def first_sends_took_the_mode(self, count: int) -> None:
        """Each order's first POST went the way the mode says."""
        if self.mode == "fast":
            assert self.gw.fast is not None
            assert self.gw.fast.sent == count


async def make_venue(mode: str, breaker: BreakerConfig | None = None) -> Venue:
    exchange = ScriptedExchange()
    await exchange.start()
    listener = Listener()
    fast = None
    if mode == "fast":
        fast = FastOrderChannel(exchange.url, "secret", connections=2, backoff_s=0.01)
        await fast.start()
    gw = HttpGateway(
        GatewayConfig(
            base_url=exchange.url, timeout_s=0.2, settle_backoff_s=0.001,
            read_backoff_max_s=0.05, fills_poll_s=0.01,
        ),
        listener,
        {"BTC-USD": BTC},
        CircuitBreaker(
            (breaker or BreakerConfig(window_size=4, minimum_calls=2, open_s=60)).settings(),
            clock=lambda: 0,
        ),
        api_key="secret",
        rng=random.Random(1),
        fast=fast,
    )  # fmt: skip
    return Venue(exchange, gw, listener, mode)


@pytest_asyncio.fixture(params=["httpx", "fast"])
async def venue(request: pytest.FixtureRequest) -> AsyncIterator[Venue]:
    made = await make_venue(request.param)
    yield made
    await made.gw.close()
    await made.exchange.close()


def ids(bodies: list[bytes]) -> set[str]:
    return {orjson.loads(body)["client_order_id"] for body in bodies}


# -- POST /orders -------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "answer",
    [
        reply(200, order("filled", "0.500")),
        chunked(200, order("filled", "0.500")),
        chunked(200, order("filled", "0.500"), b"HTTP/1.1 100 Continue\r\n\r\n"),
        reply(200, order("filled", "0.500"), {"Link": "</x>"}),
    ],
    ids=["content-length", "chunked", "continue-then-chunked", "plain-with-link"],
)
async def test_post_200_applies_the_answer(venue: Venue, answer: bytes) -> None:
    venue.exchange.on("POST", ORDER, answer)
    venue.gw.submit(make_order())
    assert await venue.gw.drain()
    assert venue.listener.statuses() == ["filled"]
    assert ("report", "s-r-1", "500", "None") in venue.listener.events
    assert venue.gw.counts["unknown"] == 0
    venue.first_sends_took_the_mode(1)


@pytest.mark.asyncio
@pytest.mark.parametrize("code", [400, 401, 403])
async def test_post_4xx_rejects_and_is_no_breaker_failure(venue: Venue, code: int) -> None:
    venue.exchange.on("POST", ORDER, reply(code, {"error": "no"}))
    for i in range(3):
        venue.gw.submit(make_order(f"s-r-{i}"))
    assert await venue.gw.drain()
    assert venue.listener.statuses() == ["rejected"] * 3
    assert venue.listener.reasons["s-r-0"] == f"{code}: no"
    assert venue.gw.breaker.state is BreakerState.CLOSED
    venue.first_sends_took_the_mode(2)  # two warm connections, both busy: the third on httpx


@pytest.mark.asyncio
async def test_post_429_is_retried_under_the_same_id(venue: Venue) -> None:
    venue.exchange.on(
        "POST", ORDER, reply(429, b"", {"Retry-After": "0"}), reply(200, order("new"))
    )
    venue.gw.submit(make_order())
    assert await venue.gw.drain()
    posts = venue.exchange.calls("POST", ORDER)
    assert len(posts) == 2
    assert posts[0] == posts[1]
    assert venue.listener.statuses() == ["new"]
    assert venue.gw.counts["venue_rate_limited"] == 1
    venue.first_sends_took_the_mode(1)


@pytest.mark.asyncio
@pytest.mark.parametrize("code", [500, 502, 503])
async def test_post_5xx_is_unknown_then_read_back(venue: Venue, code: int) -> None:
    venue.exchange.on("POST", ORDER, reply(code))
    venue.exchange.on("GET", ONE, reply(502), reply(200, order("filled", "0.500")))
    venue.gw.submit(make_order())
    assert await venue.gw.drain()
    assert len(venue.exchange.calls("POST", ORDER)) == 1  # never sent again
    assert len(venue.exchange.calls("GET", ONE)) == 2
    assert venue.listener.statuses() == ["unknown", "filled"]
    assert venue.gw.counts["settled"] == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("nothing", "event"),
    [(HANG, "timeout"), (RESET, "connection_error"), (CLOSE, "connection_error")],
)
async def test_post_without_an_answer_is_unknown_then_resent_after_a_404(
    venue: Venue, nothing: str, event: str
) -> None:
    venue.exchange.on("POST", ORDER, nothing, reply(200, order("new")))
    venue.exchange.on("GET", ONE, reply(404))
    venue.gw.submit(make_order())
    assert await venue.gw.drain(3)
    assert ids(venue.exchange.calls("POST", ORDER)) == {"s-r-1"}
    assert len(venue.exchange.calls("POST", ORDER)) == 2
    assert venue.listener.statuses() == ["unknown", "new"]
    assert venue.gw.counts[event] >= 1
    assert venue.gw.counts["resent"] == 1
    venue.first_sends_took_the_mode(1)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body", [b"<html>oops</html>", b'{"status": "filled", "filled_quantity": 0.5}']
)
async def test_post_200_unreadable_is_unknown_then_read_back(venue: Venue, body: bytes) -> None:
    venue.exchange.on("POST", ORDER, reply(200, body))
    venue.exchange.on("GET", ONE, reply(200, order("filled", "0.500")))
    venue.gw.submit(make_order())
    assert await venue.gw.drain()
    assert len(venue.exchange.calls("POST", ORDER)) == 1
    assert venue.listener.statuses() == ["unknown", "filled"]
    assert ("fault", "s-r-1", "unreadable_answer") in venue.listener.events
    assert venue.gw.counts["unreadable_answer"] == 1


@pytest.mark.asyncio
async def test_post_failures_open_the_breaker(venue: Venue) -> None:
    venue.exchange.on("POST", ORDER, reply(503))
    venue.exchange.on("GET", "/orders/a", reply(200, order("canceled", cid="a")))
    venue.exchange.on("GET", "/orders/b", reply(200, order("canceled", cid="b")))
    venue.gw.submit(make_order("a"))
    venue.gw.submit(make_order("b"))
    assert await venue.gw.drain()
    assert venue.gw.breaker.state is BreakerState.OPEN


# -- a venue the fast path must read, and answers it refuses --------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "answer",
    [
        lambda body: chunked(200, order("filled", "0.500", orjson.loads(body)["client_order_id"])),
        lambda body: chunked(
            200,
            order("filled", "0.500", orjson.loads(body)["client_order_id"]),
            b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n",
        ),
    ],
    ids=["chunked", "early-hints-then-chunked"],
)
async def test_a_healthy_venue_answering_chunked_trades_every_order(
    answer: object, request: pytest.FixtureRequest
) -> None:
    # The default breaker opens at 50% failures over 10 calls: 12 orders in a
    # row must all trade, each read on the path its mode says.
    for mode in ("httpx", "fast"):
        venue = await make_venue(mode, BreakerConfig())
        try:
            venue.exchange.on("POST", ORDER, answer)  # type: ignore[arg-type]
            for i in range(12):
                assert venue.gw.allow()
                venue.gw.submit(make_order(f"s-r-{i}"))
                assert await venue.gw.drain()
            assert venue.listener.statuses() == ["filled"] * 12, mode
            assert venue.gw.counts["unknown"] == 0
            assert venue.gw.breaker.state is BreakerState.CLOSED
            venue.first_sends_took_the_mode(12)
        finally:
            await venue.gw.close()
            await venue.exchange.close()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "refused",
    [
        # Both framings at once: the request-smuggling vector, refused.
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n"
        b"2\r\n{}\r\n0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    ],
    ids=["te-beside-cl", "http-1.0", "gzip-coding"],
)
async def test_an_answer_the_fast_path_refuses_is_unknown_and_no_venue_failure(
    refused: bytes,
) -> None:
    # Fast path only: httpx (h11) reads these answers. The default breaker
    # (50% over at least 10) would open after 10 such "failures".
    venue = await make_venue("fast", BreakerConfig())
    assert venue.gw.fast is not None
    try:
        venue.exchange.on("POST", ORDER, refused, refused, reply(200, order("new")))
        venue.exchange.on("GET", ONE, reply(200, order("new")))
        venue.gw.submit(make_order())
        assert await venue.gw.drain()
        assert venue.gw.fast.sent == 1
        assert venue.listener.statuses() == ["unknown", "new"]  # settled by reading it back
        assert venue.listener.reasons["s-r-1"] is None
        assert venue.gw.counts["unparsed_answer"] == 1
        assert venue.gw.counts["connection_error"] == 0
        assert len(venue.exchange.calls("POST", ORDER)) == 1  # read back, not re-sent
        assert venue.gw.breaker.failure_rate == 0.0  # not recorded at all
        assert venue.gw.breaker._window.maxlen == 20
        assert not venue.gw.breaker._window
        # The refused connection was dropped and replaced.
        assert venue.gw.fast.connect_failures == 1
        for i in range(2, 14):
            venue.exchange.on("GET", f"/orders/s-r-{i}", reply(200, order("new", cid=f"s-r-{i}")))
            venue.gw.submit(make_order(f"s-r-{i}"))
            assert await venue.gw.drain()
        assert venue.gw.breaker.state is BreakerState.CLOSED
        assert venue.gw.counts["unparsed_answer"] >= 2
    finally:
        await venue.gw.close()
        await venue.exchange.close()


@pytest.mark.asyncio
async def test_a_refused_answer_gives_a_half_open_trial_back() -> None:
    venue = await make_venue("fast", BreakerConfig(half_open_calls=1, open_s=1))
    breaker = venue.gw.breaker
    try:
        refused = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n"
        venue.exchange.on("POST", ORDER, refused)
        venue.exchange.on("GET", ONE, reply(200, order("new")))
        breaker._transition(BreakerState.HALF_OPEN)
        assert venue.gw.allow()  # the only trial
        assert not venue.gw.allow()
        venue.gw.submit(make_order())
        assert await venue.gw.drain()
        assert breaker.state is BreakerState.HALF_OPEN  # nothing learned about the venue
        assert venue.gw.allow()  # so the next placement is the trial
    finally:
        await venue.gw.close()
        await venue.exchange.close()


# -- GET /orders/{id} (settlement) ----------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "nothing",
    [
        reply(400, {"error": "bad"}),
        reply(401),
        reply(403),
        reply(500),
        reply(503),
        reply(200, b"<html>oops</html>"),
        reply(200, {"status": "weird", "filled_quantity": "0"}),
        reply(429, b"", {"Retry-After": "0"}),
        HANG,
        RESET,
    ],
    ids=["400", "401", "403", "500", "503", "html", "weird", "429", "timeout", "reset"],
)
async def test_a_read_that_says_nothing_leaves_the_order_unknown(
    venue: Venue, nothing: bytes | str
) -> None:
    venue.exchange.on("POST", ORDER, reply(503))
    venue.exchange.on("GET", ONE, nothing, chunked(200, order("canceled")))
    venue.gw.submit(make_order())
    assert await venue.gw.drain(3)
    assert venue.listener.statuses() == ["unknown", "canceled"]
    assert len(venue.exchange.calls("POST", ORDER)) == 1  # no read answered 404
    assert venue.gw.counts["settled"] == 1
    assert len(venue.exchange.calls("GET", ONE)) == 2


@pytest.mark.asyncio
async def test_a_read_404_resends_under_the_same_id(venue: Venue) -> None:
    venue.exchange.on("POST", ORDER, reply(503), reply(200, order("new")))
    venue.exchange.on("GET", ONE, reply(404))
    venue.gw.breaker = CircuitBreaker(BreakerConfig(minimum_calls=10).settings(), lambda: 0)
    venue.gw.submit(make_order())
    assert await venue.gw.drain()
    assert venue.listener.statuses() == ["unknown", "new"]
    assert ids(venue.exchange.calls("POST", ORDER)) == {"s-r-1"}
    assert venue.gw.counts["resent"] == 1


# -- DELETE /orders/{id} ----------------------------------------------------------------------


def resting() -> object:
    placed = make_order()
    placed.status = OrderStatus.NEW
    return placed


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "answer",
    [reply(200, order("canceled")), chunked(200, order("canceled"))],
    ids=["cl", "chunked"],
)
async def test_cancel_200_applies_the_final_state(venue: Venue, answer: bytes) -> None:
    venue.exchange.on("DELETE", ONE, answer)
    venue.gw.cancel(resting())  # type: ignore[arg-type]
    assert await venue.gw.drain()
    assert venue.listener.statuses() == ["canceled"]


@pytest.mark.asyncio
async def test_cancel_200_unreadable_reads_back(venue: Venue) -> None:
    target = resting()
    venue.listener.orders["s-r-1"] = target  # type: ignore[assignment]
    venue.exchange.on("DELETE", ONE, reply(200, b"<html>"), reply(200, order("canceled")))
    venue.exchange.on("GET", ONE, reply(200, order("new")))
    venue.gw.cancel(target)  # type: ignore[arg-type]
    assert await venue.gw.drain()
    assert ("fault", "s-r-1", "unreadable_answer") in venue.listener.events
    assert len(venue.exchange.calls("GET", ONE)) == 1
    assert venue.listener.statuses()[-1] == "canceled"


@pytest.mark.asyncio
async def test_cancel_404_then_read_404_closes_the_order_locally(venue: Venue) -> None:
    venue.exchange.on("DELETE", ONE, reply(404))
    venue.exchange.on("GET", ONE, reply(404))
    venue.gw.cancel(resting())  # type: ignore[arg-type]
    assert await venue.gw.drain()
    assert venue.listener.statuses() == ["canceled"]
    assert venue.listener.reasons["s-r-1"] == "not_found"
    assert venue.gw.counts["not_found"] == 1


@pytest.mark.asyncio
async def test_cancel_429_pauses_then_cancels(venue: Venue) -> None:
    venue.exchange.on(
        "DELETE", ONE, reply(429, b"", {"Retry-After": "0"}), reply(200, order("canceled"))
    )
    venue.gw.cancel(resting())  # type: ignore[arg-type]
    assert await venue.gw.drain()
    assert venue.listener.statuses() == ["canceled"]
    assert venue.gw.counts["venue_rate_limited"] == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("code", [400, 401, 403, 409])
async def test_cancel_4xx_is_refused_and_read_back_once(venue: Venue, code: int) -> None:
    venue.exchange.on("DELETE", ONE, reply(code))
    venue.exchange.on("GET", ONE, reply(200, order("new")))
    venue.gw.cancel(resting())  # type: ignore[arg-type]
    assert await venue.gw.drain()
    assert len(venue.exchange.calls("DELETE", ONE)) == 1
    assert len(venue.exchange.calls("GET", ONE)) == 1
    assert venue.gw.counts["cancel_refused"] == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("nothing", [reply(500), reply(503), HANG, RESET], ids=str)
async def test_cancel_without_an_answer_is_sent_again(venue: Venue, nothing: bytes | str) -> None:
    venue.exchange.on("DELETE", ONE, nothing, reply(200, order("canceled")))
    venue.gw.cancel(resting())  # type: ignore[arg-type]
    assert await venue.gw.drain(3)
    assert venue.listener.statuses() == ["canceled"]
    assert len(venue.exchange.calls("DELETE", ONE)) == 2
    assert venue.gw.counts["cancel_failed"] == 1


@pytest.mark.asyncio
async def test_a_dated_retry_after_is_measured_against_the_answers_date(venue: Venue) -> None:
    # The venue's clock is years behind the host's: against the host's clock
    # the retry date is long past (no pause); against the answer's Date, 1 s.
    dated = {
        "Date": "Mon, 01 Jan 2001 00:00:00 GMT",
        "Retry-After": "Mon, 01 Jan 2001 00:00:01 GMT",
    }
    venue.exchange.on("POST", ORDER, reply(429, b"", dated), reply(200, order("new")))
    venue.gw.submit(make_order())
    assert await venue.gw.drain(3)
    assert venue.listener.statuses() == ["new"]
    assert venue.gw.scheduler.paused_ns_total == 10**9
    venue.first_sends_took_the_mode(1)
