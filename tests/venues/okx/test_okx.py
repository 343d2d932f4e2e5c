"""The OKX dialect against OKX's documented rules, its published examples
and a real recorded ``books`` snapshot (tests/data/venues/okx/README.md)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trading_engine.core.errors import UnreadableAnswer
from trading_engine.core.feeds import BookFrame, Reconnect, Resync, SendText, TradeFrame
from trading_engine.venues import okx
from trading_engine.venues.okx import OkxDialect
from trading_engine.venues.okx.checksum import checksum, checksum_text

from .messages import Level, RefBook, book_message

DATA = Path(__file__).parents[2] / "data" / "venues" / "okx"
SYM = "BTC-USDT"
S = 1_000_000_000


def dialect(**kwargs: float) -> OkxDialect:
    d = OkxDialect([SYM], **kwargs)
    d.on_open(0)
    return d


def recorded_snapshot(seq: int = 100) -> str:
    """The 2022 recording, given the seqId fields OKX has sent since 2023."""
    message = json.loads((DATA / "books_snapshot_2022.json").read_text())
    message["arg"]["instId"] = SYM
    message["data"][0]["prevSeqId"] = -1
    message["data"][0]["seqId"] = seq
    return json.dumps(message, separators=(",", ":"))


def resubscription(symbol: str = SYM) -> list[SendText]:
    arg = [{"channel": "books", "instId": symbol}]
    return [
        SendText(json.dumps({"op": "unsubscribe", "args": arg}, separators=(",", ":"))),
        SendText(json.dumps({"op": "subscribe", "args": arg}, separators=(",", ":"))),
    ]


# -- the checksum --------------------------------------------------------------------


def test_checksum_matches_the_documented_examples() -> None:
    # OKX's documentation: both check strings and the values published with them.
    assert checksum_text(["3366.1:7", "3366:6"], ["3366.8:9", "3368:8"]) == (
        "3366.1:7:3366.8:9:3366:6:3368:8"
    )
    assert checksum(["3366.1:7", "3366:6"], ["3366.8:9", "3368:8"]) == -1881014294
    assert checksum_text(["3366.1:7"], ["3366.8:9", "3368:8", "3372:8"]) == (
        "3366.1:7:3366.8:9:3368:8:3372:8"
    )
    assert checksum(["3366.1:7"], ["3366.8:9", "3368:8", "3372:8"]) == 831078360


def test_checksum_uses_only_the_25_best_levels_of_each_side() -> None:
    bids = [f"{100 - i}:1" for i in range(30)]
    asks = [f"{101 + i}:1" for i in range(30)]
    assert checksum(bids, asks) == checksum(bids[:25], asks[:25])
    assert checksum(bids, asks) != checksum(bids[:24], asks[:25])


def test_recorded_snapshot_verifies_and_is_published_whole() -> None:
    d = dialect()
    actions = d.on_message(recorded_snapshot(), 1)
    assert len(actions) == 1
    frame = actions[0]
    assert isinstance(frame, BookFrame)
    assert frame.snapshot
    assert frame.symbol == SYM
    assert len(frame.bids) == 39
    assert len(frame.asks) == 37
    assert frame.bids[0] == ("0.07014", "56")
    assert frame.asks[0] == ("0.07026", "5")
    assert frame.ts_ns == 1659792392540 * 1_000_000
    assert d.checksums_verified == 1
    assert d.errors == {}


def test_recorded_snapshot_with_one_corrupted_level_resyncs() -> None:
    d = dialect()
    text = recorded_snapshot().replace('["0.0703","1264"', '["0.0703","1265"', 1)
    actions = d.on_message(text, 1)
    assert actions == [Resync(SYM, "checksum"), *resubscription()]
    assert d.errors == {"checksum": 1}


# -- the seqId chain -----------------------------------------------------------------


def test_documented_sequence_example_is_in_order() -> None:
    # OKX's example: snapshot 10; update 10->15; no-change 15->15; reset 15->3; update 3->5.
    d = dialect()
    ref = RefBook()
    steps: list[tuple[str, list[Level], list[Level], int, int]] = [
        ("snapshot", [("100", "1"), ("99", "2")], [("101", "1")], -1, 10),
        ("update", [("100", "3")], [], 10, 15),
        ("update", [], [], 15, 15),
        ("update", [], [("102", "4")], 15, 3),
        ("update", [("99", "0")], [], 3, 5),
    ]
    published: list[BookFrame] = []
    for i, (action, bids, asks, prev, seq) in enumerate(steps):
        ref.apply(bids, asks)
        text = book_message(SYM, action, bids, asks, seq=seq, prev=prev, checksum=ref.checksum())
        for a in d.on_message(text, i):
            assert isinstance(a, BookFrame)
            published.append(a)
    assert d.errors == {}
    assert d.checksums_verified == 5
    # The no-change update publishes nothing; the others one frame each.
    assert [f.snapshot for f in published] == [True, False, False, False]
    assert published[-1].bids == [("99", "0")]


def test_gap_resubscribes_and_the_next_snapshot_makes_the_book_live() -> None:
    d = dialect()
    d.on_message(book_message(SYM, "snapshot", [("100", "1")], [], seq=10, prev=-1, checksum=0), 1)
    gap = book_message(SYM, "update", [("100", "2")], [], seq=20, prev=12, checksum=0)
    assert d.on_message(gap, 2) == [Resync(SYM, "gap"), *resubscription()]
    # The old subscription's tail is ignored (counted) until the new snapshot.
    late = book_message(SYM, "update", [("100", "3")], [], seq=21, prev=20, checksum=0)
    assert d.on_message(late, 3) == []
    assert d.errors == {"gap": 1, "update_before_snapshot": 1}
    snap = book_message(SYM, "snapshot", [("100", "5")], [], seq=30, prev=-1, checksum=0)
    (frame,) = d.on_message(snap, 4)
    assert isinstance(frame, BookFrame)
    assert frame.snapshot
    assert frame.bids == [("100", "5")]
    nxt = book_message(SYM, "update", [("100", "6")], [], seq=31, prev=30, checksum=0)
    assert d.on_message(nxt, 5) == [
        BookFrame(SYM, False, [("100", "6")], [], 1700000000000 * 10**6)
    ]


def test_zero_checksum_is_absent_not_a_mismatch() -> None:
    d = dialect()
    d.on_message(book_message(SYM, "snapshot", [("100", "1")], [], seq=1, prev=-1, checksum=0), 1)
    assert d.checksums_absent == 1
    assert d.checksums_verified == 0
    assert d.errors == {}


def test_mismatched_update_checksum_resyncs() -> None:
    d = dialect()
    ref = RefBook()
    ref.apply([("100", "1")], [("101", "1")])
    snap = book_message(
        SYM, "snapshot", [("100", "1")], [("101", "1")], seq=1, prev=-1, checksum=ref.checksum()
    )
    d.on_message(snap, 1)
    ref.apply([("100", "2")], [])
    wrong = ref.checksum() ^ 1
    text = book_message(SYM, "update", [("100", "2")], [], seq=2, prev=1, checksum=wrong)
    assert d.on_message(text, 2) == [Resync(SYM, "checksum"), *resubscription()]


def test_malformed_level_resyncs_that_symbol() -> None:
    d = dialect()
    d.on_message(book_message(SYM, "snapshot", [("100", "1")], [], seq=1, prev=-1, checksum=0), 1)
    bad = book_message(SYM, "update", [("abc", "1")], [], seq=2, prev=1, checksum=0)
    assert d.on_message(bad, 2) == [Resync(SYM, "unreadable"), *resubscription()]
    assert d.errors == {"malformed_level": 1}


def test_unreadable_and_foreign_messages_are_counted() -> None:
    d = dialect()
    assert d.on_message("{not json", 1) == []
    other = book_message("ETH-USDT", "snapshot", [("1", "1")], [], seq=1, prev=-1, checksum=0)
    assert d.on_message(other, 2) == []
    assert d.errors == {"unreadable": 1, "unknown_symbol": 1}


# -- trades, events, keepalive, timeouts ---------------------------------------------------


def test_trades_become_trade_frames() -> None:
    # The push example of OKX's trades channel documentation.
    text = (
        '{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT",'
        '"tradeId":"130639474","px":"42219.9","sz":"0.12060306","side":"buy",'
        '"ts":"1630048897897"}]}'
    )
    d = dialect()
    assert d.on_message(text, 1) == [
        TradeFrame(SYM, "42219.9", "0.12060306", "buy", 1630048897897 * 1_000_000)
    ]
    assert d.on_message(text.replace('"buy"', '"up"'), 2) == []
    assert d.errors == {"unreadable_trade": 1}


def test_notice_and_error_events_reconnect() -> None:
    d = dialect()
    notice = (
        '{"event":"notice","code":"64008","msg":"The connection will soon be closed for a'
        ' service upgrade. Please reconnect.","connId":"a4d3ae55"}'
    )
    assert d.on_message(notice, 1) == [Reconnect("maintenance")]
    error = '{"event":"error","code":"60012","msg":"Invalid request","connId":"a4d3ae55"}'
    assert d.on_message(error, 2) == [Reconnect("venue_error")]
    ack = '{"event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT"},"connId":"a"}'
    assert d.on_message(ack, 3) == []


def test_ping_when_idle_and_reconnect_without_pong() -> None:
    d = OkxDialect([SYM], ping_idle_s=20, pong_timeout_s=10, snapshot_timeout_s=1000)
    d.on_open(0)
    assert d.on_timer(19 * S) == []
    assert d.on_timer(20 * S) == [SendText("ping")]
    assert d.on_timer(25 * S) == []
    assert d.on_message("pong", 26 * S) == []
    assert d.on_timer(30 * S) == []
    assert d.on_timer(46 * S) == [SendText("ping")]
    assert d.on_timer(56 * S) == [Reconnect("pong_missing")]


def test_missing_snapshot_and_stalled_book_resubscribe() -> None:
    d = OkxDialect([SYM], ping_idle_s=1000, snapshot_timeout_s=15, stall_timeout_s=90)
    d.on_open(0)
    assert d.on_timer(14 * S) == []
    assert d.on_timer(15 * S) == [Resync(SYM, "snapshot_timeout"), *resubscription()]
    d.on_message(
        book_message(SYM, "snapshot", [("1", "1")], [], seq=1, prev=-1, checksum=0), 16 * S
    )
    assert d.on_timer(105 * S) == []
    assert d.on_timer(106 * S) == [Resync(SYM, "stalled"), *resubscription()]


def test_on_open_subscribes_books_and_trades_and_forgets_books() -> None:
    d = OkxDialect(["BTC-USDT", "ETH-USDT"])
    (sub,) = d.on_open(0)
    assert isinstance(sub, SendText)
    assert json.loads(sub.text) == {
        "op": "subscribe",
        "args": [
            {"channel": "books", "instId": "BTC-USDT"},
            {"channel": "trades", "instId": "BTC-USDT"},
            {"channel": "books", "instId": "ETH-USDT"},
            {"channel": "trades", "instId": "ETH-USDT"},
        ],
    }
    d.on_message(book_message(SYM, "snapshot", [("1", "1")], [], seq=1, prev=-1, checksum=0), 1)
    d.on_open(2)
    update = book_message(SYM, "update", [("1", "2")], [], seq=2, prev=1, checksum=0)
    assert d.on_message(update, 3) == []
    assert d.errors == {"update_before_snapshot": 1}


# -- instruments -----------------------------------------------------------------------


def test_instruments_from_the_recorded_answer() -> None:
    body = (DATA / "instruments_spot.json").read_bytes()
    assert okx.instruments_url("https://www.okx.com/", ["BTC-USD"]) == (
        "https://www.okx.com/api/v5/public/instruments?instType=SPOT"
    )
    found = okx.parse_instruments(body, ["ETH-USD", "BTC-USD"])
    assert [(i.symbol, i.tick_size, i.lot_size, i.min_quantity, i.min_notional) for i in found] == [
        ("ETH-USD", "0.01", "0.000001", "0.0001", None),
        ("BTC-USD", "0.1", "0.00000001", "0.00001", None),
    ]
    with pytest.raises(UnreadableAnswer, match="SOL-USD"):
        okx.parse_instruments(body, ["SOL-USD"])
    with pytest.raises(UnreadableAnswer, match="okx instruments"):
        okx.parse_instruments(b"<html>", ["BTC-USD"])


def test_package_convention() -> None:
    assert okx.DEFAULT_WS_URL.startswith("wss://")
    assert okx.DEFAULT_REST_URL.startswith("https://")
    d = okx.feed_dialect(["BTC-USDT"], okx.DEFAULT_REST_URL)
    assert d.venue == "okx"
    assert d.connect_url(okx.DEFAULT_WS_URL) == okx.DEFAULT_WS_URL


# -- property: a random book walk -------------------------------------------------------

_bid_prices = st.integers(min_value=1, max_value=60)
_ask_prices = st.integers(min_value=61, max_value=120)
_sizes = st.integers(min_value=0, max_value=5)
_changes = st.lists(
    st.tuples(st.booleans(), st.integers(min_value=1, max_value=120), _sizes), max_size=8
)


def _price(tick: int, n: int) -> str:
    return format(Decimal(n).scaleb(-tick), "f")


def _walk(
    tick: int, snapshot: list[tuple[bool, int, int]], updates: list[list[tuple[bool, int, int]]]
) -> tuple[list[str], list[RefBook]]:
    """Messages as OKX would send them for the walk, and the reference book after each."""
    ref = RefBook()
    texts: list[str] = []
    states: list[RefBook] = []
    seq = 1000
    for i, changes in enumerate([snapshot, *updates]):
        bids: list[Level] = []
        asks: list[Level] = []
        for is_bid, n, size in changes:
            # Bids below 61 ticks, asks above: the walk never crosses; at most 20
            # levels a side, so every level is inside the checksum's 25.
            n = (n % 20) + 1 if is_bid else (n % 20) + 61
            level = (_price(tick, n), str(size if i else max(size, 1)))
            (bids if is_bid else asks).append(level)
        # One level per price per message, as the venue sends.
        bids = list(dict(bids).items())
        asks = list(dict(asks).items())
        ref.apply(bids, asks)
        prev, seq = (-1, seq) if i == 0 else (seq, seq + 1 + len(changes))
        action = "snapshot" if i == 0 else "update"
        texts.append(
            book_message(SYM, action, bids, asks, seq=seq, prev=prev, checksum=ref.checksum())
        )
        snap = RefBook()
        snap.bids, snap.asks = dict(ref.bids), dict(ref.asks)
        states.append(snap)
    return texts, states


@given(
    tick=st.integers(min_value=0, max_value=6),
    snapshot=st.lists(st.tuples(st.booleans(), st.integers(1, 120), _sizes), min_size=1),
    updates=st.lists(_changes, min_size=1, max_size=15),
)
def test_random_walk_round_trips_with_every_checksum_verified(
    tick: int, snapshot: list[tuple[bool, int, int]], updates: list[list[tuple[bool, int, int]]]
) -> None:
    texts, states = _walk(tick, snapshot, updates)
    d = dialect()
    mirror = RefBook()  # the engine's book, built only from what the dialect published
    for text, state in zip(texts, states, strict=True):
        for action in d.on_message(text, 1):
            assert isinstance(action, BookFrame)
            if action.snapshot:
                mirror = RefBook()
            mirror.apply(list(action.bids), list(action.asks))
        assert mirror.sorted_levels() == state.sorted_levels()
    assert d.errors == {}
    # An empty book's CRC32 is 0, which reads as "no checksum".
    empty = sum(1 for state in states if not state.bids and not state.asks)
    assert d.checksums_verified == len(texts) - empty


@given(
    tick=st.integers(min_value=0, max_value=6),
    snapshot=st.lists(st.tuples(st.booleans(), st.integers(1, 120), _sizes), min_size=1),
    updates=st.lists(_changes, min_size=1, max_size=15),
    data=st.data(),
)
def test_one_corrupted_level_resyncs_exactly_there(
    tick: int,
    snapshot: list[tuple[bool, int, int]],
    updates: list[list[tuple[bool, int, int]]],
    data: st.DataObject,
) -> None:
    texts, _ = _walk(tick, snapshot, updates)
    # Corrupt the size of one level that the message sets (not a deletion).
    candidates = [
        (i, side, j)
        for i, text in enumerate(texts)
        for side in ("bids", "asks")
        for j, level in enumerate(json.loads(text)["data"][0][side])
        if level[1] != "0"
    ]
    i, side, j = data.draw(st.sampled_from(candidates))
    message = json.loads(texts[i])
    level = message["data"][0][side][j]
    level[1] = str(int(level[1]) + 1)
    texts[i] = json.dumps(message)
    d = dialect()
    for k, text in enumerate(texts):
        actions = d.on_message(text, 1)
        if k < i:
            assert all(isinstance(a, BookFrame) for a in actions)
        else:
            assert actions == [Resync(SYM, "checksum"), *resubscription()]
            break


# -- property: the seqId rules against a small reference model ---------------------------

_steps = st.lists(
    st.tuples(
        st.sampled_from(["next", "keepalive", "reset", "gap", "snapshot"]),
        st.integers(min_value=1, max_value=1000),
    ),
    min_size=1,
    max_size=40,
)


@given(steps=_steps)
def test_sequence_rules_match_a_reference_model(steps: list[tuple[str, int]]) -> None:
    """The model: a snapshot makes the book live; an update is in order iff its
    prevSeqId is the last seqId (whatever its own seqId: larger, equal or reset);
    the first out-of-order update re-syncs, and updates are ignored until the
    next snapshot."""
    d = dialect()
    live = False
    last = 0
    for kind, k in steps:
        if kind == "snapshot":
            prev, seq = -1, k
        elif kind == "next":
            prev, seq = last, last + k
        elif kind == "keepalive":
            prev, seq = last, last
        elif kind == "reset":
            prev, seq = last, max(0, last - k)
        else:
            prev, seq = last + k, last + 2 * k
        action = "snapshot" if kind == "snapshot" else "update"
        # A keepalive carries no levels; every other message changes one.
        bids = [] if kind == "keepalive" else [("100", str(k))]
        text = book_message(SYM, action, bids, [], seq=seq, prev=prev, checksum=0)
        actions = d.on_message(text, 1)
        if action == "snapshot":
            expected: list[object] = [BookFrame(SYM, True, bids, [], 1700000000000 * 10**6)]
            live, last = True, seq
        elif not live:
            expected = []
        elif prev != last:
            expected = [Resync(SYM, "gap"), *resubscription()]
            live = False
        else:
            last = seq
            expected = [BookFrame(SYM, False, bids, [], 1700000000000 * 10**6)] if bids else []
        assert actions == expected, (kind, prev, seq)


def test_instruments_with_a_bad_increment_are_refused() -> None:
    answer = json.loads((DATA / "instruments_spot.json").read_text())
    answer["data"][0]["tickSz"] = "0"
    with pytest.raises(UnreadableAnswer, match="BTC-USD tickSz is 0"):
        okx.parse_instruments(json.dumps(answer).encode(), ["BTC-USD"])
    answer["data"][0]["tickSz"] = "0.1"
    answer["data"][0]["lotSz"] = "tiny"
    with pytest.raises(UnreadableAnswer, match="BTC-USD lotSz 'tiny' is not a decimal"):
        okx.parse_instruments(json.dumps(answer).encode(), ["BTC-USD"])
    answer["data"][0]["lotSz"] = "0.00000001"
    answer["data"][0]["minSz"] = "0"
    (inst,) = okx.parse_instruments(json.dumps(answer).encode(), ["BTC-USD"])
    assert inst.min_quantity is None


def test_refused_subscription_of_one_instrument_does_not_reconnect() -> None:
    d = dialect()
    refused = (
        '{"event":"error","code":"60018","msg":"Wrong URL or channel:books,instId:BTC-USDT'
        " doesn't exist. Please use the correct URL, channel and parameters referring to API"
        ' document.","connId":"a4d3ae55"}'
    )
    assert d.on_message(refused, 1) == []
    assert d.errors == {"subscribe_failed": 1}
    other = refused.replace("BTC-USDT", "XYZ-USDT")
    assert d.on_message(other, 2) == [Reconnect("venue_error")]


# -- messages from before seqId (recorded in 2022) ------------------------------------


def legacy_update(
    bids: list[Level], asks: list[Level], checksum: int, channel: str = "books"
) -> str:
    """An update as OKX sent it before seqId: the checksum is its only integrity check."""
    data = {
        "asks": [[p, s, "0", "1"] for p, s in asks],
        "bids": [[p, s, "0", "1"] for p, s in bids],
        "ts": "1659792392640",
        "checksum": checksum,
    }
    return json.dumps(
        {"arg": {"channel": channel, "instId": SYM}, "action": "update", "data": [data]},
        separators=(",", ":"),
    )


def recorded_2022() -> tuple[str, RefBook]:
    """The recorded snapshot exactly as OKX sent it, and the same book as a reference."""
    text = (DATA / "books_snapshot_2022.json").read_text().strip()
    ref = RefBook()
    data = json.loads(text)["data"][0]
    ref.apply([(p, s) for p, s, *_ in data["bids"]], [(p, s) for p, s, *_ in data["asks"]])
    return text, ref


def test_a_recorded_2022_snapshot_without_seq_id_is_applied() -> None:
    d = dialect()
    text, _ = recorded_2022()
    assert "seqId" not in text
    [frame] = d.on_message(text, 1)
    assert isinstance(frame, BookFrame)
    assert frame.snapshot
    assert (len(frame.bids), len(frame.asks)) == (39, 37)
    assert frame.bids[0] == ("0.07014", "56")
    assert d.checksums_verified == 1
    assert d.errors == {}


def test_updates_without_seq_id_are_checked_by_their_checksum() -> None:
    d = dialect()
    text, ref = recorded_2022()
    d.on_message(text, 1)
    ref.apply([("0.07014", "0"), ("0.07015", "7")], [])
    [frame] = d.on_message(
        legacy_update([("0.07014", "0"), ("0.07015", "7")], [], ref.checksum()), 2
    )
    assert isinstance(frame, BookFrame)
    assert not frame.snapshot
    assert frame.bids == [("0.07014", "0"), ("0.07015", "7")]
    assert d.checksums_verified == 2
    # A lost update shows as a checksum that no longer matches: the book is resynchronized.
    actions = d.on_message(legacy_update([], [("0.07026", "6")], ref.checksum()), 3)
    assert actions == [Resync(SYM, "checksum"), *resubscription()]


def test_an_update_without_seq_id_after_a_numbered_snapshot_is_unreadable() -> None:
    d = dialect()
    d.on_message(recorded_snapshot(seq=100), 1)
    _, ref = recorded_2022()
    actions = d.on_message(legacy_update([], [], ref.checksum()), 2)
    assert actions == [Resync(SYM, "unreadable"), *resubscription()]


@pytest.mark.parametrize("channel", ["books-l2-tbt", "books50-l2-tbt"])
def test_the_tick_by_tick_book_channels_are_books(channel: str) -> None:
    # The same push format as books, only sent for every change: a recording of them
    # (as a backtest reads one) builds the same book.
    d = dialect()
    text, ref = recorded_2022()
    [frame] = d.on_message(text.replace('"channel":"books"', f'"channel":"{channel}"'), 1)
    assert isinstance(frame, BookFrame)
    ref.apply([], [("0.07026", "0")])
    [update] = d.on_message(legacy_update([], [("0.07026", "0")], ref.checksum(), channel), 2)
    assert isinstance(update, BookFrame)
    assert d.errors == {}
