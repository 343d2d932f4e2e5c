"""One test per book rule of the market-data protocol, and property tests."""

from __future__ import annotations

import random

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fakes import snapshot, update
from trading_engine import BookBuilder, BookEntry, BookState, Instrument, Reason, Trade
from trading_engine.core.protocol import MessageType

BTC = Instrument("BTC-USD", "0.01", "0.001")
ETH = Instrument("ETH-USD", "0.05", "0.01")


class Recorder:
    """A BookListener that writes down what it is told."""

    def __init__(self) -> None:
        self.books: list[tuple[str, int | None]] = []
        self.trades: list[Trade] = []
        self.states: list[tuple[str, BookState, BookState]] = []

    def on_book(self, entry: BookEntry, recv_ns: int) -> None:
        assert entry.state is BookState.LIVE
        self.books.append((entry.symbol, entry.seq))

    def on_trade(self, entry: BookEntry, trade: Trade, recv_ns: int) -> None:
        self.trades.append(trade)

    def on_state(self, entry: BookEntry, previous: BookState) -> None:
        self.states.append((entry.symbol, previous, entry.state))


def trade(seq: int, price: str = "100.01", size: str = "0.5", symbol: str = "BTC-USD") -> bytes:
    return orjson.dumps(
        {"type": "trade", "symbol": symbol, "seq": seq, "price": price, "size": size, "side": "buy"}
    )


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def builder(recorder: Recorder) -> BookBuilder:
    return BookBuilder([BTC, ETH], recorder)


def live(builder: BookBuilder, seq: int = 10) -> BookEntry:
    result = builder.handle(snapshot(seq, [["100.00", "2"], ["99.99", "1"]], [["100.01", "1"]]))
    assert isinstance(result, BookEntry)
    assert result.state is BookState.LIVE
    return result


def levels(entry: BookEntry) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    return list(entry.book.bids()), list(entry.book.asks())


def test_rule1_snapshot_replaces_whatever_its_seq(builder: BookBuilder) -> None:
    entry = live(builder, seq=50)
    assert levels(entry) == ([(10000, 2000), (9999, 1000)], [(10001, 1000)])
    assert builder.handle(snapshot(3, [["98.00", "1"]], [["98.50", "4"]])) is entry
    assert entry.seq == 3
    assert levels(entry) == ([(9800, 1000)], [(9850, 4000)])
    assert entry.state is BookState.LIVE
    builder.check()


def test_rule1_snapshot_ends_staleness(builder: BookBuilder) -> None:
    entry = live(builder)
    builder.handle(update(12, [], []))
    assert entry.state is BookState.STALE
    live(builder, seq=1)
    assert entry.seq == 1


def test_rule2_next_seq_applies(builder: BookBuilder, recorder: Recorder) -> None:
    entry = live(builder)
    assert builder.handle(update(11, [["100.00", "0"]], [["100.02", "3"]])) is entry
    assert levels(entry) == ([(9999, 1000)], [(10001, 1000), (10002, 3000)])
    assert builder.handle(trade(12)) is entry
    assert entry.seq == 12
    assert levels(entry) == ([(9999, 1000)], [(10001, 1000), (10002, 3000)])  # trades move no level
    assert recorder.books[-1] == ("BTC-USD", 11)
    assert recorder.trades[-1].seq == 12
    assert builder.accepted[MessageType.UPDATE] == 1
    assert builder.accepted[MessageType.TRADE] == 1


@pytest.mark.parametrize("seq", [10, 9, 0])
def test_rule3_duplicate_ignored(builder: BookBuilder, seq: int) -> None:
    entry = live(builder)
    before = levels(entry)
    assert builder.handle(update(seq, [["50.00", "1"]], [])) is Reason.DUPLICATE
    assert builder.handle(trade(seq)) is Reason.DUPLICATE
    assert levels(entry) == before
    assert entry.state is BookState.LIVE
    assert builder.rejected[Reason.DUPLICATE] == 2


def test_rule4_gap_makes_stale(builder: BookBuilder, recorder: Recorder) -> None:
    entry = live(builder)
    before = levels(entry)
    assert builder.handle(update(12, [["50.00", "1"]], [])) is Reason.GAP
    assert entry.state is BookState.STALE
    assert levels(entry) == before
    assert builder.rejected[Reason.GAP] == 1
    assert ("BTC-USD", BookState.LIVE, BookState.STALE) in recorder.states


