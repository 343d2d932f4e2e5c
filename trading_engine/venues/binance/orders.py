"""Binance spot order entry, sans I/O: requests out as bytes, answers in as typed reports.

The codec builds every request the order gateway sends to Binance spot and
reads every answer it gets back; it opens no socket and never awaits, so
each rule below is tested on the venue's documented messages and the
gateway keeps its scheduling, breaker, settlement and journal rules
unchanged. It follows Binance's spot API documentation
(https://developers.binance.com/docs/binance-spot-api-docs):

Requests (:class:`BinanceRequest`: method, path, query, body, headers,
request weight, whether it counts toward the order-count limits):

* a new order, ``POST /api/v3/order``: weight 1, counts as an order;
* an order read back by client order id, ``GET /api/v3/order``: weight 4;
* a cancel by client order id, ``DELETE /api/v3/order``: weight 1;
* open orders, ``GET /api/v3/openOrders``: weight 6 for one symbol, 80 for all;
* the account's trades from a trade id, ``GET /api/v3/myTrades``: weight 20;
* the server's time, ``GET /api/v3/time``: weight 1, unsigned;
* exchange information, ``GET /api/v3/exchangeInfo``: weight 20, unsigned.

Every signed request carries ``timestamp`` (milliseconds of the venue's
clock, as the caller measures it) first and ``recvWindow`` last, then
``signature`` of exactly those bytes (REST "Request security": the payload
is the query string and body; every value here is percent-encoded before
signing, which Binance requires since 2026-01-15). A ``POST`` carries its
parameters in an ``application/x-www-form-urlencoded`` body, ``GET`` and
``DELETE`` in the query string; the API key goes in ``X-MBX-APIKEY``.

The user data stream: Binance retired the REST ``listenKey`` endpoints
(``POST/PUT/DELETE /api/v3/userDataStream``) on 2026-02-20; account
events now come over the WebSocket API (``wss://ws-api.binance.com:443/ws-api/v3``)
after ``userDataStream.subscribe.signature`` (any API key type, signed
like every WebSocket API request: parameters sorted by name). The codec
builds that request and reads the stream's messages
(:meth:`~BinanceSpotCodec.parse_user_stream`).

Answers are parsed, never trusted: every number is bounded exactly as
:mod:`trading_engine.core.reports` bounds the project's own API (plain
decimal strings on the instrument's grid, at most ``10**15`` ticks or lots,
ids non-negative 64-bit integers, known statuses and sides); anything else
raises :class:`~trading_engine.core.errors.UnreadableAnswer`, and the order
is settled by reading it back. An error answer becomes a
:class:`VenueError` whose :class:`ErrorKind` the gateway acts on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Any, Final, NamedTuple
from urllib.parse import quote

import orjson

from ...core.errors import InvalidValue, UnreadableAnswer
from ...core.fees import fee_to_units
from ...core.instruments import MAX_UNITS, Instrument
from ...core.orders import POST_ONLY_REJECTED, Order, OrderStatus, OrderType, Price
from ...core.protocol import Side
from ...core.reports import MAX_FILL_ID, FillReport, OrderReport
from .signing import Signer

__all__ = [
    "CLIENT_ORDER_ID",
    "DEFAULT_RECV_WINDOW_MS",
    "NEW_ORDER_RESPONSE_TYPE",
    "STATUSES",
    "BinanceRequest",
    "BinanceSpotCodec",
    "ErrorKind",
    "ExecutionUpdate",
    "OrderAnswer",
    "OtherEvent",
    "RateUsage",
    "RequestAnswered",
    "RequestFailed",
    "StreamEnded",
    "Subscribed",
    "TradesPage",
    "UserStreamMessage",
    "VenueError",
    "VenueFill",
    "classify_error",
    "encoded_client_order_id",
    "parse_server_time",
    "parse_usage",
    "valid_client_order_id",
]

#: Binance's ``newClientOrderId`` (the venue's ``-1100`` answer states the range).
CLIENT_ORDER_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,36}")


#: The bytes :data:`CLIENT_ORDER_ID` allows.
_CLIENT_ORDER_ID_BYTES: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


def valid_client_order_id(client_order_id: str) -> bool:
    """Whether ``client_order_id`` matches :data:`CLIENT_ORDER_ID` (1 to 36 of
    ``[A-Za-z0-9_-]``), without the regular expression engine (the tests
    check that both agree). ``O(len(client_order_id))``.
    """
    return encoded_client_order_id(client_order_id) is not None


def encoded_client_order_id(client_order_id: str) -> bytes | None:
    """``client_order_id`` as the ASCII bytes a request carries, or None when it does
    not match :data:`CLIENT_ORDER_ID`.

    The order path's check: one encoding (which the body needs anyway) and
    one ``bytes.translate`` deleting the allowed bytes, where string
    methods took five calls and the regular expression engine's code is
    colder still. A character outside ASCII encodes as ``?``, which is
    not allowed. ``O(len(client_order_id))``.
    """
    raw = client_order_id.encode("ascii", "replace")
    if 0 < len(raw) <= 36 and not raw.translate(None, _CLIENT_ORDER_ID_BYTES):
        return raw
    return None


#: Every client order id the venue can hold (its whole ``-1100`` range, ``.``, ``:``
#: and ``/`` included: orders of other clients of the account use them). An
#: answer naming an order by anything else is not the venue's.
VENUE_CLIENT_ORDER_ID: Final = re.compile(r"[.A-Z:/a-z0-9_-]{1,36}")
#: The most an answer's ``cummulativeQuoteQty`` may differ from the sum of its
#: fills' ``price * qty``: the venue writes amounts with 8 decimals, so each
#: fill's quote amount may be rounded by half of ``10**-8``.
QUOTE_ROUNDING: Final = Fraction(1, 10**8)
#: Binance's default receive window; its maximum is 60,000 ms.
DEFAULT_RECV_WINDOW_MS: Final = 5000
#: ``FULL``: the answer lists each fill (trade id, price, quantity, commission),
#: so the ledger has the exact fills at once, deduplicated by trade id against
#: the user data stream and ``myTrades``; ``RESULT`` gives only the cumulative
#: quantity and quote amount, an average between ticks until the fills arrive.
NEW_ORDER_RESPONSE_TYPE: Final = "FULL"

#: Binance order statuses (the spot API's ENUM definitions) to the engine's.
#: ``EXPIRED`` (IOC/FOK/market remainder, or the venue's own expiry) and
#: ``EXPIRED_IN_MATCH`` (self-trade prevention) close the order as
#: ``canceled`` with that reason; ``PENDING_CANCEL`` (documented as unused)
#: leaves it open. ``PENDING_NEW`` exists only inside order lists, which the
#: engine never places: an answer carrying it is unreadable.
STATUSES: Final[dict[str, tuple[OrderStatus, str | None]]] = {
    "NEW": (OrderStatus.NEW, None),
    "PARTIALLY_FILLED": (OrderStatus.PARTIALLY_FILLED, None),
    "FILLED": (OrderStatus.FILLED, None),
    "CANCELED": (OrderStatus.CANCELED, None),
    "EXPIRED": (OrderStatus.CANCELED, "expired"),
    "EXPIRED_IN_MATCH": (OrderStatus.CANCELED, "expired_in_match"),
    "REJECTED": (OrderStatus.REJECTED, None),
    "PENDING_CANCEL": (OrderStatus.NEW, None),
}
_SIDES: Final = {"BUY": Side.BUY, "SELL": Side.SELL}
_VENUE_SIDES: Final = {Side.BUY: "BUY", Side.SELL: "SELL"}
_TIME_IN_FORCE: Final = frozenset({"GTC", "IOC", "FOK"})
_MAX_TEXT: Final = 200
# A plain decimal as Binance writes amounts: no sign but a leading '-', no exponent.
_AMOUNT: Final = re.compile(r"(-?)[0-9]{1,30}(?:\.[0-9]{1,30})?")
_BANNED_UNTIL: Final = re.compile(r"banned until (\d{10,16})")
_INTERVAL: Final = re.compile(r"[0-9]{1,4}[smhd]")
_DECIMAL_TEXTS_MAX: Final = 65_536
_FORM: Final = "application/x-www-form-urlencoded"


class BinanceRequest:
    """One request to send: the venue's method, path and parameters, ready to write.

    ``query`` is the query string without ``?`` ("" when none); ``body``
    the form body of a ``POST`` (None otherwise); ``headers`` the pairs to
    add (the API key, the body's content type). ``weight`` is the request
    weight Binance documents for it (the ``X-MBX-USED-WEIGHT-1M`` budget),
    ``is_order`` whether it counts toward the order-count limits
    (``X-MBX-ORDER-COUNT-10S``/``-1D``).
    """

    __slots__ = ("body", "headers", "is_order", "method", "path", "query", "weight")

    def __init__(
        self,
        method: str,
        path: str,
        query: str,
        body: bytes | None,
        headers: tuple[tuple[str, str], ...],
        weight: int,
        is_order: bool = False,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.body = body
        self.headers = headers
        self.weight = weight
        self.is_order = is_order

    @property
    def target(self) -> str:
        """The request target: the path and, when there is one, ``?`` and the query."""
        return f"{self.path}?{self.query}" if self.query else self.path

    def __repr__(self) -> str:
        # The API key header is left out: it is a credential.
        return f"BinanceRequest({self.method} {self.path}, weight={self.weight})"


# -- error answers -------------------------------------------------------------------


class ErrorKind(StrEnum):
    """What an error answer means for the request (docs/venues.md has the table)."""

    #: The venue refused the request; nothing happened (an order: ``rejected``).
    REFUSED = "refused"
    #: The venue does not hold the order (``-2013``, ``-2026``, a cancel's "Unknown order sent.").
    NOT_FOUND = "not_found"
    #: The outcome is unknown (5xx, ``-1006``/``-1007``...): settle by reading back.
    UNKNOWN = "unknown"
    #: Over a rate limit (429): pause for ``retry_after_s``.
    RATE_LIMITED = "rate_limited"
    #: The IP is banned (418) until ``until_ms`` / for ``retry_after_s``: halt.
    BANNED = "banned"
    #: ``-1021``: the timestamp is outside the receive window; re-sync the clock.
    CLOCK_SKEW = "clock_skew"
    #: A bad signature or API key (``-1022``, ``-2014``, ``-2015``, ``-1002``): halt, never retry.
    AUTH_FAILED = "auth_failed"


class VenueError(NamedTuple):
    """One error answer: its kind, the venue's code and message, and how long to wait.

    ``reason`` is the engine's reason for a refused order: ``binance
    <code>: <msg>`` (``post_only_would_take`` for a ``LIMIT_MAKER`` that
    would have taken). ``retry_after_s`` is the ``Retry-After`` header
    (seconds), ``until_ms`` the end of a ban or a WebSocket API
    ``retryAfter`` (venue milliseconds), each None when absent.
    """

    kind: ErrorKind
    status: int
    code: int | None
    message: str
    reason: str
    retry_after_s: int | None = None
    until_ms: int | None = None


_AUTH_CODES: Final = frozenset({-1002, -1022, -2014, -2015})
# -1000 UNKNOWN, -1001 DISCONNECTED, -1006 UNEXPECTED_RESP, -1007 TIMEOUT ("execution
# status unknown"), -1008 SERVER_BUSY: none says the request was not taken.
_UNKNOWN_CODES: Final = frozenset({-1000, -1001, -1006, -1007, -1008})
_NOT_FOUND_CODES: Final = frozenset({-2013, -2026})
_RATE_CODES: Final = frozenset({-1003, -1015})


def _retry_after(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else None


def classify_error(
    status: int, body: bytes | str | object, retry_after: str | None = None
) -> VenueError:
    """The meaning of an error answer (any status but 200).

    ``body`` is the answer's body (bytes or text, or the decoded JSON, or
    the ``error`` object of a WebSocket API answer), ``retry_after`` its
    ``Retry-After`` header. Binance's HTTP rules come first (429 rate
    limited, 418 banned, 5xx unknown: "the execution status is UNKNOWN and
    could have been a success"), then its error codes
    (https://developers.binance.com/docs/binance-spot-api-docs/errors).
    Never raises for a malformed body: the status alone decides then.
    Raises ``ValueError`` for status 200.
    """
    if status == 200:
        raise ValueError("a 200 answer is not an error")
    document: object = body
    if isinstance(body, bytes | str):
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            document = None
    code: int | None = None
    message = ""
    until_ms: int | None = None
    if isinstance(document, dict):
        raw_code, raw_msg = document.get("code"), document.get("msg")
        if type(raw_code) is int and -100_000 < raw_code < 100_000:
            code = raw_code
        if isinstance(raw_msg, str):
            message = raw_msg[:_MAX_TEXT]
        data = document.get("data")
        if isinstance(data, dict):
            retry = data.get("retryAfter")
            if type(retry) is int and 0 < retry < 2**53:
                until_ms = retry
    seconds = _retry_after(retry_after)
    reason = f"binance {code}: {message}" if code is not None else f"binance http {status}"
    reason = reason[:_MAX_TEXT]

    def error(kind: ErrorKind, why: str = reason) -> VenueError:
        return VenueError(kind, status, code, message, why, seconds, until_ms)

    banned = _BANNED_UNTIL.search(message)
    if status == 418 or (code == -1003 and banned is not None):
        if banned is not None:
            until_ms = int(banned.group(1))
        return error(ErrorKind.BANNED)
    if status == 429 or code in _RATE_CODES:
        return error(ErrorKind.RATE_LIMITED)
    if not 400 <= status < 500 or code in _UNKNOWN_CODES or (status == 408 and code is None):
        # 5xx: "the execution status is UNKNOWN". Anything outside 4xx and 5xx (a
        # redirect, a 204, a status that is no HTTP status) is not the venue's
        # answer at all: it says nothing of the order either.
        return error(ErrorKind.UNKNOWN)
    if status == 401 or code in _AUTH_CODES:
        return error(ErrorKind.AUTH_FAILED)
    if code == -1021:
        return error(ErrorKind.CLOCK_SKEW)
    if code in _NOT_FOUND_CODES or (code == -2011 and message == "Unknown order sent."):
        return error(ErrorKind.NOT_FOUND)
    if code == -2010 and message == "Duplicate order sent.":
        # An open order already has this client order id: it is the venue's, read it back.
        return error(ErrorKind.UNKNOWN)
    if message == "Order would immediately match and take.":
        return error(ErrorKind.REFUSED, POST_ONLY_REJECTED)
    return error(ErrorKind.REFUSED)


# -- rate-limit headers ----------------------------------------------------------------


class RateUsage(NamedTuple):
    """What the venue says is used: request weight and order counts by interval.

    Keys are Binance's interval suffixes in lower case (``"1m"``, ``"10s"``,
    ``"1d"``); values the counts the answer's ``X-MBX-USED-WEIGHT-<interval>``
    and ``X-MBX-ORDER-COUNT-<interval>`` headers carry (REST "LIMITS").
    """

    weight: dict[str, int]
    orders: dict[str, int]

    @property
    def weight_1m(self) -> int | None:
        """The IP's used request weight in the current minute, if the answer says."""
        return self.weight.get("1m")

    @property
    def orders_10s(self) -> int | None:
        """The account's orders counted in the current 10 seconds, if the answer says."""
        return self.orders.get("10s")

    @property
    def orders_1d(self) -> int | None:
        """The account's orders counted today, if the answer says."""
        return self.orders.get("1d")


