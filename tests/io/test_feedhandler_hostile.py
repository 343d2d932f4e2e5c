"""The feed handler against a hostile venue and hostile engines (one process, real sockets).

Each test attacks one way and checks what must hold: the handler keeps
running, the other symbol keeps flowing, the failure is counted in a
metric, and the engine never holds a book the venue's rules disagree
with (nor refuses a frame the handler sent: a refused frame leaves the
engine's book stale with no snapshot coming). The attacks that need real
processes (memory, the command's exit) are in
``tests/integration/test_feed_handler_hostile.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from prometheus_client import CollectorRegistry

from tests.helpers import wait_until
from tests.io.test_feedhandler import (
    DEPTH_PATH,
    MESSAGES,
    SNAPSHOT,
    XMRBTC,
    Engine,
    Running,
    depth,
    handler_for,
    metric,
    recorded_book,
    start_engine,
)
from tests.venues.fake_venue import FakeVenue, ws_frame
from trading_engine import BookState, Instrument
from trading_engine.core.protocol import BAD_INPUT, MessageType
from trading_engine.io.feedhandler import EngineAddress, FeedHandler, FeedHandlerSettings
from trading_engine.venues.kraken import KrakenDialect
from trading_engine.venues.okx import OkxDialect

ETHBTC = Instrument("ETHBTC", "0.000001", "0.001")
ETH_SNAPSHOT = (
    b'{"lastUpdateId":10,"bids":[["0.00900000","1.000"]],"asks":[["0.01100000","2.000"]]}'
)
SYMBOLS = {"XMRBTC": "XMRBTC", "ETHBTC": "ETHBTC"}


def eth(first: int, last: int, bids: list[list[str]]) -> str:
    data = {"e": "depthUpdate", "E": 1, "s": "ETHBTC", "U": first, "u": last, "b": bids, "a": []}
    return json.dumps({"stream": "ethbtc@depth@100ms", "data": data})


def by_symbol(answers: dict[str, list[Any]]) -> Callable[[web.Request], Any]:
    """A REST answer that serves each symbol's own list (in order, the last one repeated)."""

    async def answer(request: web.Request) -> web.StreamResponse:
        queue = answers[request.query["symbol"]]
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if callable(item):
            return await item(request)  # type: ignore[no-any-return]
        status, body, *headers = item
        return web.Response(status=status, body=body, headers=headers[0] if headers else None)

    return answer


@pytest_asyncio.fixture
async def venue() -> AsyncIterator[FakeVenue]:
    fake = FakeVenue()
    fake.rest[DEPTH_PATH] = [
        by_symbol({"XMRBTC": [(200, SNAPSHOT)], "ETHBTC": [(200, ETH_SNAPSHOT)]})
    ]
    await fake.start()
    yield fake
    await fake.stop()


@pytest_asyncio.fixture
async def engine() -> AsyncIterator[Engine]:
    made = await start_engine(XMRBTC, ETHBTC)
    yield made
    await made.server.stop()


async def both_live(venue: FakeVenue, engine: Engine) -> None:
    """XMRBTC live as of 717720861 and ETHBTC live as of 11."""
    await venue.connected()
    await wait_until(lambda: len(venue.requests) >= 2, what="both snapshots asked for")
    await venue.send(*MESSAGES[:3], eth(11, 11, [["0.00910000", "1.000"]]))
    await wait_until(
        lambda: all(engine.state(symbol) is BookState.LIVE for symbol in SYMBOLS),
        what="both books live",
    )


async def eth_flows(venue: FakeVenue, engine: Engine, update_id: int, size: str) -> None:
    """An update of the other symbol reaches the engine."""
    await venue.send(eth(update_id, update_id, [["0.00920000", size]]))
    await wait_until(
        lambda: engine.levels("ETHBTC")[0].get(Decimal("0.0092")) == Decimal(size),
        what=f"ETHBTC at {size}",
    )


def no_refusals(engine: Engine) -> None:
    """The engine refused nothing the handler sent as bad input (a refusal would leave a
    book stale with no snapshot coming). Gaps are the handler's own stale markers."""
    refused = {
        reason: count
        for reason, count in engine.builder.rejected.items()
        if count and reason in BAD_INPUT
    }
    assert not refused, refused


# -- venue frames --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_10_mb_text_frame_is_counted_and_the_books_keep_flowing(
    venue: FakeVenue, engine: Engine
) -> None:
    registry = CollectorRegistry()
    async with Running(handler_for(venue, [engine.address], SYMBOLS, registry)):
        await both_live(venue, engine)
        await venue.send('{"stream":"xmrbtc@depth@100ms","data":"' + "x" * 10_000_000 + '"}')
        await eth_flows(venue, engine, 12, "2.000")
        assert engine.state("XMRBTC") is BookState.LIVE
        assert metric(registry, "dialect_errors_total", reason="unreadable") == 1
        assert metric(registry, "message_bytes_total") > 10_000_000
        assert metric(registry, "reconnects_total", reason="ws_error") == 0
    no_refusals(engine)


