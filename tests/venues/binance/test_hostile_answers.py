"""The Binance codec against answers a broken or hostile venue could send.

Every answer the codec reads is fed what no honest venue sends: missing
fields, wrong types, absurd numbers, answers that contradict themselves,
ids that are not the venue's, bytes that are not JSON. Each must be
:class:`UnreadableAnswer` (the order is then settled by reading it back) or
the documented classification, never a wrong report and never another
exception type.
"""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.venues.binance.test_order_entry import INSTRUMENTS, codec, fixture, full_answer
from trading_engine.core.errors import UnreadableAnswer
from trading_engine.core.orders import OrderStatus
from trading_engine.venues.binance.filters import parse_symbol_filters
from trading_engine.venues.binance.instruments import parse_exchange_info
from trading_engine.venues.binance.orders import (
    ErrorKind,
    ExecutionUpdate,
    classify_error,
    parse_server_time,
    parse_usage,
)

# -- order answers ---------------------------------------------------------------------


def query(**fields: Any) -> dict[str, Any]:
    """The documented query answer (LTCBTC, 1.0 ordered), with ``fields`` replaced."""
    body = fixture("order_query.json")
    body.update(fields)
    return body


def test_the_bases_are_readable() -> None:
    # Each attack below changes one thing of an answer the codec reads as it stands.
    codec().parse_order(full_answer())
    codec().parse_order(query())
    codec().parse_order(query(status="FILLED", executedQty="1.0", cummulativeQuoteQty="0.1"))


@pytest.mark.parametrize(
    "fields",
    [
        {"executedQty": "2.0", "cummulativeQuoteQty": "0.2", "status": "PARTIALLY_FILLED"},
        {"executedQty": "2.0", "cummulativeQuoteQty": "0.2", "status": "FILLED"},
        {"executedQty": "2.0", "cummulativeQuoteQty": "0.2", "status": "CANCELED"},
        {"origQty": "0.0"},
        {"origQty": "-1.0"},
        {"origQty": None},
        {"origQty": 1.0},
        {"origQty": True},
        {"origQty": "1e0"},
        {"executedQty": "0.5", "cummulativeQuoteQty": "0.05"},  # NEW, yet filled
        {"executedQty": "0.5", "cummulativeQuoteQty": "0.05", "status": "FILLED"},
        {"executedQty": "1.0", "cummulativeQuoteQty": "0.1", "status": "PARTIALLY_FILLED"},
        {"status": "PARTIALLY_FILLED"},  # partly filled with nothing filled
        {"side": "HOLD"},
        {"side": None},
        {"side": ["BUY"]},
        {"clientOrderId": "a\nb"},
        {"clientOrderId": "é"},
        {"clientOrderId": "x" * 37},
        {"clientOrderId": "<script>"},
        {"clientOrderId": 123},
        {"status": "PENDING_NEW"},
        {"status": "new"},
        {"status": {"NEW": 1}},
        {"symbol": "DOGEUSDT"},
        {"symbol": ["LTCBTC"]},
        {"orderId": 2**64},
        {"orderId": True},
        {"orderId": "1"},
        {"executedQty": "NaN"},
        {"executedQty": "Infinity"},
        {"executedQty": "1" * 60},
    ],
    ids=repr,
)
def test_an_order_answer_that_contradicts_itself_or_the_venue_is_unreadable(
    fields: dict[str, Any],
) -> None:
    with pytest.raises(UnreadableAnswer):
        codec().parse_order(query(**fields))


def test_a_venue_id_alphabet_from_another_client_is_read() -> None:
    # Binance takes '.', ':' and '/' in a client order id: another client's order is read.
    answer = codec().parse_order(query(clientOrderId="web.a:b/c-1_2"))
    assert answer.report.client_order_id == "web.a:b/c-1_2"


def full(change: Any) -> dict[str, Any]:
    body = full_answer()
    change(body)
    return body


@pytest.mark.parametrize(
    "body",
    [
        # The documentation's own example: 10 USDT for fills worth 39,983 USDT.
        fixture("order_full.json"),
        full(lambda b: b.update(cummulativeQuoteQty="39983.00000100")),
        full(lambda b: b.update(cummulativeQuoteQty="39982.99999900")),
        full(lambda b: b["fills"].pop()),  # the fills sum to less than executedQty
        full(lambda b: b["fills"].append(dict(b["fills"][0], tradeId=61))),  # to more
        full(lambda b: b["fills"][1].update(tradeId=56)),  # one trade id, two fills
        full(lambda b: b["fills"].append(copy.deepcopy(b["fills"][0]))),  # one fill, twice
        full(lambda b: b["fills"][0].update(commission="4000.00000001")),  # above its value
        full(lambda b: b["fills"][0].update(commission="1234567890123456789.0")),
        full(lambda b: b["fills"][0].update(commission="-0.1")),
        full(lambda b: b["fills"][0].update(price="4000.001")),
        full(lambda b: b["fills"][0].update(qty=1)),
        full(lambda b: b["fills"][0].update(tradeId=None)),
        full(lambda b: b.update(fills={"tradeId": 56})),
        full(lambda b: b.update(fills=[[1, 2]])),
        full(lambda b: b.update(side="BUYER")),
    ],
)
def test_a_full_answer_whose_fills_are_not_its_figures_is_unreadable(
    body: dict[str, Any],
) -> None:
    with pytest.raises(UnreadableAnswer):
        codec().parse_order(body)


