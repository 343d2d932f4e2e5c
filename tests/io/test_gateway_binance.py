"""The gateway on Binance spot's dialect, against the simulator's Binance dialect.

Every test runs the simulator in-process on 127.0.0.1 (a free port) with
signature checks, weights and its fault flags, and the gateway speaks to it
through :class:`~trading_engine.venues.binance.order_api.BinanceOrderDialect`
over the fast path and over httpx.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from tests.helpers import wait_until
from tests.io.test_gateway import Listener
from tests.sim.binance.helpers import (
    API_KEY,
    ED_API_KEY,
    SECRET,
    SYMBOL,
    Client,
    FakeClock,
    book_prices,
    ed_private_pem,
    keys,
)
from trading_engine import Instrument
from trading_engine.config import BreakerConfig, GatewayConfig
from trading_engine.core.breaker import CircuitBreaker
from trading_engine.core.errors import ConfigError
from trading_engine.core.orders import POST_ONLY_REJECTED, Order, OrderStatus, OrderType
from trading_engine.core.orders import TimeInForce as TIF
from trading_engine.core.protocol import Side
from trading_engine.core.reports import FillReport, OrderReport
from trading_engine.io.fastpath import FastOrderChannel
from trading_engine.io.gateway import HttpGateway
from trading_engine.io.journal import Journal, VenueIdentity
from trading_engine.sim.binance import BinanceSimulator, LimitSettings
from trading_engine.sim.binance.rules import SymbolSettings
from trading_engine.sim.exchange_sim import Faults
from trading_engine.venues.binance import BinanceSpotCodec, Ed25519Signer, HmacSha256Signer
from trading_engine.venues.binance.clock import VenueClock
from trading_engine.venues.binance.order_api import BinanceOrderDialect

pytestmark = pytest.mark.asyncio

S = OrderStatus
INSTRUMENT = Instrument(SYMBOL, "0.01", "0.001")
PATHS = ["fast", "httpx"]


@asynccontextmanager
async def simulator(
    faults: Faults | None = None, **settings: object
) -> AsyncIterator[BinanceSimulator]:
    sim = BinanceSimulator([INSTRUMENT], keys=keys(), port=0, seed=3, faults=faults, **settings)  # type: ignore[arg-type]
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@asynccontextmanager
async def gateway(
    sim: BinanceSimulator,
    path: str = "httpx",
    *,
    secret: str = SECRET,
    ed25519: bool = False,
    wall_clock: Callable[[], float] = time.time,
    rules: bool = True,
    instruments: dict[str, Instrument] | None = None,
    quote_assets: dict[str, str] | None = None,
    **settings: object,
) -> AsyncIterator[tuple[HttpGateway, Listener]]:
    listener = Listener()
    base = f"http://127.0.0.1:{sim.port}"
    key = ED_API_KEY if ed25519 else API_KEY
    signer = Ed25519Signer(ed_private_pem()) if ed25519 else HmacSha256Signer(secret)
    instruments = instruments or {SYMBOL: INSTRUMENT}
    codec = BinanceSpotCodec(key, signer, instruments, quote_assets=quote_assets)
    clock = VenueClock(None, samples=2, wall_ns=lambda: int(wall_clock() * 1e9))
    dialect = BinanceOrderDialect(codec, key, clock=clock)
    fast = None
    if path == "fast":
        fast = FastOrderChannel(
            base, key, 1, target=dialect.fast_target, headers=dialect.fast_headers
        )
    options: dict[str, object] = {
        "base_url": base, "venue": "binance", "timeout_s": 0.5, "settle_backoff_s": 0.01,
        "read_backoff_max_s": 0.05, "fills_poll_s": 0.05, "max_requests_per_s": 200,
        "api_secret_env": "BINANCE_SECRET", **settings,
    }  # fmt: skip
    breaker = CircuitBreaker(
        BreakerConfig(window_size=50, minimum_calls=50, open_s=60).settings(), clock=lambda: 0
    )
    gw = HttpGateway(
        GatewayConfig.model_validate(options),
        listener,
        instruments,
        breaker,
        api_key=key,
        wall_clock=wall_clock,
        rng=random.Random(1),
        fast=fast,
        dialect=dialect,
    )
    listener.attach(gw)
    if fast is not None:
        await fast.start()
    try:
        if rules:
            await gw.load_rules()  # what the engine's start-up reconciliation reads first
        yield gw, listener
    finally:
        await gw.close()


def order(
    cid: str, side: Side, price: str, *, tif: TIF = TIF.GTC, post_only: bool = False
) -> Order:
    made = Order(cid, "s", SYMBOL, side, OrderType.LIMIT, 10, INSTRUMENT.price_to_ticks(price), tif)
    made.post_only = post_only
    return made


def below(price: str, ticks: int = 50) -> str:
    return INSTRUMENT.format_price(INSTRUMENT.price_to_ticks(price) - ticks)


async def placed(gw: HttpGateway, listener: Listener, made: Order) -> OrderStatus:
    """Submit ``made`` and wait until no request of the gateway is in flight for it."""
    listener.orders[made.client_order_id] = made
    assert gw.submit(made) is None
    await wait_until(lambda: gw.orders_in_flight == 0 and made.status is not S.PENDING_NEW, 10)
    return made.status


@pytest.mark.parametrize("path", PATHS)
async def test_the_outcome_table_on_binance(path: str) -> None:
    """Accepted, filled, refused with the venue's reason, post-only, and a cancel."""
    async with simulator() as sim, gateway(sim, path) as (gw, listener):
        bid, ask = book_prices(sim)
        taker = order("t-1", Side.BUY, ask, tif=TIF.IOC)
        assert await placed(gw, listener, taker) in (S.FILLED, S.PARTIALLY_FILLED, S.CANCELED)
        assert taker.reported == 10
        assert taker.feed_filled == 10
        # The FULL answer lists the fills: the ledger has them at once.
        assert any(e[0] == "fill" and e[1] == "t-1" for e in listener.events)
        resting = order("r-1", Side.BUY, below(bid))
        assert await placed(gw, listener, resting) is S.NEW
        assert sim.binance_orders[int(resting_id(listener, "r-1"))].client_order_id == "r-1"
        maker = order("m-1", Side.BUY, ask, post_only=True)
        assert await placed(gw, listener, maker) is S.REJECTED
        assert listener.reasons["m-1"] == POST_ONLY_REJECTED
        gw.cancel(resting)
        await wait_until(lambda: resting.status is S.CANCELED, 10)
        assert gw.counts["rejected"] == 1
        if path == "fast":
            assert gw.fast is not None
            assert gw.fast.sent >= 3


