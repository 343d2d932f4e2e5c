"""The data readers: formats told by content, gzip, merging, and bad input never silent."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.backtest.helpers import MS, T0, book, trade, write_capture
from tests.fakes import config
from trading_engine.backtest.data import DataError, DataEvent, detect_format, read_data
from trading_engine.backtest.events import unusable
from trading_engine.config import Config, parse_config
from trading_engine.core.errors import InvalidValue
from trading_engine.core.protocol import BookMessage, Trade

ROOT = Path(__file__).resolve().parents[2]
BINANCE = ROOT / "tests" / "data" / "venues" / "binance" / "xmrbtc_session.capture"
TARDIS = ROOT / "tests" / "data" / "tardis"
BOOK_CSV = "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount\n"
TRADES_CSV = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
XMRBTC = parse_config(
    {"instruments": [{"symbol": "XMRBTC", "tick_size": "0.000001", "lot_size": "0.001"}]},
    environ={},
)


def frames(tmp_path: Path) -> list[tuple[int, bytes]]:
    return [
        (T0, book("snapshot", 1, [["100.00", "1.000"]], [["100.10", "2.000"]])),
        (T0 + MS, trade(2, "100.00", "0.010", "sell")),
        (T0 + 2 * MS, book("update", 3, [["100.00", "0.990"]], [])),
    ]


def read(paths: list[Path], cfg: Config | None = None) -> tuple[list[DataEvent], dict[str, int]]:
    """The events of ``paths`` and what they left out, summed over the files."""
    by_file: dict[str, dict[str, int]] = {}
    events = list(read_data(paths, cfg or config(), by_file))
    assert set(by_file) == {str(path) for path in paths}
    skipped: dict[str, int] = {}
    for counts in by_file.values():
        for reason, count in counts.items():
            skipped[reason] = skipped.get(reason, 0) + count
    return events, skipped


def test_formats_are_told_by_content_not_by_name(tmp_path: Path) -> None:
    capture = write_capture(tmp_path / "data.csv", frames(tmp_path))
    assert detect_format(capture) == "engine_capture"
    assert detect_format(BINANCE) == "venue_capture"
    assert detect_format(TARDIS / "binance_trades_2021-08-14_FTMUSDT.csv.gz") == "tardis_trades"
    book_csv = TARDIS / "binance_incremental_book_L2_2021-08-14_XMRBTC.csv.gz"
    assert detect_format(book_csv) == "tardis_book"
    plain = tmp_path / "book.gz"  # not gzip, whatever the name says
    plain.write_bytes(gzip.decompress(book_csv.read_bytes()))
    assert detect_format(plain) == "tardis_book"


def test_a_csv_header_with_a_typo_names_the_headers_it_could_have_been(tmp_path: Path) -> None:
    typo = tmp_path / "book.csv"
    typo.write_text(BOOK_CSV.replace("local_timestamp", "localTimestamp"))
    with pytest.raises(DataError) as raised:
        detect_format(typo)
    message = str(raised.value)
    assert message.startswith(f"{typo}: a CSV header this reader does not know")
    assert BOOK_CSV.strip() in message
    assert TRADES_CSV.strip() in message
    headless = tmp_path / "rows.csv"
    headless.write_text("binance,XMRBTC,2,2000,true,bid,0.005,1.5\n")
    with pytest.raises(DataError, match="a Tardis CSV with its header line"):
        detect_format(headless)


def test_gzip_is_read_directly(tmp_path: Path) -> None:
    capture = write_capture(tmp_path / "data.capture", frames(tmp_path))
    packed = tmp_path / "data.bin"
    packed.write_bytes(gzip.compress(capture.read_bytes()))
    plain_events, _ = read([capture])
    packed_events, _ = read([packed])
    assert [repr(e) for e in packed_events] == [repr(e) for e in plain_events]
    assert [type(e.message) for e in plain_events] == [BookMessage, Trade, BookMessage]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"hello world\n", "unknown format"),
        (b"exchange,symbol,timestamp,local_timestamp,funding_rate\n", "another Tardis data type"),
    ],
)
def test_a_file_that_cannot_be_read_is_an_error_naming_it(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.dat"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        read([path])
    assert str(path) in str(info.value)
    with pytest.raises(DataError, match="cannot open"):
        read([tmp_path / "missing.capture"])


def test_a_corrupt_or_truncated_gzip_is_an_error(tmp_path: Path) -> None:
    capture = write_capture(tmp_path / "data.capture", frames(tmp_path) * 50)
    packed = gzip.compress(capture.read_bytes())
    truncated = tmp_path / "truncated.gz"
    truncated.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataError, match="corrupt or truncated gzip"):
        read([truncated])
    corrupt = tmp_path / "corrupt.gz"
    # The last 8 bytes are the CRC-32 and length: a wrong CRC.
    corrupt.write_bytes(packed[:-8] + bytes(b ^ 0xFF for b in packed[-8:-4]) + packed[-4:])
    with pytest.raises(DataError, match="corrupt or truncated gzip"):
        read([corrupt])
    # Deflate data that cannot be inflated (the inflater's own error), in the
    # first line (the format check) and further on (the read).
    for at in (10, len(packed) // 2):
        mangled = tmp_path / f"mangled{at}.gz"
        mangled.write_bytes(packed[:at] + b"\xff" * 64 + packed[at + 64 :])
        with pytest.raises(DataError, match="corrupt or truncated gzip"):
            read([mangled])
    # Bytes after the end of the gzip stream.
    trailing = tmp_path / "trailing.gz"
    trailing.write_bytes(packed + b"garbage")
    with pytest.raises(DataError, match="corrupt or truncated gzip"):
        read([trailing])


def test_a_cut_last_line_and_bad_lines_are_counted(tmp_path: Path) -> None:
    capture = write_capture(tmp_path / "data.capture", frames(tmp_path))
    with capture.open("ab") as handle:
        handle.write(b"not a capture line\n")
        handle.write(b'%d\t{"type":"upd' % (T0 + 3 * MS))  # the writer stopped here
    events, skipped = read([capture])
    assert len(events) == 3
    assert skipped == {"bad_line": 1, "cut_line": 1}


def test_out_of_order_lines_are_counted_and_left_out(tmp_path: Path) -> None:
    rows = frames(tmp_path)
    capture = write_capture(tmp_path / "data.capture", [rows[0], rows[2], rows[1]])
    events, skipped = read([capture])
    assert [e.ts_ns for e in events] == [T0, T0 + 2 * MS]
    assert skipped == {"out_of_order": 1}


def test_files_are_merged_by_time(tmp_path: Path) -> None:
    rows = frames(tmp_path)
    one = write_capture(tmp_path / "one.capture", [rows[0], rows[2]])
    two = write_capture(tmp_path / "two.capture", [rows[1]])
    events, _ = read([one, two])
    assert [e.ts_ns for e in events] == [T0, T0 + MS, T0 + 2 * MS]


def test_tardis_rows_are_grouped_into_messages(tmp_path: Path) -> None:
    path = tmp_path / "book.csv"
    path.write_text(
        BOOK_CSV
        + "binance,XMRBTC,1,1000,false,bid,0.005,1\n"  # before the first snapshot
        + "binance,XMRBTC,2,2000,true,bid,0.005,1.5\n"
        + "binance,XMRBTC,2,2000,true,ask,0.006,2\n"
        + "binance,XMRBTC,3,3000,false,bid,0.005,0\n"
        + "binance,XMRBTC,3,3000,false,bid,0.004,3\n"
        + "binance,XMRBTC,4,4000,false,ask,0.0060005,1\n"  # off the tick grid
        + "binance,ETHBTC,4,4000,false,ask,0.06,1\n"  # not configured
        + "binance,XMRBTC,5,2500,false,ask,0.006,1\n"  # earlier than the row before
        + "binance,XMRBTC,6,6000,true,bid,0.0051,1\n"  # a new snapshot
    )
    events, skipped = read([path], XMRBTC)
    messages = [e.message for e in events]
    assert [(m.type.value, m.bids, m.asks) for m in messages] == [  # type: ignore[union-attr]
        ("snapshot", [(5000, 1500)], [(6000, 2000)]),
        ("update", [(5000, 0), (4000, 3000)], []),
        ("snapshot", [(5100, 1000)], []),
    ]
    assert [e.ts_ns for e in events] == [2_000_000, 3_000_000, 6_000_000]
    assert skipped == {
        "before_snapshot": 1,
        "off_grid": 1,
        "unknown_symbol": 1,
        "out_of_order": 1,
    }


def test_tardis_trades_take_the_aggressor_side(tmp_path: Path) -> None:
    path = tmp_path / "trades.csv"
    path.write_text(
        TRADES_CSV
        + "binance,XMRBTC,1,1000,7,buy,0.005,1.5\n"
        + "binance,XMRBTC,2,2000,8,unknown,0.005,1\n"
        + "binance,XMRBTC,3,3000,,sell,0.004,0.25\n"
    )
    events, skipped = read([path], XMRBTC)
    trades = [e.message for e in events]
    assert [(t.side.value, t.price, t.size) for t in trades] == [  # type: ignore[union-attr]
        ("buy", 5000, 1500),
        ("sell", 4000, 250),
    ]
    assert skipped == {"trade_side_unknown": 1}


def test_a_venue_sequence_gap_resynchronizes_the_book(tmp_path: Path) -> None:
    path = tmp_path / "gap.capture"
    lines = BINANCE.read_bytes().splitlines(keepends=True)
    # The depth event U=717720867..u=717720867 now claims 717720868: one update is lost.
    changed = [
        line.replace(b'"U":717720867,"u":717720867', b'"U":717720868,"u":717720868')
        for line in lines
    ]
    assert changed != lines
    path.write_bytes(b"".join(changed))
    events, skipped = read([path], XMRBTC)
    assert skipped.get("resync_gap") == 1
    resyncs = [e for e in events if e.message is None]
    assert [(e.symbol, e.reason) for e in resyncs] == [("XMRBTC", "gap")]


def test_a_venue_capture_whose_venue_is_unknown_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "other.capture"
    shutil.copy(BINANCE, path)
    path.write_bytes(path.read_bytes().replace(b"stream.binance.com", b"example.org", 1))
    with pytest.raises(DataError, match="cannot tell the venue"):
        read([path], XMRBTC)


def test_a_kraken_capture_goes_through_the_kraken_dialect(tmp_path: Path) -> None:
    # Kraken's documented book snapshot (tests/data/venues/kraken), as a feed handler
    # would have captured it: the venue is told by the URL of the open line.
    message = ROOT / "tests" / "data" / "venues" / "kraken" / "book_snapshot_docs.json"
    path = tmp_path / "kraken.capture"
    path.write_bytes(
        b"1700000000000000000\topen\twss://ws.kraken.com/v2\t\n"
        b"1700000000100000000\tws\t\t" + message.read_bytes().strip() + b"\n"
    )
    cfg = parse_config(
        {"instruments": [{"symbol": "BTC/USD", "tick_size": "0.1", "lot_size": "0.00000001"}]},
        environ={},
    )
    events, skipped = read([path], cfg)
    [event] = events
    snapshot = event.message
    assert isinstance(snapshot, BookMessage)
    assert snapshot.type.value == "snapshot"
    assert (len(snapshot.bids), len(snapshot.asks)) == (10, 10)
    assert snapshot.bids[0] == (452835, 10_000_000)  # 45283.5 x 0.1
    assert event.ts_ns == 1700000000100000000
    assert skipped == {}


def test_a_recorded_2022_okx_message_goes_through_the_okx_dialect(tmp_path: Path) -> None:
    # OKX's recorded books snapshot (tests/data/venues/okx), as a feed handler would have
    # captured it in 2022: before OKX numbered book messages (no seqId).
    message = ROOT / "tests" / "data" / "venues" / "okx" / "books_snapshot_2022.json"
    path = tmp_path / "okx.capture"
    path.write_bytes(
        b"1659792392600000000\topen\twss://ws.okx.com:8443/ws/v5/public\t\n"
        b"1659792392700000000\tws\t\t" + message.read_bytes().strip() + b"\n"
    )
    cfg = parse_config(
        {"instruments": [{"symbol": "BTC-USDT", "tick_size": "0.00001", "lot_size": "1"}]},
        environ={},
    )
    events, skipped = read([path], cfg)
    assert skipped == {}
    [event] = events
    snapshot = event.message
    assert isinstance(snapshot, BookMessage)
    assert snapshot.type.value == "snapshot"
    assert (len(snapshot.bids), len(snapshot.asks)) == (39, 37)
    assert snapshot.bids[0] == (7014, 56)
    assert snapshot.asks[0] == (7026, 5)


def test_a_repeated_tardis_trade_is_counted_not_traded_twice(tmp_path: Path) -> None:
    # A row written twice (a merged or re-downloaded file) has the same trade id
    # and time: traded twice it would move a resting order's queue twice.
    path = tmp_path / "trades.csv"
    path.write_text(
        TRADES_CSV
        + "binance,XMRBTC,1,1000,7,buy,0.005,1.5\n"
        + "binance,XMRBTC,1,1000,7,buy,0.005,1.5\n"
        + "binance,XMRBTC,1,1000,,sell,0.005,1\n"  # no id: cannot be told apart
        + "binance,XMRBTC,1,1000,,sell,0.005,1\n"
        + "binance,XMRBTC,2,2000,8,sell,0.004,0.25\n"
    )
    events, skipped = read([path], XMRBTC)
    assert [(e.ts_ns, e.message.size) for e in events] == [  # type: ignore[union-attr]
        (1_000_000, 1500),
        (1_000_000, 1000),
        (1_000_000, 1000),
        (2_000_000, 250),
    ]
    assert skipped == {"duplicate": 1}


def test_a_size_that_is_not_positive_is_counted_as_a_bad_size(tmp_path: Path) -> None:
    path = tmp_path / "trades.csv"
    path.write_text(
        TRADES_CSV
        + "binance,XMRBTC,1,1000,7,buy,0.005,-1.5\n"
        + "binance,XMRBTC,1,2000,8,buy,0.005,0\n"
    )
    _events, skipped = read([path], XMRBTC)
    assert skipped == {"bad_size": 2}


def test_tardis_messages_are_the_same_across_read_chunks_and_line_endings(
    tmp_path: Path,
) -> None:
    """A book file of several 1 MiB read chunks: every message is its run of rows
    (one symbol, one local time), whether a run straddles a chunk's end or not,
    and CRLF line endings read as LF ones."""
    import random

    rng = random.Random(11)
    rows = ["binance,XMRBTC,1,1000,true,bid,0.005,1", "binance,XMRBTC,1,1000,true,ask,0.006,1"]
    expected: list[tuple[int, list[tuple[int, int]], list[tuple[int, int]]]] = [
        (1_000_000, [(5000, 1000)], [(6000, 1000)])
    ]
    local = 1000
    size = 0
    while size < 2_500_000:
        local += rng.randint(1, 3)
        bids: list[tuple[int, int]] = []
        asks: list[tuple[int, int]] = []
        for _ in range(rng.randint(1, 4)):
            ticks, lots = rng.randint(1, 9999), rng.randint(0, 5000)
            side = rng.choice(("bid", "ask"))
            (bids if side == "bid" else asks).append((ticks, lots))
            rows.append(
                f"binance,XMRBTC,{local},{local},false,{side},{ticks / 10**6:.6f},{lots / 1000}"
            )
            size += len(rows[-1]) + 1
        expected.append((local * 1000, bids, asks))
    for name, newline in (("lf.csv", "\n"), ("crlf.csv", "\r\n")):
        path = tmp_path / name
        path.write_bytes((BOOK_CSV.rstrip("\n") + newline + newline.join(rows) + newline).encode())
        events, skipped = read([path], XMRBTC)
        assert skipped == {}
        got = [(e.ts_ns, e.message.bids, e.message.asks) for e in events]  # type: ignore[union-attr]
        assert got == expected, name
        assert sum(e.levels for e in events) == len(rows)


def test_a_tardis_trade_time_of_non_ascii_digits_is_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "trades.csv"
    path.write_text(
        TRADES_CSV
        + "binance,XMRBTC,1,1000,7,buy,0.005,1.5\n"
        + "binance,XMRBTC,2,2\u00b2000,8,buy,0.005,1\n"  # "2²000": digits to str.isdigit
        + "binance,XMRBTC,3,3000,9,sell,0.004,0.25\n"
    )
    events, skipped = read([path], XMRBTC)
    assert [e.ts_ns for e in events] == [1_000_000, 3_000_000]
    assert skipped == {"bad_line": 1}


@given(
    st.lists(st.lists(st.integers(min_value=0, max_value=20), max_size=12).map(sorted), max_size=5)
)
def test_the_merge_by_time_is_heapq_merges_stable_order(times: list[list[int]]) -> None:
    """Each stream's events in time order merge as ``heapq.merge`` with a key
    merges them: by time, and at equal times the stream given first goes first."""
    import heapq

    from trading_engine.backtest.events import merge_by_time

    def streams() -> list[list[DataEvent]]:
        return [
            [DataEvent(t, f"s{n}", None, 1, reason=str(i)) for i, t in enumerate(stamps)]
            for n, stamps in enumerate(times)
        ]

    def key(event: DataEvent) -> tuple[int, str, str | None]:
        return event.ts_ns, event.symbol, event.reason

    ours = [key(e) for e in merge_by_time([iter(s) for s in streams()])]
    theirs = [key(e) for e in heapq.merge(*streams(), key=lambda e: e.ts_ns)]
    assert ours == theirs


def test_a_tardis_read_stopped_early_closes_its_files(tmp_path: Path) -> None:
    """Both builds: a reader given up before the end of its files (``--to``, an
    error in another file) leaves no file open behind it."""
    import gc
    import warnings

    book_path = tmp_path / "book.csv"
    book_path.write_text(
        BOOK_CSV
        + "binance,XMRBTC,2,2000,true,bid,0.005,1.5\n"
        + "binance,XMRBTC,3,3000,false,bid,0.005,1\n"
        + "binance,XMRBTC,4,4000,false,bid,0.005,2\n"
    )
    trades_path = tmp_path / "trades.csv.gz"
    with gzip.open(trades_path, "wt") as handle:
        handle.write(TRADES_CSV + "binance,XMRBTC,1,2500,7,buy,0.005,1.5\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for paths in ([book_path], [book_path, trades_path]):
            events = read_data(paths, XMRBTC, {})
            assert next(events).ts_ns == 2_000_000
            del events
            gc.collect()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []


def test_every_row_of_a_message_is_checked_and_a_bad_row_moves_nothing(tmp_path: Path) -> None:
    # Rows of one message share their head (symbol, times, snapshot flag); each
    # row is still counted on its own, and a row left out for its side or
    # price neither moves the file's time nor ends the message being gathered.
    path = tmp_path / "book.csv"
    path.write_text(
        BOOK_CSV
        + "binance,XMRBTC,2,2000,true,bid,0.005,1.5\n"
        + "binance,XMRBTC,2,2000,true,ask,0.006,2\n"
        + "binance,XMRBTC,9,9000,false,mid,0.005,1\n"  # bad side, later time
        + "binance,XMRBTC,3,3000,false,bid,0.004,3\n"  # not out of order
        + "binance,XMRBTC,3,3000,false,bid,0.0041x,3\n"  # bad price, same message
        + "binance,XMRBTC,3,3000,false,ask,0.007,4\n"
        + "binance,XMRBTC,4,,false,ask,0.007,1\n"  # a bad head, twice
        + "binance,XMRBTC,4,,false,ask,0.008,1\n"
        + "binance,XMRBTC,5,5000,false,ask,0.00600001,1\n"  # off the grid: no message
        + "binance,XMRBTC,6,6000,false,bid,0.005,0\n"
    )
    events, skipped = read([path], XMRBTC)
    messages = [e.message for e in events]
    assert [(m.type.value, m.bids, m.asks) for m in messages] == [  # type: ignore[union-attr]
        ("snapshot", [(5000, 1500)], [(6000, 2000)]),
        ("update", [(4000, 3000)], [(7000, 4000)]),
        ("update", [(5000, 0)], []),
    ]
    assert [e.ts_ns for e in events] == [2_000_000, 3_000_000, 6_000_000]
    assert skipped == {"bad_line": 3, "bad_price": 1, "off_grid": 1}


@pytest.mark.parametrize(
    ("rows", "expected_skips"),
    [
        # An empty symbol is an unknown one, whether or not a known row came first.
        (["binance,,1,1000,true,bid,0.005,1"], {"unknown_symbol": 1}),
        (
            ["binance,FOO,1,1000,false,bid,0.005,1", "binance,,1,1000,false,bid,0.005,1"],
            {"unknown_symbol": 2},
        ),
        # A first row whose head is just "," (its first two fields empty) is no
        # repeat of a head read before.
        ([",,bid,1,1"], {"bad_line": 1}),
        ([",,bid,x,1"], {"bad_line": 1}),
        # An empty or absurdly long local time is a bad line, even on the first row.
        (["binance,XMRBTC,1,,true,bid,0.005,1"], {"bad_line": 1}),
        (["binance,XMRBTC,1," + "9" * 5000 + ",true,bid,0.005,1"], {"bad_line": 1}),
        (["binance,XMRBTC,1,10000000000000000,true,bid,0.005,1"], {"bad_line": 1}),
    ],
)
def test_tardis_book_rows_without_a_usable_symbol_or_time_are_counted(
    tmp_path: Path, rows: list[str], expected_skips: dict[str, int]
) -> None:
    path = tmp_path / "book.csv"
    path.write_text(BOOK_CSV + "".join(row + "\n" for row in rows))
    events, skipped = read([path], XMRBTC)
    assert events == []
    assert skipped == expected_skips


def test_times_longer_than_a_time_can_be_are_bad_lines_in_every_format(tmp_path: Path) -> None:
    trades = tmp_path / "trades.csv"
    trades.write_text(
        TRADES_CSV
        + "binance,XMRBTC,1," + "1" * 4400 + ",7,buy,0.005,1.5\n"
        + "binance,XMRBTC,1,9999999999999999,8,buy,0.005,1.5\n"
    )  # fmt: skip
    events, skipped = read([trades], XMRBTC)
    assert [e.ts_ns for e in events] == [9_999_999_999_999_999_000]
    assert skipped == {"bad_line": 1}
    capture = write_capture(tmp_path / "data.capture", frames(tmp_path))
    with capture.open("ab") as handle:
        handle.write(b"1" * 4400 + b'\t{"type":"heartbeat"}\n')
        handle.write(b"1" * 20 + b'\t{"type":"heartbeat"}\n')
    events, skipped = read([capture])
    assert len(events) == 3
    assert skipped == {"bad_line": 2}


_FIELD_TAILS = st.lists(
    st.sampled_from(
        ["bid", "ask", "bi", "bix", "bidd", "asz", "aak", "Bid", "", ",", "0.005", "1.5", "0.0041x"]
    ),
    min_size=1,
    max_size=4,
)


@given(rows=st.lists(_FIELD_TAILS, min_size=1, max_size=8))
def test_a_book_rows_fields_are_its_last_three_comma_separated_fields(
    tmp_path_factory: pytest.TempPathFactory, rows: list[list[str]]
) -> None:
    # Each row is a usable head followed by any fields: the reader takes the
    # last three (side, price, amount) as ``rsplit(",", 3)`` would, and a row
    # with too few fields, another side or a longer head is a bad line.
    head = "binance,XMRBTC,2,2000,true"
    lines = [",".join([head, *fields]) for fields in rows]
    path = tmp_path_factory.mktemp("rows") / "book.csv"
    path.write_text(BOOK_CSV + "".join(line + "\n" for line in lines))
    events, skipped = read([path], XMRBTC)
    instrument = XMRBTC.instrument_map()["XMRBTC"]
    bids: list[tuple[int, int]] = []
    asks: list[tuple[int, int]] = []
    expected: dict[str, int] = {}
    for line in lines:
        parts = line.rsplit(",", 3)
        if len(parts) != 4 or parts[1] not in ("bid", "ask") or parts[0] != head:
            expected["bad_line"] = expected.get("bad_line", 0) + 1
            continue
        try:
            ticks = instrument.price_to_ticks(parts[2])
        except InvalidValue as exc:
            expected[unusable(exc, "price")] = expected.get(unusable(exc, "price"), 0) + 1
            continue
        try:
            lots = instrument.size_to_lots(parts[3])
        except InvalidValue as exc:
            expected[unusable(exc, "size")] = expected.get(unusable(exc, "size"), 0) + 1
            continue
        if lots:  # a snapshot's empty level is left out
            (bids if parts[1] == "bid" else asks).append((ticks, lots))
    assert skipped == expected
    got = [(m.bids, m.asks) for m in (e.message for e in events)]  # type: ignore[union-attr]
    assert got == ([(bids, asks)] if bids or asks else [])


def test_a_line_longer_than_any_message_is_a_bad_line_read_past_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A publisher's endless line is not gathered in memory (nor copied again
    # per chunk read): past MAX_LINE it is dropped up to its newline, once
    # counted, and the rows around it are read.
    import trading_engine.backtest.files as files

    monkeypatch.setattr(files, "MAX_LINE", 1000)
    monkeypatch.setattr(files, "_CHUNK", 300)
    row = "binance,XMRBTC,2,2000,true,bid,0.005,1.5\n"
    long_row = "binance,XMRBTC,2,2000,true,bid,0.005," + "1" * 5000 + "\n"
    path = tmp_path / "book.csv"
    path.write_text(BOOK_CSV + row + long_row + row.replace("bid", "ask") + "x" * 3000)
    events, skipped = read([path], XMRBTC)
    [message] = [e.message for e in events]
    assert (message.bids, message.asks) == ([(5000, 1500)], [(5000, 1500)])  # type: ignore[union-attr]
    # The long row and the unfinished last line, past MAX_LINE too (not a cut line).
    assert skipped == {"bad_line": 2}


# Mostly usable fields, so that one bad field at a time is what decides.
_HEADS = st.tuples(
    st.sampled_from(["binance"] * 6 + ["", "b,x"]),
    st.sampled_from(["XMRBTC"] * 6 + ["ETHBTC", "", "XMR,BTC"]),
    st.sampled_from(["1", ""]),
    st.sampled_from(
        ["1000", "2000", "0", "", "9999999999999999", "10000000000000000", "0001000", "\uff11",
         "12a", "-5", " 7"]
    ),
    st.sampled_from(["true", "false"] * 3 + ["True", "", "false,", "tru"]),
).map(",".join)  # fmt: skip


@given(heads=st.lists(_HEADS, min_size=1, max_size=10))
@example(heads=["binance,XMRBTC,1,10000000000000000,true", "binance,XMRBTC,1,2000,true"])
@example(heads=["binance,XMRBTC,1,9999999999999999,true"])
@example(heads=["binance,XMRBTC,1,1000,tru", "binance,XMRBTC,1,1000,True"])
@example(heads=["binance,XMRBTC,1,1000,true,", "binance,XMRBTC,1,1000"])
def test_a_book_rows_head_is_five_fields_read_as_the_docs_say(
    tmp_path_factory: pytest.TempPathFactory, heads: list[str]
) -> None:
    # exchange,symbol,timestamp,local_timestamp,is_snapshot: five fields, a
    # configured symbol, 1-16 ASCII digits of us, true or false; a head is read
    # once per run of equal heads, and its verdict counts for each of its rows.
    path = tmp_path_factory.mktemp("heads") / "book.csv"
    path.write_text(BOOK_CSV + "".join(head + ",bid,0.005,1\n" for head in heads))
    events, skipped = read([path], XMRBTC)
    expected: dict[str, int] = {}
    accepted = 0
    last = 0
    started = False
    previous: str | None = None
    verdict = ""
    for head in heads:
        if head != previous:
            previous = head
            fields = head.split(",")
            if len(fields) != 5:
                verdict = "bad_line"
            elif fields[1] != "XMRBTC":
                verdict = "unknown_symbol"
            elif fields[4] not in ("true", "false") or not (
                fields[3].isascii() and fields[3].isdigit() and len(fields[3]) <= 16
            ):
                verdict = "bad_line"
            elif int(fields[3]) * 1000 < last:
                verdict = "out_of_order"
            else:
                last = int(fields[3]) * 1000
                started = started or fields[4] == "true"
                verdict = "" if started else "before_snapshot"
        if verdict:
            expected[verdict] = expected.get(verdict, 0) + 1
        else:
            accepted += 1
    assert skipped == expected
    assert sum(len(e.message.bids) for e in events) == accepted  # type: ignore[union-attr]