def test_a_quote_amount_rounded_by_the_venue_is_read() -> None:
    # Half of 10**-8 per fill is rounding, not a contradiction.
    body = full(lambda b: b.update(cummulativeQuoteQty="39983.00000004"))
    assert codec().parse_order(body).report.filled_lots == 1_000_000


@pytest.mark.parametrize(
    "raw",
    [
        b"<html><body>200 OK</body></html>",
        b"",
        b"\xff\xfe\x00{}",
        b'{"symbol": "LTCBTC", "orderId": NaN}',
        b'{"symbol": "LTCBTC", "orderId": Infinity}',
        b'{"orderId": 123456789012345678901234567890}',
        b"[" * 5000 + b"]" * 5000,
        b'{"a": "' + b"x" * 10_000_000 + b'"}',
        b"null",
        b'"FILLED"',
        b"[]",
    ],
    ids=lambda raw: repr(raw[:24]),
)
def test_bytes_that_are_no_order_answer_are_unreadable(raw: bytes) -> None:
    with pytest.raises(UnreadableAnswer):
        codec().parse_order(raw)


def test_open_orders_listing_one_order_twice_are_unreadable() -> None:
    entry = query()
    with pytest.raises(UnreadableAnswer, match="twice"):
        codec().parse_open_orders([entry, entry])
    with pytest.raises(UnreadableAnswer, match="twice"):
        codec().parse_open_orders([entry, query(clientOrderId="other")])  # one orderId
    assert len(codec().parse_open_orders([entry, query(clientOrderId="o", orderId=2)])) == 2


# -- myTrades ----------------------------------------------------------------------------


def trades(*changes: dict[str, Any]) -> list[dict[str, Any]]:
    [base] = fixture("my_trades.json")
    return [dict(base, **change) for change in changes]


@pytest.mark.parametrize(
    "page",
    [
        trades({}, {"qty": "1.00000000"}),  # one trade id, two contents
        trades({}, {"id": 28458, "isBuyer": False}),  # one order on both sides
        trades({"symbol": ["BNBBTC"]}),
        trades({"isBuyer": "true"}),
        trades({"qty": "-12.00000000"}),
        trades({"commission": "1e1"}),
        trades({"id": -1}),
    ],
)
def test_a_trades_page_that_contradicts_itself_is_unreadable(page: list[dict[str, Any]]) -> None:
    with pytest.raises(UnreadableAnswer):
        codec().parse_my_trades(page, "BNBBTC", {100234: "myOrder1"})


def test_a_trade_listed_twice_alike_is_one_fill() -> None:
    page = codec().parse_my_trades(trades({}, {}), "BNBBTC", {100234: "myOrder1"})
    assert [fill.report.fill_id for fill in page.fills] == [28457]


def test_trades_of_a_symbol_not_configured_are_a_caller_error() -> None:
    with pytest.raises(ValueError, match="no instrument"):
        codec().parse_my_trades(trades({}), "NOPE", {})


# -- the user data stream ---------------------------------------------------------------


def report(**fields: Any) -> dict[str, Any]:
    """The documented execution report (ETHBTC, 1.0 ordered), with ``fields`` replaced."""
    message = fixture("execution_report.json")
    message["event"].update(fields)
    return message


TRADE = {"x": "TRADE", "t": 7, "L": "0.10264410", "m": False}


def test_a_trade_report_base_is_readable() -> None:
    update = codec().parse_user_stream(
        report(**TRADE, X="PARTIALLY_FILLED", l="0.5", z="0.5", Z="0.05132205")
    )
    assert isinstance(update, ExecutionUpdate)
    assert update.fill is not None
    assert update.fill.report.lots == 5000


