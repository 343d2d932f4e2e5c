"""A real ``trading-engine run`` on Binance's dialect: the user data stream and the venue clock.

The simulator serves the REST API and the WebSocket API's user data stream
in the test; the engine is a real process with ``[gateway] venue =
"binance"``. The fills poll is set slow (30 s) so that a fill seen within
seconds came by the stream; the ``stream_drop`` fault closes the stream
after events, and the engine polls meanwhile and subscribes again; a venue
clock shifted past the receive window refuses the start (exit 2), and a
shift while running is re-measured through the one venue clock.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel

from tests.helpers import free_port_ranges, start_run, wait_for
from tests.sim.binance.helpers import API_KEY, SECRET, keys
from trading_engine import BookView, Instrument, Strategy, TimeInForce
from trading_engine.sim.binance import BinanceSimulator
from trading_engine.sim.exchange_sim import Faults

#: What the engine processes need: the simulator's key and secret.
ENV = {"EXCHANGE_API_KEY": API_KEY, "BINANCE_TEST_SECRET": SECRET}
SYMBOL = "BTCUSDT"
INSTRUMENT = Instrument(SYMBOL, "0.01", "0.001")


class JoinerParams(BaseModel):
    max_lots: int = 5
    deep: bool = False


class BidJoiner(Strategy):
    """A 1-lot GTC bid at the best bid whenever none is open, up to ``max_lots`` bought;
    ``deep``: instead one 1-lot bid a second far below the book (never filled), up to 8."""

    Params = JoinerParams

    def on_start(self) -> None:
        assert isinstance(self.params, JoinerParams)
        self.max_lots = self.params.max_lots
        self.deep = self.params.deep
        self.last_ns = 0

    def on_book(self, book: BookView) -> None:
        bid = book.best_bid
        if bid is None:
            return
        open_orders = self.ctx.open_orders(SYMBOL)
        if self.deep:
            if len(open_orders) < 8 and self.ctx.now_ns() - self.last_ns >= 1_000_000_000:
                self.last_ns = self.ctx.now_ns()
                self.ctx.buy(SYMBOL, 1, bid - 200, TimeInForce.GTC)
            return
        if not open_orders and self.ctx.position(SYMBOL).quantity < self.max_lots:
            self.ctx.buy(SYMBOL, 1, bid, TimeInForce.GTC)


def write_config(
    tmp_path: Path, sim_port: int, feed: int, admin: int, *, fills_poll_s: float, params: str
) -> Path:
    path = tmp_path / "engine.toml"
    path.write_text(
        f"""
[engine]
log_level = "info"
shutdown_s = 1.0

[feed]
port = {feed}

[admin]
port = {admin}

[gateway]
venue = "binance"
base_url = "http://127.0.0.1:{sim_port}"
api_secret_env = "BINANCE_TEST_SECRET"
timeout_s = 0.5
max_requests_per_s = 100
fills_poll_s = {fills_poll_s}
user_stream_fills_poll_s = 30.0
user_stream_ping_s = 1.0
user_stream_silence_s = 3.0
resting_order_check_s = 3600
clock_check_s = 3600

[risk]
max_position = "0.010"
max_orders_per_s = 20

[journal]
path = "{tmp_path / "journal.db"}"
flush_ms = 5.0

[[instruments]]
symbol = "{SYMBOL}"
tick_size = "0.01"
lot_size = "0.001"

