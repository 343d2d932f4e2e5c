"""The Kraken v2 dialect against Kraken's documented rules and checksum
example (tests/data/venues/kraken/README.md)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trading_engine.core.errors import UnreadableAnswer
from trading_engine.core.feeds import Action, BookFrame, Reconnect, Resync, SendText, TradeFrame
from trading_engine.venues import kraken
from trading_engine.venues.kraken import KrakenDialect
from trading_engine.venues.kraken.checksum import field
from trading_engine.venues.kraken.instruments import v2_symbol

from .messages import book_message, instrument_snapshot, ref_checksum

DATA = Path(__file__).parents[2] / "data" / "venues" / "kraken"
SYM = "BTC/USD"
S = 1_000_000_000
D = Decimal


def doc_snapshot() -> str:
    return (DATA / "book_snapshot_docs.json").read_text().strip()


def ready(symbols: tuple[str, ...] = (SYM,), **kwargs: float) -> KrakenDialect:
    """A dialect past its instrument snapshot (BTC/USD: price 1, qty 8 decimals)."""
    d = KrakenDialect(symbols, **kwargs)  # type: ignore[arg-type]
    d.on_open(0)
    d.on_message(instrument_snapshot(dict.fromkeys(symbols, (1, 8))), 0)
    return d


def requests(actions: list[Action]) -> list[dict[str, object]]:
    out = []
    for a in actions:
        assert isinstance(a, SendText)
        body = json.loads(a.text)
        del body["req_id"]
        out.append(body)
    return out


def resubscription(depth: int = 10) -> list[dict[str, object]]:
    return [
        {"method": "unsubscribe", "params": {"channel": "book", "symbol": [SYM], "depth": depth}},
        {
            "method": "subscribe",
            "params": {"channel": "book", "symbol": [SYM], "depth": depth, "snapshot": True},
        },
    ]


# -- the checksum --------------------------------------------------------------------------


def test_field_follows_the_guide() -> None:
    # The guide's worked steps: "45285.2" -> "452852", "0.00100000" -> "100000".
    assert field(D("45285.2"), 1) == "452852"
    assert field(D("0.00100000"), 8) == "100000"
    # A number whose text dropped trailing zeros is written at the pair's precision.
    assert field(D("0.001"), 8) == "100000"
    assert field(D("45281"), 1) == "452810"
    # More decimals than the precision are kept (a rounding would hide a wrong value).
    assert field(D("0.123"), 2) == "123"


def test_documented_snapshot_verifies() -> None:
    d = ready()
    (frame,) = d.on_message(doc_snapshot(), 1)
    assert isinstance(frame, BookFrame)
    assert frame.snapshot
    assert frame.bids[0] == ("45283.5", "0.10000000")
    assert frame.asks[0] == ("45285.2", "0.00100000")
    assert len(frame.bids) == len(frame.asks) == 10
    assert frame.ts_ns == 1696613755440295000
    assert d.checksums_verified == 1
    assert d.errors == {}


def test_numbers_without_trailing_zeros_verify_at_the_pairs_precision() -> None:
    d = ready()
    text = doc_snapshot().replace("0.10000000", "0.1").replace("45281.0", "45281")
    (frame,) = d.on_message(text, 1)
    assert isinstance(frame, BookFrame)
    assert d.errors == {}


def test_documented_snapshot_with_one_corrupted_level_resyncs() -> None:
    d = ready()
    actions = d.on_message(doc_snapshot().replace("1.54582015", "1.54582016"), 1)
    assert actions[0] == Resync(SYM, "checksum")
    assert requests(actions[1:]) == resubscription()
    assert d.errors == {"checksum": 1}


# -- the session --------------------------------------------------------------------------


def test_books_are_subscribed_once_the_instrument_snapshot_is_in() -> None:
    d = KrakenDialect([SYM, "ETH/USD"], depth=25)
    assert requests(d.on_open(0)) == [
        {"method": "subscribe", "params": {"channel": "instrument", "snapshot": True}}
    ]
    actions = d.on_message(instrument_snapshot({SYM: (1, 8), "ETH/USD": (2, 8)}), 1)
    assert requests(actions) == [
        {
            "method": "subscribe",
            "params": {
                "channel": "book",
                "symbol": [SYM, "ETH/USD"],
                "depth": 25,
                "snapshot": True,
            },
        },
        {
            "method": "subscribe",
            "params": {"channel": "trade", "symbol": [SYM, "ETH/USD"], "snapshot": False},
        },
    ]


def test_missing_instrument_snapshot_reconnects() -> None:
    d = KrakenDialect([SYM], ping_idle_s=1000, snapshot_timeout_s=15)
    d.on_open(0)
    assert d.on_timer(14 * S) == []
    assert d.on_timer(15 * S) == [Reconnect("snapshot_timeout")]


def test_missing_book_snapshot_resubscribes() -> None:
    d = ready(ping_idle_s=1000, snapshot_timeout_s=15)
    assert d.on_timer(14 * S) == []
    actions = d.on_timer(15 * S)
    assert actions[0] == Resync(SYM, "snapshot_timeout")
    assert requests(actions[1:]) == resubscription()


def test_precision_change_of_a_live_pair_resyncs() -> None:
    d = ready()
    d.on_message(doc_snapshot(), 1)
    actions = d.on_message(instrument_snapshot({SYM: (2, 8)}, kind="update"), 2)
    assert actions[0] == Resync(SYM, "precision")


def test_truncation_to_depth_is_published_and_keeps_the_checksum_right() -> None:
    d = ready()
    d.on_message(doc_snapshot(), 1)
    # The reference book: the documented levels.
    snap = json.loads(doc_snapshot())["data"][0]
    bids = {D(str(lv["price"])): D(str(lv["qty"])) for lv in snap["bids"]}
    asks = {D(str(lv["price"])): D(str(lv["qty"])) for lv in snap["asks"]}
    # A new best bid: 11 bids, the worst (45276.6) falls out of scope, unannounced.
    bids[D("45284.0")] = D("0.5")
    del bids[D("45276.6")]
    text = book_message(
        "update", SYM, [(D("45284.0"), D("0.5"))], [], ref_checksum(bids, asks, 1, 8)
    )
    (frame,) = d.on_message(text, 2)
    assert isinstance(frame, BookFrame)
    assert frame.bids == [("45284.0", "0.50000000"), ("45276.6", "0")]
    # The best bid goes; the venue brings 45276.0 into scope. Without the
    # truncation above, 45276.6 would still be in the book and the checksum would differ.
    del bids[D("45284.0")]
    bids[D("45276.0")] = D("2")
    text = book_message(
        "update",
        SYM,
        [(D("45284.0"), D(0)), (D("45276.0"), D("2"))],
        [],
        ref_checksum(bids, asks, 1, 8),
    )
    (frame,) = d.on_message(text, 3)
    assert isinstance(frame, BookFrame)
    assert d.errors == {}
    assert d.checksums_verified == 3


def test_trades_become_trade_frames() -> None:
    d = ready()
    actions = d.on_message((DATA / "trade_update.json").read_text(), 1)
    assert actions == [
        TradeFrame(SYM, "105944.20", "0.00027625", "buy", 1696613755440295000),
        TradeFrame(SYM, "105910.50", "0.00012460", "sell", 1696613756123456000),
    ]


def test_status_maintenance_reconnects() -> None:
    d = ready()
    online = (
        '{"channel":"status","type":"update","data":[{"api_version":"v2",'
        '"connection_id":12393906104898154338,"system":"online","version":"2.0.0"}]}'
    )
    assert d.on_message(online, 1) == []
    assert d.on_message(online.replace("online", "maintenance"), 2) == [Reconnect("maintenance")]


def test_ping_when_idle_and_reconnect_without_pong() -> None:
    d = ready(ping_idle_s=10, pong_timeout_s=10, snapshot_timeout_s=1000)
    assert d.on_timer(9 * S) == []
    (ping,) = d.on_timer(10 * S)
    assert requests([ping]) == [{"method": "ping"}]
    pong = (
        '{"method":"pong","req_id":42,"time_in":"2023-09-25T09:05:00.123456Z",'
        '"time_out":"2023-09-25T09:05:00.123500Z"}'
    )
    assert d.on_message(pong, 11 * S) == []
    assert d.on_message('{"channel":"heartbeat"}', 15 * S) == []
    assert d.on_timer(24 * S) == []
    assert len(d.on_timer(25 * S)) == 1
    assert d.on_timer(35 * S) == [Reconnect("pong_missing")]


def test_unreadable_message_resyncs_every_book() -> None:
    d = ready(("BTC/USD", "ETH/USD"))
    actions = d.on_message("{nope", 1)
    assert [a for a in actions if isinstance(a, Resync)] == [
        Resync("BTC/USD", "unreadable"),
        Resync("ETH/USD", "unreadable"),
    ]
    assert d.errors == {"unreadable": 1}


def test_foreign_symbol_and_update_before_snapshot_are_counted() -> None:
    d = ready()
    other = book_message("snapshot", "ETH/USD", [(D(1), D(1))], [], 0)
    assert d.on_message(other, 1) == []
    update = book_message("update", SYM, [(D(1), D(1))], [], 0)
    assert d.on_message(update, 2) == []
    failed = (
        '{"error":"Currency pair not supported","method":"subscribe","req_id":2,'
        '"success":false,"symbol":"XYZ/USD","time_in":"2023-09-25T09:05:00.123456Z",'
        '"time_out":"2023-09-25T09:05:00.123500Z"}'
    )
    assert d.on_message(failed, 3) == []
    assert d.errors == {
        "unknown_symbol": 1,
        "update_before_snapshot": 1,
        "subscribe_failed": 1,
    }


def test_bad_depth_is_refused() -> None:
    with pytest.raises(ValueError, match="depth 7"):
        KrakenDialect([SYM], depth=7)


# -- instruments ---------------------------------------------------------------------------


def test_instruments_from_asset_pairs() -> None:
    body = (DATA / "asset_pairs.json").read_bytes()
    assert kraken.instruments_url("https://api.kraken.com", [SYM]) == (
        "https://api.kraken.com/0/public/AssetPairs"
    )
    (inst,) = kraken.parse_instruments(body, ["BTC/USDT"])
    assert (inst.symbol, inst.tick_size, inst.lot_size, inst.min_quantity, inst.min_notional) == (
        "BTC/USDT",
        "0.1",
        "0.00000001",
        "0.00005",
        "0.5",
    )
    with pytest.raises(UnreadableAnswer, match="ETH/USD"):
        kraken.parse_instruments(body, ["ETH/USD"])
    with pytest.raises(UnreadableAnswer, match="EQuery:Unknown asset pair"):
        kraken.parse_instruments(b'{"error":["EQuery:Unknown asset pair"]}', [SYM])


def test_v2_symbols_use_iso_codes() -> None:
    assert v2_symbol("XBT/USD") == "BTC/USD"
    assert v2_symbol("XDG/EUR") == "DOGE/EUR"
    assert v2_symbol("ETH/USD") == "ETH/USD"


def test_package_convention() -> None:
    d = kraken.feed_dialect([SYM], kraken.DEFAULT_REST_URL, depth=100)
    assert d.venue == "kraken"
    assert d.connect_url(kraken.DEFAULT_WS_URL) == "wss://ws.kraken.com/v2"


# -- property: a random book walk ------------------------------------------------------------

_ops = st.lists(
    st.tuples(st.booleans(), st.integers(0, 29), st.integers(0, 4), st.integers(0, 9)),
    max_size=10,
)


def _walk(
    places: int,
    depth: int,
    start: list[tuple[bool, int, int, int]],
    steps: list[list[tuple[bool, int, int, int]]],
    zeros: bool,
) -> tuple[list[str], list[tuple[dict[D, D], dict[D, D]]]]:
    """Kraken's messages for a walk of the full book, seen at ``depth``.

    The venue sends what changed inside the top ``depth`` (a level leaving
    the full book with qty 0, a level coming into scope as an insert) and
    nothing for a level pushed out of scope.
    """
    full: tuple[dict[D, D], dict[D, D]] = ({}, {})
    tick = D(1).scaleb(-places)

    def view() -> tuple[dict[D, D], dict[D, D]]:
        b, a = full
        return (
            {p: b[p] for p in sorted(b, reverse=True)[:depth]},
            {p: a[p] for p in sorted(a)[:depth]},
        )

    texts: list[str] = []
    views: list[tuple[dict[D, D], dict[D, D]]] = []
    before: tuple[dict[D, D], dict[D, D]] = ({}, {})
    for i, ops in enumerate([start, *steps]):
        for is_bid, n, lots, cents in ops:
            # Bids at 1000..1029 ticks, asks at 1030..1059: never crossed.
            price = (D(1000 + n) if is_bid else D(1030 + n)) * tick
            side = full[0] if is_bid else full[1]
            qty = D(lots) + D(cents).scaleb(-2)
            if qty:
                side[price] = qty
            else:
                side.pop(price, None)
        now = view()
        changes: list[list[tuple[D, D]]] = []
        for old, new, whole in zip(before, now, full, strict=True):
            diff = [(p, q) for p, q in new.items() if old.get(p) != q]
            if i:
                diff += [(p, D(0)) for p in old if p not in whole]
            changes.append(diff)
        kind = "snapshot" if i == 0 else "update"
        crc = ref_checksum(now[0], now[1], places, 2)
        texts.append(
            book_message(
                kind,
                SYM,
                changes[0],
                changes[1],
                crc,
                price_places=places,
                qty_places=2,
                trailing_zeros=zeros,
            )
        )
        views.append(now)
        before = now
    return texts, views


def _dialect(places: int, depth: int) -> KrakenDialect:
    d = KrakenDialect([SYM], depth=depth)
    d.on_open(0)
    d.on_message(instrument_snapshot({SYM: (places, 2)}), 0)
    return d


@given(
    places=st.integers(0, 5),
    depth=st.sampled_from([10, 25]),
    start=_ops,
    steps=st.lists(_ops, min_size=1, max_size=12),
    zeros=st.booleans(),
)
def test_random_walk_round_trips_with_every_checksum_verified(
    places: int,
    depth: int,
    start: list[tuple[bool, int, int, int]],
    steps: list[list[tuple[bool, int, int, int]]],
    zeros: bool,
) -> None:
    texts, views = _walk(places, depth, start, steps, zeros)
    d = _dialect(places, depth)
    mirror: tuple[dict[D, D], dict[D, D]] = ({}, {})
    for text, (bids, asks) in zip(texts, views, strict=True):
        for action in d.on_message(text, 1):
            assert isinstance(action, BookFrame), action
            if action.snapshot:
                mirror = ({}, {})
            for side, levels in zip(mirror, (action.bids, action.asks), strict=True):
                for p, q in levels:
                    if D(q):
                        side[D(p)] = D(q)
                    else:
                        side.pop(D(p), None)
        assert mirror == (bids, asks)
    assert d.errors == {}
    assert d.checksums_verified == len(texts)


@given(
    places=st.integers(0, 5),
    start=_ops,
    steps=st.lists(_ops, min_size=1, max_size=12),
    data=st.data(),
)
def test_one_corrupted_level_resyncs_exactly_there(
    places: int,
    start: list[tuple[bool, int, int, int]],
    steps: list[list[tuple[bool, int, int, int]]],
    data: st.DataObject,
) -> None:
    # Depth 10: every level is inside the checksum's 10.
    texts, _ = _walk(places, 10, start, steps, True)
    candidates = [
        (i, side, j)
        for i, text in enumerate(texts)
        for side in ("bids", "asks")
        for j, level in enumerate(json.loads(text)["data"][0][side])
        if level["qty"] != 0
    ]
    if not candidates:
        return
    i, side, j = data.draw(st.sampled_from(candidates))
    message = json.loads(texts[i], parse_float=D)
    level = message["data"][0][side][j]
    level["qty"] = D(level["qty"]) + D("0.01")
    body = message["data"][0]
    corrupted = book_message(
        message["type"],
        SYM,
        [(D(lv["price"]), D(lv["qty"])) for lv in body["bids"]],
        [(D(lv["price"]), D(lv["qty"])) for lv in body["asks"]],
        body["checksum"],
        price_places=places,
        qty_places=2,
    )
    texts[i] = corrupted
    d = _dialect(places, 10)
    for k, text in enumerate(texts):
        actions = d.on_message(text, 1)
        if k < i:
            assert all(isinstance(a, BookFrame) for a in actions)
        else:
            assert actions[0] == Resync(SYM, "checksum")
            assert requests(actions[1:]) == resubscription()
            break


def test_asset_pairs_with_bad_fields_are_refused() -> None:
    answer = json.loads((DATA / "asset_pairs.json").read_text())
    pair = answer["result"]["XBTUSDT"]
    pair["ordermin"] = "-1"
    with pytest.raises(UnreadableAnswer, match="BTC/USDT ordermin '-1'"):
        kraken.parse_instruments(json.dumps(answer).encode(), ["BTC/USDT"])
    pair["ordermin"] = "0.00005"
    del pair["lot_decimals"]
    with pytest.raises(UnreadableAnswer, match="BTC/USDT lot_decimals None"):
        kraken.parse_instruments(json.dumps(answer).encode(), ["BTC/USDT"])
    pair["lot_decimals"] = 8
    del pair["tick_size"]
    (inst,) = kraken.parse_instruments(json.dumps(answer).encode(), ["BTC/USDT"])
    assert inst.tick_size == "0.1"  # from pair_decimals 1


def test_a_symbol_the_instrument_snapshot_does_not_list_is_counted() -> None:
    d = KrakenDialect([SYM, "XYZ/USD"])
    d.on_open(0)
    actions = d.on_message(instrument_snapshot({SYM: (1, 8)}), 1)
    assert len(actions) == 2
    assert d.errors == {"unlisted_symbol": 1}