@pytest.mark.asyncio
async def test_a_frame_over_the_message_limit_reconnects_and_costs_one_snapshot(
    venue: FakeVenue, engine: Engine
) -> None:
    registry = CollectorRegistry()
    handler = handler_for(venue, [engine.address], SYMBOLS, registry, max_message_bytes=1_000_000)
    async with Running(handler):
        await both_live(venue, engine)
        await venue.send("x" * 2_000_000)
        await venue.connected(2)
        assert metric(registry, "reconnects_total", reason="ws_error") == 1
        assert engine.state("XMRBTC") is BookState.STALE
        await wait_until(lambda: len(venue.requests) == 4, what="one snapshot a symbol again")
        await both_live(venue, engine)
    no_refusals(engine)


@pytest.mark.asyncio
async def test_binary_frames_are_read_as_text_or_counted(venue: FakeVenue, engine: Engine) -> None:
    registry = CollectorRegistry()
    async with Running(handler_for(venue, [engine.address], SYMBOLS, registry)):
        await both_live(venue, engine)
        venue.send_raw(ws_frame(b"\xff\xfe not utf-8", opcode=0x2))
        venue.send_raw(ws_frame(eth(12, 12, [["0.00920000", "3.000"]]).encode(), opcode=0x2))
        await wait_until(
            lambda: engine.levels("ETHBTC")[0].get(Decimal("0.0092")) == 3, what="binary JSON"
        )
        assert metric(registry, "frames_dropped_total", reason="binary_message") == 1
        await eth_flows(venue, engine, 13, "4.000")
    no_refusals(engine)


@pytest.mark.asyncio
async def test_a_compressed_frame_that_was_not_negotiated_reconnects(
    venue: FakeVenue, engine: Engine
) -> None:
    """permessage-deflate is never offered, so a frame with RSV1 set is a protocol error."""
    import zlib

    registry = CollectorRegistry()
    async with Running(handler_for(venue, [engine.address], SYMBOLS, registry)):
        await both_live(venue, engine)
        compressor = zlib.compressobj(wbits=-15)
        body = compressor.compress(eth(12, 12, [["0.00920000", "9.000"]]).encode())
        body += compressor.flush(zlib.Z_SYNC_FLUSH)
        venue.send_raw(ws_frame(body[:-4], rsv1=True))
        await venue.connected(2)
        assert metric(registry, "reconnects_total", reason="ws_error") == 1
        assert engine.state("ETHBTC") is BookState.STALE
        assert Decimal("0.0092") not in engine.levels("ETHBTC")[0]
    no_refusals(engine)


@pytest.mark.asyncio
async def test_pings_without_end_are_answered_and_the_books_keep_flowing(
    venue: FakeVenue, engine: Engine
) -> None:
    registry = CollectorRegistry()
    async with Running(handler_for(venue, [engine.address], SYMBOLS, registry)):
        await both_live(venue, engine)
        for index in range(2_000):
            await venue.ping(str(index).encode())
        await eth_flows(venue, engine, 12, "2.000")
        await wait_until(lambda: len(venue.pongs) == 2_000, what="every pong")
        assert venue.pongs[-1] == b"1999"
        assert metric(registry, "pings_total") == 2_000
        assert engine.state("XMRBTC") is BookState.LIVE


# -- prices and sizes ---------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "level",
    [
        ["-0.00500000", "1.000"],
        ["0.00500000", "-1.000"],
        ["5.00e-3", "1.000"],
        ["0.00500000", "1E+1"],
        ["NaN", "1.000"],
        ["0.00500000", "Infinity"],
        ["0.00000000", "1.000"],
        ["", "1.000"],
        [" 0.00500000", "1.000"],
    ],
)
async def test_a_bad_binance_number_resyncs_and_the_engine_never_sees_it(
    venue: FakeVenue, engine: Engine, level: list[str]
) -> None:
    registry = CollectorRegistry()
    async with Running(handler_for(venue, [engine.address], SYMBOLS, registry)):
        await both_live(venue, engine)
        newer = json.loads(SNAPSHOT)
        newer["lastUpdateId"] = 717720862
        venue.rest[DEPTH_PATH] = [
            by_symbol({"XMRBTC": [(200, json.dumps(newer).encode())], "ETHBTC": [(200, b"")]})
        ]
        await venue.send(depth(717720862, 717720862, [level]))
        await wait_until(lambda: engine.state("XMRBTC") is BookState.STALE, what="stale")
        await eth_flows(venue, engine, 12, "2.000")
        await wait_until(lambda: len(venue.requests) == 3, what="a new snapshot")
        await venue.send(depth(717720863, 717720863, [["0.00570400", "5.246"]]))
        await wait_until(lambda: engine.state("XMRBTC") is BookState.LIVE, what="live again")
        assert metric(registry, "resyncs_total", reason="bad_level") == 1
        assert Decimal("0.005") not in engine.levels()[0]
        assert Decimal(0) not in engine.levels()[0]
    no_refusals(engine)