@pytest.mark.parametrize(
    "fields",
    [
        {"z": "2.00000000", "Z": "0.2", "X": "FILLED"},  # more filled than ordered
        {"z": "0.5", "Z": "0.05"},  # NEW, yet filled
        {"z": "0.5", "Z": "0.05", "X": "FILLED"},
        {"q": "0.00000000"},
        {"q": None},
        {**TRADE, "X": "PARTIALLY_FILLED", "l": "0.6", "z": "0.5", "Z": "0.05"},  # l > z
        {**TRADE, "X": "PARTIALLY_FILLED", "l": "0.5", "z": "0.5", "Z": "0.05", "n": "1.0",
         "N": "BTC"},  # a commission above the fill's value
        {"c": "x" * 40},
        {"c": "bad id"},
        {"x": "CANCELED", "X": "CANCELED", "C": "é"},
        {"S": "buy"},
        {"X": "PENDING_NEW"},
        {"i": -5},
        {"E": 1.5},
    ],
    ids=repr,
)  # fmt: skip
def test_an_execution_report_that_contradicts_itself_is_unreadable(
    fields: dict[str, Any],
) -> None:
    quotes = {"ETHBTC": "BTC"}
    binance = codec()
    binance.quote_assets.update(quotes)
    with pytest.raises(UnreadableAnswer):
        binance.parse_user_stream(report(**fields))


@pytest.mark.parametrize(
    "frame",
    [
        b"\xff",
        b"[" * 5000,
        b"{}",
        b'{"id": 1, "status": true}',
        b'{"id": 1, "status": 200.0}',
        b'{"subscriptionId": 2.0, "event": {"e": "executionReport"}}',
    ],
)
def test_stream_frames_outside_the_documented_ones_are_unreadable(frame: bytes) -> None:
    with pytest.raises(UnreadableAnswer):
        codec().parse_user_stream(frame)


# -- errors, limits and time ------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (302, b"", ErrorKind.UNKNOWN),  # a redirect: not the venue's answer
        (204, b"", ErrorKind.UNKNOWN),
        (101, b"", ErrorKind.UNKNOWN),
        (0, b"", ErrorKind.UNKNOWN),
        (999, b"", ErrorKind.UNKNOWN),
        (502, b"<html>Bad Gateway</html>", ErrorKind.UNKNOWN),
        (500, b"\xff\xfe", ErrorKind.UNKNOWN),
        (400, b"[" * 5000, ErrorKind.REFUSED),  # a 4xx is the request's fault, per the venue
        (400, b'{"code": true, "msg": "x"}', ErrorKind.REFUSED),
        (400, b'{"code": -1021.0}', ErrorKind.REFUSED),  # not an error code: no re-sync
        (418, b'{"code": -1003, "msg": "banned"}', ErrorKind.BANNED),  # a ban with no time
        (400, b'{"code": -1003, "msg": "IP banned until 1"}', ErrorKind.RATE_LIMITED),
    ],
)
def test_error_answers_classify_by_status_when_the_body_says_nothing(
    status: int, body: bytes, kind: ErrorKind
) -> None:
    assert classify_error(status, body).kind is kind


@pytest.mark.parametrize("header", ["abc", "-5", "1.5", "99999999999", "", " ", "٣", "1e3"])
def test_retry_after_garbage_is_no_wait(header: str) -> None:
    error = classify_error(429, b"", header)
    assert (error.kind, error.retry_after_s) == (ErrorKind.RATE_LIMITED, None)


def test_a_ban_without_a_time_is_a_ban_with_none() -> None:
    error = classify_error(418, b"{}")
    assert (error.kind, error.until_ms, error.retry_after_s) == (ErrorKind.BANNED, None, None)


def test_usage_headers_garbage_is_left_out() -> None:
    usage = parse_usage(
        {
            "X-MBX-USED-WEIGHT-1M": "٣",
            "X-MBX-USED-WEIGHT-": "4",
            "X-MBX-USED-WEIGHT-1Y": "4",
            "x-mbx-order-count-10s": " 5 ",
            "X-MBX-ORDER-COUNT-1D": "99999999999",
        }
    )
    assert (usage.weight, usage.orders) == ({}, {"10s": 5})


@pytest.mark.parametrize(
    "body",
    [b'{"serverTime": 1.7e12}', b'{"serverTime": true}', b"[1]", b"\xff", b'{"serverTime": -1}'],
)
def test_server_time_garbage_is_unreadable(body: bytes) -> None:
    with pytest.raises(UnreadableAnswer):
        parse_server_time(body)


# -- exchangeInfo ------------------------------------------------------------------------


def info(**filters: dict[str, Any]) -> dict[str, Any]:
    """A one-symbol exchangeInfo of BTCUSDT on the engine's grid, with filters replaced."""
    base = {
        "PRICE_FILTER": {"minPrice": "0.01", "maxPrice": "1000000.00", "tickSize": "0.01"},
        "LOT_SIZE": {"minQty": "0.00001", "maxQty": "9000.0", "stepSize": "0.00001"},
    }
    base.update(filters)
    return {
        "symbols": [
            {
                "symbol": "BTCUSDT",
                "status": "TRADING",
                "baseAsset": "BTC",
                "quoteAsset": "USDT",
                "orderTypes": ["LIMIT", "MARKET"],
                "filters": [{"filterType": kind, **entry} for kind, entry in base.items()],
            }
        ]
    }