def parse_usage(headers: Mapping[str, str]) -> RateUsage:
    """The rate-limit headers of an answer (any case), each bounded; malformed ones ignored.

    ``O(len(headers))``. Never raises.
    """
    weight: dict[str, int] = {}
    orders: dict[str, int] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith("x-mbx-used-weight-"):
            target, interval = weight, lower[18:]
        elif lower.startswith("x-mbx-order-count-"):
            target, interval = orders, lower[18:]
        else:
            continue
        text = value.strip()
        if _INTERVAL.fullmatch(interval) and text.isascii() and text.isdigit() and len(text) < 10:
            target[interval] = int(text)
    return RateUsage(weight, orders)


def parse_server_time(body: bytes | object) -> int:
    """``serverTime`` of a ``GET /api/v3/time`` answer, in ms; ``UnreadableAnswer`` otherwise."""
    document = _decode(body, "time")
    value = document.get("serverTime") if isinstance(document, dict) else None
    if type(value) is not int or not 0 < value < 2**53:
        raise UnreadableAnswer(f"binance time: serverTime {value!r} is not a time in ms"[:200])
    return value


# -- answers ---------------------------------------------------------------------------


class VenueFill(NamedTuple):
    """One fill the venue reported, and why its fee is unknown when it is.

    ``report.fee`` is the commission in tick*lot units when Binance charged
    it in the symbol's quote asset; otherwise None (the engine then charges
    its configured rate) and ``fee_note`` says what was charged instead
    (``"0.00000100 BTC, not the quote asset USDT"``). ``is_maker`` as the
    venue says (None where it does not).
    """

    report: FillReport
    fee_note: str | None = None
    is_maker: bool | None = None


