from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trading_engine import BookMessage, Decoder, Heartbeat, Instrument, Reason, Rejected, Trade
from trading_engine.core.protocol import MessageType, Side
from trading_engine.core.wire import WIRE_DECODER

DECODER = Decoder({"BTC-USD": Instrument("BTC-USD", "0.01", "0.001")})


def decode(obj: object) -> object:
    return DECODER.decode(orjson.dumps(obj))


def test_decodes_the_documented_example() -> None:
    msg = DECODER.decode(
        b'{"type":"snapshot","symbol":"BTC-USD","seq":1,"bids":[["100.00","2"],'
        b'["99.99","1.5"]],"asks":[["100.01","1"]],"ts":1732862400000000000}'
    )
    assert isinstance(msg, BookMessage)
    assert msg.type is MessageType.SNAPSHOT
    assert (msg.symbol, msg.seq, msg.ts) == ("BTC-USD", 1, 1732862400000000000)
    assert msg.bids == [(10000, 2000), (9999, 1500)]
    assert msg.asks == [(10001, 1000)]
    trade = DECODER.decode(
        b'{"type":"trade","symbol":"BTC-USD","seq":3,"price":"100.01","size":"0.5","side":"buy"}'
    )
    assert isinstance(trade, Trade)
    assert (trade.price, trade.size, trade.side) == (10001, 500, Side.BUY)
    heartbeat = DECODER.decode(b'{"type":"heartbeat"}')
    assert isinstance(heartbeat, Heartbeat)


def test_json_numbers_are_accepted_exactly() -> None:
    msg = decode(
        {"type": "update", "symbol": "BTC-USD", "seq": 2, "bids": [[100.01, 0.5]], "asks": []}
    )
    assert isinstance(msg, BookMessage)
    assert msg.bids == [(10001, 500)]


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"{not json", Reason.MALFORMED_JSON),
        (b"", Reason.MALFORMED_JSON),
        (b'{"type":"update","bids":[[NaN,1]]}', Reason.MALFORMED_JSON),
        (b'{"type":"update","x":Infinity}', Reason.MALFORMED_JSON),
        (b'{"type":"heartbeat"}{"type":"heartbeat"}', Reason.MALFORMED_JSON),
        (b'{"type":"heartbeat","x":"\xff"}', Reason.INVALID_UTF8),
        (b"\xc3\x28", Reason.INVALID_UTF8),
        (b"[1,2]", Reason.BAD_FIELD),
        (b'"string"', Reason.BAD_FIELD),
        (b"{}", Reason.BAD_FIELD),
        (b'{"type":7}', Reason.BAD_FIELD),
        (b'{"type":"quote","symbol":"BTC-USD","seq":1}', Reason.UNKNOWN_TYPE),
        (b'{"type":"heartbeat","ts":"now"}', Reason.BAD_FIELD),
    ],
)
def test_bad_frames(frame: bytes, reason: Reason) -> None:
    msg = DECODER.decode(frame)
    assert isinstance(msg, Rejected)
    assert msg.reason is reason


def update(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "type": "update",
        "symbol": "BTC-USD",
        "seq": 5,
        "bids": [["100.00", "1"]],
        "asks": [],
    }
    base.update(fields)
    return base


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"symbol": None}, Reason.BAD_FIELD),
        ({"symbol": 12}, Reason.BAD_FIELD),
        ({"seq": None}, Reason.BAD_FIELD),
        ({"seq": -1}, Reason.BAD_FIELD),
        ({"seq": 1.0}, Reason.BAD_FIELD),
        ({"seq": "5"}, Reason.BAD_FIELD),
        ({"seq": True}, Reason.BAD_FIELD),
        ({"ts": 1.5}, Reason.BAD_FIELD),
        ({"bids": None}, Reason.BAD_FIELD),
        ({"bids": {"100": 1}}, Reason.BAD_FIELD),
        ({"asks": "none"}, Reason.BAD_FIELD),
        ({"bids": [["100.00"]]}, Reason.BAD_FIELD),
        ({"bids": [["100.00", "1", "2"]]}, Reason.BAD_FIELD),
        ({"bids": ["100.00"]}, Reason.BAD_FIELD),
        ({"bids": [["NaN", "1"]]}, Reason.BAD_NUMBER),
        ({"bids": [["Infinity", "1"]]}, Reason.BAD_NUMBER),
        ({"bids": [["abc", "1"]]}, Reason.BAD_NUMBER),
        ({"bids": [["1" * 60, "1"]]}, Reason.BAD_NUMBER),
        ({"bids": [[1e300, "1"]]}, Reason.BAD_NUMBER),
        ({"bids": [[True, "1"]]}, Reason.BAD_NUMBER),
        ({"bids": [["100.001", "1"]]}, Reason.OFF_TICK),
        ({"bids": [["0", "1"]]}, Reason.OFF_TICK),
        ({"bids": [["-100.00", "1"]]}, Reason.OFF_TICK),
        ({"asks": [["100.00", "-1"]]}, Reason.BAD_SIZE),
        ({"asks": [["100.00", "0.0001"]]}, Reason.BAD_SIZE),
        ({"symbol": "DOGE-USD"}, Reason.UNKNOWN_SYMBOL),
    ],
)
def test_bad_fields_keep_symbol_and_seq_when_readable(
    fields: dict[str, object], reason: Reason
) -> None:
    msg = decode(update(**fields))
    assert isinstance(msg, Rejected)
    assert msg.reason is reason, msg
    if reason not in (Reason.BAD_FIELD,) or "bids" in fields or "asks" in fields or "ts" in fields:
        assert msg.symbol == fields.get("symbol", "BTC-USD")
        assert msg.seq == 5