def read_info(document: object) -> None:
    raw = document if isinstance(document, bytes) else orjson.dumps(document)
    parse_exchange_info(raw, ["BTCUSDT"])


def read_filters(document: object) -> None:
    raw = document if isinstance(document, bytes) else orjson.dumps(document)
    parse_symbol_filters(raw, {"BTCUSDT": INSTRUMENTS["BTCUSDT"]})


def test_the_exchange_info_base_is_readable() -> None:
    read_info(info())
    read_filters(info())


def twice(document: dict[str, Any]) -> dict[str, Any]:
    entry = document["symbols"][0]
    other = copy.deepcopy(entry)
    other["filters"][0]["tickSize"] = "1.00"
    document["symbols"].append(other)
    return document


def filter_twice(document: dict[str, Any]) -> dict[str, Any]:
    filters = document["symbols"][0]["filters"]
    filters.append(dict(filters[0], tickSize="1.00"))
    return document


@pytest.mark.parametrize("reader", [read_info, read_filters])
@pytest.mark.parametrize(
    "document",
    [
        info(PRICE_FILTER={"tickSize": "1e-2"}),
        info(PRICE_FILTER={"tickSize": "1e999999999"}),  # gigabytes if written out
        info(PRICE_FILTER={"tickSize": "0_0.01"}),
        info(PRICE_FILTER={"tickSize": " 0.01"}),
        info(PRICE_FILTER={"tickSize": "+0.01"}),
        info(PRICE_FILTER={"tickSize": "-0.01"}),
        info(PRICE_FILTER={"tickSize": "NaN"}),
        info(PRICE_FILTER={"tickSize": 0.01}),
        info(LOT_SIZE={"stepSize": "0.00001", "minQty": "9" * 49}),
        json.dumps(info()).replace('"0.01"', "NaN", 1).encode(),
        b"[" * 100_000 + b"]" * 100_000,
        b"\xff\xfe",
        b"<html></html>",
        {"symbols": [{"symbol": ["BTCUSDT"]}]},
        {"symbols": {"BTCUSDT": {}}},
        twice(info()),
        filter_twice(info()),
    ],
    ids=lambda d: repr(d)[:60],
)
def test_exchange_info_garbage_is_unreadable(reader: Any, document: object) -> None:
    with pytest.raises(UnreadableAnswer):
        reader(document)


def test_a_symbol_listed_twice_alike_is_read() -> None:
    document = info()
    document["symbols"].append(copy.deepcopy(document["symbols"][0]))
    read_info(document)


# -- any JSON at all -------------------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["NEW", "FILLED", "BTCUSDT", "LTCBTC", "1.0", "0.5", "-1", "1e3", ""]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@settings(max_examples=300)
@given(JSON, st.sampled_from(["order", "open", "trades", "stream", "time", "info", "filters"]))
def test_any_json_is_read_or_unreadable_never_another_error(document: object, which: str) -> None:
    binance = codec()
    readers = {
        "order": lambda: binance.parse_order(document),
        "open": lambda: binance.parse_open_orders(document),
        "trades": lambda: binance.parse_my_trades(document, "BNBBTC", {100234: "x"}),
        "stream": lambda: binance.parse_user_stream(document),
        "time": lambda: parse_server_time(document),
        "info": lambda: read_info(json.dumps(document).encode()),
        "filters": lambda: read_filters(json.dumps(document).encode()),
    }
    with contextlib.suppress(UnreadableAnswer):
        readers[which]()


@settings(max_examples=300)
@given(
    st.sampled_from(["status", "origQty", "executedQty", "cummulativeQuoteQty", "side"]),
    JSON,
)
def test_an_order_answer_with_a_field_replaced_never_breaks_its_rules(
    field: str, value: object
) -> None:
    body = query(status="PARTIALLY_FILLED", executedQty="0.5", cummulativeQuoteQty="0.05")
    body[field] = value
    try:
        answer = codec().parse_order(body)
    except UnreadableAnswer:
        return
    # Whatever is read is an order the venue could hold: never more filled than ordered,
    # a status that agrees with the fill.
    report = answer.report
    assert 0 <= report.filled_lots <= 1000
    if report.status is OrderStatus.NEW:
        assert report.filled_lots == 0
    if report.status is OrderStatus.FILLED:
        assert report.filled_lots == 1000


@settings(max_examples=200)
@given(st.integers(min_value=-(2**31), max_value=2**31), st.binary(max_size=64))
def test_any_error_answer_is_classified(status: int, body: bytes) -> None:
    if status == 200:
        return
    error = classify_error(status, body, body.decode("latin-1"))
    assert error.kind in ErrorKind
    assert len(error.reason) <= 200
