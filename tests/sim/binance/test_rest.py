"""The simulator's Binance REST API, request by request, with a client written from the docs."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from tests.sim.binance.helpers import (
    API_KEY,
    ED_API_KEY,
    SYMBOL,
    Client,
    FakeClock,
    book_prices,
    venue,
)
from trading_engine.sim.binance import UNKNOWN_STATUS_HTTP, LimitSettings
from trading_engine.sim.exchange_sim import Faults

pytestmark = pytest.mark.asyncio


def below(price: str, ticks: int = 50) -> str:
    return str(Decimal(price) - Decimal("0.01") * ticks)


async def test_public_endpoints_and_their_weights() -> None:
    clock = FakeClock()
    async with venue(clock=clock) as (_sim, client):
        ping = await client.public("/api/v3/ping")
        assert (ping.status_code, ping.json(), ping.headers["X-MBX-USED-WEIGHT-1M"]) == (
            200,
            {},
            "1",
        )
        served = await client.public("/api/v3/time")
        assert served.json() == {"serverTime": clock.now_ms}
        assert served.headers["X-MBX-USED-WEIGHT-1M"] == "2"
        info = await client.public("/api/v3/exchangeInfo", symbol=SYMBOL)
        assert info.headers["X-MBX-USED-WEIGHT-1M"] == "22"
        [entry] = info.json()["symbols"]
        filters = {f["filterType"]: f for f in entry["filters"]}
        assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
        assert filters["LOT_SIZE"]["stepSize"] == "0.00100000"
        assert set(filters) == {
            "PRICE_FILTER",
            "LOT_SIZE",
            "MARKET_LOT_SIZE",
            "NOTIONAL",
            "PERCENT_PRICE_BY_SIDE",
            "MAX_NUM_ORDERS",
        }
        assert (entry["baseAsset"], entry["quoteAsset"]) == ("BTC", "USDT")
        unknown = await client.public("/api/v3/exchangeInfo", symbols='["BTCUSDT","NOPE"]')
        assert (unknown.status_code, unknown.json()["code"]) == (400, -1121)
        # Signed endpoints: 6 for one symbol's open orders, 80 for all, 20 for trades.
        for path, params, weight in (
            ("/api/v3/openOrders", {"symbol": SYMBOL}, 6),
            ("/api/v3/openOrders", {}, 80),
            ("/api/v3/myTrades", {"symbol": SYMBOL}, 20),
            ("/api/v3/myTrades", {"symbol": SYMBOL, "orderId": "1"}, 5),
        ):
            before = int((await client.public("/api/v3/ping")).headers["X-MBX-USED-WEIGHT-1M"])
            answer = await client.signed("GET", path, params)
            assert answer.status_code == 200, answer.text
            assert int(answer.headers["X-MBX-USED-WEIGHT-1M"]) == before + weight


async def test_past_the_weight_limit_429_then_418_for_a_client_that_keeps_going() -> None:
    clock = FakeClock()
    limits = LimitSettings(weight_per_minute=10, ban_after=2, ban_s=300)
    async with venue(clock=clock, limits=limits) as (sim, client):
        for _ in range(10):
            assert (await client.public("/api/v3/ping")).status_code == 200
        over = await client.public("/api/v3/ping")
        assert over.status_code == 429
        assert over.json()["code"] == -1003
        assert over.headers["Retry-After"] == "30"  # the fake clock is 30 s into a minute
        assert (await client.public("/api/v3/ping")).status_code == 429
        banned = await client.public("/api/v3/ping")
        assert banned.status_code == 418
        assert banned.headers["Retry-After"] == "300"
        clock.now_ms += 120_000  # a new minute, still banned
        again = await client.signed("GET", "/api/v3/openOrders", {"symbol": SYMBOL})
        assert (again.status_code, again.headers["Retry-After"]) == (418, "180")
        clock.now_ms += 180_000
        assert (await client.public("/api/v3/ping")).status_code == 200
        assert sim.limiter.counts["bans"] == 1


async def test_orders_carry_the_order_counts_and_past_the_limit_are_429() -> None:
    clock = FakeClock(1_700_000_040_000)
    async with venue(clock=clock, limits=LimitSettings(orders_per_10s=2)) as (sim, client):
        bid, _ = book_prices(sim)
        for count in ("1", "2"):
            placed = await client.order(
                side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.010", price=below(bid)
            )
            assert placed.status_code == 200, placed.text
            assert placed.headers["X-MBX-ORDER-COUNT-10S"] == count
            assert placed.headers["X-MBX-ORDER-COUNT-1D"] == count
        refused = await client.order(
            side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.010", price=below(bid)
        )
        assert (refused.status_code, refused.json()["code"]) == (429, -1015)
        assert refused.headers["Retry-After"] == "10"
        assert len(sim.binance_orders) == 2


async def refused(client: Client, code: int, **params: str) -> str:
    answer = await client.order(**params)
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == code, answer.text
    message: str = answer.json()["msg"]
    return message


async def test_bad_orders_are_refused_with_the_venues_codes() -> None:
    async with venue() as (sim, client):
        bid, ask = book_prices(sim)
        limit = {"side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.010"}
        assert await refused(client, -1013, **limit, price="100.001") == (
            "Filter failure: PRICE_FILTER"
        )
        assert await refused(client, -1013, **{**limit, "quantity": "0.0105"}, price=bid) == (
            "Filter failure: LOT_SIZE"
        )
        assert await refused(client, -1013, **limit, price=str(Decimal(bid) * 6)) == (
            "Filter failure: PERCENT_PRICE_BY_SIDE"
        )
        await refused(client, -1100, **limit, price="1e2")
        await refused(client, -1111, **limit, price="100.000000001")
        await refused(client, -1102, side="BUY", type="LIMIT", quantity="1", price=bid)
        await refused(client, -1115, **{**limit, "timeInForce": "GTD"}, price=bid)
        await refused(client, -1106, side="BUY", type="MARKET", quantity="1", price=bid)
        await refused(client, -1116, side="BUY", type="SPOT", quantity="1")
        await refused(client, -1117, **{**limit, "side": "HOLD"}, price=bid)
        await refused(client, -1104, **limit, price=bid, color="blue")
        assert "Stop loss" in await refused(
            client, -2010, side="BUY", type="STOP_LOSS", quantity="1", stopPrice=bid
        )
        assert (
            await refused(
                client, -2010, side="BUY", type="LIMIT_MAKER", quantity="0.010", price=ask
            )
            == "Order would immediately match and take."
        )
        await refused(client, -1100, **limit, price=bid, newClientOrderId="has space")
        ok = await client.order(**limit, price=below(bid), newClientOrderId="same")
        assert ok.status_code == 200
        assert await refused(client, -2010, **limit, price=bid, newClientOrderId="same") == (
            "Duplicate order sent."
        )
        unknown = await client.signed(
            "POST", "/api/v3/order", {"symbol": "NOPE", **limit, "price": bid}
        )
        assert unknown.json()["code"] == -1121
        assert list(sim.binance_orders) == [1]


async def test_max_num_orders_and_notional_filters() -> None:
    from trading_engine.sim.binance import SymbolSettings

    settings = {SYMBOL: SymbolSettings(min_notional="5")}
    async with venue(max_num_orders=2, symbols=settings) as (sim, client):
        bid, _ = book_prices(sim)
        order = {"side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "price": below(bid)}
        assert await refused(client, -1013, **order, quantity="0.010") == (
            "Filter failure: NOTIONAL"
        )
        for _ in range(2):
            assert (await client.order(**order, quantity="1.000")).status_code == 200
        assert await refused(client, -1013, **order, quantity="1.000") == (
            "Filter failure: MAX_NUM_ORDERS"
        )


async def test_answer_types_and_the_time_in_force_rules() -> None:
    async with venue() as (sim, client):
        bid, ask = book_prices(sim)
        ack = await client.order(
            side="BUY",
            type="LIMIT",
            timeInForce="GTC",
            quantity="0.010",
            price=below(bid),
            newOrderRespType="ACK",
        )
        assert set(ack.json()) == {
            "symbol",
            "orderId",
            "orderListId",
            "clientOrderId",
            "transactTime",
        }
        assert len(ack.json()["clientOrderId"]) == 22  # made up by the venue
        result = await client.order(
            side="BUY",
            type="LIMIT",
            timeInForce="GTC",
            quantity="0.010",
            price=below(bid),
            newOrderRespType="RESULT",
        )
        assert "fills" not in result.json()
        assert result.json()["status"] == "NEW"
        # Fill-or-kill more than the book shows: EXPIRED, nothing filled.
        killed = await client.order(
            side="BUY", type="LIMIT", timeInForce="FOK", quantity="1000.000", price=ask
        )
        assert (killed.json()["status"], killed.json()["executedQty"]) == (
            "EXPIRED",
            "0.00000000",
        )
        # IOC: what crosses fills, the rest expires.
        walk = sim.walks[SYMBOL]
        best_size = sim.instruments[SYMBOL].format_size(walk.asks[walk.best_ask])
        ioc = await client.order(
            side="BUY",
            type="LIMIT",
            timeInForce="IOC",
            quantity=str(Decimal(best_size) + 1),
            price=ask,
        )
        body = ioc.json()
        assert body["status"] == "EXPIRED"
        assert Decimal(body["executedQty"]) == Decimal(best_size)
        assert [f["qty"] for f in body["fills"]] == [f"{Decimal(best_size):.8f}"]
        market = await client.order(side="SELL", type="MARKET", quantity="0.003")
        assert (market.json()["status"], market.json()["timeInForce"]) == ("FILLED", "GTC")


async def test_query_and_cancel_by_either_id_and_the_cancel_restrictions() -> None:
    async with venue() as (sim, client):
        bid, _ = book_prices(sim)
        placed = (
            await client.order(
                side="SELL",
                type="LIMIT",
                timeInForce="GTC",
                quantity="0.010",
                price=str(Decimal(bid) * 2),
                newClientOrderId="mine-1",
            )
        ).json()
        order_id = str(placed["orderId"])
        for params in (
            {"orderId": order_id},
            {"origClientOrderId": "mine-1"},
            {"orderId": order_id, "origClientOrderId": "mine-1"},
        ):
            got = await client.signed("GET", "/api/v3/order", {"symbol": SYMBOL, **params})
            assert got.json()["orderId"] == placed["orderId"], got.text
        mismatch = await client.signed(
            "GET",
            "/api/v3/order",
            {"symbol": SYMBOL, "orderId": order_id, "origClientOrderId": "other"},
        )
        assert mismatch.json()["code"] == -2013
        neither = await client.signed("GET", "/api/v3/order", {"symbol": SYMBOL})
        assert neither.json()["code"] == -1102
        restricted = await client.signed(
            "DELETE",
            "/api/v3/order",
            {
                "symbol": SYMBOL,
                "orderId": order_id,
                "cancelRestrictions": "ONLY_PARTIALLY_FILLED",
            },
        )
        assert (restricted.status_code, restricted.json()["code"]) == (400, -2011)
        canceled = await client.signed(
            "DELETE",
            "/api/v3/order",
            {"symbol": SYMBOL, "origClientOrderId": "mine-1", "newClientOrderId": "stop-1"},
        )
        assert canceled.json()["status"] == "CANCELED"
        assert (canceled.json()["clientOrderId"], canceled.json()["origClientOrderId"]) == (
            "stop-1",
            "mine-1",
        )
        again = await client.signed(
            "DELETE", "/api/v3/order", {"symbol": SYMBOL, "orderId": order_id}
        )
        assert (again.status_code, again.json()) == (
            400,
            {"code": -2011, "msg": "Unknown order sent."},
        )
        # The id is free again once the order is closed: a new order, a new orderId.
        reused = await client.order(
            side="SELL",
            type="LIMIT",
            timeInForce="GTC",
            quantity="0.010",
            price=str(Decimal(bid) * 2),
            newClientOrderId="mine-1",
        )
        assert reused.json()["orderId"] == placed["orderId"] + 1
        latest = await client.signed(
            "GET", "/api/v3/order", {"symbol": SYMBOL, "origClientOrderId": "mine-1"}
        )
        assert latest.json()["status"] == "NEW"
        # Body parameters and query parameters mixed, signed as sent.
        mixed = await client.signed(
            "DELETE", "/api/v3/openOrders", {"symbol": SYMBOL}, in_body=True
        )
        assert [o["status"] for o in mixed.json()] == ["CANCELED"]


async def test_signatures_timing_and_keys_over_http() -> None:
    clock = FakeClock()
    async with venue(clock=clock) as (_sim, client):
        path, params = "/api/v3/openOrders", {"symbol": SYMBOL}
        assert (
            await client.signed("GET", path, params, ed25519=True, api_key=ED_API_KEY)
        ).status_code == 200
        bad = await client.signed("GET", path, params, secret="wrong")
        assert (bad.status_code, bad.json()) == (
            400,
            {"code": -1022, "msg": "Signature for this request is not valid."},
        )
        stale = await client.signed("GET", path, params, timestamp=clock.now_ms - 5001)
        assert (stale.status_code, stale.json()["code"]) == (400, -1021)
        unknown = await client.signed("GET", path, params, api_key="X" * 64)
        assert (unknown.status_code, unknown.json()["code"]) == (401, -2015)
        malformed = await client.signed("GET", path, params, api_key="not a key")
        assert (malformed.status_code, malformed.json()["code"]) == (401, -2014)
        unsigned = await client.http.get(
            path, params={**params, "timestamp": "1"}, headers={"X-MBX-APIKEY": API_KEY}
        )
        assert unsigned.json()["code"] == -1102


async def test_order_faults_answer_as_the_venue_would() -> None:
    clock = FakeClock()
    async with venue(clock=clock) as (sim, client):
        bid, _ = book_prices(sim)
        resting = {
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.010",
            "price": below(bid),
        }
        sim.faults = Faults(fail_before=1.0)
        before = await client.order(**resting, newClientOrderId="f-1")
        assert (before.status_code, before.json()["code"]) == (503, -1008)
        assert sim.binance_orders == {}
        sim.faults = Faults(fail_after=1.0)
        after = await client.order(**resting, newClientOrderId="f-2")
        assert (after.status_code, after.json()["code"]) == (500, -1001)
        sim.faults = Faults(unknown_status=1.0)
        unknown = await client.order(**resting, newClientOrderId="f-3")
        assert (unknown.status_code, unknown.json()["code"]) == (UNKNOWN_STATUS_HTTP, -1007)
        assert "execution status unknown" in unknown.json()["msg"]
        sim.faults = Faults()
        # Both were taken: reading them back finds them.
        for client_id in ("f-2", "f-3"):
            got = await client.signed(
                "GET", "/api/v3/order", {"symbol": SYMBOL, "origClientOrderId": client_id}
            )
            assert got.json()["status"] == "NEW", got.text
        sim.faults = Faults(rate_limit=1.0, retry_after_s=3)
        limited = await client.order(**resting, newClientOrderId="f-4")
        assert (limited.status_code, limited.headers["Retry-After"]) == (429, "3")
        clock.now_ms += 3000  # a client that waits out the Retry-After is not banned
        sim.faults = Faults(forget=1.0)
        forgotten = await client.order(**resting, newClientOrderId="f-5")
        assert forgotten.json()["status"] == "NEW"
        sim.faults = Faults()
        lost = await client.signed(
            "GET", "/api/v3/order", {"symbol": SYMBOL, "origClientOrderId": "f-5"}
        )
        assert lost.json() == {"code": -2013, "msg": "Order does not exist."}
        cancel = await client.signed(
            "DELETE", "/api/v3/order", {"symbol": SYMBOL, "origClientOrderId": "f-5"}
        )
        assert cancel.json()["code"] == -2011
        listed = await client.signed("GET", "/api/v3/openOrders", {"symbol": SYMBOL})
        assert {o["clientOrderId"] for o in listed.json()} == {"f-2", "f-3"}
        sim.faults = Faults(read_rate_limit=1.0)
        read = await client.signed("GET", "/api/v3/myTrades", {"symbol": SYMBOL})
        assert (read.status_code, read.json()["code"]) == (429, -1003)


async def test_the_venue_expires_resting_orders_on_the_expire_fault() -> None:
    async with venue() as (sim, client):
        bid, _ = book_prices(sim)
        await client.order(
            side="BUY",
            type="LIMIT",
            timeInForce="GTC",
            quantity="0.010",
            price=below(bid, 500),
            newClientOrderId="x-1",
        )
        sim.faults = Faults(expire=1.0)
        sim.step([SYMBOL])
        got = await client.signed(
            "GET", "/api/v3/order", {"symbol": SYMBOL, "origClientOrderId": "x-1"}
        )
        assert got.json()["status"] == "EXPIRED"
        assert sim.matching.resting == {}
        assert sim.counts["expired"] == 1


async def test_self_trade_prevention_expires_in_match() -> None:
    async with venue(stp_mode="EXPIRE_TAKER") as (sim, client):
        bid, ask = book_prices(sim)
        mid = str(Decimal(bid) + Decimal("0.01"))
        maker = await client.order(
            side="SELL",
            type="LIMIT",
            timeInForce="GTC",
            quantity="0.010",
            price=ask,
            newClientOrderId="m",
        )
        assert maker.json()["status"] == "NEW" or maker.json()["status"] == "FILLED"
        resting_sell = await client.order(
            side="SELL",
            type="LIMIT_MAKER",
            quantity="0.010",
            price=str(Decimal(ask) + 1),
            newClientOrderId="s",
        )
        assert resting_sell.status_code == 200
        taker = await client.order(
            side="BUY",
            type="LIMIT",
            timeInForce="GTC",
            quantity="0.010",
            price=str(Decimal(ask) + 1),
            newClientOrderId="t",
        )
        body = taker.json()
        assert body["status"] == "EXPIRED_IN_MATCH"
        assert (body["executedQty"], body["preventedQuantity"]) == ("0.00000000", "0.01000000")
        assert mid  # the own sell stays on the book
        kept = await client.signed(
            "GET", "/api/v3/order", {"symbol": SYMBOL, "origClientOrderId": "s"}
        )
        assert kept.json()["status"] == "NEW"
        maker_mode = await client.order(
            side="BUY",
            type="LIMIT",
            timeInForce="GTC",
            quantity="0.010",
            price=str(Decimal(ask) + 1),
            selfTradePreventionMode="EXPIRE_MAKER",
        )
        assert maker_mode.json()["status"] != "EXPIRED_IN_MATCH"
        gone = await client.signed(
            "GET", "/api/v3/order", {"symbol": SYMBOL, "origClientOrderId": "s"}
        )
        assert gone.json()["status"] == "EXPIRED_IN_MATCH"


async def test_my_trades_pages_by_from_id_and_a_reset_starts_the_ids_again() -> None:
    async with venue() as (sim, client):
        for _ in range(3):
            assert (await client.order(side="BUY", type="MARKET", quantity="0.001")).json()[
                "status"
            ] == "FILLED"
        every = (await client.signed("GET", "/api/v3/myTrades", {"symbol": SYMBOL})).json()
        assert [t["id"] for t in every] == [1, 2, 3]
        page = await client.signed(
            "GET", "/api/v3/myTrades", {"symbol": SYMBOL, "fromId": "2", "limit": "1"}
        )
        assert [t["id"] for t in page.json()] == [2]
        latest = await client.signed("GET", "/api/v3/myTrades", {"symbol": SYMBOL, "limit": "2"})
        assert [t["id"] for t in latest.json()] == [2, 3]
        bad = await client.signed(
            "GET", "/api/v3/myTrades", {"symbol": SYMBOL, "fromId": "1", "startTime": "1"}
        )
        assert bad.json()["code"] == -1128
        sim.reset_account()
        assert (await client.signed("GET", "/api/v3/myTrades", {"symbol": SYMBOL})).json() == []
        await client.order(side="BUY", type="MARKET", quantity="0.001")
        again = (await client.signed("GET", "/api/v3/myTrades", {"symbol": SYMBOL})).json()
        assert [(t["id"], t["orderId"]) for t in again] == [(1, 1)]


async def test_connection_faults_drop_the_answer_after_the_order_was_taken() -> None:
    async with venue() as (sim, client):
        bid, _ = book_prices(sim)
        sim.faults = Faults(reset=1.0)
        with pytest.raises(httpx.TransportError):
            await client.order(
                side="BUY",
                type="LIMIT",
                timeInForce="GTC",
                quantity="0.010",
                price=below(bid),
                newClientOrderId="r-1",
            )
        sim.faults = Faults()
        got = await client.signed(
            "GET", "/api/v3/order", {"symbol": SYMBOL, "origClientOrderId": "r-1"}
        )
        assert got.json()["status"] == "NEW"  # taken, though the answer was lost


async def test_accept_close_closes_new_connections_before_any_request() -> None:
    async with venue(faults=Faults(accept_close=1.0)) as (sim, client):
        with pytest.raises(httpx.TransportError):
            await client.public("/api/v3/ping")
        assert sim.counts["accept_close"] >= 1


async def test_latency_counts_against_the_receive_window() -> None:
    async with venue(faults=Faults(latency_s=0.2)) as (_sim, client):
        late = await client.signed(
            "GET", "/api/v3/openOrders", {"symbol": SYMBOL, "recvWindow": "100"}
        )
        assert late.json()["code"] == -1021
        on_time = await client.signed(
            "GET", "/api/v3/openOrders", {"symbol": SYMBOL, "recvWindow": "5000"}
        )
        assert on_time.status_code == 200