def test_rule4_gap_by_trade(builder: BookBuilder) -> None:
    entry = live(builder)
    assert builder.handle(trade(15)) is Reason.GAP
    assert entry.state is BookState.STALE


def test_rule5_before_snapshot(builder: BookBuilder, recorder: Recorder) -> None:
    assert builder.handle(update(1, [["100.00", "1"]], [])) is Reason.BEFORE_SNAPSHOT
    assert builder.handle(trade(1)) is Reason.BEFORE_SNAPSHOT
    entry = builder.books["BTC-USD"]
    assert entry.state is BookState.AWAITING_SNAPSHOT
    assert entry.seq is None
    assert entry.book.bid_levels == 0
    assert builder.rejected[Reason.BEFORE_SNAPSHOT] == 2
    assert recorder.books == []


def test_rule6_crossed_until_uncrossed(builder: BookBuilder, recorder: Recorder) -> None:
    entry = live(builder)
    recorder.books.clear()
    assert builder.handle(update(11, [["100.05", "1"]], [])) is entry
    assert entry.state is BookState.CROSSED
    assert recorder.books == []  # strategies do not see a crossed book
    assert builder.handle(trade(12)) is entry  # applied in sequence, not shown
    assert recorder.trades == []
    assert builder.handle(update(13, [["100.05", "0"]], [])) is entry
    assert entry.state is BookState.LIVE
    assert recorder.books == [("BTC-USD", 13)]
    assert builder.transitions[(BookState.LIVE, BookState.CROSSED)] == 1


def test_rule6_a_locked_book_is_crossed(builder: BookBuilder, recorder: Recorder) -> None:
    # Rule 6 says best bid >= best ask: a bid equal to the ask (a locked
    # book) is crossed, not live, by an update and by a snapshot alike.
    entry = live(builder)
    recorder.books.clear()
    assert builder.handle(update(11, [["100.01", "1"]], [])) is entry  # bid == ask
    assert entry.book.best_bid == entry.book.best_ask
    assert entry.state is BookState.CROSSED
    assert recorder.books == []
    assert builder.transitions[(BookState.LIVE, BookState.CROSSED)] == 1
    assert builder.handle(update(12, [["100.01", "0"]], [])) is entry
    assert entry.state is BookState.LIVE
    assert recorder.books == [("BTC-USD", 12)]
    locked = builder.handle(snapshot(20, [["100.00", "1"]], [["100.00", "1"]]))
    assert locked is entry
    assert entry.state is BookState.CROSSED
    builder.check()


def test_rule6_crossed_snapshot_and_recovery_by_snapshot(builder: BookBuilder) -> None:
    result = builder.handle(snapshot(1, [["101.00", "1"]], [["100.00", "1"]]))
    assert isinstance(result, BookEntry)
    assert result.state is BookState.CROSSED
    live(builder, seq=2)
    builder.check()


def test_rule6_gap_while_crossed_is_stale(builder: BookBuilder) -> None:
    entry = live(builder)
    builder.handle(update(11, [["100.05", "1"]], []))
    assert builder.handle(update(13, [], [])) is Reason.GAP
    assert entry.state is BookState.STALE


def test_rule7_unknown_symbol(builder: BookBuilder) -> None:
    frame = snapshot(1, [["1.00", "1"]], [], symbol="DOGE-USD")
    assert builder.handle(frame) is Reason.UNKNOWN_SYMBOL
    assert "DOGE-USD" not in builder.books
    assert builder.rejected[Reason.UNKNOWN_SYMBOL] == 1


@pytest.mark.parametrize(
    ("bids", "asks", "reason"),
    [
        ([["99.50", "1"], ["100.005", "1"]], [], Reason.OFF_TICK),
        ([["99.50", "1"]], [["101.00", "-1"]], Reason.BAD_SIZE),
        ([["99.50", "1"]], [["101.00", "0.0005"]], Reason.BAD_SIZE),
    ],
)
def test_rule8_invalid_next_message_applies_nothing_and_goes_stale(
    builder: BookBuilder, bids: list[list[str]], asks: list[list[str]], reason: Reason
) -> None:
    entry = live(builder)
    before = levels(entry)
    assert builder.handle(update(11, bids, asks)) is reason
    assert levels(entry) == before  # whole or nothing
    assert entry.state is BookState.STALE
    assert entry.seq == 10
    assert builder.rejected[reason] == 1


