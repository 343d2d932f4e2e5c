"""The feed handler runtime between a scripted venue and real engine feed servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from tests.helpers import wait_until
from tests.venues.binance.book import ReferenceBook
from tests.venues.fake_venue import FakeVenue
from trading_engine import BookBuilder, BookState, Instrument, Reason
from trading_engine.config import FeedConfig
from trading_engine.core.feeds import BookFrame
from trading_engine.core.sharding import shard_of
from trading_engine.io.feed import FeedServer
from trading_engine.io.feedhandler import EngineAddress, FeedHandler, FeedHandlerSettings
from trading_engine.io.venue_capture import VenueCaptureWriter, read_venue_capture, replay
from trading_engine.venues.binance import BinanceMarketData

DATA = Path(__file__).resolve().parents[1] / "data" / "venues" / "binance"
SESSION = list(read_venue_capture(DATA / "xmrbtc_session.capture"))
MESSAGES = [event.payload.decode() for event in SESSION if event.kind == "ws"]
SNAPSHOT = (DATA / "xmrbtc_depth_snapshot.json").read_bytes()
DEPTH_PATH = "/api/v3/depth"
XMRBTC = Instrument("XMRBTC", "0.000001", "0.001")


class Listener:
    def on_book(self, entry: object, recv_ns: int) -> None:
        pass

    def on_trade(self, entry: object, trade: object, recv_ns: int) -> None:
        pass

    def on_state(self, entry: object, previous: object) -> None:
        pass


@dataclass
class Engine:
    server: FeedServer
    builder: BookBuilder

    @property
    def address(self) -> EngineAddress:
        return EngineAddress("127.0.0.1", self.server.port)

    def state(self, symbol: str = "XMRBTC") -> BookState:
        return self.builder.books[symbol].state

    def levels(
        self, symbol: str = "XMRBTC"
    ) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
        entry = self.builder.books[symbol]
        inst = entry.instrument
        bids, asks = entry.book.depth(10_000)
        return (
            {Decimal(inst.format_price(p)): Decimal(inst.format_size(s)) for p, s in bids},
            {Decimal(inst.format_price(p)): Decimal(inst.format_size(s)) for p, s in asks},
        )


async def start_engine(
    *instruments: Instrument, port: int = 0, max_frame_bytes: int = 65536
) -> Engine:
    builder = BookBuilder(list(instruments) or [XMRBTC], Listener())  # type: ignore[arg-type]
    feed = {"host": "127.0.0.1", "port": port, "max_frame_bytes": max_frame_bytes}
    server = FeedServer(FeedConfig.model_validate(feed), builder)
    await server.start()
    return Engine(server, builder)


@pytest_asyncio.fixture
async def venue() -> AsyncIterator[FakeVenue]:
    fake = FakeVenue()
    fake.rest[DEPTH_PATH] = [(200, SNAPSHOT)]
    await fake.start()
    yield fake
    await fake.stop()


@pytest_asyncio.fixture
async def engine() -> AsyncIterator[Engine]:
    made = await start_engine()
    yield made
    await made.server.stop()


def handler_for(
    venue: FakeVenue,
    engines: list[EngineAddress],
    symbols: dict[str, str] | None = None,
    registry: CollectorRegistry | None = None,
    **settings: float,
) -> FeedHandler:
    symbol_map = symbols or {"XMRBTC": "XMRBTC"}
    return FeedHandler(
        BinanceMarketData(list(symbol_map), venue.rest_url),
        ws_url=venue.ws_url,
        engines=engines,
        symbol_map=symbol_map,
        settings=FeedHandlerSettings(
            **{"backoff_initial_s": 0.05, "backoff_max_s": 0.2, "timer_s": 0.05, **settings}  # type: ignore[arg-type]
        ),
        registry=registry,
    )


def recorded_book(count: int = len(MESSAGES)) -> ReferenceBook:
    """The book the recorded session gives after its first ``count`` messages."""
    dialect, book = BinanceMarketData(["XMRBTC"], "http://x"), ReferenceBook()
    book.apply(dialect.on_open(0))
    book.apply(dialect.on_snapshot("XMRBTC", SNAPSHOT, 0))
    for text in MESSAGES[:count]:
        book.apply(dialect.on_message(text, 0))
    return book


def depth(first: int, last: int, bids: list[list[str]]) -> str:
    data = {"e": "depthUpdate", "E": 1, "s": "XMRBTC", "U": first, "u": last, "b": bids, "a": []}
    return json.dumps({"stream": "xmrbtc@depth@100ms", "data": data})


class Running:
    """A handler running as a task, stopped at exit."""

    def __init__(self, handler: FeedHandler) -> None:
        self.handler = handler
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> FeedHandler:
        self.task = asyncio.create_task(self.handler.run())
        return self.handler

    async def __aexit__(self, *exc: object) -> None:
        self.handler.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(
        f"trading_engine_feed_handler_{name}", {"venue": "binance", **labels}
    )
    return 0.0 if value is None else value


@pytest.mark.asyncio
async def test_recorded_session_builds_the_same_book_in_the_engine(
    venue: FakeVenue, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    async with Running(handler_for(venue, [engine.address], registry=registry)):
        await venue.connected()
        assert venue.connects[0] == "/stream?streams=xmrbtc@depth@100ms/xmrbtc@trade"
        await venue.send(*MESSAGES)
        expected = recorded_book()
        await wait_until(
            lambda: (
                engine.state() is BookState.LIVE
                and engine.levels() == (expected.bids["XMRBTC"], expected.asks["XMRBTC"])
            ),
            what="the engine's book equal to the recorded session's",
        )
        assert venue.requests == ["/api/v3/depth?symbol=XMRBTC&limit=5000"]
        assert metric(registry, "messages_total") == len(MESSAGES)
        assert metric(registry, "dialect_errors_total", reason="unsubscribed_stream") == 4
        assert metric(registry, "dialect_errors_total", reason="unknown_symbol") == 2
        assert metric(registry, "frames_total", type="snapshot") == 1
        assert metric(registry, "connected") == 1
        # The session may all have been buffered before the snapshot, so published by
        # the snapshot's task: one event more is published as it is received.
        events = [json.loads(text)["data"] for text in MESSAGES]
        last = max(e["u"] for e in events if e.get("e") == "depthUpdate" and e["s"] == "XMRBTC")
        await venue.send(depth(last + 1, last + 1, []))
        await wait_until(
            lambda: metric(registry, "receive_to_publish_seconds_count") >= 1,
            what="a message received and published",
        )
        assert metric(registry, "symbol_frames_total", symbol="XMRBTC") == metric(
            registry, "frames_total", type="snapshot"
        ) + metric(registry, "frames_total", type="update")
        # The six ignored messages are counted each, and logged once a burst.
        await wait_until(
            lambda: (
                sum(
                    int(part.split()[0])
                    for record in caplog.records
                    for part in record.getMessage().split(": ", 1)[1].split(", ")
                    if "ignored" in part
                )
                == 6
            ),
            what="the ignored messages logged",
        )
        lines = [r for r in caplog.records if "ignored" in r.getMessage()]
        assert len(lines) < 6


@pytest.mark.asyncio
async def test_a_gap_makes_the_engine_book_stale_until_the_new_snapshot(
    venue: FakeVenue, engine: Engine
) -> None:
    registry = CollectorRegistry()
    async with Running(handler_for(venue, [engine.address], registry=registry)):
        await venue.connected()
        await venue.send(*MESSAGES[:3])  # live as of 717720861
        await wait_until(lambda: engine.state() is BookState.LIVE, what="live")
        newer = json.loads(SNAPSHOT)
        newer["lastUpdateId"] = 717720870
        venue.rest[DEPTH_PATH] = [(200, json.dumps(newer).encode())]
        await venue.send(depth(717720869, 717720869, [["0.005769", "1"]]))  # 862..868 missing
        await wait_until(lambda: engine.state() is BookState.STALE, what="stale")
        assert metric(registry, "resyncs_total", reason="gap") == 1
        await wait_until(lambda: len(venue.requests) == 2, what="a second snapshot request")
        assert engine.state() is BookState.STALE  # not before an event confirms the snapshot
        await venue.send(depth(717720871, 717720871, [["0.005770", "2"]]))
        await wait_until(lambda: engine.state() is BookState.LIVE, what="live again")
        bids, _ = engine.levels()
        assert bids[Decimal("0.00577")] == 2
        assert metric(registry, "resyncs_total", reason="gap") == 1


@pytest.mark.asyncio
async def test_a_venue_close_reconnects_and_costs_one_snapshot(
    venue: FakeVenue, engine: Engine
) -> None:
    registry = CollectorRegistry()
    async with Running(handler_for(venue, [engine.address], registry=registry)):
        await venue.connected()
        await venue.send(*MESSAGES[:3])
        await wait_until(lambda: engine.state() is BookState.LIVE, what="live")
        await venue.close()
        await wait_until(lambda: engine.state() is BookState.STALE, what="stale at the close")
        await venue.connected(2)
        await wait_until(lambda: len(venue.requests) == 2, what="one new snapshot request")
        await venue.send(*MESSAGES[:3])
        await wait_until(lambda: engine.state() is BookState.LIVE, what="live again")
        assert metric(registry, "reconnects_total", reason="venue_closed") == 1
        assert len(venue.requests) == 2


@pytest.mark.asyncio
async def test_pings_are_answered_with_their_payload(venue: FakeVenue, engine: Engine) -> None:
    registry = CollectorRegistry()
    async with Running(handler_for(venue, [engine.address], registry=registry)):
        await venue.connected()
        await venue.ping(b"1628952397")
        await wait_until(lambda: venue.pongs == [b"1628952397"], what="the pong")
        assert metric(registry, "pings_total") == 1


@pytest.mark.asyncio
async def test_a_silent_venue_is_reconnected(venue: FakeVenue, engine: Engine) -> None:
    registry = CollectorRegistry()
    async with Running(handler_for(venue, [engine.address], registry=registry, idle_timeout_s=0.3)):
        await venue.connected()
        await venue.connected(2)
        assert metric(registry, "reconnects_total", reason="idle") >= 1


@pytest.mark.asyncio
async def test_failed_and_slow_snapshots_are_retried(venue: FakeVenue, engine: Engine) -> None:
    registry = CollectorRegistry()
    venue.rest[DEPTH_PATH] = [(503, b"busy"), (200, SNAPSHOT)]
    venue.rest_delay_s = 0.2
    async with Running(handler_for(venue, [engine.address], registry=registry)):
        await venue.connected()
        await venue.send(*MESSAGES[:3])
        await wait_until(lambda: engine.state() is BookState.LIVE, what="live")
        assert metric(registry, "snapshot_failures_total", reason="http_5xx") == 1
        assert metric(registry, "snapshot_fetch_seconds_count") == 1
        assert metric(registry, "snapshot_fetch_seconds_sum") >= 0.2


@pytest.mark.asyncio
async def test_an_engine_that_restarts_gets_a_snapshot_from_the_handlers_copy(
    venue: FakeVenue, engine: Engine
) -> None:
    registry = CollectorRegistry()
    async with Running(handler_for(venue, [engine.address], registry=registry)):
        await venue.connected()
        await venue.send(*MESSAGES)
        expected = recorded_book()
        want = (expected.bids["XMRBTC"], expected.asks["XMRBTC"])
        await wait_until(lambda: engine.levels() == want, what="the recorded book")
        port = engine.server.port
        address = str(engine.address)
        await engine.server.stop()
        restarted = await start_engine(port=port)
        try:
            await wait_until(
                lambda: restarted.state() is BookState.LIVE and restarted.levels() == want,
                what="the restarted engine's book",
            )
        finally:
            await restarted.server.stop()
        assert len(venue.requests) == 1  # the venue was not asked again
        assert metric(registry, "engine_failures_total", engine=address, reason="closed") == 1


@pytest.mark.asyncio
async def test_a_snapshot_larger_than_a_frame_is_split(venue: FakeVenue) -> None:
    """The recorded snapshot is about 1.2 kB; the engine here takes frames of 400 bytes."""
    registry = CollectorRegistry()
    engine = await start_engine(max_frame_bytes=400)
    try:
        handler = handler_for(venue, [engine.address], registry=registry, max_frame_bytes=400)
        async with Running(handler):
            await venue.connected()
            await venue.send(*MESSAGES)
            expected = recorded_book()
            want = (expected.bids["XMRBTC"], expected.asks["XMRBTC"])
            await wait_until(lambda: engine.levels() == want, what="every level")
            assert engine.state() is BookState.LIVE
            assert metric(registry, "frames_total", type="snapshot") == 1
            assert engine.builder.rejected[Reason.OVERSIZED] == 0
    finally:
        await engine.server.stop()


@pytest.mark.asyncio
async def test_each_symbol_goes_to_the_engine_of_its_shard(venue: FakeVenue) -> None:
    symbols = {"XMRBTC": "XMRBTC", "BNBBTC": "BNBBTC"}
    instruments = [XMRBTC, Instrument("BNBBTC", "0.000001", "0.001")]
    engines = [await start_engine(*instruments), await start_engine(*instruments)]
    bnb = b'{"lastUpdateId":10,"bids":[["0.0009","1"]],"asks":[["0.0011","2"]]}'
    venue.rest[DEPTH_PATH] = [(200, SNAPSHOT), (200, bnb)]
    try:
        handler = handler_for(venue, [e.address for e in engines], symbols)
        async with Running(handler):
            await venue.connected()
            bnb_event = {
                "e": "depthUpdate",
                "E": 1,
                "s": "BNBBTC",
                "U": 11,
                "u": 11,
                "b": [],
                "a": [],
            }
            await wait_until(lambda: len(venue.requests) == 2, what="both snapshots")
            await venue.send(
                *MESSAGES[:3], json.dumps({"stream": "bnbbtc@depth@100ms", "data": bnb_event})
            )
            for symbol in symbols:
                owner = engines[shard_of(symbol, 2)]
                other = engines[1 - shard_of(symbol, 2)]
                await wait_until(
                    lambda o=owner, s=symbol: o.state(s) is BookState.LIVE, what=symbol
                )  # type: ignore[misc]
                assert other.state(symbol) is BookState.AWAITING_SNAPSHOT
    finally:
        for made in engines:
            await made.server.stop()


@pytest.mark.asyncio
async def test_capture_replays_to_the_same_frames(
    venue: FakeVenue, engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "session.capture"
    capture = VenueCaptureWriter(path)
    handler = handler_for(venue, [engine.address])
    handler.capture = capture
    async with Running(handler):
        await venue.connected()
        await venue.send(*MESSAGES)
        expected = recorded_book()
        await wait_until(
            lambda: engine.levels() == (expected.bids["XMRBTC"], expected.asks["XMRBTC"]),
            what="the recorded book",
        )
    capture.close()
    events = list(read_venue_capture(path))
    kinds = [event.kind for event in events]
    assert kinds[0] == "open"
    assert kinds.count("ws") == len(MESSAGES)
    assert kinds.count("snapshot") == 1
    assert kinds[-2:] == ["close", "out"]  # the stale marker goes out after the close
    # Replaying the capture through a fresh dialect gives the frames that went out.
    book = ReferenceBook()
    for actions in replay(BinanceMarketData(["XMRBTC"], venue.rest_url), events):
        book.apply(actions)
    assert (book.bids["XMRBTC"], book.asks["XMRBTC"]) == engine.levels()
    out = [json.loads(event.payload) for event in events if event.kind == "out"]
    published = sum(1 for frame in out if frame["type"] in ("snapshot", "update"))
    frames = [
        a
        for actions in replay(BinanceMarketData(["XMRBTC"], venue.rest_url), events)
        for a in actions
        if isinstance(a, BookFrame)
    ]
    # One more update went out than the replay made: the stale marker at the close.
    assert published == len(frames) + 1


class Breaking(BinanceMarketData):
    """A dialect with a bug: it raises on one kind of message."""

    def on_message(self, text: str, now_ns: int) -> list[Any]:
        if "boom" in text:
            raise KeyError("boom")
        return super().on_message(text, now_ns)


@pytest.mark.asyncio
async def test_a_dialect_that_raises_costs_a_reconnect_not_the_handler(
    venue: FakeVenue, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    handler = FeedHandler(
        Breaking(["XMRBTC"], venue.rest_url),
        ws_url=venue.ws_url,
        engines=[engine.address],
        symbol_map={"XMRBTC": "XMRBTC"},
        settings=FeedHandlerSettings(backoff_initial_s=0.05, backoff_max_s=0.2, timer_s=0.05),
        registry=registry,
    )
    async with Running(handler):
        await venue.connected()
        await venue.send(*MESSAGES[:3])
        await wait_until(lambda: engine.state() is BookState.LIVE, what="live")
        await venue.send('{"boom":1}')
        await wait_until(lambda: engine.state() is BookState.STALE, what="stale")
        await venue.connected(2)
        await venue.send(*MESSAGES[:3])
        await wait_until(lambda: engine.state() is BookState.LIVE, what="live again")
        assert metric(registry, "reconnects_total", reason="dialect_failure") == 1
    assert "the dialect failed" in caplog.text


@pytest.mark.asyncio
async def test_a_corrupted_level_costs_one_resync_and_the_book_is_live_again(
    venue: FakeVenue, engine: Engine
) -> None:
    registry = CollectorRegistry()
    async with Running(handler_for(venue, [engine.address], registry=registry)):
        await venue.connected()
        await venue.send(*MESSAGES[:3])  # live as of 717720861
        await wait_until(lambda: engine.state() is BookState.LIVE, what="live")
        corrupted = json.loads(depth(717720862, 717720862, [["0.005773", "48.024"]]))
        corrupted["data"]["b"][0][1] = "4.8e1"  # not a plain decimal string
        newer = json.loads(SNAPSHOT)
        newer["lastUpdateId"] = 717720862
        venue.rest[DEPTH_PATH] = [(200, json.dumps(newer).encode())]
        await venue.send(json.dumps(corrupted))
        await wait_until(lambda: engine.state() is BookState.STALE, what="stale")
        await wait_until(lambda: len(venue.requests) == 2, what="one new snapshot")
        await venue.send(depth(717720863, 717720863, [["0.005704", "5.246"]]))
        await wait_until(lambda: engine.state() is BookState.LIVE, what="live again")
        assert metric(registry, "resyncs_total", reason="bad_level") == 1
        assert metric(registry, "dialect_errors_total", reason="bad_level") == 1
        assert len(venue.requests) == 2


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "answer_delay_s",
    # The event usually comes after the snapshot's answer, which then waits for
    # it; held back 0.5 s, the answer finds the event buffered and the fetch
    # that brought it refutes it.
    [0.0, 0.5],
    ids=["refuted-by-the-event", "refuted-on-arrival"],
)
async def test_a_snapshot_older_than_the_stream_is_fetched_again(
    venue: FakeVenue, engine: Engine, answer_delay_s: float
) -> None:
    registry = CollectorRegistry()
    older = json.loads(SNAPSHOT)
    older["lastUpdateId"] = 717720850  # events 717720851..855 never reach this stream
    venue.rest[DEPTH_PATH] = [(200, json.dumps(older).encode()), (200, SNAPSHOT)]
    venue.rest_delay_s = answer_delay_s
    async with Running(handler_for(venue, [engine.address], registry=registry)):
        await venue.connected()
        await wait_until(lambda: len(venue.requests) == 1, what="the first snapshot")
        await venue.send(MESSAGES[0])  # U = 717720856: the snapshot is too old
        await wait_until(lambda: len(venue.requests) == 2, what="a second snapshot")
        assert engine.state() is BookState.AWAITING_SNAPSHOT
        await venue.send(*MESSAGES[1:3])
        await wait_until(lambda: engine.state() is BookState.LIVE, what="live")
        assert metric(registry, "dialect_errors_total", reason="snapshot_stale") == 1