class OrderAnswer(NamedTuple):
    """An order answer: its report, and the fills a ``FULL`` new-order answer lists."""

    report: OrderReport
    fills: tuple[VenueFill, ...] = ()
    order_id: int | None = None


class TradesPage(NamedTuple):
    """One ``myTrades`` answer: the fills of known orders, and what else it held.

    ``unknown_orders`` are venue order ids whose trades could not be given a
    client order id (not in the caller's map: read them back by id);
    ``last_id`` the highest trade id read (the next page starts after it).
    """

    fills: list[VenueFill]
    unknown_orders: set[int]
    last_id: int | None


class Subscribed(NamedTuple):
    """The venue confirmed a user data stream subscription.

    ``request_id`` is the request's ``id`` as the venue echoed it (JSON:
    a string or an integer as sent; typed ``Any`` as a compiled named
    tuple's fields are).
    """

    request_id: Any
    subscription_id: int


class RequestAnswered(NamedTuple):
    """A WebSocket API request succeeded (an unsubscribe, for instance)."""

    request_id: Any


class RequestFailed(NamedTuple):
    """A WebSocket API request failed: the error, classified as an HTTP answer would be."""

    request_id: Any
    error: VenueError


class ExecutionUpdate(NamedTuple):
    """An ``executionReport``: the order's report, and its fill when it traded.

    ``execution_type`` is Binance's ``x`` (``NEW``, ``TRADE``, ``CANCELED``,
    ``EXPIRED``, ``TRADE_PREVENTION``, ...), ``event_time_ms`` its ``E``,
    ``symbol`` the engine symbol of its ``s`` (Binance numbers orders per
    symbol: ``order_id`` names an order only with it).
    """

    subscription_id: int | None
    order_id: int
    execution_type: str
    event_time_ms: int
    report: OrderReport
    fill: VenueFill | None
    symbol: str = ""


class StreamEnded(NamedTuple):
    """No more events will come on this subscription or connection: subscribe again.

    ``reason``: ``eventStreamTerminated`` (the subscription ended) or
    ``serverShutdown`` (the server is about to close the connection).
    """

    subscription_id: int | None
    reason: str


class OtherEvent(NamedTuple):
    """An event the ledger does not need (balances, order lists, a symbol not traded)."""

    kind: str


UserStreamMessage = (
    Subscribed | RequestAnswered | RequestFailed | ExecutionUpdate | StreamEnded | OtherEvent
)


def _decode(body: bytes | object, what: str) -> object:
    if isinstance(body, bytes | bytearray | memoryview | str):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UnreadableAnswer(f"binance {what}: not JSON: {exc}"[:200]) from None
    return body


def _client_id(body: Mapping[str, Any], key: str, what: str) -> str:
    """A client order id the venue could hold (:data:`VENUE_CLIENT_ORDER_ID`)."""
    value = body.get(key)
    if type(value) is not str or VENUE_CLIENT_ORDER_ID.fullmatch(value) is None:
        raise UnreadableAnswer(f"binance {what}: {key} {value!r} is not a client order id"[:200])
    return value


def _side(value: object, key: str, what: str) -> Side:
    side = _SIDES.get(value) if type(value) is str else None
    if side is None:
        raise UnreadableAnswer(f"binance {what}: {key} {value!r} is not BUY or SELL"[:200])
    return side


def _check_progress(status_text: str, filled: int, quantity: int, what: str) -> None:
    """Refuse a cumulative fill its status or the order's quantity rules out.

    Binance's statuses say how much filled: ``NEW`` nothing, ``FILLED``
    everything, ``PARTIALLY_FILLED`` some but not all; no order fills
    beyond its quantity.
    """
    if quantity <= 0 or filled > quantity:
        raise UnreadableAnswer(f"binance {what}: {filled} lots filled of {quantity}")
    if (
        (status_text == "NEW" and filled)
        or (status_text == "FILLED" and filled != quantity)
        or (status_text == "PARTIALLY_FILLED" and not 0 < filled < quantity)
    ):
        raise UnreadableAnswer(f"binance {what}: {status_text} with {filled} of {quantity} lots")


def _id(body: Mapping[str, Any], key: str, what: str) -> int:
    value = body.get(key)
    if type(value) is not int or not 0 <= value <= MAX_FILL_ID:
        raise UnreadableAnswer(f"binance {what}: {key} {value!r} is not an id in [0, 2**63)"[:200])
    return value


