"""The Binance spot dialect on a recorded session and on the documented sequencing rules."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.venues.binance.book import ReferenceBook
from trading_engine.core.feeds import BookFrame, FetchSnapshot, Resync, TradeFrame
from trading_engine.io.venue_capture import CaptureEvent, read_venue_capture, replay
from trading_engine.venues.binance import BinanceMarketData, feed_dialect

DATA = Path(__file__).resolve().parents[2] / "data" / "venues" / "binance"
SESSION = DATA / "xmrbtc_session.capture"
SNAPSHOT = (DATA / "xmrbtc_depth_snapshot.json").read_bytes()
REST = "https://api.binance.com"


def session() -> list[CaptureEvent]:
    return list(read_venue_capture(SESSION))


def ws_texts() -> list[str]:
    return [event.payload.decode() for event in session() if event.kind == "ws"]


def depth_events(symbol: str = "XMRBTC") -> list[str]:
    return [
        text
        for text in ws_texts()
        if json.loads(text)["data"].get("e") == "depthUpdate"
        and json.loads(text)["data"]["s"] == symbol
    ]


def dialect() -> BinanceMarketData:
    made = feed_dialect(["XMRBTC"], REST)
    assert isinstance(made, BinanceMarketData)
    return made


def test_connect_url_is_the_combined_stream_of_depth_and_trades() -> None:
    made = BinanceMarketData(["XMRBTC", "BTCUSDT"], REST)
    assert made.connect_url("wss://stream.binance.com:9443/") == (
        "wss://stream.binance.com:9443/stream?streams="
        "xmrbtc@depth@100ms/xmrbtc@trade/btcusdt@depth@100ms/btcusdt@trade"
    )
    assert made.on_open(0) == [
        FetchSnapshot("XMRBTC", f"{REST}/api/v3/depth?symbol=XMRBTC&limit=5000"),
        FetchSnapshot("BTCUSDT", f"{REST}/api/v3/depth?symbol=BTCUSDT&limit=5000"),
    ]


def test_recorded_session_agrees_with_the_venues_book_ticker_at_every_update_id() -> None:
    """The venue's bookTicker gives the best bid and ask as of its update id ``u``."""
    made, book = dialect(), ReferenceBook()
    after_u: dict[int, tuple[Any, Any]] = {}
    tickers: list[dict[str, Any]] = []
    for event, actions in zip(session(), replay(made, session()), strict=True):
        book.apply(actions)
        if event.kind != "ws":
            continue
        data = json.loads(event.payload)["data"]
        if "e" not in data and data["s"] == "XMRBTC":
            tickers.append(data)
        elif data.get("e") == "depthUpdate" and data["s"] == "XMRBTC" and book.live.get("XMRBTC"):
            after_u[data["u"]] = book.best("XMRBTC")
    checked = 0
    for ticker in tickers:
        if ticker["u"] in after_u:
            expected = (
                (Decimal(ticker["b"]), Decimal(ticker["B"])),
                (Decimal(ticker["a"]), Decimal(ticker["A"])),
            )
            assert after_u[ticker["u"]] == expected, ticker
            checked += 1
    assert checked == 3  # update ids 717720862, 717720864 and 717720866
    assert book.resyncs == []
    assert made.errors == {"unknown_symbol": 2, "unsubscribed_stream": 4}


def test_the_snapshot_waits_for_an_event_that_brackets_it() -> None:
    made = dialect()
    made.on_open(0)
    first, second = depth_events()[:2]
    assert made.on_message(first, 1) == []  # u == lastUpdateId: dropped at the snapshot
    assert made.on_snapshot("XMRBTC", SNAPSHOT, 2) == []  # nothing left to confirm it yet
    actions = made.on_message(second, 3)  # U == lastUpdateId + 1
    assert [type(a) for a in actions] == [BookFrame, BookFrame]
    snapshot, update = actions
    assert isinstance(snapshot, BookFrame)
    assert snapshot.snapshot
    assert len(snapshot.bids) == 20
    assert isinstance(update, BookFrame)
    assert not update.snapshot
    assert update.ts_ns == 1628952396268 * 1_000_000