def test_snapshot_specific_rules() -> None:
    zero = decode({**update(type="snapshot"), "bids": [["100.00", "0"]]})
    assert isinstance(zero, Rejected)
    assert zero.reason is Reason.BAD_SIZE
    assert zero.kind == "snapshot"
    twice = decode({**update(type="snapshot"), "bids": [["100.00", "1"], ["100.00", "2"]]})
    assert isinstance(twice, Rejected)
    assert twice.reason is Reason.BAD_FIELD


def test_a_trade_of_size_zero_is_a_trade() -> None:
    """Only a snapshot's levels must have a positive size (the protocol's rule 8)."""
    msg = decode(
        {"type": "trade", "symbol": "BTC-USD", "seq": 9, "price": "100.01", "size": "0",
         "side": "buy"}
    )  # fmt: skip
    assert isinstance(msg, Trade)
    assert (msg.seq, msg.size) == (9, 0)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"side": "long"}, Reason.BAD_FIELD),
        ({"side": None}, Reason.BAD_FIELD),
        ({"price": None}, Reason.BAD_FIELD),
        ({"price": "100.005"}, Reason.OFF_TICK),
        ({"size": "-1"}, Reason.BAD_SIZE),
        ({"size": "nan"}, Reason.BAD_NUMBER),
    ],
)
def test_bad_trades(fields: dict[str, object], reason: Reason) -> None:
    trade: dict[str, object] = {
        "type": "trade",
        "symbol": "BTC-USD",
        "seq": 9,
        "price": "100.01",
        "size": "1",
        "side": "sell",
    }
    trade.update(fields)
    msg = decode(trade)
    assert isinstance(msg, Rejected)
    assert msg.reason is reason
    assert (msg.symbol, msg.seq) == ("BTC-USD", 9)


def test_decoder_reads_memoryview_and_bytearray() -> None:
    data = bytearray(b'xx{"type":"heartbeat","ts":5}yy')
    msg = DECODER.decode(memoryview(data)[2:-2])
    assert isinstance(msg, Heartbeat)
    assert msg.ts == 5
    assert isinstance(DECODER.decode(bytearray(b'{"type":"heartbeat"}')), Heartbeat)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    result = DECODER.decode(data)
    assert isinstance(result, BookMessage | Trade | Heartbeat | Rejected)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(
    st.dictionaries(
        st.sampled_from(["type", "symbol", "seq", "bids", "asks", "price", "size", "side", "ts"]),
        json_values,
    )
)
def test_arbitrary_json_objects_never_raise(obj: dict[str, object]) -> None:
    try:
        frame = orjson.dumps(obj)
    except orjson.JSONEncodeError:
        return  # integers beyond 64 bits cannot be encoded; nothing to test
    result = DECODER.decode(frame)
    assert isinstance(result, BookMessage | Trade | Heartbeat | Rejected)


# -- the fast path (msgspec, typed) against the reference path (orjson) ------


def _fields(result: object) -> tuple[object, ...]:
    """Everything a message or rejection carries, for comparing two decoders."""
    if isinstance(result, BookMessage):
        return ("book", result.type, result.symbol, result.seq, result.bids, result.asks, result.ts)
    if isinstance(result, Trade):
        return ("trade", result.symbol, result.seq, result.price, result.size, result.side)
    if isinstance(result, Heartbeat):
        return ("heartbeat", result.ts)
    assert isinstance(result, Rejected)
    return ("rejected", result.reason, result.symbol, result.seq, result.kind)