def binance_trade(price: str, size: str) -> str:
    data = {"e": "trade", "E": 1, "s": "XMRBTC", "t": 7, "p": price, "q": size, "m": True, "T": 1}
    return json.dumps({"stream": "xmrbtc@trade", "data": data})


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("price", "size"),
    [("0.00000000", "1.000"), ("0.00577300", "0.00000000"), ("-0.005773", "1.000"),
     ("5.773e-3", "1.000")],
)  # fmt: skip
async def test_a_bad_binance_trade_is_counted_and_the_book_stays_live(
    venue: FakeVenue, engine: Engine, price: str, size: str
) -> None:
    """A trade takes a sequence number: one the engine refused would leave the book stale."""
    registry = CollectorRegistry()
    async with Running(handler_for(venue, [engine.address], SYMBOLS, registry)):
        await both_live(venue, engine)
        await venue.send(binance_trade(price, size), binance_trade("0.00577300", "2.000"))
        await wait_until(
            lambda: metric(registry, "frames_total", type="trade") == 1, what="the good trade"
        )
        await venue.send(depth(717720862, 717720862, [["0.00570400", "5.246"]]))
        await wait_until(
            lambda: engine.levels()[0].get(Decimal("0.005704")) == Decimal("5.246"),
            what="the next update applied",
        )
        assert engine.state() is BookState.LIVE
        assert metric(registry, "dialect_errors_total", reason="bad_trade") == 1
    no_refusals(engine)


@pytest.mark.asyncio
async def test_one_price_written_two_ways_is_one_level(venue: FakeVenue, engine: Engine) -> None:
    """``0.005773`` and ``0.00577300`` are one price: in a snapshot, and when one removes the
    other (the handler's copy, sent to an engine that connects again, must agree)."""
    snapshot = json.loads(SNAPSHOT)
    snapshot["bids"].append(["0.005773", "16.196"])  # the best bid again, written shorter
    venue.rest[DEPTH_PATH] = [
        by_symbol({"XMRBTC": [(200, json.dumps(snapshot).encode())], "ETHBTC": [(200, b"")]})
    ]
    registry = CollectorRegistry()
    async with Running(handler_for(venue, [engine.address], SYMBOLS, registry)):
        await venue.connected()
        await wait_until(lambda: len(venue.requests) >= 1, what="the snapshot asked for")
        await venue.send(*MESSAGES[:3])
        await wait_until(lambda: engine.state("XMRBTC") is BookState.LIVE, what="live")
        no_refusals(engine)
        # The best ask removed under another spelling of its price.
        removal = json.loads(depth(717720862, 717720862, []))
        removal["data"]["a"] = [["0.0057850", "0"]]
        await venue.send(json.dumps(removal))
        await wait_until(lambda: Decimal("0.005785") not in engine.levels()[1], what="removed")
        want = engine.levels()
        port = engine.server.port
        await engine.server.stop()
        restarted = await start_engine(XMRBTC, ETHBTC, port=port)
        try:
            await wait_until(
                lambda: restarted.state() is BookState.LIVE, what="the restarted engine live"
            )
            assert restarted.levels() == want
            no_refusals(restarted)
        finally:
            await restarted.server.stop()


@pytest.mark.asyncio
async def test_an_update_larger_than_an_engine_frame_reaches_the_engine_whole(
    venue: FakeVenue,
) -> None:
    """A frame the engine refuses as oversized would leave its book stale for good."""
    engine = await start_engine(XMRBTC, ETHBTC, max_frame_bytes=4096)
    registry = CollectorRegistry()
    try:
        handler = handler_for(venue, [engine.address], SYMBOLS, registry, max_frame_bytes=4096)
        async with Running(handler):
            await both_live(venue, engine)
            deep = [[f"0.00{4000 - i:04d}00", "1.000"] for i in range(1, 400)]
            await venue.send(depth(717720862, 717720862, deep))
            expected = recorded_book(3)
            bids = dict(expected.bids["XMRBTC"])
            bids.update({Decimal(p): Decimal(s) for p, s in deep})
            await wait_until(lambda: engine.levels()[0] == bids, what="every deep level")
            assert engine.state() is BookState.LIVE
            await venue.send(depth(717720863, 717720863, [["0.00570400", "5.246"]]))
            await wait_until(
                lambda: engine.levels()[0].get(Decimal("0.005704")) == Decimal("5.246"),
                what="the next update applied",
            )
            assert engine.state() is BookState.LIVE
        no_refusals(engine)
    finally:
        await engine.server.stop()


@pytest.mark.asyncio
async def test_a_book_grown_past_the_level_limit_is_dropped_and_fetched_again(
    venue: FakeVenue, engine: Engine
) -> None:
    """A venue that adds levels without end would grow this process and the engine's book."""
    registry = CollectorRegistry()
    handler = handler_for(venue, [engine.address], SYMBOLS, registry, max_book_levels=200)
    async with Running(handler):
        await both_live(venue, engine)
        deep = [[f"0.00{4000 - i:04d}00", "1.000"] for i in range(1, 300)]
        await venue.send(depth(717720862, 717720862, deep))
        await wait_until(lambda: engine.state() is BookState.STALE, what="XMRBTC stale")
        assert len(engine.levels()[0]) < 200  # the deep update never reached the engine
        await venue.connected(2)
        assert metric(registry, "reconnects_total", reason="book_too_deep") == 1
        assert metric(registry, "resyncs_total", reason="book_too_deep") == 1
        await wait_until(lambda: len(venue.requests) == 4, what="one snapshot a symbol again")
        await both_live(venue, engine)
    no_refusals(engine)


