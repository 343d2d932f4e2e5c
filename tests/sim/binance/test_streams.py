"""The user data stream: execution reports over the WebSocket API and over listen keys."""

from __future__ import annotations

import time
from decimal import Decimal

import aiohttp
import pytest

from tests.helpers import wait_until
from tests.sim.binance.helpers import (
    API_KEY,
    ED_API_KEY,
    SYMBOL,
    book_prices,
    running,
    signed_params,
    socket,
    venue,
)
from trading_engine.sim.exchange_sim import Faults

pytestmark = pytest.mark.asyncio

#: The documented executionReport fields ("W" only while the order is on the book).
REPORT_FIELDS = {
    "e",
    "E",
    "s",
    "c",
    "S",
    "o",
    "f",
    "q",
    "p",
    "P",
    "F",
    "g",
    "C",
    "x",
    "X",
    "r",
    "i",
    "l",
    "z",
    "L",
    "n",
    "N",
    "T",
    "t",
    "I",
    "w",
    "m",
    "M",
    "O",
    "Z",
    "Y",
    "Q",
    "V",
}


async def test_a_signature_subscription_gets_new_trade_and_canceled_reports() -> None:
    async with venue() as (sim, client), socket(sim) as ws:
        answer = await ws.call("userDataStream.subscribe.signature", signed_params())
        assert (answer["status"], answer["result"]) == (200, {"subscriptionId": 0})
        assert answer["rateLimits"][0]["rateLimitType"] == "REQUEST_WEIGHT"
        bid, ask = book_prices(sim)
        resting = (
            await client.order(
                side="BUY",
                type="LIMIT",
                timeInForce="GTC",
                quantity="0.010",
                price=bid,
                newClientOrderId="r-1",
            )
        ).json()
        [new] = await ws.events(1)
        assert new["subscriptionId"] == 0
        report = new["event"]
        assert set(report) == REPORT_FIELDS | {"W"}
        assert (report["e"], report["x"], report["X"], report["c"], report["i"]) == (
            "executionReport",
            "NEW",
            "NEW",
            "r-1",
            resting["orderId"],
        )
        await client.order(
            side="BUY",
            type="LIMIT",
            timeInForce="IOC",
            quantity="0.010",
            price=ask,
            newClientOrderId="t-1",
        )
        placed, traded = (event["event"] for event in await ws.events(2))
        assert (placed["x"], placed["X"], placed["z"]) == ("NEW", "NEW", "0.00000000")
        assert (traded["x"], traded["X"]) == ("TRADE", "FILLED")
        assert set(traded) == REPORT_FIELDS
        assert (traded["l"], traded["L"], traded["t"], traded["m"]) == (
            "0.01000000",
            f"{Decimal(ask):.8f}",
            1,
            False,
        )
        assert traded["Z"] == f"{Decimal(ask) * Decimal('0.01'):.8f}"
        await client.signed(
            "DELETE",
            "/api/v3/order",
            {"symbol": SYMBOL, "origClientOrderId": "r-1", "newClientOrderId": "c-1"},
        )
        [canceled] = await ws.events(1)
        report = canceled["event"]
        assert (report["x"], report["X"], report["c"], report["C"]) == (
            "CANCELED",
            "CANCELED",
            "c-1",
            "r-1",
        )
        # An order that sweeps two levels: one report per fill, cumulative as of each.
        walk, inst = sim.walks[SYMBOL], sim.instruments[SYMBOL]
        (first_price, first_size), (second_price, _) = sorted(walk.asks.items())[:2]
        sweep = inst.size_decimal(first_size) + Decimal("0.001")
        await client.order(
            side="BUY",
            type="LIMIT",
            timeInForce="GTC",
            quantity=str(sweep),
            price=inst.format_price(second_price),
            newClientOrderId="s-1",
        )
        new, first, second = (event["event"] for event in await ws.events(3))
        assert (new["X"], new["z"]) == ("NEW", "0.00000000")
        assert (first["X"], first["z"], first["L"]) == (
            "PARTIALLY_FILLED",
            f"{inst.size_decimal(first_size):.8f}",
            f"{inst.price_decimal(first_price):.8f}",
        )
        assert (second["X"], second["z"], second["l"]) == (
            "FILLED",
            f"{sweep:.8f}",
            "0.00100000",
        )
        # The venue expires a resting order: EXPIRED.
        await client.order(
            side="BUY",
            type="LIMIT",
            timeInForce="GTC",
            quantity="0.010",
            price=str(Decimal(bid) - 1),
            newClientOrderId="e-1",
        )
        await ws.events(1)
        sim.faults = Faults(expire=1.0)
        sim.step([SYMBOL])
        [expired] = await ws.events(1)
        assert (expired["event"]["x"], expired["event"]["c"]) == ("EXPIRED", "e-1")