def assert_paths_agree(frame: bytes) -> None:
    fast = DECODER.decode(frame)
    reference = DECODER.decode_reference(frame)
    assert _fields(fast) == _fields(reference), frame


VALID_FRAMES = [
    b'{"type":"snapshot","symbol":"BTC-USD","seq":1,"bids":[["100.00","2"],["99.99","1.5"]],'
    b'"asks":[["100.01","1"]],"ts":1732862400000000000}',
    b'{"type":"update","symbol":"BTC-USD","seq":2,"bids":[["100.00","0"]],"asks":[["100.02","3"]]}',
    b'{"type":"update","symbol":"BTC-USD","seq":3,"bids":[[100.0,2]],"asks":[],"ts":null}',
    b'{"type":"trade","symbol":"BTC-USD","seq":3,"price":"100.01","size":"0.5","side":"buy"}',
    b'{"type":"trade","symbol":"BTC-USD","seq":4,"price":100.01,"size":1,"side":"sell","ts":7}',
    b'{"type":"heartbeat"}',
    b'{"type":"heartbeat","ts":5}',
]


@pytest.mark.parametrize(
    "frame",
    [
        *VALID_FRAMES,
        # Each of these the fast path refuses; the reference path names why.
        b'{"type":"update","symbol":"BTC-USD","seq":2,"bids":[],"asks":[],"extra":1}',
        b'{"type":"update","symbol":"BTC-USD","seq":2,"bids":[],"asks":[],"type":"trade"}',
        b'{"type":"update","symbol":"BTC-USD","seq":9223372036854775808,"bids":[],"asks":[]}',
        b'{"type":"update","symbol":"BTC-USD","seq":18446744073709551615,"bids":[],"asks":[]}',
        b'{"type":"update","symbol":"BTC-USD","seq":18446744073709551616,"bids":[],"asks":[]}',
        b'{"type":"update","symbol":"ETH-USD","seq":18446744073709551616,"bids":[],"asks":[]}',
        b'{"type":"snapshot","symbol":"BTC-USD","seq":1e30,"bids":[],"asks":[]}',
        b'{"type":"update","symbol":"BTC-USD","seq":1e19,"bids":[],"asks":[]}',
        b'{"type":"trade","symbol":"BTC-USD","seq":123456789012345678901234567890,'
        b'"price":"100.01","size":"1","side":"buy"}',
        b'{"type":"update","symbol":"BTC-USD","seq":2,"bids":[],"asks":[],"ts":9223372036854775808}',
        b'{"type":"update","symbol":"BTC-USD","seq":2,"bids":[],"asks":[],"ts":18446744073709551616}',
        b'{"type":"update","symbol":"BTC-USD","seq":2,"bids":[[18446744073709551616,1]],"asks":[]}',
        b'{"type":"update","symbol":"BTC-USD","seq":2,"bids":[["1e2","1"]],"asks":[]}',
        b'{"type":"update","symbol":"BTC-USD","seq":2,"bids":[[1e400,"1"]],"asks":[]}',
        b'{"type":"update","symbol":"BTC-USD","seq":2,"bids":[["100.001","1"]],"asks":[]}',
        b'{"type":"update","symbol":"BTC-USD","seq":2,"bids":[["100.00","-1"]],"asks":[]}',
        b'{"type":"update","symbol":"BTC-USD","seq":2,"bids":[["100.00"]],"asks":[]}',
        b'{"type":"snapshot","symbol":"BTC-USD","seq":2,"bids":[["100.00","0"]],"asks":[]}',
        b'{"type":"snapshot","symbol":"BTC-USD","seq":2,"bids":[["1","1"],["1.00","2"]],"asks":[]}',
        b'{"type":"update","symbol":"ETH-USD","seq":2,"bids":[],"asks":[]}',
        b'{"type":"update","symbol":"\\ud800","seq":2,"bids":[],"asks":[]}',
        b'{"type":"trade","symbol":"BTC-USD","seq":3,"price":"100.01","size":"-1","side":"buy"}',
        b'{"type":"trade","symbol":"BTC-USD","seq":3,"price":"100.01","size":"0","side":"buy"}',
        b'{"type":"trade","symbol":"BTC-USD","seq":3,"price":"100.01","size":"1","side":"BUY"}',
        b'{"type":"trade","symbol":"BTC-USD","seq":3,"price":true,"size":"1","side":"buy"}',
        b'{"type":"heartbeat","ts":1.5}',
        b'{"type":"heartbeat","symbol":"BTC-USD"}',
        b'{"type":"nope","symbol":"BTC-USD","seq":4}',
        b'{"type":"update","symbol":"BTC-USD","seq":2,"bids":[],"asks":[]} x',
        b'\xef\xbb\xbf{"type":"heartbeat"}',
        b'{"type":"update","symbol":"\xff","seq":2,"bids":[],"asks":[]}',
        b"[]",
        b"",
    ],
)
def test_fast_path_agrees_with_reference_path(frame: bytes) -> None:
    assert_paths_agree(frame)