@pytest.mark.asyncio
async def test_a_snapshot_of_uneven_levels_is_split_into_frames_the_engine_takes(
    venue: FakeVenue,
) -> None:
    """Padded sizes on the best levels and short ones below: pieces cut by an average
    level size would be too long at the top."""
    padded = "1." + "0" * 39
    bids = [[f"0.00{5000 - i:04d}00", padded if i < 30 else "1.000"] for i in range(300)]
    asks = [[f"0.00{6000 + i:04d}00", "1.000"] for i in range(300)]
    body = json.dumps({"lastUpdateId": 717720861, "bids": bids, "asks": asks}).encode()
    venue.rest[DEPTH_PATH] = [by_symbol({"XMRBTC": [(200, body)], "ETHBTC": [(200, b"")]})]
    engine = await start_engine(XMRBTC, ETHBTC, max_frame_bytes=2048)
    registry = CollectorRegistry()
    try:
        handler = handler_for(venue, [engine.address], SYMBOLS, registry, max_frame_bytes=2048)
        async with Running(handler):
            await venue.connected()
            await wait_until(lambda: len(venue.requests) >= 1, what="the snapshot asked for")
            await venue.send(depth(717720862, 717720862, []))
            await wait_until(lambda: len(engine.levels()[0]) == 300, what="every bid")
            assert engine.state() is BookState.LIVE
            assert len(engine.levels()[1]) == 300
        no_refusals(engine)
    finally:
        await engine.server.stop()


# -- REST snapshots ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_snapshot_body_without_end_is_cut_at_the_limit(
    venue: FakeVenue, engine: Engine
) -> None:
    sent = [0]

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        chunk = b'{"lastUpdateId":1,"bids":[' + b'["1.0","1.0"],' * 70_000
        with contextlib.suppress(ConnectionError):
            while sent[0] < 200_000_000:  # bounded, whatever the handler does
                await response.write(chunk)
                sent[0] += len(chunk)
                await asyncio.sleep(0.01)
        return response

    venue.rest[DEPTH_PATH] = [by_symbol({"XMRBTC": [endless], "ETHBTC": [(200, ETH_SNAPSHOT)]})]
    registry = CollectorRegistry()
    handler = handler_for(venue, [engine.address], SYMBOLS, registry, snapshot_timeout_s=3.0)
    async with Running(handler):
        await venue.connected()
        await wait_until(
            lambda: metric(registry, "snapshot_failures_total", reason="too_large") >= 1,
            within_s=10,
            what="the endless snapshot given up",
        )
        assert sent[0] < 40_000_000
        await venue.send(eth(11, 11, [["0.00910000", "1.000"]]))
        await wait_until(lambda: engine.state("ETHBTC") is BookState.LIVE, what="ETHBTC live")
        assert engine.state("XMRBTC") is BookState.AWAITING_SNAPSHOT


@pytest.mark.asyncio
async def test_a_slow_snapshot_times_out_and_the_other_symbol_flows(
    venue: FakeVenue, engine: Engine
) -> None:
    done = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        # Far past the handler's timeout; ends with the test, not 30 s later.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 30)
        return web.Response(body=SNAPSHOT)

    venue.rest[DEPTH_PATH] = [
        by_symbol({"XMRBTC": [slow, (200, SNAPSHOT)], "ETHBTC": [(200, ETH_SNAPSHOT)]})
    ]
    registry = CollectorRegistry()
    handler = handler_for(venue, [engine.address], SYMBOLS, registry, snapshot_timeout_s=0.3)
    try:
        async with Running(handler):
            await venue.connected()
            await venue.send(eth(11, 11, [["0.00910000", "1.000"]]))
            await wait_until(lambda: engine.state("ETHBTC") is BookState.LIVE, what="ETHBTC live")
            await wait_until(
                lambda: metric(registry, "snapshot_failures_total", reason="timeout") == 1,
                what="the slow snapshot timed out",
            )
            await wait_until(lambda: len(venue.requests) == 3, what="XMRBTC asked again")
            await venue.send(*MESSAGES[:3])
            await wait_until(lambda: engine.state("XMRBTC") is BookState.LIVE, what="XMRBTC live")
    finally:
        done.set()


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [429, 418])
async def test_a_rate_limit_answer_pauses_every_snapshot_for_its_retry_after(
    venue: FakeVenue, engine: Engine, status: int
) -> None:
    """Binance: a client that keeps asking after a 429 is banned (418), longer each time."""
    times: list[float] = []

    def timed(answer: Any) -> Callable[[web.Request], Any]:
        async def serve(request: web.Request) -> web.StreamResponse:
            times.append(time.monotonic())
            status, body, *headers = answer
            return web.Response(status=status, body=body, headers=headers[0] if headers else None)

        return serve

    limited = timed((status, b'{"code":-1003}', {"Retry-After": "1"}))
    venue.rest[DEPTH_PATH] = [
        by_symbol(
            {
                "XMRBTC": [limited, timed((200, SNAPSHOT))],
                "ETHBTC": [limited, timed((200, ETH_SNAPSHOT))],
            }
        )
    ]
    registry = CollectorRegistry()
    async with Running(handler_for(venue, [engine.address], SYMBOLS, registry)):
        await venue.connected()
        await wait_until(lambda: len(times) == 4, within_s=10, what="both snapshots again")
        first_refusal = times[0]
        assert min(times[2:]) - first_refusal >= 0.95  # no request inside Retry-After
        await venue.send(*MESSAGES[:3], eth(11, 11, [["0.00910000", "1.000"]]))
        await wait_until(
            lambda: (
                engine.state("XMRBTC") is BookState.LIVE
                and engine.state("ETHBTC") is BookState.LIVE
            ),
            what="both live",
        )
        assert metric(registry, "snapshot_failures_total", reason=f"http_{status}") >= 1


