"""The user data stream consumer against the simulator's WebSocket API on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from tests.helpers import wait_until
from tests.sim.binance.helpers import SECRET, SYMBOL, Client, book_prices, running
from trading_engine.core.instruments import Instrument
from trading_engine.sim.binance import BinanceSimulator, LimitSettings
from trading_engine.venues.binance.clock import VenueClock, rest_time_fetcher
from trading_engine.venues.binance.orders import BinanceSpotCodec, ExecutionUpdate
from trading_engine.venues.binance.signing import HmacSha256Signer
from trading_engine.venues.binance.user_stream import (
    STREAM_EVENTS,
    UserDataStream,
    UserStreamCollector,
    UserStreamSettings,
)

pytestmark = pytest.mark.asyncio

API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
#: Short enough for tests; the ratios are the defaults'.
FAST = UserStreamSettings(
    ping_interval_s=0.1,
    silence_timeout_s=0.4,
    subscribe_timeout_s=2.0,
    backoff_initial_s=0.02,
    backoff_max_s=0.1,
    timer_s=0.02,
)


def codec(secret: str = SECRET) -> BinanceSpotCodec:
    return BinanceSpotCodec(
        API_KEY,
        HmacSha256Signer(secret),
        {SYMBOL: Instrument(SYMBOL, "0.01", "0.001")},
        quote_assets={SYMBOL: "USDT"},
    )


class Owner:
    """What a gateway would do: keep the updates and the live changes."""

    def __init__(self) -> None:
        self.updates: list[ExecutionUpdate] = []
        self.changes: list[tuple[bool, str]] = []

    def on_update(self, update: ExecutionUpdate) -> None:
        self.updates.append(update)

    def on_live_change(self, live: bool, reason: str) -> None:
        self.changes.append((live, reason))


@asynccontextmanager
async def consuming(
    sim: BinanceSimulator,
    settings: UserStreamSettings = FAST,
    secret: str = SECRET,
    clock: VenueClock | None = None,
    wait_live: bool = True,
) -> AsyncIterator[tuple[UserDataStream, Owner]]:
    owner = Owner()
    stream = UserDataStream(
        codec(secret),
        f"ws://127.0.0.1:{sim.port}/ws-api/v3",
        owner.on_update,
        on_live_change=owner.on_live_change,
        settings=settings,
        clock=clock,
    )
    task = asyncio.create_task(stream.run())
    try:
        if wait_live:
            await wait_until(lambda: stream.live, what="the stream live")
        yield stream, owner
    finally:
        stream.stop()
        await asyncio.wait_for(task, 5.0)


@asynccontextmanager
async def streaming(sim: BinanceSimulator, **owner: Any) -> AsyncIterator[UserDataStream]:
    """A stream on ``sim``'s WebSocket API with the owner's callbacks ``owner``, running."""
    stream = UserDataStream(
        codec(), f"ws://127.0.0.1:{sim.port}/ws-api/v3", Owner().on_update, settings=FAST, **owner
    )
    task = asyncio.create_task(stream.run())
    try:
        yield stream
    finally:
        stream.stop()
        await asyncio.wait_for(task, 5.0)


def report(**fields: Any) -> dict[str, Any]:
    """A documented executionReport of a resting BTCUSDT order, with ``fields`` changed."""
    event: dict[str, Any] = {
        "e": "executionReport", "E": 1_700_000_000_000, "s": SYMBOL, "c": "x-1", "S": "BUY",
        "o": "LIMIT", "f": "GTC", "q": "0.01000000", "p": "100.00000000", "P": "0.00000000",
        "F": "0.00000000", "g": -1, "C": "", "x": "NEW", "X": "NEW", "r": "NONE", "i": 7,
        "l": "0.00000000", "z": "0.00000000", "L": "0.00000000", "n": "0", "N": None,
        "T": 1_700_000_000_000, "t": -1, "I": 1, "w": True, "m": False, "M": False,
        "O": 1_700_000_000_000, "Z": "0.00000000", "Y": "0.00000000", "Q": "0.00000000",
        "W": 1_700_000_000_000, "V": "EXPIRE_MAKER",
    }  # fmt: skip
    event.update(fields)
    return event


async def test_fills_are_delivered_in_the_order_the_venue_sent_them() -> None:
    async with running() as sim, consuming(sim) as (stream, owner):
        client = Client(sim)
        try:
            walk, inst = sim.walks[SYMBOL], sim.instruments[SYMBOL]
            (first_price, first_size), (second_price, _) = sorted(walk.asks.items())[:2]
            sweep = inst.size_decimal(first_size) + inst.size_decimal(1)
            answer = await client.order(
                side="BUY",
                type="LIMIT",
                timeInForce="GTC",
                quantity=str(sweep),
                price=inst.format_price(second_price),
                newClientOrderId="sweep-1",
            )
            assert answer.status_code == 200, answer.text
            await wait_until(lambda: len(owner.updates) == 3, what="three reports")
        finally:
            await client.aclose()
    _new, first, second = owner.updates
    assert [u.execution_type for u in owner.updates] == ["NEW", "TRADE", "TRADE"]
    assert {u.report.client_order_id for u in owner.updates} == {"sweep-1"}
    assert first.fill is not None
    assert second.fill is not None
    assert first.fill.report.fill_id < second.fill.report.fill_id
    assert (first.fill.report.price, first.fill.report.lots) == (first_price, first_size)
    assert (first.report.filled_lots, second.report.filled_lots) == (first_size, first_size + 1)
    assert second.report.status.value == "filled"
    assert stream.counts["execution_report"] == 3
    assert stream.counts["subscribed"] == 1
    assert owner.changes[0] == (True, "subscribed")


async def test_a_dropped_stream_goes_down_subscribes_again_and_is_counted() -> None:
    async with running() as sim, consuming(sim) as (stream, owner):
        client = Client(sim)
        try:
            sim.faults.stream_drop = 1.0
            bid, _ = book_prices(sim)
            await client.order(
                side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.010", price=bid,
                newClientOrderId="d-1",
            )  # fmt: skip
            await wait_until(lambda: stream.counts["dropped"] >= 1, what="the drop")
            sim.faults.stream_drop = 0.0
            await wait_until(lambda: stream.counts["resubscribed"] >= 1, what="resubscribed")
            await wait_until(lambda: stream.live, what="live again")
            await client.order(
                side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.010", price=bid,
                newClientOrderId="d-2",
            )  # fmt: skip
            await wait_until(lambda: len(owner.updates) == 2, what="the report after")
        finally:
            await client.aclose()
    assert [u.report.client_order_id for u in owner.updates] == ["d-1", "d-2"]
    assert sim.counts["stream_drop"] >= 1
    # Up, down (with why), up again: the owner's poll runs at each change.
    assert owner.changes[0] == (True, "subscribed")
    assert owner.changes[1][0] is False
    assert owner.changes[1][1] in ("closed", "ws_error")
    assert owner.changes[2] == (True, "subscribed")
    assert stream.counts["connected"] >= 2
    assert sum(stream.drops.values()) == stream.counts["dropped"]


async def test_a_silent_stream_is_detected_and_replaced() -> None:
    async with running() as sim, consuming(sim) as (stream, owner):
        sim.streams.hold()
        await wait_until(lambda: stream.counts["silent"] == 1, what="silence noticed")
        assert not stream.live
        assert stream.drops["silent"] == 1
        # The consumer asked before giving up: a ping request went out, unanswered.
        assert stream.counts["ping_sent"] >= 1
        sim.streams.release()
        await wait_until(lambda: stream.live, what="live again")
    assert (False, "silent") in owner.changes


async def test_a_quiet_stream_that_answers_pings_stays_live() -> None:
    async with running() as sim, consuming(sim) as (stream, owner):
        answered = stream.counts["ping_answered"]
        await wait_until(
            lambda: stream.counts["ping_answered"] >= answered + 4, what="pings answered"
        )
    assert stream.counts["silent"] == 0
    assert owner.changes == [(True, "subscribed"), (False, "stopped")]


async def test_an_unreadable_report_is_counted_and_dropped_and_the_stream_goes_on() -> None:
    async with running() as sim, consuming(sim) as (stream, owner):
        sim.streams.publish(report(z="1e3", x="TRADE", X="FILLED"))
        sim.streams.publish(report(i="seven"))
        sim.streams.publish(report(c="good-1"))
        await wait_until(lambda: len(owner.updates) == 1, what="the good report")
        assert stream.counts["unreadable"] == 2
        assert stream.live
    assert owner.updates[0].report.client_order_id == "good-1"
    assert stream.counts["dropped"] == 0


async def test_a_terminated_subscription_subscribes_again() -> None:
    async with running() as sim, consuming(sim) as (stream, _owner):
        sim.streams.publish({"e": "eventStreamTerminated", "E": 1_700_000_000_000})
        await wait_until(lambda: stream.counts["resubscribed"] == 1, what="resubscribed")
        await wait_until(lambda: stream.live, what="live again")
    assert stream.drops["stream_terminated"] == 1


async def test_a_connection_is_replaced_before_the_venues_age_limit() -> None:
    settings = UserStreamSettings(
        max_connection_s=0.3,
        ping_interval_s=0.1,
        silence_timeout_s=0.4,
        backoff_initial_s=0.02,
        backoff_max_s=0.1,
        timer_s=0.02,
    )
    async with running() as sim, consuming(sim, settings) as (stream, _):
        await wait_until(lambda: stream.counts["resubscribed"] >= 1, what="replaced")
    assert stream.drops["connection_age"] >= 1


async def test_the_venues_pings_are_answered() -> None:
    async with running() as sim:
        # aiohttp's server closes a connection whose pong is late by half the period.
        sim.streams.heartbeat_s = 0.1
        # No ping requests of our own meanwhile: any frame from us would count as an answer.
        quiet = UserStreamSettings(ping_interval_s=5.0, silence_timeout_s=10.0, timer_s=0.02)
        async with consuming(sim, quiet) as (stream, _):
            await wait_until(lambda: stream.counts["server_ping"] >= 5, what="pings")
            assert stream.counts["dropped"] == 0


async def test_a_wrong_secret_stops_the_stream_without_retrying() -> None:
    async with running() as sim:
        owner = Owner()
        stream = UserDataStream(
            codec("not-the-secret"),
            f"ws://127.0.0.1:{sim.port}/ws-api/v3",
            owner.on_update,
            on_live_change=owner.on_live_change,
            settings=FAST,
        )
        await asyncio.wait_for(stream.run(), 5.0)
    assert stream.failure is not None
    assert "-1022" in stream.failure
    assert (stream.counts["connected"], stream.counts["subscribe_failed"]) == (1, 1)
    assert {r: n for r, n in stream.drops.items() if n} == {"auth_failed": 1}
    assert not stream.live
    assert owner.changes == []


async def test_a_ban_answered_to_the_subscription_is_told_to_the_owner() -> None:
    """The stream may be the first to hear of a ban (a 418 to its subscription):
    the owner (the gateway) is told its end, so every request path waits."""
    bans: list[tuple[float, str]] = []
    async with running() as sim:
        until_ms = sim.now_ms() + 60_000
        sim.limiter.banned_until_ms = until_ms
        told = streaming(sim, on_banned=lambda until_s, reason: bans.append((until_s, reason)))
        async with told as stream:
            await wait_until(lambda: bool(bans), what="the ban told")
    (until_s, reason), *_ = bans
    assert abs(until_s - until_ms / 1000) < 2
    assert "418" in reason or "banned" in reason.lower()
    assert not stream.live


@pytest.mark.parametrize(
    "weight_per_minute",
    [1, 3],  # the connection (weight 2) refused; the subscription (2 more) refused
)
async def test_a_429_to_the_connection_or_the_subscription_is_told_to_the_owner(
    weight_per_minute: int,
) -> None:
    """The stream's requests count towards the client's request weight too: a 429
    to its connection or to its subscription is told to the owner (the gateway),
    which pauses every request path and journals the pause."""
    delays: list[float] = []
    limits = LimitSettings(weight_per_minute=weight_per_minute)
    async with (
        running(limits=limits) as sim,
        streaming(sim, on_rate_limited=delays.append) as stream,
    ):
        await wait_until(lambda: bool(delays), what="the 429 told")
    assert sim.limiter.counts["429"] >= 1
    assert 0 < delays[0] <= 60
    assert not stream.live


async def test_a_ping_answered_418_is_told_to_the_owner_and_ends_the_connection() -> None:
    """A ban that starts while the stream is live is first heard on its pings:
    the owner is told, the connection ends (no ping more into the ban) and the
    next one waits for the ban's end."""
    bans: list[tuple[float, str]] = []
    async with running() as sim:
        told = streaming(sim, on_banned=lambda until_s, reason: bans.append((until_s, reason)))
        async with told as stream:
            await wait_until(lambda: stream.live, what="the stream live")
            sim.limiter.banned_until_ms = sim.now_ms() + 60_000
            await wait_until(lambda: bool(bans), what="the ban told")
            answered = sim.limiter.counts["418"]
            await asyncio.sleep(0.5)  # five ping intervals
            assert sim.limiter.counts["418"] == answered
    assert stream.drops["banned"] == 1
    assert not stream.live


