"""Binance's user data stream wired to the gateway, against the simulator on loopback."""

from __future__ import annotations

import logging

import pytest

from tests.helpers import wait_until
from tests.io.test_gateway_binance import API_KEY, INSTRUMENT, SYMBOL, gateway, simulator
from trading_engine.config import GatewayConfig
from trading_engine.engine.venue_links import UserStreamLink, venue_collectors, ws_api_url
from trading_engine.lowlevel.tasks import TaskCrashes
from trading_engine.venues.binance import BinanceSpotCodec, HmacSha256Signer
from trading_engine.venues.binance.order_api import BinanceOrderDialect
from trading_engine.venues.binance.user_stream import DEFAULT_WS_API_URL, TESTNET_WS_API_URL

STREAM = {
    "user_stream_ping_s": 0.2,
    "user_stream_silence_s": 1.0,
    "user_stream_fills_poll_s": 7.0,
}


@pytest.mark.parametrize(
    ("settings", "url"),
    [
        ({"base_url": "https://api.binance.com"}, DEFAULT_WS_API_URL),
        ({"base_url": "https://testnet.binance.vision"}, TESTNET_WS_API_URL),
        ({"base_url": "http://127.0.0.1:8123"}, "ws://127.0.0.1:8123/ws-api/v3"),
        ({"base_url": "https://proxy.example:9443"}, "wss://proxy.example:9443/ws-api/v3"),
        ({"ws_api_url": "wss://elsewhere/ws-api/v3"}, "wss://elsewhere/ws-api/v3"),
    ],
)
def test_the_websocket_api_follows_the_rest_base(settings: dict[str, str], url: str) -> None:
    assert ws_api_url(GatewayConfig.model_validate({"venue": "binance", **settings})) == url


@pytest.mark.asyncio
async def test_live_changes_read_fills_at_once_and_set_the_poll_rate() -> None:
    async with simulator() as sim, gateway(sim, **STREAM) as (gw, _):
        assert isinstance(gw.dialect, BinanceOrderDialect)
        link = UserStreamLink(gw, gw.dialect, TaskCrashes())
        gw.links.append(link)
        gw.start()
        await wait_until(lambda: link.stream.live, 10)
        assert gw.fills_poll_s == 7.0  # slow while the stream pushes fills
        since = link.since
        status = gw.venue_status()["user_stream"]
        assert status["live"] is True
        assert status["since"] is not None
        assert status["url"] == f"ws://127.0.0.1:{sim.port}/ws-api/v3"
        names = {type(c).__name__ for c in venue_collectors(gw)}
        assert names == {"VenueClockCollector", "UserStreamCollector"}
        await sim.streams.drop_all()
        await wait_until(lambda: not link.stream.live, 10)
        assert gw.fills_poll_s == 0.05  # fast while down
        assert link.since is not None
        assert since is not None
        assert link.since >= since
        await wait_until(lambda: link.stream.live, 10)  # subscribed again
        assert link.stream.counts["resubscribed"] == 1
        assert gw.fills_poll_s == 7.0


@pytest.mark.asyncio
async def test_the_stream_refusing_the_signature_halts_with_one_line_naming_the_variable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with simulator() as sim, gateway(sim, **STREAM) as (gw, listener):
        codec = BinanceSpotCodec(API_KEY, HmacSha256Signer("not-the-secret"), {SYMBOL: INSTRUMENT})
        dialect = BinanceOrderDialect(codec, API_KEY)
        link = UserStreamLink(gw, dialect, TaskCrashes())
        gw.links.append(link)
        with caplog.at_level(logging.WARNING):
            gw.start()
            await wait_until(lambda: ("fault", "*", "venue_auth_failed") in listener.events, 10)
            await wait_until(lambda: link.stream.failure is not None, 10)
        lines = [r.getMessage() for r in caplog.records if "refused the API key" in r.getMessage()]
        assert len(lines) == 1, lines
        assert "BINANCE_SECRET" in lines[0]
        assert {r: n for r, n in link.stream.drops.items() if n} == {"auth_failed": 1}
        assert link.stream.counts["connected"] == 1  # no retry storm
        assert listener.events.count(("fault", "*", "venue_auth_failed")) == 1


@pytest.mark.asyncio
async def test_the_stream_connects_no_more_while_the_venue_bans_this_client() -> None:
    """The venue banned this IP (418 on REST): a WebSocket API connection is a
    request of that IP too, and each one sent during the ban is one more the
    venue holds against it. The stream waits out the gateway's ban."""
    async with simulator() as sim, gateway(sim, **STREAM) as (gw, _):
        assert isinstance(gw.dialect, BinanceOrderDialect)
        link = UserStreamLink(gw, gw.dialect, TaskCrashes())
        gw.links.append(link)
        gw.start()
        await wait_until(lambda: link.stream.live, 10)
        sim.limiter.banned_until_ms = sim.now_ms() + 60_000
        with pytest.raises(ConnectionError, match="418"):
            await gw.open_orders()
        assert gw.banned_until is not None
        refused = sim.limiter.counts["418"]
        await sim.streams.drop_all()
        await wait_until(lambda: link.stream.counts.get("ban_wait", 0) >= 1, 5)
        assert not link.stream.live
        assert sim.limiter.counts["418"] == refused  # no connection tried during the ban