# -- the connection ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_venue_that_greets_then_closes_gets_a_growing_back_off(
    venue: FakeVenue, engine: Engine
) -> None:
    """A message before the close is no sign that the venue works (Kraken greets first)."""
    connected: list[float] = []

    async def greet_and_close(ws: web.WebSocketResponse) -> None:
        connected.append(time.monotonic())
        await ws.send_str('{"channel":"status","type":"update","data":[{"system":"online"}]}')
        await ws.close()

    venue.on_connect = greet_and_close
    registry = CollectorRegistry()
    handler = handler_for(
        venue, [engine.address], SYMBOLS, registry, backoff_initial_s=0.02, backoff_max_s=0.4
    )
    async with Running(handler):
        await wait_until(lambda: len(connected) >= 7, within_s=10, what="seven connections")
    gaps = [later - earlier for earlier, later in itertools.pairwise(connected)]
    # Nominal waits 0.02, 0.04, 0.08, 0.16, 0.32, 0.4: each at least half of it.
    assert gaps[5] >= 0.2, gaps
    assert metric(registry, "reconnects_total", reason="venue_closed") >= 6


# -- engines -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_engine_that_sends_garbage_back_is_ignored(venue: FakeVenue) -> None:
    got = bytearray()

    async def chatty(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\x00garbage\n" * 500_000)
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                got.extend(chunk)
        writer.close()

    server = await asyncio.start_server(chatty, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    registry = CollectorRegistry()
    try:
        handler = handler_for(venue, [EngineAddress("127.0.0.1", port)], SYMBOLS, registry)
        async with Running(handler):
            await venue.connected()
            await wait_until(lambda: len(venue.requests) >= 2, what="both snapshots")
            await venue.send(*MESSAGES[:3], eth(11, 11, [["0.00910000", "1.000"]]))
            await wait_until(lambda: got.count(b'"type":"snapshot"') == 2, what="snapshots out")
            assert metric(registry, "engine_failures_total", engine=f"127.0.0.1:{port}",
                          reason="closed") == 0  # fmt: skip
    finally:
        server.close()


@pytest.mark.asyncio
async def test_an_engine_that_never_reads_is_dropped_and_the_other_engine_flows(
    venue: FakeVenue, engine: Engine
) -> None:
    accepted: list[socket.socket] = []
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.bind(("127.0.0.1", 0))
    stuck.listen()
    stuck.setblocking(False)
    stuck_address = EngineAddress("127.0.0.1", stuck.getsockname()[1])

    async def accept_forever() -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(stuck)
            accepted.append(conn)  # never read

    acceptor = asyncio.create_task(accept_forever())
    from trading_engine.core.sharding import shard_of

    # XMRBTC is shard 0 of two and ETHBTC shard 1 (crc32 % 2): the stuck engine is ETHBTC's.
    assert (shard_of("XMRBTC", 2), shard_of("ETHBTC", 2)) == (0, 1)
    engines = [engine.address, stuck_address]
    registry = CollectorRegistry()
    handler = handler_for(venue, engines, SYMBOLS, registry, max_engine_buffer_bytes=65536)
    try:
        async with Running(handler):
            await both_live_xmr_only(venue, engine)
            # Fat ETHBTC updates (200 levels, about 5 kB a frame) until the stuck engine's
            # socket buffers (the kernel's, several MiB, then the handler's) are full.
            fat = [[f"0.00{9000 + j:04d}00", "1.000"] for j in range(200)]
            update_id, eth_id = 717720862, 12
            for _ in range(100):
                await venue.send(*(eth(eth_id + i, eth_id + i, fat) for i in range(100)))
                eth_id += 100
                await venue.send(depth(update_id, update_id, [["0.00570400", f"{update_id}"]]))
                update_id += 1
                await asyncio.sleep(0.01)
                if metric(registry, "engine_failures_total", engine=str(stuck_address),
                          reason="engine_slow") >= 1:  # fmt: skip
                    break
            await wait_until(
                lambda: metric(registry, "engine_failures_total", engine=str(stuck_address),
                               reason="engine_slow") >= 1,
                what="the stuck engine dropped",
            )  # fmt: skip
            size = Decimal(update_id - 1)
            await wait_until(
                lambda: engine.levels()[0].get(Decimal("0.005704")) == size,
                what="XMRBTC still flowing to its engine",
            )
            assert engine.state() is BookState.LIVE
            link = handler.links[shard_of("ETHBTC", 2)]
            assert link.writer is None or (
                link.writer.transport.get_write_buffer_size() <= 65536 + 4096
            )
    finally:
        acceptor.cancel()
        for conn in accepted:
            conn.close()
        stuck.close()


@pytest.mark.asyncio
async def test_an_engine_that_closes_at_once_gets_a_growing_back_off(
    venue: FakeVenue, engine: Engine
) -> None:
    """Each connection costs a snapshot of every live book: a storm would starve the loop."""
    accepted: list[float] = []

    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(time.monotonic())
        writer.close()

    closer = await asyncio.start_server(close_at_once, "127.0.0.1", 0)
    closer_address = EngineAddress("127.0.0.1", closer.sockets[0].getsockname()[1])
    registry = CollectorRegistry()
    handler = handler_for(
        venue, [engine.address, closer_address], SYMBOLS, registry,
        engine_backoff_initial_s=0.02, engine_backoff_max_s=0.4,
    )  # fmt: skip
    try:
        async with Running(handler):
            await both_live_xmr_only(venue, engine)
            await wait_until(lambda: len(accepted) >= 7, within_s=10, what="seven connections")
            await venue.send(depth(717720862, 717720862, [["0.00570400", "5.246"]]))
            await wait_until(
                lambda: engine.levels()[0].get(Decimal("0.005704")) == Decimal("5.246"),
                what="XMRBTC flowing to its engine",
            )
    finally:
        closer.close()
    gaps = [later - earlier for earlier, later in itertools.pairwise(accepted)]
    # Nominal waits 0.02, 0.04, 0.08, 0.16, 0.32, 0.4: each at least half of it.
    assert gaps[5] >= 0.2, gaps
    failures = metric(
        registry, "engine_failures_total", engine=str(closer_address), reason="closed"
    )
    assert failures >= 6


async def both_live_xmr_only(venue: FakeVenue, engine: Engine) -> None:
    await venue.connected()
    await wait_until(lambda: len(venue.requests) >= 2, what="both snapshots asked for")
    await venue.send(*MESSAGES[:3], eth(11, 11, [["0.00910000", "1.000"]]))
    await wait_until(lambda: engine.state("XMRBTC") is BookState.LIVE, what="XMRBTC live")


# -- OKX and Kraken ------------------------------------------------------------------------------


def okx_handler(
    fake: FakeVenue, port: int, registry: CollectorRegistry, **dialect: Any
) -> FeedHandler:
    return FeedHandler(
        OkxDialect(["BTC-USDT", "ETH-USDT"], **dialect),
        ws_url=f"{fake.ws_url}/stream",
        engines=[EngineAddress("127.0.0.1", port)],
        symbol_map={"BTC-USDT": "BTC-USDT", "ETH-USDT": "ETH-USDT"},
        settings=FeedHandlerSettings(backoff_initial_s=0.05, backoff_max_s=0.2, timer_s=0.05),
        registry=registry,
    )


def okx_book(symbol: str, action: str, bids: list[list[str]], asks: list[list[str]],
             seq: int, prev: int, checksum: Any = 0) -> str:  # fmt: skip
    data = {"bids": bids, "asks": asks, "ts": "1659792392541", "checksum": checksum,
            "prevSeqId": prev, "seqId": seq}  # fmt: skip
    return json.dumps({"arg": {"channel": "books", "instId": symbol}, "action": action,
                       "data": [data]})  # fmt: skip


OKX_INSTRUMENTS = (
    Instrument("BTC-USDT", "0.1", "0.00001"),
    Instrument("ETH-USDT", "0.01", "0.0001"),
)


async def okx_live(fake: FakeVenue, engine: Engine) -> None:
    await fake.connected()
    await wait_until(lambda: any('"subscribe"' in text for text in fake.received), what="subscribe")
    await fake.send(
        okx_book("BTC-USDT", "snapshot", [["100.1", "1", "0", "1"]], [["100.5", "2", "0", "1"]],
                 10, -1),
        okx_book("ETH-USDT", "snapshot", [["10.01", "1", "0", "1"]], [["10.05", "2", "0", "1"]],
                 20, -1),
    )  # fmt: skip
    await wait_until(
        lambda: (
            engine.state("BTC-USDT") is BookState.LIVE
            and engine.state("ETH-USDT") is BookState.LIVE
        ),
        what="both OKX books live",
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("price", ["1E+2", "100.1 ", "1_00.1", "0x64", "-100.1", "0", "NaN"])
async def test_a_bad_okx_price_resyncs_and_the_engine_never_sees_it(
    fake_venue: FakeVenue, price: str
) -> None:
    engine = await start_engine(*OKX_INSTRUMENTS)
    registry = CollectorRegistry()
    try:
        async with Running(okx_handler(fake_venue, engine.server.port, registry)):
            await okx_live(fake_venue, engine)
            await fake_venue.send(
                okx_book("BTC-USDT", "update", [[price, "5", "0", "1"]], [], 11, 10)
            )
            await wait_until(lambda: engine.state("BTC-USDT") is BookState.STALE, what="stale")
            await fake_venue.send(
                okx_book("ETH-USDT", "update", [["10.02", "3", "0", "1"]], [], 21, 20)
            )
            await wait_until(
                lambda: engine.levels("ETH-USDT")[0].get(Decimal("10.02")) == 3,
                what="ETH-USDT flowing",
            )
            assert (
                registry.get_sample_value(
                    "trading_engine_feed_handler_resyncs_total",
                    {"venue": "okx", "reason": "unreadable"},
                )
                == 1.0
            )
        no_refusals(engine)
    finally:
        await engine.server.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize(("px", "sz"), [("0", "1"), ("1E+2", "1"), ("100.3", "-1"), ("x", "1")])
async def test_a_bad_okx_trade_is_counted_and_the_book_stays_live(
    fake_venue: FakeVenue, px: str, sz: str
) -> None:
    engine = await start_engine(*OKX_INSTRUMENTS)
    registry = CollectorRegistry()
    try:
        async with Running(okx_handler(fake_venue, engine.server.port, registry)):
            await okx_live(fake_venue, engine)
            trade = {"instId": "BTC-USDT", "tradeId": "1", "px": px, "sz": sz, "side": "buy",
                     "ts": "1659792392541"}  # fmt: skip
            await fake_venue.send(
                json.dumps({"arg": {"channel": "trades", "instId": "BTC-USDT"}, "data": [trade]}),
                okx_book("BTC-USDT", "update", [["100.2", "5", "0", "1"]], [], 11, 10),
            )
            await wait_until(
                lambda: engine.levels("BTC-USDT")[0].get(Decimal("100.2")) == 5, what="update"
            )
            assert engine.state("BTC-USDT") is BookState.LIVE
            assert (
                registry.get_sample_value(
                    "trading_engine_feed_handler_dialect_errors_total",
                    {"venue": "okx", "reason": "unreadable_trade"},
                )
                == 1.0
            )
        no_refusals(engine)
    finally:
        await engine.server.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("checksum", ['"12345"', "1.5", "true", "null", "99999999999999999999999"])
async def test_an_okx_checksum_of_the_wrong_type_resyncs_that_book(
    fake_venue: FakeVenue, checksum: str
) -> None:
    engine = await start_engine(*OKX_INSTRUMENTS)
    registry = CollectorRegistry()
    try:
        async with Running(okx_handler(fake_venue, engine.server.port, registry)):
            await okx_live(fake_venue, engine)
            text = okx_book("BTC-USDT", "update", [["100.2", "5", "0", "1"]], [], 11, 10, 777)
            await fake_venue.send(text.replace("777", checksum))
            await wait_until(lambda: engine.state("BTC-USDT") is BookState.STALE, what="stale")
            assert Decimal("100.2") not in engine.levels("BTC-USDT")[0]
            await fake_venue.send(
                okx_book("ETH-USDT", "update", [["10.02", "3", "0", "1"]], [], 21, 20)
            )
            await wait_until(
                lambda: engine.levels("ETH-USDT")[0].get(Decimal("10.02")) == 3,
                what="ETH-USDT flowing",
            )
        no_refusals(engine)
    finally:
        await engine.server.stop()


@pytest.mark.asyncio
async def test_an_okx_venue_that_never_answers_the_subscription_is_asked_again(
    fake_venue: FakeVenue,
) -> None:
    engine = await start_engine(*OKX_INSTRUMENTS)
    registry = CollectorRegistry()
    try:
        handler = okx_handler(fake_venue, engine.server.port, registry, snapshot_timeout_s=0.3)
        async with Running(handler):
            await fake_venue.connected()
            await wait_until(
                lambda: sum('"subscribe"' in text for text in fake_venue.received) >= 5,
                what="subscriptions asked again",
            )
            resyncs = registry.get_sample_value(
                "trading_engine_feed_handler_resyncs_total",
                {"venue": "okx", "reason": "snapshot_timeout"},
            )
            assert resyncs is not None
            assert resyncs >= 2.0
            assert engine.state("BTC-USDT") is BookState.AWAITING_SNAPSHOT
    finally:
        await engine.server.stop()


@pytest_asyncio.fixture
async def fake_venue() -> AsyncIterator[FakeVenue]:
    made = FakeVenue()
    await made.start()
    yield made
    await made.stop()


def kraken_handler(fake: FakeVenue, engine: Engine, registry: CollectorRegistry) -> FeedHandler:
    return FeedHandler(
        KrakenDialect(["BTC/USD"]),
        ws_url=f"{fake.ws_url}/stream",
        engines=[engine.address],
        symbol_map={"BTC/USD": "BTC/USD"},
        settings=FeedHandlerSettings(backoff_initial_s=0.05, backoff_max_s=0.2, timer_s=0.05),
        registry=registry,
    )


def kraken_snapshot() -> dict[str, Any]:
    from tests.venues.kraken import messages as kraken

    bids = {Decimal("100.0"): Decimal(1)}
    asks = {Decimal("100.5"): Decimal(2)}
    checksum = kraken.ref_checksum(bids, asks, 1, 8)
    text = kraken.book_message(
        "snapshot", "BTC/USD", list(bids.items()), list(asks.items()), checksum
    )
    snapshot: dict[str, Any] = json.loads(text)
    return snapshot


async def kraken_subscribed(fake: FakeVenue) -> None:
    from tests.venues.kraken import messages as kraken

    await fake.connected()
    await wait_until(lambda: bool(fake.received), what="instrument subscription")
    await fake.send(kraken.instrument_snapshot({"BTC/USD": (1, 8)}))
    await wait_until(lambda: len(fake.received) >= 3, what="book subscription")


KRAKEN_BTC = Instrument("BTC/USD", "0.1", "0.00000001")


@pytest.mark.asyncio
async def test_kraken_thousands_of_symbols_in_one_message_are_counted(
    fake_venue: FakeVenue,
) -> None:
    engine = await start_engine(KRAKEN_BTC)
    registry = CollectorRegistry()
    try:
        async with Running(kraken_handler(fake_venue, engine, registry)):
            await kraken_subscribed(fake_venue)
            snapshot = kraken_snapshot()
            entry = snapshot["data"][0]
            snapshot["data"] = [{**entry, "symbol": f"X{i}/USD"} for i in range(5_000)] + [entry]
            await fake_venue.send(json.dumps(snapshot))
            await wait_until(lambda: engine.state("BTC/USD") is BookState.LIVE, what="live")
            assert (
                registry.get_sample_value(
                    "trading_engine_feed_handler_dialect_errors_total",
                    {"venue": "kraken", "reason": "unknown_symbol"},
                )
                == 5_000
            )
        no_refusals(engine)
    finally:
        await engine.server.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize(("price", "qty"), [("0", "1.0"), ("-100.0", "1.0"), ("100.2", "0")])
async def test_a_bad_kraken_trade_is_counted_and_the_book_stays_live(
    fake_venue: FakeVenue, price: str, qty: str
) -> None:
    engine = await start_engine(KRAKEN_BTC)
    registry = CollectorRegistry()
    try:
        async with Running(kraken_handler(fake_venue, engine, registry)):
            await kraken_subscribed(fake_venue)
            await fake_venue.send(json.dumps(kraken_snapshot()))
            await wait_until(lambda: engine.state("BTC/USD") is BookState.LIVE, what="live")
            trade = (
                '{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy",'
                f'"price":{price},"qty":{qty},"ord_type":"market","trade_id":1,'
                '"timestamp":"2023-10-06T17:35:55.440295Z"}]}'
            )
            good = trade.replace(f'"price":{price},"qty":{qty}', '"price":100.2,"qty":1.0')
            await fake_venue.send(trade, good)
            await wait_until(
                lambda: (
                    registry.get_sample_value(
                        "trading_engine_feed_handler_frames_total",
                        {"venue": "kraken", "type": "trade"},
                    )
                    == 1.0
                ),
                what="the good trade",
            )
            assert (
                registry.get_sample_value(
                    "trading_engine_feed_handler_dialect_errors_total",
                    {"venue": "kraken", "reason": "unreadable_trade"},
                )
                == 1.0
            )
            # The engine took the good print in sequence: the book is live.
            await wait_until(lambda: engine.builder.accepted[MessageType.TRADE] == 1, what="trade")
            assert engine.state("BTC/USD") is BookState.LIVE
        no_refusals(engine)
    finally:
        await engine.server.stop()


@pytest.mark.asyncio
async def test_a_stream_that_refutes_every_snapshot_is_asked_with_back_off(
    venue: FakeVenue, engine: Engine
) -> None:
    # Each snapshot ends a few ids short of the next event the venue sends, so
    # the stream refutes it every time (snapshot_stale). The handler keeps one
    # back-off per symbol until its book goes live, whichever part asks again:
    # not a request per event.
    sent = [0]

    async def snapshot(request: web.Request) -> web.Response:
        answer = json.loads(SNAPSHOT)
        answer["lastUpdateId"] = 10 * sent[0] + 7  # the next event starts at 10 * (k + 1)
        return web.json_response(answer)

    venue.rest[DEPTH_PATH] = [snapshot]
    registry = CollectorRegistry()
    handler = handler_for(venue, [engine.address], registry=registry, backoff_max_s=0.4)
    async with Running(handler):
        await venue.connected()
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            sent[0] += 1
            await venue.send(depth(10 * sent[0], 10 * sent[0] + 5, [["0.0057", "1"]]))
            await asyncio.sleep(0.02)
        assert engine.state() is BookState.AWAITING_SNAPSHOT
        stale = metric(registry, "dialect_errors_total", reason="snapshot_stale")
        # With back-off (0.05 s doubling to 0.4 s, two at once): about 8; without, one an event.
        assert 2 <= len(venue.requests) <= 15, (len(venue.requests), stale, sent[0])
        # Then the venue serves a snapshot the stream confirms: live, and the back-off ends.
        venue.rest[DEPTH_PATH] = [(200, SNAPSHOT)]
        await venue.send(*MESSAGES[:3])
        await wait_until(lambda: engine.state() is BookState.LIVE, what="live", within_s=5.0)