def resting_id(listener: Listener, cid: str) -> str:
    return next(e[2] for e in listener.events if e[0] == "accepted" and e[1] == cid)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("fault", "event"),
    [
        (Faults(fail_before=1.0), "resent"),  # 503 -1008: never taken, read back, sent again
        (Faults(fail_after=1.0), "settled"),  # 500 -1001: taken, read back
        (Faults(unknown_status=1.0), "settled"),  # 408 -1007 "execution status unknown"
    ],
)
async def test_unknown_outcomes_are_settled_by_reading_back(
    path: str, fault: Faults, event: str
) -> None:
    async with simulator() as sim, gateway(sim, path) as (gw, listener):
        bid, _ = book_prices(sim)
        made = order("u-1", Side.BUY, below(bid))
        listener.orders["u-1"] = made
        sim.faults = fault
        assert gw.submit(made) is None
        await wait_until(lambda: gw.counts["unknown"] == 1, 10)
        sim.faults = Faults()
        await wait_until(lambda: gw.orders_in_flight == 0, 10)
        assert made.status is S.NEW
        assert gw.counts[event] == 1
        # One order on the venue under that client order id, whatever was sent.
        assert [o.client_order_id for o in sim.binance_orders.values()] == ["u-1"]


@pytest.mark.parametrize("path", PATHS)
async def test_a_429_pauses_the_venue_and_the_order_is_sent_again(path: str) -> None:
    async with simulator() as sim, gateway(sim, path) as (gw, listener):
        bid, _ = book_prices(sim)
        made = order("l-1", Side.BUY, below(bid))
        listener.orders["l-1"] = made
        sim.faults = Faults(rate_limit=1.0, retry_after_s=1)
        assert gw.submit(made) is None
        await wait_until(lambda: gw.counts["venue_rate_limited"] == 1, 10)
        sim.faults = Faults()
        await wait_until(lambda: made.status is S.NEW, 10)
        assert gw.scheduler.paused_ns_total >= 0.9e9


async def test_a_cancel_of_an_order_the_venue_denies_is_read_back_before_it_is_closed() -> None:
    async with simulator() as sim, gateway(sim) as (gw, listener):
        bid, _ = book_prices(sim)
        sim.faults = Faults(forget=1.0)
        made = order("f-1", Side.BUY, below(bid))
        assert await placed(gw, listener, made) is S.NEW
        sim.faults = Faults()
        log_before = len(sim.request_log)
        gw.cancel(made)
        await wait_until(lambda: made.status is S.CANCELED, 10)
        assert listener.reasons["f-1"] == "not_found"
        assert ("fault", "f-1", "not_found") in listener.events
        # DELETE answered -2011, then GET answered -2013: only then closed.
        methods = [(m, p) for _, m, p in list(sim.request_log)[log_before:]]
        assert methods[:2] == [("DELETE", "/api/v3/order"), ("GET", "/api/v3/order")]


async def test_a_wrong_secret_at_start_up_stops_it_at_once_naming_both_variables() -> None:
    """Start-up reconciliation's first signed read refused ``-1022``: ``ConfigError``
    (exit 2) naming the key's and the secret's variables, never retried."""
    async with simulator() as sim, gateway(sim, secret="not-the-secret", rules=False) as (gw, _):
        with pytest.raises(ConfigError) as refused:
            await gw.open_orders()
        (problem,) = refused.value.problems
        assert problem.startswith("gateway.api_key_env: the venue refuses GET /api/v3/openOrders")
        assert "binance -1022" in problem
        assert problem.endswith("check EXCHANGE_API_KEY, BINANCE_SECRET")
        assert "not-the-secret" not in problem
        reads = [p for _, m, p in sim.request_log if p == "/api/v3/openOrders"]
        assert reads == ["/api/v3/openOrders"]  # once: no retry