def test_buffered_events_are_applied_after_the_snapshot() -> None:
    made, book = dialect(), ReferenceBook()
    made.on_open(0)
    events = depth_events()
    for text in events[:4]:  # ids 717720856 .. 717720863, before the snapshot arrives
        assert made.on_message(text, 1) == []
    actions = made.on_snapshot("XMRBTC", SNAPSHOT, 2)
    assert [a.snapshot for a in actions if isinstance(a, BookFrame)] == [True, False, False, False]
    book.apply(actions)
    assert book.bids["XMRBTC"][Decimal("0.005773")] == Decimal("48.024")
    assert book.bids["XMRBTC"][Decimal("0.005704")] == Decimal("5.246")


def test_a_snapshot_older_than_the_stream_is_fetched_again() -> None:
    made = dialect()
    made.on_open(0)
    later = depth_events()[2]  # U = 717720862 > lastUpdateId + 1
    assert made.on_message(later, 1) == []
    assert made.on_snapshot("XMRBTC", SNAPSHOT, 2) == [
        FetchSnapshot("XMRBTC", f"{REST}/api/v3/depth?symbol=XMRBTC&limit=5000")
    ]
    assert made.errors == {"snapshot_stale": 1}


def test_a_gap_resyncs_from_a_new_snapshot_and_keeps_the_event() -> None:
    made, book = dialect(), ReferenceBook()
    book.apply(made.on_open(0))
    events = depth_events()
    book.apply(made.on_snapshot("XMRBTC", SNAPSHOT, 1))
    book.apply(made.on_message(events[1], 2))  # 717720858..861: live
    assert book.live["XMRBTC"]
    actions = made.on_message(events[3], 3)  # 717720863: 862 is missing
    assert actions == [
        Resync("XMRBTC", "gap"),
        FetchSnapshot("XMRBTC", f"{REST}/api/v3/depth?symbol=XMRBTC&limit=5000"),
    ]
    book.apply(actions)
    assert not book.live["XMRBTC"]
    # A new snapshot as of 717720862 (the venue's book then, here derived from the session).
    newer = json.loads(SNAPSHOT)
    newer["lastUpdateId"] = 717720862
    actions = made.on_snapshot("XMRBTC", json.dumps(newer).encode(), 4)
    # The kept event 717720863 confirms it at once and is applied after it.
    assert [a.snapshot for a in actions if isinstance(a, BookFrame)] == [True, False]
    assert made.errors == {"gap": 1}


def test_old_and_duplicate_events_are_ignored_once_live() -> None:
    made = dialect()
    made.on_open(0)
    events = depth_events()
    made.on_snapshot("XMRBTC", SNAPSHOT, 1)
    made.on_message(events[1], 2)
    assert made.on_message(events[1], 3) == []
    assert made.errors == {"old_event": 1}


def test_a_level_that_is_not_a_decimal_drops_the_book() -> None:
    made = dialect()
    made.on_open(0)
    events = depth_events()
    made.on_snapshot("XMRBTC", SNAPSHOT, 1)
    made.on_message(events[1], 2)
    bad = json.loads(events[2])
    bad["data"]["b"] = [["0.005773", "NaN"]]
    actions = made.on_message(json.dumps(bad), 3)
    assert actions[0] == Resync("XMRBTC", "bad_level")


def test_events_awaiting_a_snapshot_are_bounded_by_their_levels_too() -> None:
    """Huge events while the snapshot does not come must not fill the memory."""
    made = dialect()
    made.on_open(0)
    levels = [[f"0.{i:06d}", "1"] for i in range(1, 10_001)]
    for index in range(12):
        data = {"e": "depthUpdate", "E": 1, "s": "XMRBTC", "U": 100 + index, "u": 100 + index,
                "b": levels, "a": []}  # fmt: skip
        made.on_message(json.dumps({"stream": "xmrbtc@depth@100ms", "data": data}), index)
    buffered = made._states["XMRBTC"].buffer
    assert sum(len(event.b) + len(event.a) for event in buffered) <= 100_000
    assert buffered[-1].last_id == 111  # the newest are kept
    assert made.errors["buffer_overflow"] >= 2