[[strategies]]
name = "join"
class = "tests.integration.test_binance_stream:BidJoiner"
symbols = ["{SYMBOL}"]
params = {{ {params} }}
"""
    )
    return path


def venue_lots(sim: BinanceSimulator) -> int:
    return sum(
        trade.lots if trade.order.side == "buy" else -trade.lots for trade in sim.trades[SYMBOL]
    )


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of the exposition (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@asynccontextmanager
async def running(
    tmp_path: Path, *, faults: Faults | None = None, fills_poll_s: float = 30.0, params: str = ""
) -> AsyncIterator[tuple[BinanceSimulator, httpx.AsyncClient, asyncio.subprocess.Process]]:
    sim = BinanceSimulator(
        [INSTRUMENT], keys=keys(), port=0, rate=200, seed=5, faults=faults or Faults()
    )
    await sim.start()
    feed, admin = free_port_ranges(1, 1)
    config = write_config(tmp_path, sim.port, feed, admin, fills_poll_s=fills_poll_s, params=params)
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin}", timeout=2.0)
    engine = await start_run(config, tmp_path / "engine.log", ENV)
    try:
        sim.publish_to("127.0.0.1", feed)

        async def live() -> bool:
            try:
                status = (await client.get("/status")).json()
            except (httpx.HTTPError, ValueError):
                return False
            stream = (status.get("venue") or {}).get("user_stream") or {}
            return bool(stream.get("live"))

        await wait_for(live, 60, "the engine's user data stream to be live")
        yield sim, client, engine
    finally:
        if engine.returncode is None:
            engine.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(engine.wait(), 20)
            except TimeoutError:
                engine.kill()
                await engine.wait()
        await client.aclose()
        await sim.stop()


async def position_lots(client: httpx.AsyncClient) -> int:
    status = (await client.get("/status")).json()
    quantity = status["positions"].get(SYMBOL, {}).get("quantity", "0")
    return INSTRUMENT.size_to_lots(quantity)


@pytest.mark.slow
@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_a_fill_arrives_by_the_stream_long_before_the_poll(tmp_path: Path) -> None:
    async with running(tmp_path, params="max_lots = 1") as (sim, client, _):
        status = (await client.get("/status")).json()
        stream = status["venue"]["user_stream"]
        assert stream["live"] is True
        assert stream["since"].endswith("Z")
        assert stream["url"].endswith("/ws-api/v3")
        assert status["venue"]["clock_offset_ms"] is not None

        async def venue_filled() -> bool:
            return venue_lots(sim) >= 1

        await wait_for(venue_filled, 60, "the venue to fill the resting bid")
        started = asyncio.get_running_loop().time()

        async def engine_has_it() -> bool:
            return await position_lots(client) == venue_lots(sim)

        # The poll runs every 30 s while the stream is live: within 5 s is the stream.
        await wait_for(engine_has_it, 5, "the fill in /status positions")
        assert asyncio.get_running_loop().time() - started < 5
        text = (await client.get("/metrics")).text
        assert metric(text, "trading_engine_user_stream_events_total", event="execution_report") > 0
        assert metric(text, "trading_engine_user_stream_live", venue="binance") == 1.0
        assert metric(text, "trading_engine_venue_clock_events_total", event="measured") >= 1


@pytest.mark.slow
@pytest.mark.asyncio
@pytest.mark.timeout(150)
async def test_stream_drops_fall_back_to_polling_and_count_each_fill_once(tmp_path: Path) -> None:
    faults = Faults(stream_drop=0.5)
    async with running(tmp_path, faults=faults, fills_poll_s=0.2, params="max_lots = 6") as (
        sim,
        client,
        _,
    ):

        async def six_filled() -> bool:
            return venue_lots(sim) >= 6

        await wait_for(six_filled, 90, "six fills on the venue")
        sim.faults = Faults()

        async def agrees() -> bool:
            return await position_lots(client) == venue_lots(sim)

        await wait_for(agrees, 30, "the engine's position to be the venue's")
        # Never more than the venue's: each fill counted once, stream or poll.
        assert await position_lots(client) == venue_lots(sim) == 6
        text = (await client.get("/metrics")).text
        assert sim.counts.get("stream_drop", 0) >= 1
        assert metric(text, "trading_engine_user_stream_drops_total", reason="closed") >= 1
        assert metric(text, "trading_engine_user_stream_events_total", event="resubscribed") >= 1
        status = (await client.get("/status")).json()
        assert status["venue"]["user_stream"]["drops"] >= 1


@pytest.mark.slow
@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_a_venue_clock_beyond_the_receive_window_refuses_the_start(tmp_path: Path) -> None:
    sim = BinanceSimulator([INSTRUMENT], keys=keys(), port=0, clock_skew_ms=-9_000)
    await sim.start()
    try:
        feed, admin = free_port_ranges(1, 1)
        config = write_config(tmp_path, sim.port, feed, admin, fills_poll_s=1.0, params="")
        log = tmp_path / "engine.log"
        engine = await start_run(config, log, ENV)
        try:
            code = await asyncio.wait_for(engine.wait(), 30)
        except TimeoutError:
            engine.kill()
            await engine.wait()
            raise AssertionError(
                f"run did not refuse the clock: {log.read_text()[-2000:]}"
            ) from None
        assert code == 2, log.read_text()[-2000:]
        text = log.read_text()
        assert re.search(
            r"gateway\.recv_window_ms: binance clock: the host's clock is [89]\d{3} ms ahead "
            r"of the venue's .* beyond the 5000 ms receive window",
            text,
        ), text[-2000:]
        assert not sim.binance_orders
    finally:
        await sim.stop()


@pytest.mark.slow
@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_a_clock_jump_resyncs_the_one_clock_and_sends_the_same_id_once(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, params="max_lots = 1, deep = true") as (sim, client, _):

        async def first_order() -> bool:
            return len(sim.binance_orders) >= 1

        await wait_for(first_order, 30, "the first resting order on the venue")
        # The venue's clock jumps 30 s ahead: the engine's timestamps are now too old.
        sim.clock_skew_ms = 30_000
        placed = len(sim.binance_orders)

        async def two_more() -> bool:
            return len(sim.binance_orders) >= placed + 2

        await wait_for(two_more, 30, "two more orders on the venue after the jump")
        text = (await client.get("/metrics")).text
        assert metric(text, "trading_engine_gateway_events_total", event="clock_skew") >= 1
        # The -1021 re-measured the one venue clock (the stream's too).
        assert metric(text, "trading_engine_venue_clock_events_total", event="resync") >= 1
        offset = (await client.get("/status")).json()["venue"]["clock_offset_ms"]
        assert abs(offset - 30_000) < 1_000
        ids = [order.client_order_id for order in sim.binance_orders.values()]
        assert len(ids) == len(set(ids)), ids  # each client order id taken once
        status = (await client.get("/status")).json()
        assert status["open_orders"] == len([o for o in sim.binance_orders.values() if o.is_open])
        assert status["trading_state"] == "active"