def _lots(instrument: Instrument, value: object, key: str, what: str) -> int:
    if type(value) is not str:
        raise UnreadableAnswer(f"binance {what}: {key} {value!r} is not a decimal string"[:200])
    try:
        return instrument.size_to_lots(value)
    except InvalidValue as exc:
        raise UnreadableAnswer(f"binance {what}: {key}: {exc}"[:200]) from None


def _ticks(instrument: Instrument, value: object, key: str, what: str) -> int:
    if type(value) is not str:
        raise UnreadableAnswer(f"binance {what}: {key} {value!r} is not a decimal string"[:200])
    try:
        return instrument.price_to_ticks(value)
    except InvalidValue as exc:
        raise UnreadableAnswer(f"binance {what}: {key}: {exc}"[:200]) from None


def _amount(value: object, key: str, what: str) -> Fraction:
    """A quote amount or commission: a plain decimal string, exactly."""
    if type(value) is not str or len(value) > 48 or not _AMOUNT.fullmatch(value):
        raise UnreadableAnswer(f"binance {what}: {key} {value!r} is not a decimal string"[:200])
    return Fraction(Decimal(value))


def _venue_fee(amount: object, entry: Mapping[str, object]) -> tuple[str | None, str | None]:
    """The venue's commission as it wrote it and its asset (read by ``_fee`` already)."""
    asset = entry.get("commissionAsset")
    if type(amount) is not str or type(asset) is not str or not asset:
        return None, None
    return amount, asset