async def test_a_403_at_start_up_is_binances_waf_and_is_retried_not_a_key_refusal() -> None:
    """Binance answers 403 when its web application firewall refuses a request: it
    passes, so start-up retries (``ConnectionError``) rather than stopping."""

    def waf(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v3/time":
            return httpx.Response(200, json={"serverTime": int(time.time() * 1000)})
        return httpx.Response(403, text="<html>403 Forbidden</html>")

    gw = mocked_gateway(waf)
    try:
        with pytest.raises(ConnectionError, match="403"):
            await gw.open_orders()
        assert gw.counts["auth_failed"] == 0
    finally:
        await gw.close()


async def test_a_key_refusal_whose_message_spans_lines_is_still_one_line() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v3/time":
            return httpx.Response(200, json={"serverTime": int(time.time() * 1000)})
        return httpx.Response(401, json={"code": -2015, "msg": "a\nb\r\nc\td"})

    gw = mocked_gateway(refuse)
    try:
        with pytest.raises(ConfigError) as refused:
            await gw.open_orders()
        (problem,) = refused.value.problems
        assert "\n" not in problem
        assert "\r" not in problem
        assert "a b c d" in problem
    finally:
        await gw.close()


async def test_a_bans_http_date_retry_after_is_measured_against_the_answers_date() -> None:
    """Both stamped by the venue's clock: a host clock an hour off changes nothing."""
    from email.utils import formatdate

    venue_now = time.time() - 3600  # the venue's clock, an hour behind this host's

    def banned(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v3/time":
            return httpx.Response(200, json={"serverTime": int(time.time() * 1000)})
        return httpx.Response(
            418,
            json={"code": -1003, "msg": "Way too much request weight used."},
            headers={
                "Date": formatdate(venue_now, usegmt=True),
                "Retry-After": formatdate(venue_now + 120, usegmt=True),
            },
        )

    gw = mocked_gateway(banned)
    try:
        with pytest.raises(ConnectionError):
            await gw.open_orders()
        assert gw.banned_until is not None
        assert gw.banned_until - time.time() == pytest.approx(120, abs=2)
    finally:
        await gw.close()


def mocked_gateway(handler: Callable[[httpx.Request], httpx.Response]) -> HttpGateway:
    """A Binance-dialect gateway whose every request ``handler`` answers."""
    return HttpGateway(
        GatewayConfig.model_validate({"base_url": "https://api.binance.com", "venue": "binance",
                                      "api_secret_env": "BINANCE_SECRET"}),
        Listener(), {SYMBOL: INSTRUMENT},
        CircuitBreaker(BreakerConfig().settings(), clock=lambda: 0),
        api_key=API_KEY, transport=httpx.MockTransport(handler),
        dialect=BinanceOrderDialect(BinanceSpotCodec(API_KEY, HmacSha256Signer(SECRET),
                                                     {SYMBOL: INSTRUMENT}), API_KEY,
                                    clock=VenueClock(None, samples=1)),
    )  # fmt: skip


async def test_a_wrong_secret_is_one_log_line_and_a_halt_not_a_retry_storm(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with simulator() as sim, gateway(sim, secret="not-the-secret") as (gw, listener):
        bid, _ = book_prices(sim)
        caplog.set_level(logging.ERROR, logger="trading_engine.gateway")
        for i in range(3):
            made = order(f"k-{i}", Side.BUY, below(bid))
            assert await placed(gw, listener, made) is S.REJECTED
            assert listener.reasons[f"k-{i}"].startswith("binance -1022")
        lines = [r for r in caplog.records if "refused the API key" in r.getMessage()]
        assert len(lines) == 1
        assert "BINANCE_SECRET" in lines[0].getMessage()
        assert "not-the-secret" not in caplog.text
        assert [e for e in listener.events if e[0] == "fault"] == [
            ("fault", "*", "venue_auth_failed")
        ]
        assert gw.counts["auth_failed"] == 3
        # Each order was sent once: no retries.
        posts = [p for _, m, p in sim.request_log if m == "POST"]
        assert len(posts) == 3


async def test_a_ban_halts_and_its_end_is_in_the_status() -> None:
    async with simulator() as sim, gateway(sim) as (gw, listener):
        bid, _ = book_prices(sim)
        until_ms = sim.now_ms() + 120_000
        sim.limiter.banned_until_ms = until_ms
        made = order("b-1", Side.BUY, below(bid))
        assert await placed(gw, listener, made) is S.REJECTED
        assert ("fault", "*", "venue_banned") in listener.events
        assert gw.banned_until == pytest.approx(until_ms / 1000, abs=1)
        status = gw.venue_status()
        assert status["ban_until"] == time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(until_ms // 1000)
        )
        # Every request class waits for the ban's end.
        assert gw.scheduler.paused()


@pytest.mark.parametrize("path", PATHS)
async def test_a_timestamp_outside_the_window_resyncs_and_sends_the_same_id_once_more(
    path: str,
) -> None:
    async with simulator() as sim, gateway(sim, path) as (gw, listener):
        await gw.check_clock()
        assert gw.clock_offset_ms is not None
        assert abs(gw.clock_offset_ms) < 1000
        sim.clock_skew_ms = 30_000  # the venue's clock jumps: our timestamps are now late
        bid, _ = book_prices(sim)
        made = order("c-1", Side.BUY, below(bid))
        assert await placed(gw, listener, made) is S.NEW
        assert gw.counts["clock_skew"] == 1
        assert abs(gw.clock_offset_ms - 30_000) < 1000
        assert [o.client_order_id for o in sim.binance_orders.values()] == ["c-1"]


async def test_start_refuses_a_venue_clock_beyond_the_receive_window() -> None:
    async with simulator(clock_skew_ms=-9_000) as sim, gateway(sim, rules=False) as (gw, _):
        with pytest.raises(
            ConfigError,
            match=r"recv_window_ms: .* [89]\d\d\d ms ahead of .* 5000 ms receive window",
        ):
            await gw.open_orders()
        assert gw.counts["clock_refused"] == 1


async def test_fills_are_read_per_symbol_from_the_trade_cursor_and_name_their_orders() -> None:
    async with simulator() as sim:
        _, ask = book_prices(sim)
        # An order this gateway never saw (placed by another client of the account).
        other = Client(sim)
        try:
            answer = await other.order(
                side="BUY", type="LIMIT", timeInForce="IOC", quantity="0.010", price=ask,
                newClientOrderId="elsewhere-1",
            )  # fmt: skip
            assert answer.status_code == 200, answer.text
        finally:
            await other.aclose()
        trades = sim.trades[SYMBOL]
        assert trades
        async with gateway(sim) as (gw, listener):
            assert await gw.poll_fills() == len(trades)
            named = {e[1] for e in listener.events if e[0] == "fill"}
            assert named == {"elsewhere-1"}  # read back by orderId to name it
            assert gw.fills_cursors == {SYMBOL: trades[-1].id}
            assert await gw.poll_fills() == 0  # from the cursor on: nothing new
            # Reconciliation reads the same fills as the own API's documents.
            documents = await gw.fills(0)
            assert {d["client_order_id"] for d in documents} == {"elsewhere-1"}
            assert all(d["symbol"] == SYMBOL and d["side"] == "buy" for d in documents)


async def test_reconciliation_reads_orders_in_the_own_apis_shape() -> None:
    async with simulator() as sim, gateway(sim) as (gw, listener):
        bid, _ = book_prices(sim)
        made = order("o-1", Side.BUY, below(bid))
        assert await placed(gw, listener, made) is S.NEW
        listed = await gw.open_orders()
        assert [(d["client_order_id"], d["status"], d["side"], d["type"]) for d in listed] == [
            ("o-1", "new", "buy", "limit")
        ]
        read = await gw.read_order("o-1")
        assert read is not None
        assert read["price"] == below(bid)
        assert await gw.read_order("never-sent") is None
        canceled = await gw.cancel_order("o-1")
        assert canceled is not None
        assert canceled["status"] == "canceled"


async def test_the_venues_used_weight_defers_polls_near_its_limit() -> None:
    async with simulator() as sim, gateway(sim) as (gw, _):
        gw.dialect.weight_limit_1m = 100  # type: ignore[attr-defined]
        await gw.poll_fills()
        assert gw.used_weight_share is not None
        assert gw.used_weight_share > 0
        for _ in range(4):  # myTrades weighs 20
            await gw.poll_fills()
        assert gw.used_weight_share >= 0.8
        assert gw.counts["weight_tight"] >= 1
        assert gw.venue_status()["used_weight_share"] == round(gw.used_weight_share, 4)
        gw.start()
        await wait_until(lambda: gw.counts["poll_deferred"] >= 1, 10)


@pytest.mark.parametrize("path", PATHS)
async def test_an_ed25519_key_signs_orders_reads_and_cancels(path: str) -> None:
    async with simulator() as sim, gateway(sim, path, ed25519=True) as (gw, listener):
        bid, _ = book_prices(sim)
        made = order("e-1", Side.BUY, below(bid))
        assert await placed(gw, listener, made) is S.NEW
        assert await gw.read_order("e-1") is not None
        gw.cancel(made)
        await wait_until(lambda: made.status is S.CANCELED, 10)


async def test_an_order_binance_cannot_express_is_refused_now_and_never_sent() -> None:
    async with simulator() as sim, gateway(sim) as (gw, _listener):
        bid, _ = book_prices(sim)
        made = order("has.a.dot", Side.BUY, below(bid))
        reason = gw.submit(made)
        assert reason is not None
        assert reason.startswith("unencodable: client order id 'has.a.dot'")
        assert gw.counts["unencodable"] == 1
        assert gw.orders_in_flight == 0
        assert not [p for _, m, p in sim.request_log if m == "POST"]


async def test_orders_breaking_the_venues_filters_are_refused_now_with_the_filter_counted() -> None:
    settings = {SYMBOL: SymbolSettings(min_notional="1000")}
    async with simulator(symbols=settings, max_num_orders=3) as sim, gateway(sim) as (gw, ls):
        bid, _ = book_prices(sim)
        mid = INSTRUMENT.price_to_ticks(bid)
        others = 0
        gw.market = lambda order: (mid, others)
        cases = [
            # 10 lots of 0.001 at about the book's price: far below a notional of 1000.
            (order("small", Side.BUY, below(bid)), "notional_min"),
            # Six times the reference: beyond PERCENT_PRICE_BY_SIDE's bidMultiplierUp of 5.
            (Order("far", "s", SYMBOL, Side.BUY, OrderType.LIMIT, 10**6, mid * 6, TIF.GTC),
             "percent_price_by_side_up"),
        ]  # fmt: skip
        for made, rule in cases:
            assert gw.submit(made) == f"venue_rule: {rule}"
            assert gw.rule_refusals[rule] == 1
        others = 3  # the symbol's MAX_NUM_ORDERS is 3: a fourth open order is refused
        big = Order("many", "s", SYMBOL, Side.BUY, OrderType.LIMIT, 10**6, mid - 50, TIF.GTC)
        assert gw.submit(big) == "venue_rule: max_num_orders"
        assert gw.counts["venue_rule"] == 3
        assert gw.orders_in_flight == 0
        assert not [p for _, m, p in sim.request_log if m == "POST"]
        others = 2
        assert await placed(gw, ls, big) is OrderStatus.NEW  # within every filter: it leaves


async def test_no_order_leaves_before_the_venues_filters_are_read() -> None:
    async with simulator() as sim, gateway(sim, rules=False) as (gw, ls):
        bid, _ = book_prices(sim)
        assert gw.submit(order("early", Side.BUY, below(bid))) == "venue_rule: venue_rules_unknown"
        assert not sim.request_log
        await gw.load_rules()
        assert gw.counts["rules_loaded"] == 1
        assert await placed(gw, ls, order("later", Side.BUY, below(bid))) is OrderStatus.NEW
        assert [p for _, m, p in sim.request_log if m == "POST"] != []


async def test_the_venues_stream_hands_reports_and_fills_to_the_ledger() -> None:
    async with simulator() as sim, gateway(sim) as (gw, listener):
        bid, _ = book_prices(sim)
        made = order("s-1", Side.BUY, below(bid))
        assert await placed(gw, listener, made) is S.NEW
        price = INSTRUMENT.price_to_ticks(bid)
        fill = FillReport("s-1", price, 10, 77, SYMBOL, Side.BUY, None)
        gw.stream_update(OrderReport("s-1", S.FILLED, 10, price, "9", None), fill, 9)
        assert made.status is S.FILLED
        assert ("fill", "s-1", str(price), "10") in listener.events
        gw.start()
        gw.poll_fills_soon()  # the stream changed: the poll reads from the cursor at once

        def trades_read() -> int:
            return sum(1 for _, m, p in sim.request_log if p == "/api/v3/myTrades")

        # Well before the poll's own interval (0.8 s for one symbol on Binance).
        await wait_until(lambda: trades_read() >= 1, 0.5)
        # The dialect names order 9's trades from now on.
        assert (
            gw.dialect.unresolved_orders(  # type: ignore[attr-defined]
                SYMBOL, b'[{"orderId": 9, "id": 1}]'
            )
            == []
        )


async def test_trades_of_orders_not_named_yet_hold_the_cursor() -> None:
    """At most 20 orders are named a poll: the cursor stops before the first unnamed trade."""
    async with simulator() as sim:
        other = Client(sim)
        try:
            for i in range(24):
                _, ask = book_prices(sim)
                price = INSTRUMENT.format_price(INSTRUMENT.price_to_ticks(ask) + 5)
                answer = await other.order(
                    side="BUY", type="LIMIT", timeInForce="IOC", quantity="0.001", price=price,
                    newClientOrderId=f"elsewhere-{i}",
                )  # fmt: skip
                assert answer.status_code == 200, answer.text
        finally:
            await other.aclose()
        trades = sim.trades[SYMBOL]
        traded = {trade.order.client_order_id for trade in trades}
        assert len(traded) > 20
        async with gateway(sim) as (gw, listener):
            first = await gw.poll_fills()
            assert 0 < first < len(trades)
            assert gw.fills_cursors[SYMBOL] < trades[-1].id
            while gw.fills_cursors[SYMBOL] < trades[-1].id:
                assert await gw.poll_fills() > 0
            named = {e[1] for e in listener.events if e[0] == "fill"}
            assert named == traded


async def test_new_orders_are_refused_now_when_the_venues_order_count_is_nearly_full() -> None:
    clock = FakeClock()  # one instant: the venue's 10-second window never turns
    limits = LimitSettings(orders_per_10s=10)
    async with (
        simulator(limits=limits, clock_ms=clock) as sim,
        gateway(sim, wall_clock=lambda: clock() / 1000) as (gw, listener),
    ):
        gw.dialect.order_limit_10s = 10  # type: ignore[attr-defined]
        bid, _ = book_prices(sim)
        for i in range(9):
            assert await placed(gw, listener, order(f"n-{i}", Side.BUY, below(bid))) is S.NEW
        assert gw.counts["order_count_tight"] == 1
        refused = order("n-9", Side.BUY, below(bid))
        assert gw.submit(refused) == "rate_limited"
        assert len([p for _, m, p in sim.request_log if m == "POST"]) == 9
        assert gw.counts["venue_rate_limited"] == 0
        clock.now_ms += 10_000  # the venue's next 10 s
        assert await placed(gw, listener, order("n-10", Side.BUY, below(bid))) is S.NEW


async def test_a_stream_fill_the_poll_already_read_is_not_handed_on_again() -> None:
    """A trade at or below its symbol's fills cursor was handed to the ledger by the poll.

    The ledger counts a fill id once only while it still holds the order
    (``closed_order_retention_s``); a venue that sends an old execution
    report again after that (a duplicated or replayed event) would have
    the fill credited a second time as an overfill. The cursor knows it
    was read: the stream's copy is dropped and counted.
    """
    async with simulator() as sim, gateway(sim) as (gw, listener):
        _, ask = book_prices(sim)
        taker = order("t-1", Side.BUY, ask, tif=TIF.IOC)
        assert await placed(gw, listener, taker) in (S.FILLED, S.PARTIALLY_FILLED, S.CANCELED)
        assert await gw.poll_fills() >= 1
        trade = sim.trades[SYMBOL][0]
        assert gw.fills_cursors[SYMBOL] >= trade.id
        fills_before = [e for e in listener.events if e[0] == "fill"]
        listener.known.pop("t-1", None)  # the ledger let the closed order go
        replayed = FillReport("t-1", taker.price or 0, 10, trade.id, SYMBOL, Side.BUY, None)
        gw.stream_update(None, replayed, None)
        assert [e for e in listener.events if e[0] == "fill"] == fills_before
        assert gw.counts["stream_fill_read"] == 1


async def test_a_stream_report_of_another_venue_order_leaves_ours_alone() -> None:
    """A report naming one of our client order ids with another venue order id, or
    another symbol, is not our order's: it is counted and ignored, and our
    order stays open (its exposure held) as the venue holds it."""
    async with simulator() as sim, gateway(sim) as (gw, listener):
        bid, _ = book_prices(sim)
        made = order("r-1", Side.BUY, below(bid))
        assert await placed(gw, listener, made) is S.NEW
        ours = int(resting_id(listener, "r-1"))
        made.exchange_order_id = str(ours)  # as the ledger keeps it from the answer
        gw.stream_update(
            OrderReport("r-1", S.CANCELED, 0, None, str(ours + 7), None), None, ours + 7
        )
        assert made.status is S.NEW
        gw.stream_update(
            OrderReport("r-1", S.CANCELED, 0, None, str(ours), None), None, ours, symbol="ETHUSDT"
        )
        assert made.status is S.NEW
        assert gw.counts["stream_report_mismatch"] == 2
        gw.stream_update(OrderReport("r-1", S.CANCELED, 0, None, str(ours), None), None, ours)
        assert made.status is S.CANCELED


async def test_a_configured_symbol_the_venue_does_not_list_refuses_the_start() -> None:
    """exchangeInfo answered -1121 (Invalid symbol) is the configuration's fault:
    a retry cannot fix it, so start-up stops (exit 2) naming the symbols."""
    both = {SYMBOL: INSTRUMENT, "NOPEUSDT": Instrument("NOPEUSDT", "0.01", "0.001")}
    async with simulator() as sim, gateway(sim, rules=False, instruments=both) as (gw, _):
        readable = r'^instruments: .*exchangeInfo\?symbols=\["BTCUSDT","NOPEUSDT"\].*-1121'
        with pytest.raises(ConfigError, match=readable):
            await gw.load_rules()


async def test_venue_assets_other_than_the_configured_ones_refuse_the_start() -> None:
    """A symbol whose quote asset on the venue is not the configured one: exit 2,
    naming the instrument's key and both values, never a start-up retried forever."""
    async with (
        simulator() as sim,
        gateway(sim, rules=False, quote_assets={SYMBOL: "BUSD"}) as (gw, _),
    ):
        with pytest.raises(
            ConfigError, match=r"instruments\[BTCUSDT\]\.quote_asset: .*'USDT'.*'BUSD'"
        ):
            await gw.load_rules()


async def test_a_ban_answered_to_the_first_clock_sample_pauses_every_request() -> None:
    """Start-up under a ban: the venue answers ``GET /api/v3/time`` 418. The gateway
    takes it as the ban it is (every request class waits for its end, trading
    halts, ``/status`` shows it) instead of sending the clock's other samples
    and every start-up retry into the ban."""
    async with simulator() as sim:
        sim.limiter.banned_until_ms = sim.now_ms() + 30_000
        async with gateway(sim, rules=False) as (gw, listener):
            with pytest.raises(ConnectionError):
                await gw.open_orders()
            assert gw.banned_until is not None
            assert gw.counts["venue_banned"] == 1
            assert ("fault", "*", "venue_banned") in listener.events
            assert sim.limiter.counts["418"] == 1  # one request into the ban, no more


def pause_journal(folder: Path, sim: BinanceSimulator, key: str = API_KEY) -> Journal:
    journal = Journal.open(str(folder / "journal.db"))
    journal.venue = VenueIdentity.of(f"http://127.0.0.1:{sim.port}", key)
    return journal


@pytest.mark.parametrize("journaled", [True, False])
async def test_a_gateway_started_during_an_earlier_runs_429_pause_sends_nothing_into_it(
    journaled: bool, tmp_path: Path
) -> None:
    """A read answered 429 (``Retry-After: 2``) is journaled; a gateway started
    again before the pause ends (a restart after a crash) waits for its end
    before its first request. The venue bans a client at the first request
    sent into the pause (``ban_after = 1``): with a journal that never heard
    of the pause, the restarted gateway is banned."""
    limits = LimitSettings(ban_after=1, ban_s=120)
    faults = Faults(read_rate_limit=1.0, retry_after_s=2)
    async with simulator(faults, limits=limits) as sim:
        journal = pause_journal(tmp_path, sim)
        async with gateway(sim, rules=False) as (first, _):
            first.keep_pauses(journal)
            start = time.time()
            with pytest.raises((ConnectionError, TimeoutError)):  # the read waits for its end
                await asyncio.wait_for(first.open_orders(), 0.5)
            assert first.counts["venue_rate_limited"] == 1
        journal.flush()
        (heard, paused), banned = journal.venue_pauses()
        assert start - 0.01 <= heard < paused
        assert start + 1.5 < paused < time.time() + 2.5
        assert banned == (0.0, 0.0)
        sim.faults = Faults()
        restarted = journal if journaled else pause_journal(tmp_path / "other", sim)
        async with gateway(sim, rules=False) as (again, listener):
            restored = again.keep_pauses(restarted)
            if journaled:
                assert restored is not None
                waiting, wait_s = restored
                assert "rate-limit pause (429) ends at" in waiting
                assert 0 < wait_s <= 2.5
                assert again.counts["pause_restored"] == 1
                assert await asyncio.wait_for(again.open_orders(), 5) == []
                assert time.time() >= paused - 0.05
                assert sim.limiter.counts["bans"] == 0
                assert listener.events == []  # a 429 pause halts nothing
            else:
                assert restored is None
                with pytest.raises((ConnectionError, TimeoutError)):  # waits for the ban's end
                    await asyncio.wait_for(again.open_orders(), 1)
                assert sim.limiter.counts["bans"] == 1
                assert again.banned_until is not None
        journal.close()


async def test_a_ban_is_journaled_and_a_gateway_started_during_it_sends_nothing(
    tmp_path: Path,
) -> None:
    """A 418 is journaled with its end; a gateway started again during the ban
    sends no request (the venue would lengthen a repeat offender's ban), shows
    the ban's end in ``/status``, halts trading, and reads once it is over. The
    ban is the client's: a new API key on the same base URL honours it."""
    async with simulator() as sim:
        journal = pause_journal(tmp_path, sim)
        sim.limiter.banned_until_ms = sim.now_ms() + 1_500
        async with gateway(sim, rules=False) as (first, _):
            first.keep_pauses(journal)
            with pytest.raises((ConnectionError, TimeoutError)):  # the read waits for its end
                await asyncio.wait_for(first.open_orders(), 0.5)
            assert first.counts["venue_banned"] == 1
        journal.flush()
        _, (_, banned) = journal.venue_pauses()
        assert banned == pytest.approx(sim.limiter.banned_until_ms / 1000, abs=1)
        answered = sim.limiter.counts["418"]
        journal.venue = VenueIdentity.of(f"http://127.0.0.1:{sim.port}", "another-key")
        async with gateway(sim, rules=False) as (again, listener):
            restored = again.keep_pauses(journal)
            assert restored is not None
            assert "ban of this client ends at" in restored[0]
            assert ("fault", "*", "venue_banned") in listener.events
            assert again.venue_status()["ban_until"] == time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(banned)
            )
            assert await asyncio.wait_for(again.open_orders(), 5) == []
            assert sim.limiter.counts["418"] == answered  # nothing was sent into the ban
            assert time.time() >= banned - 0.05
        journal.close()


async def test_a_pause_journaled_for_another_base_url_is_not_honoured(tmp_path: Path) -> None:
    journal = Journal.open(str(tmp_path / "journal.db"))
    journal.venue = VenueIdentity.of("https://testnet.binance.vision", API_KEY)
    now = time.time()
    journal.venue_paused(now, now + 600, banned=True)
    journal.flush()
    journal.venue = VenueIdentity.of("https://api.binance.com", API_KEY)
    assert journal.venue_pauses() == ((0.0, 0.0), (0.0, 0.0))
    journal.close()


@pytest.mark.parametrize(
    ("heard_shift_s", "restart_shift_s", "banned", "lasting_s", "left_s"),
    [
        (0, 0, True, 600, 600),  # as heard
        (0, -3600, True, 600, 600),  # the host's clock set an hour back before the restart
        (3600, 0, False, 1, 1),  # the host's clock an hour ahead when the 429 was heard
        (0, 0, True, 10 * 365 * 86_400, 3 * 86_400),  # "banned until" ten years on
        (0, 0, False, 3600, 30),  # a 429 pause longer than max_retry_after_s
        (0, 700, True, 600, 0),  # over
    ],
)
async def test_a_journaled_pause_never_lasts_longer_than_when_it_was_heard(
    tmp_path: Path,
    heard_shift_s: float,
    restart_shift_s: float,
    banned: bool,
    lasting_s: float,
    left_s: float,
) -> None:
    """What is left of a journaled pause is bounded by its length when heard and by
    the longest the venue asks for (30 s ``max_retry_after_s``, a 3-day ban),
    whatever the host's clock did between the two runs."""
    journal = Journal.open(str(tmp_path / "journal.db"))
    journal.venue = VenueIdentity.of("https://api.binance.com", API_KEY)
    now = 1_800_000_000.0
    heard = now + heard_shift_s
    journal.venue_paused(heard, heard + lasting_s, banned=banned)
    journal.flush()
    gw = offline_gateway(lambda: now + restart_shift_s)
    restored = gw.keep_pauses(journal)
    if left_s == 0:
        assert restored is None
        assert not gw.scheduler.paused()
    else:
        assert restored is not None
        assert restored[1] == pytest.approx(left_s, abs=0.01)
        assert (gw.banned_until is not None) is banned
    journal.close()


async def test_a_stop_during_a_429_pause_does_not_wait_for_it() -> None:
    """The last fills read of a stop would wait out the pause (up to 30 s): it is
    left to the next start, as during a ban."""
    async with simulator() as sim, gateway(sim) as (gw, listener):
        bid, _ = book_prices(sim)
        assert await placed(gw, listener, order("p-1", Side.BUY, below(bid))) is S.NEW
        gw.venue_rate_limited(20.0)
        started = time.monotonic()
        await asyncio.wait_for(gw.close(), 5)
        assert time.monotonic() - started < 2


def offline_gateway(wall_clock: Callable[[], float]) -> HttpGateway:
    """A Binance-dialect gateway that sends nothing (for what it decides alone)."""
    return HttpGateway(
        GatewayConfig.model_validate({"base_url": "https://api.binance.com", "venue": "binance",
                                      "api_secret_env": "BINANCE_SECRET"}),
        Listener(), {SYMBOL: INSTRUMENT},
        CircuitBreaker(BreakerConfig().settings(), clock=lambda: 0),
        api_key=API_KEY, wall_clock=wall_clock,
        dialect=BinanceOrderDialect(BinanceSpotCodec(API_KEY, HmacSha256Signer(SECRET),
                                                     {SYMBOL: INSTRUMENT}), API_KEY),
    )  # fmt: skip


async def test_the_journal_keeps_the_pause_that_ends_last_as_the_gateway_does(
    tmp_path: Path,
) -> None:
    """A shorter pause heard while a longer one runs (a second 429 with a shorter
    Retry-After, a second ban answer) does not shorten the journaled one."""
    clock = [1_800_000_000.0]
    journal = Journal.open(str(tmp_path / "journal.db"))
    journal.venue = VenueIdentity.of("https://api.binance.com", API_KEY)
    gw = offline_gateway(lambda: clock[0])
    assert gw.keep_pauses(journal) is None
    gw.venue_banned(clock[0] + 3600, "-1003")
    gw.venue_rate_limited(30.0)
    clock[0] += 1
    gw.venue_banned(clock[0] + 120, "-1003")
    gw.venue_rate_limited(1.0)
    journal.flush()
    (paused_heard, paused), (banned_heard, banned) = journal.venue_pauses()
    assert (paused_heard, paused) == (1_800_000_000.0, 1_800_000_030.0)
    assert (banned_heard, banned) == (1_800_000_000.0, 1_800_003_600.0)
    clock[0] += 40  # the 429 pause is over: the next one is journaled
    gw.venue_rate_limited(2.0)
    journal.flush()
    assert journal.venue_pauses()[0] == (1_800_000_041.0, 1_800_000_043.0)
    journal.close()


async def test_a_429_to_the_user_data_stream_pauses_the_gateway_and_is_journaled(
    tmp_path: Path,
) -> None:
    """The stream's connection and the REST API share the client's request weight:
    a 429 answered to either pauses every request path, and the journal keeps it."""
    async with simulator() as sim:
        journal = pause_journal(tmp_path, sim)
        async with gateway(sim, rules=False) as (gw, _):
            gw.keep_pauses(journal)
            gw.venue_rate_limited(5.0)
            assert gw.scheduler.paused()
            assert gw.counts["venue_rate_limited"] == 1
            gw.venue_rate_limited(3600.0)  # never longer than max_retry_after_s
        journal.flush()
        (heard, until), _ = journal.venue_pauses()
        assert until - heard == pytest.approx(30.0, abs=0.01)
        journal.close()


async def test_a_polled_trade_the_stream_already_handed_on_is_not_handed_on_again() -> None:
    """The stream brings a fill first; the poll reaches the trade only after the
    ledger let the closed order go (its myTrades reads failed or were deferred
    for longer than ``closed_order_retention_s``). The trade went to the
    ledger once: the poll moves its cursor past it without handing it on
    again (which the ledger would take as an overfill)."""
    async with simulator() as sim, gateway(sim) as (gw, listener):
        _, ask = book_prices(sim)
        taker = Client(sim)
        try:  # an order the stream reports: it fills at once, one trade
            reply = await taker.order(
                side="BUY", type="LIMIT", timeInForce="IOC", quantity="0.010", price=ask,
                newClientOrderId="s-1",
            )  # fmt: skip
        finally:
            await taker.aclose()
        body = reply.json()
        assert body["status"] == "FILLED", body
        venue_id = body["orderId"]
        trade = sim.trades[SYMBOL][-1]
        streamed = FillReport("s-1", trade.price, trade.lots, trade.id, SYMBOL, Side.BUY, None)
        gw.stream_update(None, streamed, venue_id)
        gw.dialect.learn_order_id(venue_id, "s-1")
        fills = [e for e in listener.events if e[0] == "fill" and e[1] == "s-1"]
        assert len(fills) == 1
        await gw.poll_fills()
        assert gw.fills_cursors[SYMBOL] >= trade.id
        assert [e for e in listener.events if e[0] == "fill" and e[1] == "s-1"] == fills
        assert gw.counts["poll_fill_streamed"] == 1