async def test_a_live_stream_stops_pinging_when_the_owner_hears_of_a_ban() -> None:
    held = [0.0]
    async with running() as sim, streaming(sim, hold_s=lambda: held[0]) as stream:
        await wait_until(lambda: stream.live, what="the stream live")
        held[0] = 60.0  # the REST path heard of a ban
        await wait_until(lambda: not stream.live, what="the stream closed")
        pings = stream.counts["ping_sent"]
        await asyncio.sleep(0.5)
        assert stream.counts["ping_sent"] == pings
    assert stream.drops["banned"] == 1


async def test_a_venue_clock_ahead_is_measured_again_after_a_refused_subscription() -> None:
    import httpx

    async with running(clock_skew_ms=8000) as sim, httpx.AsyncClient() as http:
        clock = VenueClock(rest_time_fetcher(http, f"http://127.0.0.1:{sim.port}"), samples=2)
        # Not measured yet: signed on the host's clock, 8 s behind the venue's.
        async with consuming(sim, clock=clock) as (stream, _):
            pass
    assert stream.drops["clock_skew"] == 1
    assert clock.counts["resync"] == 1
    assert stream.counts["subscribed"] == 1
    assert 7000 < clock.offset_ns / 1e6 < 9000


async def test_the_counters_are_exported_from_zero() -> None:
    stream = UserDataStream(codec(), "ws://127.0.0.1:1/ws-api/v3", lambda update: None)
    registry = CollectorRegistry()
    registry.register(UserStreamCollector(stream))
    text = generate_latest(registry).decode()
    for event in STREAM_EVENTS:
        assert (
            f'trading_engine_user_stream_events_total{{event="{event}",venue="binance"}} 0.0'
            in (text)
        )
    assert 'trading_engine_user_stream_live{venue="binance"} 0.0' in text


async def test_nothing_listening_is_retried_with_back_off() -> None:
    from tests.helpers import free_port

    owner = Owner()
    stream = UserDataStream(
        codec(), f"ws://127.0.0.1:{free_port()}/ws-api/v3", owner.on_update, settings=FAST
    )
    task = asyncio.create_task(stream.run())
    started = time.monotonic()
    try:
        await wait_until(lambda: stream.counts["connect_failed"] >= 3, what="retries")
    finally:
        stream.stop()
        await asyncio.wait_for(task, 5.0)
    assert time.monotonic() - started >= FAST.backoff_initial_s
    assert stream.drops["connect_failed"] == stream.counts["connect_failed"]
    assert owner.changes == []


async def test_every_drop_reason_is_exported_from_zero() -> None:
    import inspect
    import re

    from trading_engine.venues.binance import user_stream

    returned = set(re.findall(r'return "(\w+)"', inspect.getsource(user_stream)))
    assert returned - {"stopped"} <= set(user_stream.DROP_REASONS)