def test_trades_from_the_documented_payload() -> None:
    made = BinanceMarketData(["BNBBTC"], REST)
    made.on_open(0)
    # The Trade Streams payload from Binance's spot WebSocket documentation.
    trade = {
        "e": "trade", "E": 1672515782136, "s": "BNBBTC", "t": 12345, "p": "0.001",
        "q": "100", "b": 88, "a": 50, "T": 1672515782136, "m": True, "M": True,
    }  # fmt: skip
    text = json.dumps({"stream": "bnbbtc@trade", "data": trade})
    assert made.on_message(text, 1) == []  # no book yet: the engine would ignore it
    made.on_snapshot("BNBBTC", b'{"lastUpdateId":10,"bids":[["0.0009","1"]],"asks":[]}', 2)
    depth = {"e": "depthUpdate", "E": 1, "s": "BNBBTC", "U": 10, "u": 11, "b": [], "a": []}
    made.on_message(json.dumps({"stream": "bnbbtc@depth@100ms", "data": depth}), 3)
    assert made.on_message(text, 4) == [
        TradeFrame("BNBBTC", "0.001", "100", "sell", 1672515782136 * 1_000_000)
    ]


def test_venue_answers_and_garbage_are_counted_not_raised() -> None:
    made = dialect()
    for text in ('{"result":null,"id":1}', '{"code":2,"msg":"Invalid request"}', "{", "[]"):
        assert made.on_message(text, 0) == []
    broken = json.loads(depth_events()[0])
    del broken["data"]["U"]
    made.on_message(json.dumps(broken), 0)
    assert made.errors == {"subscription_answer": 1, "venue_error": 1, "unreadable": 3}
    assert made.on_snapshot("XMRBTC", b"<html>", 0) == [
        FetchSnapshot("XMRBTC", f"{REST}/api/v3/depth?symbol=XMRBTC&limit=5000")
    ]


# -- the sequencing rule against a reference model ---------------------------------------------


def _event(first: int, last: int, price: int, size: int) -> str:
    data = {
        "e": "depthUpdate", "E": 1, "s": "XMRBTC", "U": first, "u": last,
        "b": [[f"{price}.0", str(size)]], "a": [],
    }  # fmt: skip
    return json.dumps({"stream": "xmrbtc@depth@100ms", "data": data})


@given(
    changes=st.lists(
        st.tuples(st.integers(1, 3), st.integers(90, 99), st.integers(0, 3)),
        min_size=2,
        max_size=40,
    ),
    snapshot_at=st.integers(0, 39),
    lost=st.sets(st.integers(0, 39), max_size=3),
)
def test_published_book_is_the_venue_book_or_a_counted_resync(
    changes: list[tuple[int, int, int]], snapshot_at: int, lost: set[int]
) -> None:
    """A venue book changes by events with consecutive ids; some are lost in transit.

    Whatever is lost, the published book equals the venue's book whenever it
    is live. The first event after the snapshot confirms it, unless events
    between them were lost (the snapshot is then fetched again); once live,
    the book drops with a counted gap exactly when an event is lost and a
    later one arrives.
    """
    snapshot_at = min(snapshot_at, len(changes) - 1)
    venue: dict[Decimal, Decimal] = {}
    ids = 100
    made, book = dialect(), ReferenceBook()
    book.apply(made.on_open(0))
    for index, (count, price, size) in enumerate(changes):
        first, ids = ids + 1, ids + count
        if size:
            venue[Decimal(price)] = Decimal(size)
        else:
            venue.pop(Decimal(price), None)
        if index == snapshot_at:
            body = {"lastUpdateId": ids, "bids": [[f"{p}", f"{s}"] for p, s in venue.items()],
                    "asks": []}  # fmt: skip
            book.apply(made.on_snapshot("XMRBTC", json.dumps(body).encode(), 0))
        if index in lost:
            continue
        book.apply(made.on_message(_event(first, ids, price, size), 0))
        if book.live.get("XMRBTC"):
            assert book.bids["XMRBTC"] == venue
    received = [i for i in range(snapshot_at + 1, len(changes)) if i not in lost]
    confirmed = bool(received) and all(i not in lost for i in range(snapshot_at + 1, received[0]))
    expect_gap = confirmed and any(
        i not in lost for i in received if any(x < i for x in lost if x > received[0])
    )
    assert ("gap" in book.resyncs) == expect_gap
    assert ("snapshot_stale" in made.errors) == (bool(received) and not confirmed)