def test_rule8_invalid_old_message_changes_nothing(builder: BookBuilder) -> None:
    entry = live(builder)
    assert builder.handle(update(9, [["100.005", "1"]], [])) is Reason.OFF_TICK
    assert entry.state is BookState.LIVE


def test_rule8_invalid_snapshot_zero_size(builder: BookBuilder) -> None:
    assert builder.handle(snapshot(1, [["100.00", "0"]], [])) is Reason.BAD_SIZE
    assert builder.books["BTC-USD"].state is BookState.AWAITING_SNAPSHOT


def test_rejected_snapshot_makes_live_book_stale_whatever_its_seq(builder: BookBuilder) -> None:
    entry = live(builder, seq=10)
    assert builder.handle(snapshot(1, [["100.00", "0"]], [])) is Reason.BAD_SIZE
    assert entry.state is BookState.STALE


def test_rule8_bad_frame_with_next_seq_takes_it(builder: BookBuilder) -> None:
    entry = live(builder)
    frame = b'{"type":"update","symbol":"BTC-USD","seq":11,"bids":"oops","asks":[]}'
    assert builder.handle(frame) is Reason.BAD_FIELD
    assert entry.state is BookState.STALE
    entry = live(builder)
    unknown = b'{"type":"quote","symbol":"BTC-USD","seq":11}'
    assert builder.handle(unknown) is Reason.UNKNOWN_TYPE
    assert entry.state is BookState.STALE


def test_bad_frame_without_symbol_or_seq_changes_no_book(builder: BookBuilder) -> None:
    entry = live(builder)
    for frame in (
        b"{garbage",
        b'{"type":"update","seq":11}',
        b'{"type":"update","symbol":"BTC-USD"}',
    ):
        assert isinstance(builder.handle(frame), Reason)
    assert entry.state is BookState.LIVE


def test_rule9_stale_ignores_updates_and_keeps_levels(builder: BookBuilder) -> None:
    entry = live(builder)
    builder.handle(update(12, [], []))
    before = levels(entry)
    assert builder.handle(update(13, [["1.00", "1"]], [])) is Reason.STALE
    assert builder.handle(trade(14)) is Reason.STALE
    assert levels(entry) == before
    assert entry.seq == 10
    assert builder.rejected[Reason.STALE] == 2


def test_mark_stale(builder: BookBuilder) -> None:
    entry = live(builder)
    builder.mark_stale(["BTC-USD", "ETH-USD", "NOPE"])
    assert entry.state is BookState.STALE
    assert builder.books["ETH-USD"].state is BookState.AWAITING_SNAPSHOT


def test_heartbeat_and_pre_decode_rejections(builder: BookBuilder) -> None:
    assert builder.handle(b'{"type":"heartbeat","ts":1}') is None
    assert builder.accepted[MessageType.HEARTBEAT] == 1
    assert builder.reject(Reason.OVERSIZED) is Reason.OVERSIZED
    assert builder.rejected[Reason.OVERSIZED] == 1


def test_symbols_are_independent(builder: BookBuilder) -> None:
    btc = live(builder)
    eth = builder.handle(snapshot(1, [["10.00", "1"]], [["10.05", "1"]], symbol="ETH-USD"))
    assert isinstance(eth, BookEntry)
    builder.handle(update(99, [], []))  # BTC gap
    assert btc.state is BookState.STALE
    assert eth.state is BookState.LIVE
    assert builder.handle(update(2, [["10.10", "1"]], [["10.15", "1"]], symbol="ETH-USD")) is eth


def _valid_stream(rng: random.Random, count: int) -> list[bytes]:
    frames = [snapshot(1, [["100.00", "1"]], [["100.50", "1"]])]
    for seq in range(2, count + 2):
        bid = 9900 + rng.randint(0, 49)
        ask = 10001 + rng.randint(0, 49)
        frames.append(
            update(
                seq,
                [[f"{bid // 100}.{bid % 100:02d}", str(rng.randint(0, 3))]],
                [[f"{ask // 100}.{ask % 100:02d}", str(rng.randint(0, 3))]],
            )
        )
    return frames