async def test_the_websocket_api_checks_keys_signatures_and_sessions() -> None:
    async with running() as sim, socket(sim) as ws:
        assert (await ws.call("ping"))["result"] == {}
        assert (await ws.call("userDataStream.subscribe"))["error"]["code"] == -1002
        bad = signed_params()
        bad["signature"] = "0" * 64
        assert (await ws.call("userDataStream.subscribe.signature", bad))["error"]["code"] == -1022
        stale = signed_params(timestamp=time.time_ns() // 1_000_000 - 10_000)
        refused = await ws.call("userDataStream.subscribe.signature", stale)
        assert (refused["status"], refused["error"]["code"]) == (400, -1021)
        hmac_logon = await ws.call("session.logon", signed_params())
        assert hmac_logon["status"] == 401  # session.logon takes Ed25519 keys only
        logon = await ws.call("session.logon", signed_params(ED_API_KEY, ed25519=True))
        assert logon["result"]["apiKey"] == ED_API_KEY
        assert (await ws.call("userDataStream.subscribe"))["result"] == {"subscriptionId": 0}
        again = await ws.call("userDataStream.subscribe.signature", signed_params())
        assert again["error"]["code"] == -2035  # one subscription per account per connection
        assert (await ws.call("session.subscriptions"))["result"] == [{"subscriptionId": 0}]
        status = await ws.call("session.status")
        assert status["result"]["userDataStream"] is True
        logout = await ws.call("session.logout")
        assert logout["result"]["apiKey"] is None
        terminated = await ws.receive()
        assert terminated["event"]["e"] == "eventStreamTerminated"
        assert (await ws.call("session.subscriptions"))["result"] == []
        assert (await ws.call("order.place", {}))["error"]["code"] == -1020
        await ws.ws.send_str("not json")
        assert (await ws.receive())["error"]["code"] == -1135


async def test_a_listen_key_streams_bare_events_until_it_lapses() -> None:
    async with venue() as (sim, client):
        headers = {"X-MBX-APIKEY": API_KEY}
        created = await client.http.post("/api/v3/userDataStream", headers=headers)
        assert created.headers["X-MBX-USED-WEIGHT-1M"] == "2"
        key = created.json()["listenKey"]
        assert len(key) == 64
        same = await client.http.post("/api/v3/userDataStream", headers=headers)
        assert same.json()["listenKey"] == key  # the account's live key, extended
        nokey = await client.http.post("/api/v3/userDataStream")
        assert (nokey.status_code, nokey.json()["code"]) == (401, -2014)
        async with socket(sim, f"/ws/{key}") as ws:
            bid, _ = book_prices(sim)
            await client.order(
                side="BUY",
                type="LIMIT",
                timeInForce="GTC",
                quantity="0.010",
                price=bid,
                newClientOrderId="k-1",
            )
            report = await ws.receive()
            assert (report["e"], report["c"]) == ("executionReport", "k-1")
            kept = await client.http.put(
                "/api/v3/userDataStream", params={"listenKey": key}, headers=headers
            )
            assert (kept.status_code, kept.json()) == (200, {})
            sim.streams.expire_listen_keys()
            expired = await ws.receive()
            assert (expired["e"], expired["listenKey"]) == ("listenKeyExpired", key)
            closing = await ws.ws.receive(timeout=5)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        lapsed = await client.http.put(
            "/api/v3/userDataStream", params={"listenKey": key}, headers=headers
        )
        assert lapsed.json() == {"code": -1125, "msg": "This listenKey does not exist."}
        fresh = (await client.http.post("/api/v3/userDataStream", headers=headers)).json()
        assert fresh["listenKey"] != key
        closed = await client.http.delete(
            "/api/v3/userDataStream", params={"listenKey": fresh["listenKey"]}, headers=headers
        )
        assert closed.json() == {}
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await session.ws_connect(f"http://127.0.0.1:{sim.port}/ws/{key}")


async def test_a_listen_key_lapses_by_itself_after_its_time_to_live() -> None:
    async with venue(listen_key_ttl_s=0.3) as (sim, client):
        key = (
            await client.http.post("/api/v3/userDataStream", headers={"X-MBX-APIKEY": API_KEY})
        ).json()["listenKey"]
        async with socket(sim, f"/ws/{key}") as ws:
            expired = await ws.receive(within_s=5)
            assert expired["e"] == "listenKeyExpired"
        assert sim.counts["listen_key_expired"] == 1


async def test_the_stream_drop_fault_closes_the_connection_after_an_event() -> None:
    async with venue(faults=Faults(stream_drop=1.0)) as (sim, client), socket(sim) as ws:
        await ws.call("userDataStream.subscribe.signature", signed_params())
        bid, _ = book_prices(sim)
        await client.order(side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.010", price=bid)
        assert (await ws.receive())["event"]["x"] == "NEW"
        closing = await ws.ws.receive(timeout=5)
        assert closing.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.ERROR,
        )
        assert sim.counts["stream_drop"] == 1
        await wait_until(lambda: not sim.streams.connections, what="the connection dropped")
