"""The Binance spot order-entry codec on Binance's documented requests and answers."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trading_engine.core.errors import UnreadableAnswer
from trading_engine.core.instruments import Instrument
from trading_engine.core.orders import (
    POST_ONLY_REJECTED,
    Order,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from trading_engine.core.protocol import Side
from trading_engine.venues.binance.orders import (
    CLIENT_ORDER_ID,
    STATUSES,
    BinanceSpotCodec,
    ErrorKind,
    ExecutionUpdate,
    OtherEvent,
    RequestFailed,
    StreamEnded,
    Subscribed,
    classify_error,
    parse_server_time,
    parse_usage,
    valid_client_order_id,
)
from trading_engine.venues.binance.signing import HmacSha256Signer

DATA = Path(__file__).resolve().parents[2] / "data" / "venues" / "binance" / "order_entry"
API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
TS = 1499827319559
CID = "te-mm-tpl3obog6r-1"

#: Grids that hold every documented example's numbers.
INSTRUMENTS = {
    "BTCUSDT": Instrument("BTCUSDT", "0.01", "0.00001"),
    "LTCBTC": Instrument("LTCBTC", "0.000001", "0.001"),
    "BNBBTC": Instrument("BNBBTC", "0.000001", "0.01"),
    "ETHBTC": Instrument("ETHBTC", "0.00000001", "0.0001"),
}
QUOTES = {"BTCUSDT": "USDT", "LTCBTC": "BTC", "BNBBTC": "BTC", "ETHBTC": "BTC"}


def codec(**options: Any) -> BinanceSpotCodec:
    return BinanceSpotCodec(
        API_KEY, HmacSha256Signer(SECRET), INSTRUMENTS, quote_assets=QUOTES, **options
    )


def fixture(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def full_answer() -> Any:
    """The documented FULL answer, its cummulativeQuoteQty made the sum of its fills.

    The documentation's example gives 10 USDT for fills worth 39,983 USDT,
    which the codec refuses (tests/venues/binance/test_hostile_answers.py);
    a venue's real answer carries the sum.
    """
    body = fixture("order_full.json")
    body["cummulativeQuoteQty"] = "39983.00000000"
    return body


def hmac_hex(payload: bytes) -> str:
    return hmac.new(SECRET.encode(), payload, hashlib.sha256).hexdigest()


def split_signed(text: str) -> tuple[str, str]:
    payload, _, signature = text.rpartition("&signature=")
    return payload, signature


# -- requests -------------------------------------------------------------------------


def test_a_limit_order_is_one_signed_form_body() -> None:
    request = codec().new_order_request(
        "BTCUSDT", Side.BUY, OrderType.LIMIT, 150, 6_543_210, CID, TS, "IOC"
    )
    assert (request.method, request.path, request.query) == ("POST", "/api/v3/order", "")
    assert (request.weight, request.is_order) == (1, True)
    assert request.headers == (
        ("X-MBX-APIKEY", API_KEY),
        ("Content-Type", "application/x-www-form-urlencoded"),
    )
    assert request.body is not None
    payload, signature = split_signed(request.body.decode())
    assert payload == (
        f"timestamp={TS}&symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=IOC"
        f"&quantity=0.00150&price=65432.10&newClientOrderId={CID}"
        "&newOrderRespType=FULL&recvWindow=5000"
    )
    assert signature == hmac_hex(payload.encode())
    assert API_KEY not in repr(request)


@pytest.mark.parametrize(
    ("order_type", "post_only", "tif", "fields"),
    [
        (OrderType.MARKET, False, "GTC", "&type=MARKET&quantity=0.00150&newClientOrderId"),
        (OrderType.LIMIT, True, "GTC", "&type=LIMIT_MAKER&quantity=0.00150&price=65432.10&"),
        (OrderType.LIMIT, False, "FOK", "&type=LIMIT&timeInForce=FOK&quantity="),
        (OrderType.LIMIT, False, "GTC", "&type=LIMIT&timeInForce=GTC&quantity="),
    ],
)
def test_order_types_map_to_binances(
    order_type: OrderType, post_only: bool, tif: str, fields: str
) -> None:
    price = None if order_type is OrderType.MARKET else 6_543_210
    request = codec().new_order_request(
        "BTCUSDT", Side.SELL, order_type, 150, price, CID, TS, tif, post_only
    )
    assert request.body is not None
    payload, signature = split_signed(request.body.decode())
    assert fields in payload
    assert "side=SELL" in payload
    assert signature == hmac_hex(payload.encode())
    if post_only or order_type is OrderType.MARKET:
        assert "timeInForce" not in payload


def test_an_engine_order_takes_the_same_path() -> None:
    order = Order(CID, "mm", "BTCUSDT", Side.BUY, OrderType.LIMIT, 7, 100, TimeInForce.GTC)
    order.post_only = True
    request = codec().new_order(order, TS)
    assert request.body is not None
    assert b"&type=LIMIT_MAKER&quantity=0.00007&price=1.00&" in request.body
    # The cached texts serve the next order unchanged.
    again = codec().new_order(order, TS)
    assert again.body == request.body


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("BTCUSDT", OrderType.LIMIT, 1, 1, "te.mm-1"), "breaks Binance's rule"),
        (("BTCUSDT", OrderType.LIMIT, 1, 1, "x" * 37), "breaks Binance's rule"),
        (("BTCUSDT", OrderType.LIMIT, 1, 1, "a&price=1"), "breaks Binance's rule"),
        (("BTCUSDT", OrderType.LIMIT, 1, None, CID), "without a price"),
        (("BTCUSDT", OrderType.LIMIT, 0, 1, CID), "0 lots"),
        (("BTCUSDT", OrderType.LIMIT, 1, -5, CID), "at -5 ticks"),
        (("ETHUSDT", OrderType.LIMIT, 1, 1, CID), "no instrument"),
    ],
)
def test_an_order_the_venue_cannot_take_is_refused_before_bytes(
    args: tuple[Any, ...], message: str
) -> None:
    symbol, order_type, lots, price, cid = args
    with pytest.raises(ValueError, match=message):
        codec().new_order_request(symbol, Side.BUY, order_type, lots, price, cid, TS)
    with pytest.raises(ValueError, match="time in force"):
        codec().new_order_request("BTCUSDT", Side.BUY, OrderType.LIMIT, 1, 1, CID, TS, "GTX")


@given(
    st.text(alphabet="Az09_-.:/&é\u00a0 \t\n\u0660\uff11", max_size=40)
    | st.text(max_size=40)
    | st.from_regex(CLIENT_ORDER_ID, fullmatch=True)
)
def test_the_client_order_id_check_is_the_venues_rule(cid: str) -> None:
    # The order path's string check and the rule's regular expression agree
    # (non-ASCII digits and letters, which str.isalnum accepts, included).
    assert valid_client_order_id(cid) == (CLIENT_ORDER_ID.fullmatch(cid) is not None)


@pytest.mark.parametrize(
    "cid", ["", "-", "_", "a" * 36, "a" * 37, "\u0660", "\uff11", "a b", "a\n", "A-z_0-9"]
)
def test_the_client_order_id_check_at_its_edges(cid: str) -> None:
    assert valid_client_order_id(cid) == (CLIENT_ORDER_ID.fullmatch(cid) is not None)


def test_reads_cancels_and_lists_are_signed_queries() -> None:
    binance = codec(recv_window_ms=2500)
    cases = [
        (binance.query_order("LTCBTC", "myOrder1", TS), "GET", "/api/v3/order", 4),
        (binance.cancel_order("LTCBTC", "myOrder1", TS), "DELETE", "/api/v3/order", 1),
        (binance.open_orders(TS, "LTCBTC"), "GET", "/api/v3/openOrders", 6),
        (binance.open_orders(TS), "GET", "/api/v3/openOrders", 80),
        (binance.my_trades("BNBBTC", TS, from_id=28457), "GET", "/api/v3/myTrades", 20),
    ]
    for request, method, path, weight in cases:
        assert (request.method, request.path, request.weight) == (method, path, weight)
        assert request.body is None
        assert request.headers == (("X-MBX-APIKEY", API_KEY),)
        assert not request.is_order
        payload, signature = split_signed(request.query)
        assert payload.startswith(f"timestamp={TS}&")
        assert payload.endswith("&recvWindow=2500")
        assert signature == hmac_hex(payload.encode())
        assert request.target == f"{path}?{request.query}"
    params = dict(parse_qsl(cases[0][0].query))
    assert params["symbol"] == "LTCBTC"
    assert params["origClientOrderId"] == "myOrder1"
    assert dict(parse_qsl(cases[4][0].query))["fromId"] == "28457"
    time, info = binance.server_time(), binance.exchange_info(["BTCUSDT"])
    assert (time.target, time.weight, time.headers) == ("/api/v3/time", 1, ())
    assert info.target == "/api/v3/exchangeInfo?symbols=%5B%22BTCUSDT%22%5D"
    assert info.weight == 20


def test_venue_symbols_are_percent_encoded_before_signing() -> None:
    # Binance's non-ASCII example symbol: the fullwidth digits one to six (REST
    # "Request security").
    binance = BinanceSpotCodec(
        API_KEY,
        HmacSha256Signer(SECRET),
        {"X123": Instrument("X123", "0.1", "1")},
        venue_symbols={"X123": "\uff11\uff12\uff13\uff14\uff15\uff16"},
    )
    request = binance.query_order("X123", "myOrder1", TS)
    payload, signature = split_signed(request.query)
    assert "symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&" in payload
    assert signature == hmac_hex(payload.encode())


def test_the_user_data_stream_subscription_is_signed_over_sorted_params() -> None:
    text = codec().subscribe_user_stream("sub-1", TS)
    request = orjson.loads(text)
    assert request["id"] == "sub-1"
    assert request["method"] == "userDataStream.subscribe.signature"
    params = request["params"]
    signature = params.pop("signature")
    assert params == {"apiKey": API_KEY, "recvWindow": 5000, "timestamp": TS}
    payload = "&".join(f"{name}={params[name]}" for name in sorted(params))
    assert signature == hmac_hex(payload.encode())
    assert orjson.loads(codec().unsubscribe_user_stream(2, 0)) == {
        "id": 2,
        "method": "userDataStream.unsubscribe",
        "params": {"subscriptionId": 0},
    }


def test_the_codec_never_shows_its_key() -> None:
    binance = codec()
    assert API_KEY not in repr(binance)
    assert SECRET not in repr(binance)
    with pytest.raises(ValueError, match="printable ASCII"):
        BinanceSpotCodec("key with space", HmacSha256Signer(SECRET), INSTRUMENTS)
    with pytest.raises(ValueError, match="recv_window_ms"):
        codec(recv_window_ms=60_001)


# -- answers --------------------------------------------------------------------------


def test_a_full_answer_gives_the_report_and_each_fill() -> None:
    answer = codec().parse_order(orjson.dumps(full_answer()), symbol="BTCUSDT")
    report = answer.report
    assert (report.client_order_id, report.status) == ("6gCrw2kRUAF9CvJDGP16IP", OrderStatus.FILLED)
    assert report.filled_lots == 1_000_000  # 10 BTC of 0.00001
    assert report.avg_price == 399_830  # 39,983 USDT over 10 BTC: 3,998.30 USDT
    assert (report.exchange_order_id, answer.order_id) == ("28", 28)
    fills = [fill.report for fill in answer.fills]
    assert [f.fill_id for f in fills] == [56, 57, 58, 59, 60]
    assert [f.price for f in fills] == [400_000, 399_900, 399_800, 399_700, 399_500]
    assert [f.lots for f in fills] == [100_000, 500_000, 200_000, 100_000, 100_000]
    assert all(f.side is Side.SELL and f.symbol == "BTCUSDT" for f in fills)
    # 4 USDT of commission is 4 / (0.01 * 0.00001) tick*lot units, and so on, exactly.
    assert [f.fee for f in fills] == [40_000_000, 199_950_000, 79_960_000, 39_970_000, 39_950_000]
    assert all(fill.fee_note is None for fill in answer.fills)


def test_result_query_cancel_and_open_orders_answers() -> None:
    binance = codec()
    result = binance.parse_order(orjson.dumps(fixture("order_result.json")))
    assert (result.report.status, result.report.filled_lots, result.fills) == (
        OrderStatus.FILLED,
        1_000_000,
        (),
    )
    query = binance.parse_order(fixture("order_query.json"), "myOrder1", "LTCBTC")
    assert (query.report.status, query.report.filled_lots, query.report.avg_price) == (
        OrderStatus.NEW,
        0,
        None,
    )
    cancel = binance.parse_order(fixture("order_cancel.json"), "myOrder1")
    # The order is origClientOrderId; clientOrderId is the cancel request's own.
    assert (cancel.report.client_order_id, cancel.report.status) == (
        "myOrder1",
        OrderStatus.CANCELED,
    )
    (listed,) = binance.parse_open_orders(orjson.dumps(fixture("open_orders.json")))
    assert (listed.report.client_order_id, listed.report.status) == ("myOrder1", OrderStatus.NEW)
    # Another symbol's open order is another process's: left out.
    other = [{**fixture("open_orders.json")[0], "symbol": "DOGEUSDT"}]
    assert binance.parse_open_orders(other) == []


def test_an_ack_answer_says_nothing_and_is_unreadable() -> None:
    with pytest.raises(UnreadableAnswer, match="status"):
        codec().parse_order(fixture("order_ack.json"))


def test_an_answer_for_another_order_or_symbol_is_unreadable() -> None:
    body = fixture("order_query.json")
    with pytest.raises(UnreadableAnswer, match="not the order's"):
        codec().parse_order(body, "otherOrder")
    with pytest.raises(UnreadableAnswer, match="is not 'BTCUSDT'"):
        codec().parse_order(body, "myOrder1", "BTCUSDT")


@pytest.mark.parametrize(("venue", "engine"), list(STATUSES.items()))
def test_every_binance_status_maps_to_the_engines(
    venue: str, engine: tuple[OrderStatus, str | None]
) -> None:
    # The cumulative fill each status allows: none when NEW, all when FILLED, some between.
    executed = {"PARTIALLY_FILLED": "0.5", "FILLED": "1.0"}.get(venue, "0.0")
    body = {
        **fixture("order_query.json"),
        "status": venue,
        "executedQty": executed,
        "cummulativeQuoteQty": str(Decimal(executed) / 10),
    }
    report = codec().parse_order(body).report
    assert (report.status, report.reason) == engine


def test_pending_cancel_keeps_a_partly_filled_order_partly_filled() -> None:
    body = {
        **fixture("order_query.json"),
        "status": "PENDING_CANCEL",
        "executedQty": "0.5",
        "cummulativeQuoteQty": "0.05",
    }
    assert codec().parse_order(body).report.status is OrderStatus.PARTIALLY_FILLED


def test_an_average_between_ticks_is_an_exact_fraction() -> None:
    # 3 lots (0.003 LTC) for 0.0003001 BTC: 0.10003333... BTC, not on the 0.000001 grid.
    body = {
        **fixture("order_query.json"),
        "status": "PARTIALLY_FILLED",
        "executedQty": "0.003",
        "cummulativeQuoteQty": "0.0003001",
    }
    report = codec().parse_order(body).report
    assert report.avg_price == Fraction(300_100, 3)
    assert isinstance(report.avg_price, Fraction)
    # A historical order without the quote amount (< 0) says nothing of the price.
    body["cummulativeQuoteQty"] = "-1.00000000"
    assert codec().parse_order(body).report.avg_price is None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("status", "PENDING_NEW", "status"),
        ("status", "new", "status"),
        ("status", None, "status"),
        ("executedQty", "1e3", "executedQty"),
        ("executedQty", "-1.0", "executedQty"),
        ("executedQty", "1.0001", "executedQty"),  # off the 0.001 lot
        ("executedQty", "1" + "0" * 16, "executedQty"),  # over 10**15 lots
        ("executedQty", 1.0, "executedQty"),
        ("cummulativeQuoteQty", "1E-8", "cummulativeQuoteQty"),
        ("cummulativeQuoteQty", None, "cummulativeQuoteQty"),
        ("orderId", -1, "orderId"),
        ("orderId", 2**63, "orderId"),
        ("orderId", "1", "orderId"),
        ("clientOrderId", "", "clientOrderId"),
        ("clientOrderId", "x" * 65, "clientOrderId"),
        ("symbol", "DOGEUSDT", "not traded here"),
        ("symbol", ["LTCBTC"], "not traded here"),
    ],
)
def test_absurd_order_answers_are_unreadable(field: str, value: object, message: str) -> None:
    body = {
        **fixture("order_query.json"),
        "status": "FILLED",
        "executedQty": "1.0",
        "cummulativeQuoteQty": "0.1",
    }
    body[field] = value
    with pytest.raises(UnreadableAnswer, match=message):
        codec().parse_order(body)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tradeId", -1),
        ("tradeId", 2**63),
        ("price", "0.00000000"),
        ("price", "4000.001"),
        ("qty", "0.00000000"),
        ("commission", "-1"),
        ("commission", "4e0"),
        ("commissionAsset", None),
    ],
)
def test_absurd_fills_make_the_answer_unreadable(field: str, value: object) -> None:
    body = full_answer()
    codec().parse_order(body)  # readable as it stands
    body["fills"][2][field] = value
    with pytest.raises(UnreadableAnswer):
        codec().parse_order(body)


def test_a_commission_in_another_asset_is_no_fee_and_says_why() -> None:
    page = codec().parse_my_trades(fixture("my_trades.json"), "BNBBTC", {100234: "myOrder1"})
    (fill,) = page.fills
    report = fill.report
    assert (report.client_order_id, report.fill_id, report.side) == ("myOrder1", 28457, Side.BUY)
    assert (report.price, report.lots) == (4_000_001, 1200)
    assert report.fee is None
    assert fill.fee_note == "10.10000000 BNB, no fees.conversion for BNB/BTC"
    assert (report.venue_fee, report.fee_asset) == ("10.10000000", "BNB")
    assert fill.is_maker is False
    assert (page.unknown_orders, page.last_id) == (set(), 28457)
    # Without a client order id for the venue's order: left out, and named.
    page = codec().parse_my_trades(fixture("my_trades.json"), "BNBBTC", {})
    assert (page.fills, page.unknown_orders, page.last_id) == ([], {100234}, 28457)
    # Without the symbol's quote asset the fee is unknown too, and the note says so.
    bare = BinanceSpotCodec(API_KEY, HmacSha256Signer(SECRET), INSTRUMENTS)
    (fill,) = bare.parse_my_trades(fixture("my_trades.json"), "BNBBTC", {100234: "x"}).fills
    assert fill.fee_note == "10.10000000 BNB, the quote asset of BNBBTC is not known"


def test_a_trade_of_another_symbol_is_unreadable() -> None:
    with pytest.raises(UnreadableAnswer, match="another symbol"):
        codec().parse_my_trades(fixture("my_trades.json"), "LTCBTC", {})
    with pytest.raises(UnreadableAnswer, match="not a list"):
        codec().parse_my_trades(b'{"code": 0}', "BNBBTC", {})


# -- user data stream -----------------------------------------------------------------


def execution(**fields: object) -> dict[str, Any]:
    message = fixture("execution_report.json")
    message["event"].update(fields)
    return message


def test_a_new_execution_report_is_the_orders_report() -> None:
    update = codec().parse_user_stream(orjson.dumps(fixture("execution_report.json")))
    assert isinstance(update, ExecutionUpdate)
    assert (update.subscription_id, update.order_id, update.execution_type) == (0, 4293153, "NEW")
    assert update.event_time_ms == 1499405658658
    assert update.symbol == "ETHBTC"  # the engine's symbol: venue order ids are per symbol
    assert (update.report.client_order_id, update.report.status) == (
        "mUvoqJxFIILMdfAW5iGSOW",
        OrderStatus.NEW,
    )
    assert update.fill is None


def test_a_trade_execution_report_carries_its_fill() -> None:
    message = execution(
        x="TRADE",
        X="PARTIALLY_FILLED",
        l="0.40000000",
        z="0.40000000",
        L="0.10264410",
        Z="0.04105764",
        t=77,
        n="0.00004106",
        N="BTC",
        m=True,
    )
    update = codec().parse_user_stream(message)
    assert isinstance(update, ExecutionUpdate)
    assert update.report.status is OrderStatus.PARTIALLY_FILLED
    assert (update.report.filled_lots, update.report.avg_price) == (4000, 10_264_410)
    assert update.fill is not None
    fill = update.fill.report
    assert (fill.fill_id, fill.price, fill.lots, fill.side) == (77, 10_264_410, 4000, Side.BUY)
    assert fill.fee == 41_060_000  # 0.00004106 BTC in units of 1e-8 * 1e-4
    assert update.fill.is_maker is True


def test_a_cancel_report_names_the_order_by_its_original_id() -> None:
    message = execution(x="CANCELED", X="CANCELED", c="cancelRequest9", C="mUvoqJxFIILMdfAW5iGSOW")
    update = codec().parse_user_stream(message)
    assert isinstance(update, ExecutionUpdate)
    assert update.report.client_order_id == "mUvoqJxFIILMdfAW5iGSOW"
    assert update.report.status is OrderStatus.CANCELED


def test_a_rejected_or_expired_report_keeps_the_reason() -> None:
    rejected = codec().parse_user_stream(execution(x="REJECTED", X="REJECTED", r="INSUFFICIENT"))
    assert isinstance(rejected, ExecutionUpdate)
    assert (rejected.report.status, rejected.report.reason) == (
        OrderStatus.REJECTED,
        "binance INSUFFICIENT",
    )
    expired = codec().parse_user_stream(execution(x="EXPIRED", X="EXPIRED"))
    assert isinstance(expired, ExecutionUpdate)
    assert (expired.report.status, expired.report.reason) == (OrderStatus.CANCELED, "expired")


def test_stream_answers_and_other_events() -> None:
    binance = codec()
    subscribed = binance.parse_user_stream(orjson.dumps(fixture("stream_subscribed.json")))
    assert subscribed == Subscribed("d3df8a21-98ea-4fe0-8f4e-0fcea5d418b7", 0)
    failed = binance.parse_user_stream(fixture("stream_banned.json"))
    assert isinstance(failed, RequestFailed)
    assert failed.error.kind is ErrorKind.BANNED
    assert failed.error.until_ms == 1659146400000
    assert binance.parse_user_stream(fixture("stream_account_update.json")) == OtherEvent(
        "outboundAccountPosition"
    )
    ended = {"subscriptionId": 0, "event": {"e": "eventStreamTerminated", "E": 1728973001334}}
    assert binance.parse_user_stream(ended) == StreamEnded(0, "eventStreamTerminated")
    shutdown = {"event": {"e": "serverShutdown", "E": 1730717006848}}
    assert binance.parse_user_stream(shutdown) == StreamEnded(None, "serverShutdown")
    other_symbol = execution(s="DOGEUSDT")
    assert binance.parse_user_stream(other_symbol) == OtherEvent("unknown_symbol")


@pytest.mark.parametrize(
    "message",
    [
        b"not json",
        b"[]",
        b'{"id": 1}',
        b'{"id": 1, "status": "200"}',
        b'{"subscriptionId": -1, "event": {"e": "executionReport"}}',
        b'{"id": 1, "status": 200, "result": {"subscriptionId": "0"}}',
    ],
)
def test_unreadable_stream_frames(message: bytes) -> None:
    with pytest.raises(UnreadableAnswer):
        codec().parse_user_stream(message)


@pytest.mark.parametrize(
    ("field", "value"),
    [("X", "BOGUS"), ("S", "buy"), ("i", -5), ("E", "now"), ("z", "1e-3"), ("x", 3)],
)
def test_absurd_execution_reports_are_unreadable(field: str, value: object) -> None:
    with pytest.raises(UnreadableAnswer):
        codec().parse_user_stream(execution(**{field: value}))


def test_a_trade_report_without_a_readable_fill_is_unreadable() -> None:
    trade = {"x": "TRADE", "X": "FILLED", "l": "1.0", "z": "1.0", "L": "0.1", "Z": "0.1"}
    for bad in ({"t": -1}, {"l": "0"}, {"m": None, "t": 5}, {"t": 5, "n": "1", "N": ""}):
        with pytest.raises(UnreadableAnswer):
            codec().parse_user_stream(execution(**{**trade, "m": False, **bad}))


# -- errors, limits, time -------------------------------------------------------------


@pytest.mark.parametrize("case", fixture("errors.json"), ids=lambda case: str(case["body"])[:40])
def test_every_documented_error_has_its_outcome(case: dict[str, Any]) -> None:
    body = case["body"]
    raw = body.encode() if isinstance(body, str) else orjson.dumps(body)
    error = classify_error(case["status"], raw, case.get("retry_after"))
    assert error.kind is ErrorKind(case["kind"])
    if isinstance(body, dict):
        assert (error.code, error.message) == (body["code"], body["msg"])
        assert error.reason == case.get("reason", f"binance {body['code']}: {body['msg']}")
    else:
        assert error.reason == f"binance http {case['status']}"
    if "retry_after" in case:
        assert error.retry_after_s == int(case["retry_after"])
    assert error.until_ms == case.get("until_ms")


def test_post_only_refusals_keep_the_engines_reason() -> None:
    error = classify_error(400, b'{"code":-2010,"msg":"Order would immediately match and take."}')
    assert (error.kind, error.reason) == (ErrorKind.REFUSED, POST_ONLY_REJECTED)


def test_an_error_body_is_never_trusted() -> None:
    for body in (b"", b"null", b'{"code": "x", "msg": 5}', b'{"code": 10000000000}', b"\xff"):
        error = classify_error(400, body)
        assert (error.kind, error.code) == (ErrorKind.REFUSED, None)
        assert error.reason == "binance http 400"
    long = classify_error(400, orjson.dumps({"code": -1013, "msg": "x" * 10_000}))
    assert len(long.message) == 200
    assert len(long.reason) <= 200
    assert classify_error(429, b"", "soon").retry_after_s is None
    with pytest.raises(ValueError, match="200"):
        classify_error(200, b"{}")


def test_rate_limit_headers_become_usage() -> None:
    usage = parse_usage(
        {
            "X-MBX-USED-WEIGHT-1M": "12",
            "x-mbx-order-count-10s": "3",
            "X-MBX-ORDER-COUNT-1D": "4043",
            "X-MBX-USED-WEIGHT-1X": "5",  # not an interval
            "X-MBX-ORDER-COUNT-1H": "-1",  # not a count
            "Content-Type": "application/json",
        }
    )
    assert (usage.weight_1m, usage.orders_10s, usage.orders_1d) == (12, 3, 4043)
    assert usage.weight == {"1m": 12}
    assert usage.orders == {"10s": 3, "1d": 4043}
    assert parse_usage({}).weight_1m is None


def test_server_time() -> None:
    assert parse_server_time(orjson.dumps(fixture("server_time.json"))) == 1499827319559
    for body in (b'{"serverTime": "1"}', b'{"serverTime": -1}', b"[]", b"{"):
        with pytest.raises(UnreadableAnswer):
            parse_server_time(body)


# -- properties -----------------------------------------------------------------------

GRIDS = st.sampled_from(
    [("0.01", "0.00001"), ("0.00000001", "0.1"), ("1", "1"), ("0.5", "0.25"), ("0.000001", "0.01")]
)


@given(GRIDS, st.integers(1, 10**15), st.integers(1, 10**15))
def test_quantities_and_prices_round_trip_exactly(
    grid: tuple[str, str], lots: int, ticks: int
) -> None:
    instrument = Instrument("XYZ", *grid)
    binance = BinanceSpotCodec(API_KEY, HmacSha256Signer(SECRET), {"XYZ": instrument})
    request = binance.new_order_request("XYZ", Side.BUY, OrderType.LIMIT, lots, ticks, CID, TS)
    assert request.body is not None
    params = dict(parse_qsl(request.body.decode()))
    assert instrument.size_to_lots(params["quantity"]) == lots
    assert instrument.price_to_ticks(params["price"]) == ticks
    assert "e" not in params["quantity"].lower()
    assert "e" not in params["price"].lower()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


@given(JSON)
def test_garbage_is_unreadable_never_a_crash(value: object) -> None:
    # The standard library writes what orjson cannot (NaN, integers past 64 bits).
    raw = json.dumps(value).encode()
    binance = codec()
    for parse in (
        binance.parse_order,
        binance.parse_open_orders,
        binance.parse_user_stream,
        lambda body: binance.parse_my_trades(body, "BNBBTC", {}),
        parse_server_time,
    ):
        with contextlib.suppress(UnreadableAnswer):
            parse(raw)


FIELDS = [
    "symbol",
    "orderId",
    "clientOrderId",
    "executedQty",
    "cummulativeQuoteQty",
    "status",
    "side",
    "fills",
]


@given(st.sampled_from(FIELDS), JSON)
def test_a_full_answer_with_any_field_replaced_is_read_or_unreadable(
    field: str, value: object
) -> None:
    body = full_answer()
    body[field] = value
    try:
        answer = codec().parse_order(body)
    except UnreadableAnswer:
        return
    # What was read stays within the bounds every report promises.
    report = answer.report
    assert 0 <= report.filled_lots <= 10**15
    assert report.avg_price is None or 0 < report.avg_price <= 10**15
    for fill in answer.fills:
        assert fill.report.lots > 0
        assert fill.report.price > 0
        assert fill.report.fill_id is not None
        assert 0 <= fill.report.fill_id < 2**63


def test_the_cached_order_shapes_encode_exactly_as_the_full_encoder() -> None:
    """``new_order`` reuses each order shape's middle fields; its bodies are the
    full encoder's, byte for byte, whatever the shape, and refused alike."""
    import random

    codec = BinanceSpotCodec(API_KEY, HmacSha256Signer(SECRET), INSTRUMENTS)
    rng = random.Random(7)
    for i in range(2000):
        kind = rng.choice([OrderType.LIMIT, OrderType.MARKET])
        made = Order(
            f"id-{i % 50}", "s", "BTCUSDT", rng.choice([Side.BUY, Side.SELL]), kind,
            rng.randint(1, 40), None if kind is OrderType.MARKET else rng.randint(1, 300),
            rng.choice(list(TimeInForce)),
        )  # fmt: skip
        made.post_only = kind is OrderType.LIMIT and rng.random() < 0.3
        stamp = rng.randint(1, 2**41)
        try:
            cached: object = codec.new_order(made, stamp).body
        except ValueError as exc:
            cached = str(exc)
        try:
            full: object = codec.new_order_request(
                made.symbol, made.side, made.type, made.quantity, made.price,
                made.client_order_id, stamp, made.time_in_force.value, made.post_only,
            ).body  # fmt: skip
        except ValueError as exc:
            full = str(exc)
        assert cached == full