@given(
    seed=st.integers(min_value=0, max_value=2**32),
    position=st.integers(min_value=0, max_value=1000),
    offset=st.integers(min_value=0, max_value=200),
    replacement=st.binary(min_size=0, max_size=3),
)
def test_mutated_frames_never_raise_or_apply_partially(
    seed: int, position: int, offset: int, replacement: bytes
) -> None:
    frames = _valid_stream(random.Random(seed), 12)
    index = 1 + position % (len(frames) - 1)
    frame = frames[index]
    cut = offset % (len(frame) + 1)
    mutated = frame[:cut] + replacement + frame[cut + len(replacement) :]
    builder = BookBuilder([BTC])
    for valid in frames[:index]:
        builder.handle(valid)
    entry = builder.books["BTC-USD"]
    before = (levels(entry), entry.seq)
    result = builder.handle(mutated)
    builder.check()
    if isinstance(result, Reason):
        assert (levels(entry), entry.seq) == before  # nothing applied
    else:
        # The mutation still decoded to a valid message: it is applied whole.
        reference = BookBuilder([BTC])
        for valid in frames[:index]:
            reference.handle(valid)
        assert reference.handle(mutated) is reference.books["BTC-USD"]
        assert levels(reference.books["BTC-USD"]) == levels(entry)


@given(st.lists(st.binary(max_size=60), max_size=20))
def test_arbitrary_bytes_never_raise_and_keep_invariants(frames: list[bytes]) -> None:
    builder = BookBuilder([BTC])
    builder.handle(snapshot(1, [["100.00", "1"]], [["100.50", "1"]]))
    for frame in frames:
        builder.handle(frame)
        builder.check()
    total = sum(builder.rejected.values()) + sum(builder.accepted.values())
    assert total == len(frames) + 1  # every frame counted exactly once


def _general_path(builder: BookBuilder, frame: bytes) -> BookEntry | Reason | None:
    return builder.apply(builder._decoder.decode(frame))


@given(
    seed=st.integers(min_value=0, max_value=2**32),
    mutations=st.lists(
        st.tuples(st.integers(0, 60), st.integers(0, 200), st.binary(max_size=3)), max_size=8
    ),
)
def test_inline_update_path_equals_general_path(
    seed: int, mutations: list[tuple[int, int, bytes]]
) -> None:
    """handle() (with its inline update path) == decode_object() + apply()."""
    frames = _valid_stream(random.Random(seed), 60)
    for index, offset, replacement in mutations:
        frame = frames[1 + index % (len(frames) - 1)]
        cut = offset % (len(frame) + 1)
        frames[1 + index % (len(frames) - 1)] = frame[:cut] + replacement + frame[cut:]
    fast = BookBuilder([BTC])
    slow = BookBuilder([BTC])
    for frame in frames:
        fast_result = fast.handle(frame)
        slow_result = _general_path(slow, frame)
        assert type(fast_result) is type(slow_result)
        if isinstance(fast_result, Reason):
            assert fast_result is slow_result
        fast_entry, slow_entry = fast.books["BTC-USD"], slow.books["BTC-USD"]
        assert (fast_entry.state, fast_entry.seq) == (slow_entry.state, slow_entry.seq)
        assert levels(fast_entry) == levels(slow_entry)
    assert fast.rejected == slow.rejected
    assert fast.accepted == slow.accepted
    assert fast.transitions == slow.transitions


def _update_text(seq: int, symbol: str = "BTC-USD") -> bytes:
    # orjson cannot encode integers beyond 64 bits: the frame is written by hand.
    return f'{{"type":"update","symbol":"{symbol}","seq":{seq},"bids":[],"asks":[]}}'.encode()