@given(st.binary(max_size=200))
def test_fast_path_agrees_on_arbitrary_bytes(data: bytes) -> None:
    assert_paths_agree(data)


@given(
    index=st.integers(min_value=0, max_value=len(VALID_FRAMES) - 1),
    offset=st.integers(min_value=0, max_value=200),
    replacement=st.binary(min_size=0, max_size=4),
    insert=st.booleans(),
)
def test_fast_path_agrees_on_mutated_frames(
    index: int, offset: int, replacement: bytes, insert: bool
) -> None:
    frame = VALID_FRAMES[index]
    cut = offset % (len(frame) + 1)
    rest = frame[cut:] if insert else frame[cut + len(replacement) :]
    assert_paths_agree(frame[:cut] + replacement + rest)


@given(
    st.dictionaries(
        st.sampled_from(["type", "symbol", "seq", "bids", "asks", "price", "size", "side", "ts"]),
        json_values,
    ),
    st.sampled_from(["update", "snapshot", "trade", "heartbeat"]),
)
def test_fast_path_agrees_on_arbitrary_json_objects(obj: dict[str, object], kind: str) -> None:
    obj.setdefault("type", kind)
    try:
        frame = orjson.dumps(obj)
    except orjson.JSONEncodeError:
        return  # integers beyond 64 bits cannot be encoded; nothing to test
    assert_paths_agree(frame)


@pytest.mark.parametrize("frame", VALID_FRAMES)
def test_fast_path_takes_every_valid_frame(frame: bytes) -> None:
    message = DECODER.from_wire(WIRE_DECODER.decode(frame))
    assert message is not None
    assert _fields(message) == _fields(DECODER.decode_reference(frame))


@pytest.mark.parametrize("kind", ["update", "snapshot", "trade"])
def test_seq_up_to_two_to_the_64_minus_one_is_accepted_on_both_paths(kind: str) -> None:
    for seq in (2**63 - 1, 2**63, 2**64 - 1):
        frame = _frame(kind, str(seq))
        fast = DECODER.from_wire(WIRE_DECODER.decode(frame))
        assert fast is not None, seq
        assert fast.seq == seq
        reference = DECODER.decode_reference(frame)
        assert not isinstance(reference, Rejected)
        assert _fields(fast) == _fields(reference)


@pytest.mark.parametrize(
    ("seq", "symbol", "reason"),
    [
        ("18446744073709551616", "BTC-USD", Reason.SEQ_OUT_OF_RANGE),
        ("123456789012345678901234567890", "BTC-USD", Reason.SEQ_OUT_OF_RANGE),
        ("1e20", "BTC-USD", Reason.SEQ_OUT_OF_RANGE),  # a JSON reader cannot tell it apart
        ("18446744073709551616", "XRP-USD", Reason.UNKNOWN_SYMBOL),
        ("1e19", "BTC-USD", Reason.BAD_FIELD),  # below 2**64: a float, not an integer
        ("-18446744073709551616", "BTC-USD", Reason.BAD_FIELD),
    ],
)
def test_seq_beyond_what_the_engine_follows(seq: str, symbol: str, reason: Reason) -> None:
    for kind in ("update", "snapshot", "trade"):
        frame = _frame(kind, seq, symbol)
        msg = DECODER.decode(frame)
        assert isinstance(msg, Rejected)
        assert (msg.reason, msg.symbol, msg.seq) == (reason, symbol, None)
        assert_paths_agree(frame)


def _frame(kind: str, seq: str, symbol: str = "BTC-USD") -> bytes:
    if kind == "trade":
        body = '"price":"100.01","size":"1","side":"buy"'
    else:
        body = '"bids":[["100.00","1"]],"asks":[["100.01","1"]]'
    return f'{{"type":"{kind}","symbol":"{symbol}","seq":{seq},{body}}}'.encode()


@given(
    st.sampled_from(["update", "snapshot", "trade"]),
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.integers(min_value=2**64 - 3, max_value=2**64 + 3)
    | st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
def test_fast_path_agrees_on_any_seq(kind: str, seq: int | str) -> None:
    assert_paths_agree(_frame(kind, str(seq)))
