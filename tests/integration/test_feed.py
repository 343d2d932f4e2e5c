"""The feed server on real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import pytest_asyncio

from tests.helpers import wait_until
from trading_engine import BookBuilder, BookEntry, BookState, Instrument, Reason, Trade
from trading_engine.config import FeedConfig
from trading_engine.io.capture import CaptureWriter, read_capture
from trading_engine.io.feed import FeedServer
from trading_engine.sim.publisher import Publisher, random_walk_stream

BTC = Instrument("BTC-USD", "0.01", "0.001")
ETH = Instrument("ETH-USD", "0.01", "0.001")
ROOT = Path(__file__).resolve().parents[2]


class Dispatch:
    """A BookListener that records what the feed hands over."""

    def __init__(self, delay_s: float = 0.0, record: bool = True) -> None:
        self.books: list[tuple[str, int | None]] = []
        self.updates = 0
        self.trades = 0
        self.delay_s = delay_s
        self.record = record

    def on_book(self, entry: BookEntry, recv_ns: int) -> None:
        assert entry.state is BookState.LIVE
        assert recv_ns > 0
        self.updates += 1
        if self.record:
            self.books.append((entry.symbol, entry.seq))
        if self.delay_s:
            end = time.perf_counter() + self.delay_s
            while time.perf_counter() < end:
                pass

    def on_trade(self, entry: BookEntry, trade: Trade, recv_ns: int) -> None:
        self.trades += 1

    def on_state(self, entry: BookEntry, previous: BookState) -> None:
        pass


def snapshot(seq: int = 1, symbol: str = "BTC-USD") -> bytes:
    return orjson.dumps(
        {
            "type": "snapshot",
            "symbol": symbol,
            "seq": seq,
            "bids": [["100.00", "2"], ["99.99", "1"]],
            "asks": [["100.01", "1"]],
        }
    )


def update(seq: int, price: str = "99.98", size: str = "1", symbol: str = "BTC-USD") -> bytes:
    return orjson.dumps(
        {"type": "update", "symbol": symbol, "seq": seq, "bids": [[price, size]], "asks": []}
    )


def make_server(**feed: object) -> tuple[FeedServer, BookBuilder, Dispatch]:
    dispatch = Dispatch()
    builder = BookBuilder([BTC, ETH], dispatch)
    settings: dict[str, object] = {"host": "127.0.0.1", "port": 0}
    settings.update(feed)
    server = FeedServer(FeedConfig.model_validate(settings), builder)
    return server, builder, dispatch


@pytest_asyncio.fixture
async def feed() -> AsyncIterator[tuple[FeedServer, BookBuilder, Dispatch]]:
    server, builder, dispatch = make_server(max_frame_bytes=256, bad_frame_limit=5)
    await server.start()
    yield server, builder, dispatch
    await server.stop()


Feed = tuple[FeedServer, BookBuilder, Dispatch]


@pytest.mark.asyncio
async def test_frames_reach_books_and_dispatch(feed: Feed) -> None:
    server, builder, dispatch = feed
    async with Publisher("127.0.0.1", server.port) as pub:
        await pub.send(snapshot() + b"\n" + update(2) + b"\n" + b'{"type":"heartbeat"}\n')
        await wait_until(lambda: builder.accepted["heartbeat"] == 1)
    entry = builder.books["BTC-USD"]
    assert entry.seq == 2
    assert entry.book.bid_size(9998) == 1000
    assert dispatch.books == [("BTC-USD", 1), ("BTC-USD", 2)]


@pytest.mark.asyncio
async def test_byte_by_byte_writes(feed: Feed) -> None:
    server, builder, dispatch = feed
    data = snapshot() + b"\n" + update(2) + b"\n"
    async with Publisher("127.0.0.1", server.port) as pub:
        for i in range(len(data)):
            await pub.send(data[i : i + 1])
            if i % 16 == 0:
                await asyncio.sleep(0)
        await wait_until(lambda: builder.books["BTC-USD"].seq == 2)
    assert sum(builder.rejected.values()) == 0
    assert dispatch.books == [("BTC-USD", 1), ("BTC-USD", 2)]


@pytest.mark.asyncio
async def test_many_frames_in_one_write() -> None:
    server, builder, dispatch = make_server()
    async with server:
        frames = [snapshot()] + [update(seq, f"99.{seq % 90 + 10:02d}") for seq in range(2, 3000)]
        async with Publisher("127.0.0.1", server.port) as pub:
            await pub.send(b"\n".join(frames) + b"\n")
            await wait_until(lambda: builder.books["BTC-USD"].seq == 2999)
        assert builder.accepted["update"] == 2998
        assert len(dispatch.books) == 2999
        assert server.stats.reads < 2999  # many frames per read


@pytest.mark.asyncio
async def test_frame_exactly_at_the_limit_and_one_over(feed: Feed) -> None:
    server, builder, _ = feed
    base = snapshot()
    at_limit = base[:-1] + b" " * (256 - len(base)) + b"}"
    assert len(at_limit) == 256
    over = base[:-1] + b" " * (257 - len(base)) + b"}"
    async with Publisher("127.0.0.1", server.port) as pub:
        await pub.send(at_limit + b"\n")
        await wait_until(lambda: builder.books["BTC-USD"].state is BookState.LIVE)
        await pub.send(over + b"\n" + update(2) + b"\n")
        await wait_until(lambda: builder.books["BTC-USD"].seq == 2)
    assert builder.rejected[Reason.OVERSIZED] == 1


@pytest.mark.asyncio
async def test_huge_frame_is_skipped_without_buffering(feed: Feed) -> None:
    server, builder, _ = feed
    async with Publisher("127.0.0.1", server.port) as pub:
        await pub.send(snapshot() + b"\n")
        huge = b'{"type":"update","junk":"' + b"x" * 2_000_000
        for i in range(0, len(huge), 65536):
            await pub.send(huge[i : i + 65536])
        await pub.send(b'"}\n' + update(2) + b"\n")
        await wait_until(lambda: builder.books["BTC-USD"].seq == 2)
    assert builder.rejected[Reason.OVERSIZED] == 1  # counted once
    session_buffers = [len(s._buffer) for s in server.sessions]
    assert all(size <= 65536 for size in session_buffers)


@pytest.mark.asyncio
async def test_garbage_and_invalid_utf8_cost_one_frame_each(feed: Feed) -> None:
    server, builder, _ = feed
    async with (
        Publisher("127.0.0.1", server.port) as bad,
        Publisher("127.0.0.1", server.port) as good,
    ):
        await good.send(snapshot() + b"\n")
        await bad.send(b'\x00\x01garbage\n{"type":"heartbeat","x":"\xff\xfe"}\n\n')
        await good.send(update(2) + b"\n")
        await wait_until(lambda: builder.books["BTC-USD"].seq == 2)
        await wait_until(lambda: builder.rejected[Reason.INVALID_UTF8] == 1)
    assert builder.rejected[Reason.MALFORMED_JSON] == 2  # garbage and the empty line
    assert server.stats.bad_peer_closed == 0


@pytest.mark.asyncio
async def test_disconnect_mid_frame_applies_nothing_and_makes_fed_books_stale(
    feed: Feed,
) -> None:
    server, builder, _ = feed
    async with Publisher("127.0.0.1", server.port) as other:
        await other.send(snapshot(symbol="ETH-USD") + b"\n")
        async with Publisher("127.0.0.1", server.port) as pub:
            await pub.send(snapshot() + b"\n" + update(2)[:20])
            await wait_until(lambda: builder.books["BTC-USD"].state is BookState.LIVE)
        await wait_until(lambda: builder.books["BTC-USD"].state is BookState.STALE)
        assert builder.books["BTC-USD"].seq == 1
        assert builder.books["ETH-USD"].state is BookState.LIVE  # fed by the other one
        # The partial frame is dropped and counted under its own reason.
        assert {k: v for k, v in builder.rejected.items() if v} == {Reason.TRUNCATED: 1}


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["fin", "reset"])
async def test_a_partial_frame_at_close_is_counted_as_truncated(feed: Feed, how: str) -> None:
    import socket
    import struct

    server, builder, _ = feed
    _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(snapshot() + b"\n" + update(2)[:30])
    await writer.drain()
    await wait_until(lambda: builder.books["BTC-USD"].state is BookState.LIVE)
    if how == "reset":
        sock = writer.get_extra_info("socket")
        # SO_LINGER on with a zero timeout: close() sends RST, not FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
    else:
        writer.close()
        await writer.wait_closed()
    await wait_until(lambda: builder.rejected[Reason.TRUNCATED] == 1, what="the count")
    assert sum(builder.rejected.values()) == 1
    assert builder.books["BTC-USD"].seq == 1  # nothing of the partial frame applied
    assert server.stats.connections_closed == 1


@pytest.mark.asyncio
async def test_an_oversized_tail_at_close_is_counted_once(feed: Feed) -> None:
    server, builder, _ = feed
    async with Publisher("127.0.0.1", server.port) as pub:
        await pub.send(b"x" * (server.config.max_frame_bytes + 10))
        await wait_until(lambda: builder.rejected[Reason.OVERSIZED] == 1)
    await wait_until(lambda: server.stats.connections_closed == 1)
    assert {k: v for k, v in builder.rejected.items() if v} == {Reason.OVERSIZED: 1}


@pytest.mark.asyncio
async def test_idle_connection_makes_its_books_stale() -> None:
    server, builder, _ = make_server(idle_timeout_s=0.2)
    async with server, Publisher("127.0.0.1", server.port) as pub:
        await pub.send(snapshot() + b"\n")
        await wait_until(lambda: builder.books["BTC-USD"].state is BookState.LIVE)
        await wait_until(lambda: builder.books["BTC-USD"].state is BookState.STALE, 3)
        assert server.stats.idle_timeouts == 1
        await pub.send(snapshot(seq=5) + b"\n")
        await wait_until(lambda: builder.books["BTC-USD"].state is BookState.LIVE)
        assert not next(iter(server.sessions)).idle


@pytest.mark.asyncio
async def test_heartbeats_keep_a_connection_alive() -> None:
    # The feed's clock is a hand-moved one: a test process starved by a busy
    # machine cannot make a heartbeat late.
    now = [10**9]
    builder = BookBuilder([BTC, ETH], Dispatch())
    config = FeedConfig.model_validate({"host": "127.0.0.1", "port": 0, "idle_timeout_s": 0.3})
    server = FeedServer(config, builder, clock=lambda: now[0])
    async with server, Publisher("127.0.0.1", server.port) as pub:
        await pub.send(snapshot() + b"\n")
        await wait_until(lambda: builder.books["BTC-USD"].state is BookState.LIVE)
        (session,) = server.sessions
        for _ in range(8):  # 0.8 s of feed time, a heartbeat every 0.1 s
            now[0] += 100_000_000
            await pub.send(b'{"type":"heartbeat"}\n')
            await wait_until(lambda: session.last_rx_ns == now[0], what="the heartbeat")
            server.check_idle()
        assert builder.books["BTC-USD"].state is BookState.LIVE
        assert server.stats.idle_timeouts == 0
        now[0] += 300_000_000  # then silence for the idle timeout
        server.check_idle()
        assert builder.books["BTC-USD"].state is BookState.STALE
        assert server.stats.idle_timeouts == 1


@pytest.mark.asyncio
async def test_bad_peer_is_closed_after_the_threshold(feed: Feed) -> None:
    server, builder, _ = feed
    async with Publisher("127.0.0.1", server.port) as good:
        await good.send(snapshot() + b"\n")
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"nope\n" * 4 + b'{"type":"heartbeat"}\n' + b"nope\n" * 4)
        await writer.drain()
        await wait_until(lambda: builder.rejected[Reason.MALFORMED_JSON] == 8)
        assert server.stats.bad_peer_closed == 0  # the heartbeat reset the streak
        writer.write(b"nope\n" * 10)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
        writer.close()
        assert server.stats.bad_peer_closed == 1
        assert builder.rejected[Reason.MALFORMED_JSON] == 9  # closed at the fifth in a row
        await good.send(update(2) + b"\n")
        await wait_until(lambda: builder.books["BTC-USD"].seq == 2)


@pytest.mark.asyncio
async def test_a_thousand_concurrent_publishers() -> None:
    symbols = [Instrument(f"S{i:04d}", "0.01", "1") for i in range(1000)]
    builder = BookBuilder(symbols)
    server = FeedServer(FeedConfig(host="127.0.0.1", port=0, recv_buffer_bytes=4096), builder)
    async with server:
        publishers = [Publisher("127.0.0.1", server.port) for _ in range(1000)]
        await asyncio.gather(*(p.connect() for p in publishers))
        await wait_until(lambda: len(server.sessions) == 1000, 20)

        async def run(i: int, pub: Publisher) -> None:
            first = i % 1000
            second = (i + 1) % 1000
            frames = [snapshot(1, f"S{first:04d}")]
            if i % 2 == 0:  # any mix of symbols per connection
                frames.append(update(2, "99.50", "3", f"S{first:04d}"))
            frames.append(b'{"type":"heartbeat"}')
            del second
            await pub.send(b"\n".join(frames) + b"\n")

        await asyncio.gather(*(run(i, p) for i, p in enumerate(publishers)))
        await wait_until(lambda: builder.accepted["heartbeat"] == 1000, 20)
        assert builder.accepted["snapshot"] == 1000
        assert builder.accepted["update"] == 500
        assert all(e.state is BookState.LIVE for e in builder.books.values())
        await asyncio.gather(*(p.close() for p in publishers))
        await wait_until(lambda: not server.sessions, 20)
        assert all(e.state is BookState.STALE for e in builder.books.values())
        assert server.stats.connections_opened == server.stats.connections_closed == 1000


def _rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.asyncio
async def test_flow_control_keeps_memory_flat_under_a_fast_publisher() -> None:
    """A publisher far faster than the engine: TCP flow control holds it back."""
    server, builder, dispatch = make_server()
    dispatch = Dispatch(delay_s=0.0002, record=False)  # at most ~5,000 updates/s
    symbols = 4
    builder = BookBuilder(
        [Instrument(f"SYM{i:03d}", "0.01", "0.001") for i in range(symbols)], dispatch
    )
    server.builder = builder
    async with server:
        publisher = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "trading_engine.sim.publisher", "--port", str(server.port),
            "--symbols", str(symbols), "--duration", "4",
            cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            await wait_until(lambda: builder.accepted["update"] > 1000, 10)
            samples = []
            for _ in range(6):
                await asyncio.sleep(0.4)
                samples.append(_rss_bytes())
            out, _ = await asyncio.wait_for(publisher.communicate(), 30)
        finally:
            if publisher.returncode is None:
                publisher.kill()
                await publisher.wait()
    sent = int(out.split()[1])
    applied = sum(builder.accepted.values())
    # The publisher could only send what the engine read, plus the kernel's
    # socket buffers: it was held back, not buffered in the engine.
    assert sent > applied
    assert sent - applied < 200_000
    growth = max(samples) - min(samples)
    assert growth < 8 * 1024 * 1024, f"RSS grew by {growth} bytes"


@pytest.mark.asyncio
async def test_capture_records_every_complete_frame(tmp_path: Path) -> None:
    path = tmp_path / "feed.capture"
    capture = CaptureWriter(path)
    dispatch = Dispatch()
    builder = BookBuilder([BTC, ETH], dispatch)
    server = FeedServer(
        FeedConfig(host="127.0.0.1", port=0, max_frame_bytes=256), builder, capture=capture
    )
    async with server:
        frames = [snapshot(), update(2), b"garbage", update(3)]
        async with Publisher("127.0.0.1", server.port) as pub:
            await pub.send(b"\n".join(frames) + b"\n" + b"x" * 300 + b"\n")
            await wait_until(lambda: builder.books["BTC-USD"].seq == 3)
    capture.close()
    records = list(read_capture(path))
    assert [frame for _, frame in records] == frames  # not the oversized one
    stamps = [ns for ns, _ in records]
    assert stamps == sorted(stamps)
    assert stamps[0] > 0


@pytest.mark.asyncio
async def test_random_walk_publisher_keeps_books_live() -> None:
    instruments = [Instrument(f"SYM{i:03d}", "0.01", "0.001") for i in range(3)]
    builder = BookBuilder(instruments)
    async with FeedServer(FeedConfig(host="127.0.0.1", port=0), builder) as server:
        async with Publisher("127.0.0.1", server.port) as pub:
            sent = await pub.publish(random_walk_stream(instruments, seed=7), count=3000)
        await wait_until(lambda: sum(builder.accepted.values()) == sent)
    assert sum(builder.rejected.values()) == 0
    builder.check()