def test_seq_runs_up_to_two_to_the_64_minus_one_then_the_book_goes_stale() -> None:
    builder = BookBuilder([BTC])
    entry = builder.books["BTC-USD"]
    builder.handle(snapshot(2**63 - 1, [["100.00", "1"]], [["100.50", "1"]]))
    assert builder.handle(update(2**63, [["100.00", "2"]], [])) is entry
    builder.handle(snapshot(2**64 - 2, [["100.00", "1"]], [["100.50", "1"]]))
    assert builder.handle(update(2**64 - 1, [["100.00", "3"]], [])) is entry
    assert (entry.state, entry.seq) == (BookState.LIVE, 2**64 - 1)
    # 2**64 is the next sequence number, beyond what the engine follows: the
    # book must not stay live on levels no later update can change.
    assert builder.handle(_update_text(2**64)) is Reason.SEQ_OUT_OF_RANGE
    assert (entry.state, entry.seq) == (BookState.STALE, 2**64 - 1)
    assert builder.rejected[Reason.SEQ_OUT_OF_RANGE] == 1
    assert live(builder, seq=3) is entry  # a snapshot the engine can follow
    builder.check()


@pytest.mark.parametrize("kind", ["update", "snapshot", "trade"])
def test_any_frame_with_a_seq_beyond_range_makes_a_live_book_stale(kind: str) -> None:
    builder = BookBuilder([BTC])
    entry = live(builder)
    frame = _update_text(10**30)
    if kind == "snapshot":
        frame = frame.replace(b'"update"', b'"snapshot"')
    elif kind == "trade":
        frame = (
            b'{"type":"trade","symbol":"BTC-USD","seq":1e25,"price":"100.01","size":"1",'
            b'"side":"buy"}'
        )
    assert builder.handle(frame) is Reason.SEQ_OUT_OF_RANGE
    assert entry.state is BookState.STALE
    assert levels(entry) == ([(10000, 2000), (9999, 1000)], [(10001, 1000)])


def test_seq_beyond_range_before_the_first_snapshot_changes_nothing() -> None:
    builder = BookBuilder([BTC])
    assert builder.handle(_update_text(2**64)) is Reason.SEQ_OUT_OF_RANGE
    entry = builder.books["BTC-USD"]
    assert (entry.state, entry.seq) == (BookState.AWAITING_SNAPSHOT, None)
    assert builder.transitions == {}


@given(
    start=st.integers(min_value=2**64 - 6, max_value=2**64 - 2),
    steps=st.lists(st.integers(min_value=-1, max_value=3), max_size=12),
)
def test_inline_and_general_paths_agree_near_the_seq_limit(start: int, steps: list[int]) -> None:
    fast = BookBuilder([BTC])
    slow = BookBuilder([BTC])
    frames = [snapshot(start, [["100.00", "1"]], [["100.50", "1"]])]
    seq = start
    for step in steps:
        seq += step
        frames.append(_update_text(seq) if seq >= 0 else _update_text(0))
    for frame in frames:
        fast_result = fast.handle(frame)
        slow_result = _general_path(slow, frame)
        assert (type(fast_result), fast_result if isinstance(fast_result, Reason) else None) == (
            type(slow_result),
            slow_result if isinstance(slow_result, Reason) else None,
        )
        fast_entry, slow_entry = fast.books["BTC-USD"], slow.books["BTC-USD"]
        assert (fast_entry.state, fast_entry.seq) == (slow_entry.state, slow_entry.seq)
        assert fast_entry.state is not BookState.LIVE or fast_entry.seq <= 2**64 - 1
    assert fast.rejected == slow.rejected


def test_inline_path_edge_cases() -> None:
    builder = BookBuilder([BTC])
    builder.handle(snapshot(2**64 - 1, [["100.00", "1"]], [["100.50", "1"]]))
    # The next sequence number would be 2**64: beyond what the engine follows.
    assert builder.handle(_update_text(2**64)) is Reason.SEQ_OUT_OF_RANGE
    assert builder.books["BTC-USD"].state is BookState.STALE
    live_again = BookBuilder([BTC])
    entry = live(live_again)
    assert live_again.handle(update(11, [], [])) is entry
    frame = b'{"type":"update","symbol":"BTC-USD","seq":12,"bids":[],"asks":[],"ts":true}'
    assert live_again.handle(frame) is Reason.BAD_FIELD
    frame = b'{"type":"update","symbol":"BTC-USD","seq":true,"bids":[],"asks":[]}'
    assert live_again.handle(frame) is Reason.BAD_FIELD