class BinanceSpotCodec:
    """Binance spot requests and answers for the engine's instruments.

    ``api_key`` goes in the ``X-MBX-APIKEY`` header (never in a repr or a
    log line); ``signer`` signs (:mod:`.signing`); ``instruments`` are the
    engine's, by engine symbol; ``venue_symbols`` maps an engine symbol to
    Binance's where they differ (``BTC-USDT`` -> ``BTCUSDT``); ``quote_assets``
    gives each engine symbol's quote asset (``USDT``), which decides
    whether a commission is a fee in the quote currency
    (:attr:`.filters.SymbolFilters.quote_asset`), ``base_assets`` its base
    asset (a commission in it is valued at the fill's price) and
    ``fee_conversion`` the price of a third asset in a quote asset
    (``{"BNB/USDT": Fraction(600)}``); ``recv_window_ms`` is
    sent with every signed request (1 to 60,000). Raises ``ValueError`` for
    an API key that cannot go in a header or a receive window out of range.
    """

    def __init__(
        self,
        api_key: str,
        signer: Signer,
        instruments: Mapping[str, Instrument],
        *,
        venue_symbols: Mapping[str, str] | None = None,
        quote_assets: Mapping[str, str] | None = None,
        recv_window_ms: int = DEFAULT_RECV_WINDOW_MS,
        base_assets: Mapping[str, str] | None = None,
        fee_conversion: Mapping[str, Fraction] | None = None,
    ) -> None:
        if not api_key or not api_key.isascii() or not api_key.isprintable() or " " in api_key:
            raise ValueError("the API key must be printable ASCII without spaces")
        if not 0 < recv_window_ms <= 60_000:
            raise ValueError(f"recv_window_ms {recv_window_ms} is not in 1..60000")
        self._api_key = api_key
        self.signer = signer
        self.instruments = dict(instruments)
        names = dict(venue_symbols or {})
        self.venue_symbols = {symbol: names.get(symbol, symbol) for symbol in self.instruments}
        self.engine_symbols = {venue: engine for engine, venue in self.venue_symbols.items()}
        if len(self.engine_symbols) != len(self.venue_symbols):
            raise ValueError("two engine symbols map to one venue symbol")
        self.quote_assets = dict(quote_assets or {})
        self.base_assets = dict(base_assets or {})
        #: ``"ASSET/QUOTE"`` -> the price of one ASSET in QUOTE (a fee in ASSET is valued at it).
        self.fee_conversion = dict(fee_conversion or {})
        self.recv_window_ms = recv_window_ms
        key_header = ("X-MBX-APIKEY", api_key)
        self._signed_headers: tuple[tuple[str, str], ...] = (key_header,)
        self._form_headers: tuple[tuple[str, str], ...] = (key_header, ("Content-Type", _FORM))
        self._suffix = b"&newOrderRespType=%s&recvWindow=%d" % (
            NEW_ORDER_RESPONSE_TYPE.encode(),
            recv_window_ms,
        )
        self._recv_suffix = f"&recvWindow={recv_window_ms}"
        self._fixed: dict[tuple[str, Side, OrderType, str, bool], bytes] = {}
        self._texts: dict[tuple[str, bool, int], bytes] = {}
        #: Each order shape's fields between ``timestamp`` and ``newClientOrderId``.
        self._middles: dict[tuple[str, Side, OrderType, str, bool, int, int | None], bytes] = {}
        self._quoted = {s: quote(v, safe="") for s, v in self.venue_symbols.items()}

    def __repr__(self) -> str:
        return f"BinanceSpotCodec({len(self.instruments)} instruments, {self.signer!r})"

    # -- requests -----------------------------------------------------------------------

    def new_order(self, order: Order, timestamp_ms: int) -> BinanceRequest:
        """``POST /api/v3/order`` for an engine order: :meth:`new_order_body` as a request."""
        body = self.new_order_body(order, timestamp_ms)
        return BinanceRequest("POST", "/api/v3/order", "", body, self._form_headers, 1, True)

    @property
    def form_headers(self) -> tuple[tuple[str, str], ...]:
        """The headers of a signed form body (the API key, the content type)."""
        return self._form_headers

    def new_order_body(self, order: Order, timestamp_ms: int) -> bytes:
        """The signed form body of ``POST /api/v3/order`` for an engine order (the hot path).

        ``timestamp_ms`` is the venue's clock in ms (the host's plus the
        measured offset). A post-only order is a ``LIMIT_MAKER``; otherwise
        ``LIMIT`` with the order's time in force, or ``MARKET``. Raises
        ``ValueError`` for an id outside ``[A-Za-z0-9_-]{1,36}``, a limit
        order without a price or a symbol without an instrument.
        ``O(len(client order id))``: the fields between ``timestamp`` and
        ``newClientOrderId`` are encoded once per order shape (symbol,
        side, type, time in force, post-only, lots, price; a bounded cache),
        so an order costs its id, its timestamp and its signature.
        """
        cid = order.client_order_id
        raw_cid = encoded_client_order_id(cid)
        if raw_cid is None:
            raise ValueError(f"client order id {cid!r} breaks Binance's rule")
        key = (
            order.symbol,
            order.side,
            order.type,
            order.time_in_force,  # a str (StrEnum): no ``.value`` property call
            order.post_only,
            order.quantity,
            order.price,
        )
        middle = self._middles.get(key)
        if middle is None:
            middle = self._middle(key)
        payload = b"timestamp=%d%s&newClientOrderId=%s%s" % (
            timestamp_ms,
            middle,
            raw_cid,
            self._suffix,
        )
        return b"%s&signature=%s" % (payload, self.signer.query_signature(payload))

    def _middle(self, key: tuple[str, Side, OrderType, str, bool, int, int | None]) -> bytes:
        """An order shape's fields from ``symbol`` to ``price`` (see :meth:`new_order_request`)."""
        symbol, side, order_type, time_in_force, post_only, lots, price = key
        # The one encoder of the fields: the request of a made-up id, cut at its edges.
        payload = self.new_order_request(
            symbol, side, order_type, lots, price, "x", 0, time_in_force, post_only
        ).body
        assert payload is not None
        middle = payload[len(b"timestamp=0") : payload.index(b"&newClientOrderId=")]
        middles = self._middles
        if len(middles) >= _DECIMAL_TEXTS_MAX:
            middles.clear()
        middles[key] = middle
        return middle

    def new_order_request(
        self,
        symbol: str,
        side: Side,
        order_type: OrderType,
        lots: int,
        price: int | None,
        client_order_id: str,
        timestamp_ms: int,
        time_in_force: str = "GTC",
        post_only: bool = False,
    ) -> BinanceRequest:
        """``POST /api/v3/order`` from its parts: ``time_in_force`` ``GTC``, ``IOC`` or ``FOK``.

        The body is ``timestamp``, ``symbol``, ``side``, ``type``,
        ``timeInForce`` (``LIMIT`` only), ``quantity``, ``price`` (limit
        orders), ``newClientOrderId``, ``newOrderRespType``, ``recvWindow``,
        then ``signature``. The parts an order shares with others of its
        symbol, side, type and time in force are encoded once, and so is
        each quantity and price (a bounded cache). Raises ``ValueError``
        as :meth:`new_order` does, and for a time in force Binance does not
        know, lots <= 0 or a price <= 0 ticks.
        """
        if not valid_client_order_id(client_order_id):
            raise ValueError(f"client order id {client_order_id!r} breaks Binance's rule")
        key = (symbol, side, order_type, time_in_force, post_only)
        fixed = self._fixed.get(key)
        if fixed is None:
            fixed = self._fixed_fields(key)
        texts = self._texts
        size = texts.get((symbol, False, lots))
        if size is None:
            if lots <= 0:
                raise ValueError(f"an order of {lots} lots")
            size = self._decimal_text((symbol, False, lots))
        if order_type is OrderType.MARKET:
            payload = b"timestamp=%d%s&quantity=%s&newClientOrderId=%s%s" % (
                timestamp_ms,
                fixed,
                size,
                client_order_id.encode(),
                self._suffix,
            )
        else:
            if price is None:
                raise ValueError(f"limit order {client_order_id} without a price")
            price_text = texts.get((symbol, True, price))
            if price_text is None:
                if price <= 0:
                    raise ValueError(f"limit order {client_order_id} at {price} ticks")
                price_text = self._decimal_text((symbol, True, price))
            payload = b"timestamp=%d%s&quantity=%s&price=%s&newClientOrderId=%s%s" % (
                timestamp_ms,
                fixed,
                size,
                price_text,
                client_order_id.encode(),
                self._suffix,
            )
        body = b"%s&signature=%s" % (payload, self.signer.query_signature(payload))
        return BinanceRequest("POST", "/api/v3/order", "", body, self._form_headers, 1, True)

    def _fixed_fields(self, key: tuple[str, Side, OrderType, str, bool]) -> bytes:
        symbol, side, order_type, time_in_force, post_only = key
        if symbol not in self.instruments:
            raise ValueError(f"no instrument {symbol!r}")
        if time_in_force not in _TIME_IN_FORCE:
            raise ValueError(f"time in force {time_in_force!r} is not GTC, IOC or FOK")
        fields = f"&symbol={self._quoted[symbol]}&side={_VENUE_SIDES[side]}"
        if order_type is OrderType.MARKET:
            fields += "&type=MARKET"
        elif post_only:
            # LIMIT_MAKER: refused rather than take; it takes no timeInForce (-1106 if sent).
            fields += "&type=LIMIT_MAKER"
        else:
            fields += f"&type=LIMIT&timeInForce={time_in_force}"
        fixed = self._fixed[key] = fields.encode()
        return fixed

    def _decimal_text(self, key: tuple[str, bool, int]) -> bytes:
        texts = self._texts
        if len(texts) >= _DECIMAL_TEXTS_MAX:
            texts.clear()
        symbol, is_price, units = key
        instrument = self.instruments[symbol]
        text = instrument.format_price(units) if is_price else instrument.format_size(units)
        encoded = texts[key] = text.encode()
        return encoded

    def _signed(
        self, method: str, path: str, params: str, timestamp_ms: int, weight: int
    ) -> BinanceRequest:
        """A signed ``GET``/``DELETE``: ``timestamp``, ``params``, ``recvWindow``, ``signature``."""
        payload = f"timestamp={timestamp_ms}{params}{self._recv_suffix}".encode()
        signature = self.signer.query_signature(payload).decode("ascii")
        query = f"{payload.decode('ascii')}&signature={signature}"
        return BinanceRequest(method, path, query, None, self._signed_headers, weight)

    def _order_params(self, symbol: str, client_order_id: str) -> str:
        if symbol not in self.instruments:
            raise ValueError(f"no instrument {symbol!r}")
        if not valid_client_order_id(client_order_id):
            raise ValueError(f"client order id {client_order_id!r} breaks Binance's rule")
        return f"&symbol={self._quoted[symbol]}&origClientOrderId={client_order_id}"

    def query_order(self, symbol: str, client_order_id: str, timestamp_ms: int) -> BinanceRequest:
        """``GET /api/v3/order`` by ``origClientOrderId`` (weight 4)."""
        params = self._order_params(symbol, client_order_id)
        return self._signed("GET", "/api/v3/order", params, timestamp_ms, 4)

    def query_order_id(self, symbol: str, order_id: int, timestamp_ms: int) -> BinanceRequest:
        """``GET /api/v3/order`` by the venue's ``orderId`` (weight 4).

        For a trade whose order the caller cannot name: the answer carries
        its ``clientOrderId``.
        """
        if symbol not in self.instruments:
            raise ValueError(f"no instrument {symbol!r}")
        if not 0 <= order_id <= MAX_FILL_ID:
            raise ValueError(f"order id {order_id} is not a venue order id")
        params = f"&symbol={self._quoted[symbol]}&orderId={order_id}"
        return self._signed("GET", "/api/v3/order", params, timestamp_ms, 4)

    def cancel_order(self, symbol: str, client_order_id: str, timestamp_ms: int) -> BinanceRequest:
        """``DELETE /api/v3/order`` by ``origClientOrderId`` (weight 1).

        The answer carries the order as ``origClientOrderId`` (its
        ``clientOrderId`` is the cancel's own).
        """
        params = self._order_params(symbol, client_order_id)
        return self._signed("DELETE", "/api/v3/order", params, timestamp_ms, 1)

    def open_orders(self, timestamp_ms: int, symbol: str | None = None) -> BinanceRequest:
        """``GET /api/v3/openOrders`` of one symbol (weight 6) or of every symbol (weight 80)."""
        if symbol is None:
            return self._signed("GET", "/api/v3/openOrders", "", timestamp_ms, 80)
        if symbol not in self.instruments:
            raise ValueError(f"no instrument {symbol!r}")
        params = f"&symbol={self._quoted[symbol]}"
        return self._signed("GET", "/api/v3/openOrders", params, timestamp_ms, 6)

    def my_trades(
        self, symbol: str, timestamp_ms: int, from_id: int | None = None, limit: int = 1000
    ) -> BinanceRequest:
        """``GET /api/v3/myTrades`` of ``symbol`` from trade id ``from_id`` on (weight 20).

        Without ``from_id`` the most recent trades. ``limit`` 1 to 1,000.
        """
        if symbol not in self.instruments:
            raise ValueError(f"no instrument {symbol!r}")
        if not 1 <= limit <= 1000:
            raise ValueError(f"limit {limit} is not in 1..1000")
        params = f"&symbol={self._quoted[symbol]}"
        if from_id is not None:
            if not 0 <= from_id <= MAX_FILL_ID:
                raise ValueError(f"from_id {from_id} is not a trade id")
            params += f"&fromId={from_id}"
        params += f"&limit={limit}"
        return self._signed("GET", "/api/v3/myTrades", params, timestamp_ms, 20)

    def server_time(self) -> BinanceRequest:
        """``GET /api/v3/time`` (weight 1, unsigned): :func:`parse_server_time` reads it."""
        return BinanceRequest("GET", "/api/v3/time", "", None, (), 1)

    def exchange_info(self, symbols: Sequence[str] | None = None) -> BinanceRequest:
        """``GET /api/v3/exchangeInfo`` of the engine symbols (all configured by default).

        Weight 20, unsigned; :func:`.filters.parse_symbol_filters` and
        :func:`.instruments.parse_exchange_info` read the answer.
        """
        wanted = [self.venue_symbols[s] for s in (symbols or self.instruments)]
        listed = orjson.dumps(wanted).decode()
        query = f"symbols={quote(listed, safe='')}"
        return BinanceRequest("GET", "/api/v3/exchangeInfo", query, None, (), 20)

    def subscribe_user_stream(self, request_id: str | int, timestamp_ms: int) -> str:
        """The WebSocket API text frame ``userDataStream.subscribe.signature`` (weight 2).

        Parameters ``apiKey``, ``recvWindow``, ``timestamp`` and
        ``signature``, signed over the others sorted by name (the WebSocket
        API's "SIGNED request security"); the answer is a
        :class:`Subscribed` (:meth:`parse_user_stream`).
        """
        params: dict[str, object] = {
            "apiKey": self._api_key,
            "recvWindow": self.recv_window_ms,
            "timestamp": timestamp_ms,
        }
        payload = "&".join(f"{name}={params[name]}" for name in sorted(params))
        params["signature"] = self.signer.sign(payload)
        request = {"id": request_id, "method": "userDataStream.subscribe.signature"}
        request["params"] = params  # type: ignore[assignment]
        # Typed: the compiled build type-checks without orjson's stubs.
        text: str = orjson.dumps(request).decode()
        return text

    def unsubscribe_user_stream(
        self, request_id: str | int, subscription_id: int | None = None
    ) -> str:
        """The text frame ``userDataStream.unsubscribe`` (weight 2): one subscription, or all."""
        request: dict[str, object] = {"id": request_id, "method": "userDataStream.unsubscribe"}
        if subscription_id is not None:
            request["params"] = {"subscriptionId": subscription_id}
        text: str = orjson.dumps(request).decode()
        return text

    # -- answers ------------------------------------------------------------------------

    def _instrument(self, venue_symbol: object, what: str) -> tuple[str, Instrument]:
        symbol = self.engine_symbols.get(venue_symbol) if type(venue_symbol) is str else None
        if symbol is None:
            raise UnreadableAnswer(
                f"binance {what}: symbol {venue_symbol!r} is not traded here"[:200]
            )
        return symbol, self.instruments[symbol]

    def _average(
        self, instrument: Instrument, filled: int, quote_text: object, what: str
    ) -> Price | None:
        """The exact average price of ``filled`` lots that cost ``quote_text``, in ticks."""
        if not filled:
            return None
        quote_amount = _amount(quote_text, "cummulativeQuoteQty", what)
        if quote_amount < 0:
            # "For some historical orders cummulativeQuoteQty will be < 0, meaning the
            # data is not available at this time": the answer says nothing of the price.
            return None
        unit = Fraction(Decimal(instrument.tick_size)) * Fraction(Decimal(instrument.lot_size))
        average = quote_amount / unit / filled
        if average <= 0 or average > MAX_UNITS:
            raise UnreadableAnswer(f"binance {what}: an average of {average} ticks"[:200])
        return average.numerator if average.denominator == 1 else average

    def _fee(
        self,
        symbol: str,
        instrument: Instrument,
        amount: object,
        asset: object,
        what: str,
        price: int,
        lots: int,
    ) -> tuple[int | None, str | None]:
        """A commission as a fee in tick*lot units, or None and why it has no value.

        In the quote asset it is exact; in the base asset it is valued at
        the fill's ``price`` (ticks); in another asset at ``fee_conversion``'s
        price for it in the quote asset; each rounded up to a whole unit (a
        fee is never understated). Otherwise None: the fill carries the
        venue's amount and asset unconverted (no rate is charged instead).
        A fee in the quote or the base asset above the fill's value is no
        commission (:class:`UnreadableAnswer`).
        """
        commission = _amount(amount, "commission", what)
        if commission < 0:
            raise UnreadableAnswer(f"binance {what}: a negative commission {amount!r}")
        if not commission:
            return 0, None
        notional = price * lots
        quote_asset = self.quote_assets.get(symbol)
        assert isinstance(amount, str)
        if quote_asset is not None and asset == quote_asset:
            try:
                fee = fee_to_units(amount, instrument.tick_size, instrument.lot_size)
            except ValueError:
                fee = notional + 1
            if fee > notional:
                raise UnreadableAnswer(
                    f"binance {what}: commission {amount!r} above the fill's value"[:200]
                )
            return fee, None
        if type(asset) is not str or not asset or len(asset) > 20:
            raise UnreadableAnswer(f"binance {what}: commission asset {asset!r}"[:200])
        if quote_asset is None:
            return None, f"{amount} {asset}, the quote asset of {symbol} is not known"
        if asset == self.base_assets.get(symbol):
            # amount * (price * tick) quote = amount * price / lot units of tick*lot.
            if commission > Fraction(lots) * Fraction(Decimal(instrument.lot_size)):
                raise UnreadableAnswer(
                    f"binance {what}: commission {amount!r} above the fill's quantity"[:200]
                )
            exact = commission * price / Fraction(Decimal(instrument.lot_size))
            return -(-exact.numerator // exact.denominator), None
        rate = self.fee_conversion.get(f"{asset}/{quote_asset}")
        if rate is not None:
            unit = Fraction(Decimal(instrument.tick_size)) * Fraction(Decimal(instrument.lot_size))
            exact = commission * rate / unit
            return -(-exact.numerator // exact.denominator), None
        return None, f"{amount} {asset}, no fees.conversion for {asset}/{quote_asset}"

    def parse_order(
        self,
        body: bytes | object,
        client_order_id: str | None = None,
        symbol: str | None = None,
    ) -> OrderAnswer:
        """One order answer of ``POST``, ``GET`` or ``DELETE /api/v3/order``.

        ``client_order_id`` and ``symbol`` (engine), when given, must be the
        answer's. The order's id is ``clientOrderId``, or for a cancel's
        answer ``origClientOrderId``. ``executedQty`` becomes the filled
        lots, ``cummulativeQuoteQty / executedQty`` the exact average in
        ticks (a Fraction between ticks), each ``fills`` entry of a ``FULL``
        answer a :class:`VenueFill` (its trade id the fill id). Raises
        :class:`UnreadableAnswer` for anything outside the documented
        answer or its bounds.
        """
        what = "order"
        document = _decode(body, what)
        if not isinstance(document, dict):
            raise UnreadableAnswer("binance order: the answer is not a JSON object")
        engine_symbol, instrument = self._instrument(document.get("symbol"), what)
        if symbol is not None and engine_symbol != symbol:
            raise UnreadableAnswer(f"binance order: symbol {engine_symbol!r} is not {symbol!r}")
        id_key = "origClientOrderId" if "origClientOrderId" in document else "clientOrderId"
        cid = _client_id(document, id_key, what)
        if client_order_id is not None and cid != client_order_id:
            raise UnreadableAnswer(f"binance order: {id_key} {cid!r} is not the order's"[:200])
        order_id = _id(document, "orderId", what)
        status_text = document.get("status")
        mapped = STATUSES.get(status_text) if type(status_text) is str else None
        if mapped is None:
            raise UnreadableAnswer(
                f"binance order: status {status_text!r} is not one we place"[:200]
            )
        assert isinstance(status_text, str)
        status, reason = mapped
        side = _side(document.get("side"), "side", what)
        quantity = _lots(instrument, document.get("origQty"), "origQty", what)
        filled = _lots(instrument, document.get("executedQty"), "executedQty", what)
        _check_progress(status_text, filled, quantity, what)
        if status is OrderStatus.NEW and filled and status_text == "PENDING_CANCEL":
            status = OrderStatus.PARTIALLY_FILLED
        quote_text = document.get("cummulativeQuoteQty")
        average = self._average(instrument, filled, quote_text, what)
        report = OrderReport(cid, status, filled, average, str(order_id), reason)
        raw_fills = document.get("fills")
        if raw_fills is None:
            return OrderAnswer(report, (), order_id)
        if not isinstance(raw_fills, list) or len(raw_fills) > 10_000:
            raise UnreadableAnswer("binance order: fills is not a list")
        fills = []
        trade_ids: set[int] = set()
        fill_lots = 0
        fill_quote = 0
        for entry in raw_fills:
            if not isinstance(entry, dict):
                raise UnreadableAnswer("binance order: a fill is not a JSON object")
            trade_id = _id(entry, "tradeId", "order fill")
            if trade_id in trade_ids:
                # Two fills under one trade id: the ledger would keep one, the sum both.
                raise UnreadableAnswer(f"binance order: trade {trade_id} listed twice")
            trade_ids.add(trade_id)
            price = _ticks(instrument, entry.get("price"), "price", "order fill")
            lots = _lots(instrument, entry.get("qty"), "qty", "order fill")
            if lots <= 0:
                raise UnreadableAnswer(f"binance order fill {trade_id}: qty {entry.get('qty')!r}")
            fee, note = self._fee(
                engine_symbol,
                instrument,
                entry.get("commission"),
                entry.get("commissionAsset"),
                "order fill",
                price,
                lots,
            )
            fill_lots += lots
            fill_quote += price * lots
            fill = FillReport(cid, price, lots, trade_id, engine_symbol, side, fee)
            fill.venue_fee, fill.fee_asset = _venue_fee(entry.get("commission"), entry)
            fills.append(VenueFill(fill, note))
        # A FULL answer lists every fill the order made as it arrived, and its
        # cumulative figures are their sums: answers that disagree with themselves
        # are read back rather than believed in part.
        if fill_lots != filled:
            raise UnreadableAnswer(
                f"binance order: fills of {fill_lots} lots, executedQty {filled} lots"
            )
        if average is not None:
            unit = Fraction(Decimal(instrument.tick_size)) * Fraction(Decimal(instrument.lot_size))
            quote_amount = average * filled * unit
            if abs(quote_amount - fill_quote * unit) > QUOTE_ROUNDING * len(fills):
                raise UnreadableAnswer(
                    f"binance order: cummulativeQuoteQty {quote_text!r} is not the fills' sum"[:200]
                )
        return OrderAnswer(report, tuple(fills), order_id)

    def parse_open_orders(self, body: bytes | object) -> list[OrderAnswer]:
        """A ``GET /api/v3/openOrders`` answer: each open order of a symbol traded here.

        Orders of other symbols are left out (another process's). Raises
        :class:`UnreadableAnswer` for a body that is not a list, an entry
        of ours outside the documented answer, or one order listed twice
        (by client order id or order id).
        """
        document = _decode(body, "openOrders")
        if not isinstance(document, list) or len(document) > 100_000:
            raise UnreadableAnswer("binance openOrders: the answer is not a list")
        answers = []
        listed: set[tuple[str, str]] = set()
        order_ids: set[int] = set()
        for entry in document:
            traded = isinstance(entry, dict) and type(entry.get("symbol")) is str
            if traded and entry["symbol"] not in self.engine_symbols:
                continue
            answer = self.parse_order(entry)
            # The venue keeps one open order per client order id: a second is not its list.
            key = (entry["symbol"], answer.report.client_order_id)
            assert answer.order_id is not None
            if key in listed or answer.order_id in order_ids:
                raise UnreadableAnswer(
                    f"binance openOrders: order {answer.report.client_order_id!r} listed twice"
                )
            listed.add(key)
            order_ids.add(answer.order_id)
            answers.append(answer)
        return answers

    def parse_my_trades(
        self, body: bytes | object, symbol: str, client_order_ids: Mapping[int, str]
    ) -> TradesPage:
        """A ``GET /api/v3/myTrades`` answer of engine ``symbol``: its fills.

        A trade names its order by the venue's ``orderId``: ``client_order_ids``
        maps those the caller knows (from order answers) to client order
        ids; trades of other orders are left out and their order ids
        returned. Fill id = the trade's ``id``; side from ``isBuyer``; fee as
        :class:`VenueFill` says. Raises :class:`UnreadableAnswer` for a body
        that is not a list or an entry outside the documented answer.
        """
        what = "myTrades"
        document = _decode(body, what)
        if not isinstance(document, list) or len(document) > 100_000:
            raise UnreadableAnswer("binance myTrades: the answer is not a list")
        if symbol not in self.instruments:
            raise ValueError(f"no instrument {symbol!r}")
        instrument = self.instruments[symbol]
        venue_symbol = self.venue_symbols[symbol]
        fills: list[VenueFill] = []
        unknown: set[int] = set()
        last: int | None = None
        # Trade id -> the entry as sent; order id -> its side: one page must agree with itself.
        seen: dict[int, dict[str, Any]] = {}
        sides: dict[int, bool] = {}
        for entry in document:
            if not isinstance(entry, dict):
                raise UnreadableAnswer("binance myTrades: a trade is not a JSON object")
            trade_id = _id(entry, "id", what)
            last = trade_id if last is None or trade_id > last else last
            if entry.get("symbol") != venue_symbol:
                raise UnreadableAnswer(f"binance myTrades {trade_id}: another symbol's trade")
            earlier = seen.get(trade_id)
            if earlier is not None:
                if earlier != entry:
                    raise UnreadableAnswer(f"binance myTrades {trade_id}: two different trades")
                continue
            seen[trade_id] = entry
            order_id = _id(entry, "orderId", what)
            buyer, maker = entry.get("isBuyer"), entry.get("isMaker")
            if type(buyer) is not bool or type(maker) is not bool:
                raise UnreadableAnswer(f"binance myTrades {trade_id}: isBuyer/isMaker")
            if sides.setdefault(order_id, buyer) is not buyer:
                raise UnreadableAnswer(
                    f"binance myTrades {trade_id}: order {order_id} on both sides"
                )
            cid = client_order_ids.get(order_id)
            if cid is None:
                unknown.add(order_id)
                continue
            price = _ticks(instrument, entry.get("price"), "price", what)
            lots = _lots(instrument, entry.get("qty"), "qty", what)
            if lots <= 0:
                raise UnreadableAnswer(f"binance myTrades {trade_id}: qty {entry.get('qty')!r}")
            fee, note = self._fee(
                symbol,
                instrument,
                entry.get("commission"),
                entry.get("commissionAsset"),
                what,
                price,
                lots,
            )
            side = Side.BUY if buyer else Side.SELL
            fill = FillReport(cid, price, lots, trade_id, symbol, side, fee)
            fill.venue_fee, fill.fee_asset = _venue_fee(entry.get("commission"), entry)
            fills.append(VenueFill(fill, note, maker))
        return TradesPage(fills, unknown, last)

    def parse_user_stream(self, message: bytes | str | object) -> UserStreamMessage:
        """One text frame of the WebSocket API connection carrying the user data stream.

        An answer to a request (:class:`Subscribed`, :class:`RequestAnswered`,
        :class:`RequestFailed`) or an event: ``executionReport`` ->
        :class:`ExecutionUpdate` (its fill when ``x`` is ``TRADE``: fill id
        ``t``, price ``L``, lots ``l``, fee from ``n``/``N``; for a cancel the
        order's id is ``C``, the cancel's own is ``c``),
        ``eventStreamTerminated`` and ``serverShutdown`` ->
        :class:`StreamEnded`, anything else -> :class:`OtherEvent`. Raises
        :class:`UnreadableAnswer` for a frame outside the documented ones.
        """
        document = _decode(message, "user stream")
        if not isinstance(document, dict):
            raise UnreadableAnswer("binance user stream: a frame that is not a JSON object")
        event = document.get("event")
        if isinstance(event, dict):
            raw_subscription = document.get("subscriptionId")
            if raw_subscription is not None and (
                type(raw_subscription) is not int or not 0 <= raw_subscription < 2**32
            ):
                raise UnreadableAnswer(f"binance user stream: subscriptionId {raw_subscription!r}")
            return self._event(event, raw_subscription)
        if "status" not in document or "id" not in document:
            raise UnreadableAnswer("binance user stream: neither an event nor an answer")
        request_id, status = document["id"], document["status"]
        if type(status) is not int or not 100 <= status <= 599:
            raise UnreadableAnswer(f"binance user stream: status {status!r}"[:200])
        if status != 200:
            error = document.get("error")
            return RequestFailed(request_id, classify_error(status, error))
        result = document.get("result")
        if isinstance(result, dict) and "subscriptionId" in result:
            subscription = result["subscriptionId"]
            if type(subscription) is not int or not 0 <= subscription < 2**32:
                raise UnreadableAnswer(f"binance user stream: subscriptionId {subscription!r}")
            return Subscribed(request_id, subscription)
        return RequestAnswered(request_id)

    def _event(self, event: Mapping[str, Any], subscription: int | None) -> UserStreamMessage:
        kind = event.get("e")
        if kind in ("eventStreamTerminated", "serverShutdown"):
            return StreamEnded(subscription, kind)
        if kind != "executionReport":
            return OtherEvent(kind if type(kind) is str else "unknown")
        what = "executionReport"
        venue_symbol = event.get("s")
        if type(venue_symbol) is not str or venue_symbol not in self.engine_symbols:
            return OtherEvent("unknown_symbol")
        symbol, instrument = self._instrument(event.get("s"), what)
        execution = event.get("x")
        if type(execution) is not str or len(execution) > 32:
            raise UnreadableAnswer(f"binance executionReport: x {execution!r}"[:200])
        cid = _client_id(event, "c", what)
        original = event.get("C")
        if execution == "CANCELED" and type(original) is str and original:
            # A cancel's report carries the cancel request's own id in c, the order's in C.
            cid = _client_id(event, "C", what)
        order_id = _id(event, "i", what)
        event_time = event.get("E")
        if type(event_time) is not int or not 0 <= event_time < 2**53:
            raise UnreadableAnswer(f"binance executionReport: E {event_time!r}"[:200])
        status_text = event.get("X")
        mapped = STATUSES.get(status_text) if type(status_text) is str else None
        if mapped is None:
            raise UnreadableAnswer(f"binance executionReport: X {status_text!r}"[:200])
        assert isinstance(status_text, str)
        status, reason = mapped
        side = _side(event.get("S"), "S", what)
        quantity = _lots(instrument, event.get("q"), "q", what)
        filled = _lots(instrument, event.get("z"), "z", what)
        _check_progress(status_text, filled, quantity, what)
        if status is OrderStatus.NEW and filled and status_text == "PENDING_CANCEL":
            status = OrderStatus.PARTIALLY_FILLED
        if status is OrderStatus.REJECTED:
            rejected = event.get("r")
            reason = f"binance {rejected}"[:_MAX_TEXT] if type(rejected) is str else None
        average = self._average(instrument, filled, event.get("Z"), what)
        report = OrderReport(cid, status, filled, average, str(order_id), reason)
        fill: VenueFill | None = None
        if execution == "TRADE":
            trade_id = _id(event, "t", what)
            price = _ticks(instrument, event.get("L"), "L", what)
            lots = _lots(instrument, event.get("l"), "l", what)
            if lots <= 0 or lots > filled:
                # A trade fills more than nothing and at most the order's cumulative fill.
                raise UnreadableAnswer(f"binance executionReport {trade_id}: l {event.get('l')!r}")
            maker = event.get("m")
            if type(maker) is not bool:
                raise UnreadableAnswer(f"binance executionReport {trade_id}: m {maker!r}")
            fee, note = self._fee(
                symbol, instrument, event.get("n"), event.get("N"), what, price, lots
            )
            report_fill = FillReport(cid, price, lots, trade_id, symbol, side, fee)
            report_fill.venue_fee, report_fill.fee_asset = _venue_fee(
                event.get("n"), {"commissionAsset": event.get("N")}
            )
            fill = VenueFill(report_fill, note, maker)
        return ExecutionUpdate(subscription, order_id, execution, event_time, report, fill, symbol)
