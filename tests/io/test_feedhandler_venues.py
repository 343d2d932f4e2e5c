"""The feed handler with the OKX and Kraken dialects: scripted venue, real engine feed servers.

Each venue's recorded or documented snapshot must arrive whole in the
engine's book, and a corrupted checksum must make the engine's book stale
at once and live again after exactly one re-subscription.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from tests.helpers import wait_until
from tests.io.test_feedhandler import Running, start_engine
from tests.venues.fake_venue import FakeVenue
from tests.venues.kraken import messages as kraken
from trading_engine import BookState, Instrument
from trading_engine.io.feedhandler import EngineAddress, FeedHandler, FeedHandlerSettings
from trading_engine.venues.registry import venue as venue_named

DATA = Path(__file__).resolve().parents[1] / "data" / "venues"


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeVenue]:
    made = FakeVenue()
    await made.start()
    yield made
    await made.stop()


def handler(
    name: str, symbol: str, fake: FakeVenue, port: int, registry: CollectorRegistry
) -> FeedHandler:
    spec = venue_named(name)
    return FeedHandler(
        spec.feed_dialect([symbol], fake.rest_url),
        ws_url=f"{fake.ws_url}/stream",
        engines=[EngineAddress("127.0.0.1", port)],
        symbol_map={symbol: symbol},
        settings=FeedHandlerSettings(backoff_initial_s=0.05, backoff_max_s=0.2, timer_s=0.05),
        registry=registry,
    )


def received(fake: FakeVenue, *words: str) -> int:
    return sum(all(word in text for word in words) for text in fake.received)


@pytest.mark.asyncio
async def test_okx_snapshot_reaches_the_engine_and_a_bad_checksum_resubscribes(
    fake: FakeVenue,
) -> None:
    # Recorded before OKX numbered the channel: the sequence fields are added, as OKX
    # sends them on a snapshot today (prevSeqId -1).
    message = json.loads((DATA / "okx" / "books_snapshot_2022.json").read_text())
    message["data"][0].update(prevSeqId=-1, seqId=10)
    snapshot_text = json.dumps(message, separators=(",", ":"))
    snapshot = message["data"][0]
    engine = await start_engine(Instrument("BTC-USDT", "0.00001", "1"))
    registry = CollectorRegistry()
    try:
        async with Running(handler("okx", "BTC-USDT", fake, engine.server.port, registry)):
            await fake.connected()
            await wait_until(lambda: received(fake, '"subscribe"', "books") == 1, what="subscribe")
            await fake.send(snapshot_text)
            want = (
                {Decimal(p): Decimal(s) for p, s, *_ in snapshot["bids"]},
                {Decimal(p): Decimal(s) for p, s, *_ in snapshot["asks"]},
            )
            await wait_until(lambda: engine.levels("BTC-USDT") == want, what="the OKX snapshot")
            assert engine.state("BTC-USDT") is BookState.LIVE
            # An update whose checksum is not OKX's for the book it makes.
            top = snapshot["bids"][0][0]
            bad = {"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": "update",
                   "data": [{"asks": [], "bids": [[top, "7", "0", "1"]], "ts": "1659792392541",
                             "checksum": 12345, "prevSeqId": 10, "seqId": 11}]}  # fmt: skip
            await fake.send(json.dumps(bad))
            await wait_until(lambda: engine.state("BTC-USDT") is BookState.STALE, what="stale")
            await wait_until(
                lambda: received(fake, '"subscribe"', "books") == 2, what="one re-subscription"
            )
            assert received(fake, '"unsubscribe"', "books") == 1
            await fake.send(snapshot_text)
            await wait_until(
                lambda: (
                    engine.state("BTC-USDT") is BookState.LIVE and engine.levels("BTC-USDT") == want
                ),
                what="live again",
            )
            assert (
                registry.get_sample_value(
                    "trading_engine_feed_handler_resyncs_total",
                    {"venue": "okx", "reason": "checksum"},
                )
                == 1.0
            )
    finally:
        await engine.server.stop()


@pytest.mark.asyncio
async def test_kraken_documented_snapshot_reaches_the_engine_and_a_bad_checksum_resubscribes(
    fake: FakeVenue,
) -> None:
    snapshot_text = (DATA / "kraken" / "book_snapshot_docs.json").read_text().strip()
    snapshot = json.loads(snapshot_text, parse_float=Decimal)["data"][0]
    engine = await start_engine(Instrument("BTC/USD", "0.1", "0.00000001"))
    registry = CollectorRegistry()
    try:
        async with Running(handler("kraken", "BTC/USD", fake, engine.server.port, registry)):
            await fake.connected()
            await wait_until(lambda: received(fake, "instrument") == 1, what="instrument")
            await fake.send(kraken.instrument_snapshot({"BTC/USD": (1, 8)}))
            await wait_until(lambda: received(fake, '"book"') == 1, what="book subscription")
            await fake.send(snapshot_text)
            bids = {Decimal(level["price"]): Decimal(level["qty"]) for level in snapshot["bids"]}
            asks = {Decimal(level["price"]): Decimal(level["qty"]) for level in snapshot["asks"]}
            await wait_until(lambda: engine.levels("BTC/USD") == (bids, asks), what="snapshot")
            assert engine.state("BTC/USD") is BookState.LIVE
            best = max(bids)
            changed = {**bids, best: Decimal("0.2")}
            wrong = kraken.ref_checksum(changed, asks, 1, 8) ^ 1
            await fake.send(
                kraken.book_message("update", "BTC/USD", [(best, Decimal("0.2"))], [], wrong)
            )
            await wait_until(lambda: engine.state("BTC/USD") is BookState.STALE, what="stale")
            await wait_until(lambda: received(fake, '"book"') == 3, what="unsubscribe, subscribe")
            await fake.send(snapshot_text)
            await wait_until(
                lambda: (
                    engine.state("BTC/USD") is BookState.LIVE
                    and engine.levels("BTC/USD") == (bids, asks)
                ),
                what="live again",
            )
            assert (
                registry.get_sample_value(
                    "trading_engine_feed_handler_resyncs_total",
                    {"venue": "kraken", "reason": "checksum"},
                )
                == 1.0
            )
    finally:
        await engine.server.stop()
