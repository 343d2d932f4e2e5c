"""Order-API dialects: what the gateway's requests look like and what each answer means.

The gateway (:mod:`trading_engine.io.gateway`) keeps one set of rules for
every venue: the request scheduler, the circuit breaker, settle-by-read-back,
re-send only after a read answered "not found", the resting-order audit and
the fills poll. What differs between venues is below those rules and lives
in an :class:`OrderApiDialect`:

* each request, built when it is sent (a venue that signs a timestamp into
  every request needs the time of sending): :class:`OrderRequest`;
* what an answer means for the request, one :class:`Verdict` out of the
  gateway's outcome table (:class:`AnswerKind`);
* the answers' bodies read into typed reports (:mod:`trading_engine.core.reports`).

:class:`OwnApiDialect` speaks the project's own exchange API
(``POST /orders``, ``GET``/``DELETE /orders/{id}``, ``GET /orders?status=open``,
``GET /fills?since=N``). Venue dialects live in :mod:`trading_engine.venues`
(io never imports them): the engine layer picks one from ``[gateway] venue``
and hands it to the gateway.

Fills are read in *streams*, each with its own integer cursor (the highest
fill id read): the own API has one log for every symbol (the stream
:data:`ALL_SYMBOLS`); a venue whose fill ids count per symbol has one stream
per symbol, named by the engine symbol.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from enum import StrEnum
from typing import Final, NamedTuple, Protocol

import orjson

from ..core.errors import UnreadableAnswer
from ..core.instruments import Instrument
from ..core.orders import Order, OrderType, Price, TimeInForce
from ..core.protocol import Side
from ..core.reports import MAX_FILL_ID, FillReport, OrderReport, parse_fill, parse_order_body

__all__ = [
    "ALL_SYMBOLS",
    "DECIMAL_TEXTS_MAX",
    "AnswerKind",
    "FillEntry",
    "OrderApiDialect",
    "OrderRequest",
    "OwnApiDialect",
    "ParsedOrder",
    "SigningClock",
    "Verdict",
]

#: The fills stream of a venue with one fills log for every symbol (the own API).
ALL_SYMBOLS: Final = "*"
#: Decimal strings kept for order bodies before the cache starts again.
DECIMAL_TEXTS_MAX: Final = 65_536


class OrderRequest(NamedTuple):
    """One request as it goes on the wire.

    ``target`` is the path with its query (``/orders/abc``,
    ``/api/v3/order?symbol=...``); ``body`` the bytes of a body (None: none);
    ``headers`` what to add to the client's own (an API key, a content type);
    ``weight`` what the venue counts it as against its request-weight limit.
    """

    method: str
    target: str
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    weight: int = 1
    #: Builds the request again as it leaves (a signed request carries its time).
    rebuild: Callable[[], OrderRequest] | None = None


class AnswerKind(StrEnum):
    """The gateway's outcome table: what one answer means for its request."""

    #: The venue answered with what was asked (an order body, a list).
    OK = "ok"
    #: The venue does not hold the order (own API: 404).
    NOT_FOUND = "not_found"
    #: The venue refused the request and did nothing (an order: ``rejected``, reason kept).
    REFUSED = "refused"
    #: The answer says nothing about the request's outcome (5xx, "status unknown").
    UNKNOWN = "unknown"
    #: Over the venue's rate limit (429): the whole venue pauses for Retry-After.
    RATE_LIMITED = "rate_limited"
    #: The venue banned this client for a while (418): trading halts.
    BANNED = "banned"
    #: The request's timestamp fell outside the venue's window: re-sync the clock.
    CLOCK_SKEW = "clock_skew"
    #: The venue refused the API key or the signature: trading halts, never retried.
    AUTH_FAILED = "auth_failed"


class Verdict(NamedTuple):
    """What one answer means: its :class:`AnswerKind` and, for a refusal, the reason kept.

    ``banned_until_s``: the end of a ban (wall-clock seconds) when the venue said.
    """

    kind: AnswerKind
    reason: str = ""
    banned_until_s: float | None = None


class ParsedOrder(NamedTuple):
    """An order answer read: the order's report and the fills it lists (if any)."""

    report: OrderReport
    fills: tuple[FillReport, ...] = ()


class FillEntry(NamedTuple):
    """One entry of a fills answer, read on its own.

    ``fill_id`` None: the entry has no readable id (it cannot move the
    cursor). ``fill`` None with no ``problem``: a fill that is not this
    process's to apply (a symbol it does not trade, an order it does not
    know). ``problem``: why a fill with an id could not be read; its
    ``client_order_id``, when known, is read back.
    """

    fill_id: int | None
    client_order_id: str | None
    fill: FillReport | None
    problem: str | None = None


class SigningClock(Protocol):
    """The venue's clock as a dialect that signs timestamps keeps it (one per venue).

    The gateway gives it its transport (:attr:`fetch`, when none is set:
    the body of a 200 answer to the dialect's :meth:`~OrderApiDialect.time_request`),
    measures it at start and every ``clock_check_s``, and re-measures it
    when an answer says a timestamp fell outside the venue's window.
    """

    #: ``GET`` the venue's time: the answer's body (None: not set yet).
    fetch: Callable[[], Awaitable[bytes]] | None
    #: Awaited before each sample's timing starts (None: nothing to wait for):
    #: the request's slot in the venue's budget, so a wait in the gateway's
    #: queue is never taken for network time in the round trip.
    slot: Callable[[], Awaitable[None]] | None

    @property
    def offset_ms(self) -> int | None:
        """The venue's clock minus this host's (ms), None before the first measurement."""

    def timestamp_ms(self) -> int:
        """The venue's time now (ms), for a signed request."""

    def problem(self, recv_window_ms: int) -> str | None:
        """Why requests signed on this clock would fall outside ``recv_window_ms``, or None."""

    async def measure(self) -> object:
        """Measure the offset; raises an :class:`~trading_engine.core.errors.EngineError`
        when no reading could be taken (the offset is kept)."""

    async def resync(self) -> object:
        """As :meth:`measure`, for an answer that said the timestamp was off (counted)."""


class OrderApiDialect(Protocol):
    """How one venue's order API is spoken (see the module docstring).

    Every ``parse_*`` raises :class:`~trading_engine.core.errors.UnreadableAnswer`
    for a body outside the venue's API or its bounds; request builders
    raise ``ValueError`` for an order the venue's rules cannot express.
    """

    #: ``own``, ``binance``: the ``[gateway] venue`` value.
    name: str
    #: Headers on every httpx request (a static API key, a content type).
    client_headers: Mapping[str, str]
    #: The new-order request's target and headers, pre-built on the fast path.
    fast_target: str
    fast_headers: tuple[tuple[str, str], ...]
    #: The fills streams, each with its own cursor (see the module docstring).
    fill_streams: tuple[str, ...]
    #: The shortest interval between fills polls the venue's weight allows (s).
    fills_poll_floor_s: float
    #: The receive window of a venue that signs a timestamp into requests (ms), else None.
    recv_window_ms: int | None
    #: Every reason :meth:`rule_refusal` gives (exported from 0).
    rule_reasons: tuple[str, ...]

    @property
    def clock(self) -> SigningClock | None:
        """The venue's clock that signs its requests' timestamps; None when it signs none."""

    def time_request(self) -> OrderRequest | None:
        """The request reading the venue's time; None when it signs no timestamp."""

    def rules_request(self) -> OrderRequest | None:
        """The request reading the venue's trading rules (filters); None when it has none.

        Read once before the engine trades (the gateway's first read); an
        order is then checked against them before it is sent
        (:meth:`rule_refusal`).
        """

    def load_rules(self, content: bytes) -> None:
        """Take the rules answer; raises ``UnreadableAnswer`` naming the symbol and field."""

    def rule_refusal(
        self, order: Order, reference_price: Price | None, open_orders: int | None
    ) -> str | None:
        """The venue rule ``order`` breaks (a reason such as ``price_filter_tick``), or None.

        ``reference_price``: ticks (the book's mid), None when unknown;
        ``open_orders``: the engine's open orders on the order's symbol.
        ``O(1)``; called only when :meth:`rules_request` is not None.
        """

    def used_weight_share(self, headers: Mapping[str, str]) -> float | None:
        """The share of the venue's request-weight limit an answer says is used, if it says."""

    def order_count_share(self, headers: Mapping[str, str]) -> float | None:
        """The share of the venue's 10-second order limit an answer says is used, if it says."""

    def new_order(self, order: Order) -> OrderRequest:
        """The request placing ``order`` (built now: signed now when the venue signs)."""

    def read_order(self, client_order_id: str, symbol: str) -> OrderRequest:
        """The request reading an order back by its client order id."""

    def cancel_order(self, client_order_id: str, symbol: str) -> OrderRequest:
        """The request canceling an order by its client order id."""

    def open_orders(self, symbols: Collection[str]) -> list[OrderRequest]:
        """The requests listing the open orders of ``symbols`` (engine symbols)."""

    def read_fills(self, stream: str, after: int) -> OrderRequest:
        """The request reading ``stream``'s fills with ids above ``after``."""

    def classify(self, status: int, headers: Mapping[str, str], content: bytes) -> Verdict:
        """What an answer means (any status). Never raises."""

    def parse_order(self, content: bytes, client_order_id: str, symbol: str) -> ParsedOrder:
        """An order answer (placement, read-back, cancel) for the order named."""

    def open_order_ids(self, content: bytes) -> set[str]:
        """The client order ids an open-orders answer lists."""

    def parse_fills(self, stream: str, content: bytes) -> list[FillEntry]:
        """A fills answer, entry by entry (a body that is not a list raises)."""

    def learn_orders(self, orders: Iterable[Order]) -> None:
        """Orders the ledger tracks (a venue naming orders by its own ids in fills needs them)."""

    def learn_order_id(self, venue_order_id: int, client_order_id: str) -> None:
        """The venue's id of an order (from its own stream of execution reports)."""

    def unresolved_orders(self, stream: str, content: bytes) -> list[tuple[int, OrderRequest]]:
        """Reads of the orders a fills answer names that the dialect cannot name yet.

        Each with the venue's order id. Until each is learned (or known
        missing), :meth:`parse_fills` stops before the first fill it cannot
        name: the cursor never passes a fill of an order not yet named.
        """

    def learn_order(self, venue_order_id: int, content: bytes | None) -> None:
        """Take the answer of one of :meth:`unresolved_orders`' reads (None: the venue
        does not know the order: its fills are nobody's here)."""

    # Reconciliation (engine.reconcile) reads the own API's documents: a venue
    # dialect writes its answers in that shape.

    def order_document(self, content: bytes, client_order_id: str, symbol: str) -> object:
        """An order answer as the own API's order body."""

    def open_order_documents(self, content: bytes) -> list[dict[str, object]]:
        """An open-orders answer as the own API's list of order bodies."""

    def fill_documents(self, stream: str, content: bytes) -> list[dict[str, object]]:
        """A fills answer as entries of the own API's fills log."""


class OwnApiDialect:
    """The project's own exchange API (docs/design.md, "The exchange API").

    ``api_key`` goes in ``X-API-Key`` on every request; ``instruments``
    by engine symbol. Order bodies are JSON (:meth:`order_body`).
    """

    name: str = "own"
    fast_target: str = "/orders"
    fill_streams: tuple[str, ...] = (ALL_SYMBOLS,)
    fills_poll_floor_s: float = 0.0
    recv_window_ms: int | None = None
    clock: SigningClock | None = None
    rule_reasons: tuple[str, ...] = ()

    def __init__(self, api_key: str, instruments: Mapping[str, Instrument]) -> None:
        self._instruments = instruments
        self.client_headers: Mapping[str, str] = {
            "X-API-Key": api_key,
            "Content-Type": "application/json",
        }
        self.fast_headers: tuple[tuple[str, str], ...] = (
            ("X-API-Key", api_key),
            ("Content-Type", "application/json"),
        )
        #: Quantities' and prices' decimal strings, by (symbol, is price, units); bounded.
        self.decimal_texts: dict[tuple[str, bool, int], bytes] = {}
        self._body_fields: dict[tuple[str, Side, OrderType, TimeInForce, bool], bytes] = {}

    def __repr__(self) -> str:
        return "OwnApiDialect()"

    # -- requests -------------------------------------------------------------------

    def new_order(self, order: Order) -> OrderRequest:
        return OrderRequest("POST", "/orders", self.order_body(order))

    def read_order(self, client_order_id: str, symbol: str) -> OrderRequest:
        return OrderRequest("GET", f"/orders/{client_order_id}")

    def cancel_order(self, client_order_id: str, symbol: str) -> OrderRequest:
        return OrderRequest("DELETE", f"/orders/{client_order_id}")

    def open_orders(self, symbols: Collection[str]) -> list[OrderRequest]:
        return [OrderRequest("GET", "/orders?status=open")]

    def read_fills(self, stream: str, after: int) -> OrderRequest:
        return OrderRequest("GET", f"/fills?since={after}")

    def order_body(self, order: Order) -> bytes:
        """The ``POST /orders`` JSON body.

        The fields an order shares with others of its symbol, side, type and
        time in force are encoded once, and so is each quantity and price
        (a bounded cache: strategies send few sizes, at prices near the
        last ones); the client order id (restricted to ``[A-Za-z0-9._:-]``)
        and the decimal strings need no escaping. One ``%`` format builds
        the body: no intermediate bytes on the hot path
        (``benchmarks/order_body.py``: a limit order's body 2.3x faster than
        formatting each decimal per order, 0.68 against 1.53 us).
        """
        symbol = order.symbol
        key = (symbol, order.side, order.type, order.time_in_force, order.post_only)
        fixed = self._body_fields.get(key)
        if fixed is None:
            fields: dict[str, object] = {
                "symbol": symbol,
                "side": order.side.value,
                "type": order.type.value,
                "time_in_force": order.time_in_force.value,
            }
            if order.post_only:
                # Only when asked for: a venue that does not know the field never sees it.
                fields["post_only"] = True
            fixed = self._body_fields[key] = orjson.dumps(fields)[1:-1]
        texts = self.decimal_texts
        size_key = (symbol, False, order.quantity)
        size = texts.get(size_key)
        if size is None:
            size = self._decimal_text(size_key)
        price = order.price
        if order.type is not OrderType.LIMIT:
            return b'{"client_order_id":"%s",%s,"quantity":"%s"}' % (
                order.client_order_id.encode(),
                fixed,
                size,
            )
        assert price is not None
        price_key = (symbol, True, price)
        price_text = texts.get(price_key)
        if price_text is None:
            price_text = self._decimal_text(price_key)
        return b'{"client_order_id":"%s",%s,"quantity":"%s","price":"%s"}' % (
            order.client_order_id.encode(),
            fixed,
            size,
            price_text,
        )

    def _decimal_text(self, key: tuple[str, bool, int]) -> bytes:
        """A quantity's or price's decimal string, rendered once and kept (bounded)."""
        symbol, is_price, units = key
        inst = self._instruments[symbol]
        text = (inst.format_price(units) if is_price else inst.format_size(units)).encode()
        texts = self.decimal_texts
        if len(texts) >= DECIMAL_TEXTS_MAX:
            texts.clear()
        texts[key] = text
        return text

    def time_request(self) -> OrderRequest | None:
        """The own API signs nothing: there is no clock to measure."""
        return None

    def rules_request(self) -> OrderRequest | None:
        """The own API publishes no trading rules: risk's checks are the engine's own."""
        return None

    def load_rules(self, content: bytes) -> None:
        raise UnreadableAnswer("the own API has no rules endpoint")

    def rule_refusal(
        self, order: Order, reference_price: Price | None, open_orders: int | None
    ) -> str | None:
        return None

    def used_weight_share(self, headers: Mapping[str, str]) -> float | None:
        """The own API has no weight headers."""
        return None

    def order_count_share(self, headers: Mapping[str, str]) -> float | None:
        """The own API has no order-count headers."""
        return None

    # -- answers --------------------------------------------------------------------

    def classify(self, status: int, headers: Mapping[str, str], content: bytes) -> Verdict:
        """200 ok, 404 not found, 401 the API key refused, 429 rate limited, 5xx unknown,
        any other refused."""
        if status == 200:
            return Verdict(AnswerKind.OK)
        if status == 404:
            return Verdict(AnswerKind.NOT_FOUND, _error(status, content))
        if status == 401:
            # A bad or missing key: every request refused alike, so trading halts
            # with one log line rather than refusing order after order in silence.
            return Verdict(AnswerKind.AUTH_FAILED, _error(status, content))
        if status == 429:
            return Verdict(AnswerKind.RATE_LIMITED)
        if status >= 500:
            return Verdict(AnswerKind.UNKNOWN, str(status))
        return Verdict(AnswerKind.REFUSED, _error(status, content))

    def parse_order(self, content: bytes, client_order_id: str, symbol: str) -> ParsedOrder:
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise UnreadableAnswer(f"not JSON: {exc}"[:200]) from None
        return ParsedOrder(parse_order_body(body, self._instruments[symbol], client_order_id))

    def open_order_ids(self, content: bytes) -> set[str]:
        """The client order ids an open-orders answer lists (any symbol)."""
        return {
            body["client_order_id"]
            for body in _json_list(content)
            if isinstance(body, dict) and type(body.get("client_order_id")) is str
        }

    def parse_fills(self, stream: str, content: bytes) -> list[FillEntry]:
        entries: list[FillEntry] = []
        for entry in _json_list(content):
            fill_id = entry.get("fill_id") if isinstance(entry, dict) else None
            if type(fill_id) is not int or not 0 <= fill_id <= MAX_FILL_ID:
                problem = f"fill without a readable id: {entry!r}"
                entries.append(FillEntry(None, None, None, problem))
                continue
            assert isinstance(entry, dict)
            cid = entry.get("client_order_id")
            try:
                fill = parse_fill(entry, self._instruments)
            except UnreadableAnswer as exc:
                entries.append(
                    FillEntry(fill_id, cid if isinstance(cid, str) else None, None, str(exc))
                )
                continue
            entries.append(FillEntry(fill_id, fill.client_order_id if fill else None, fill))
        return entries

    def learn_orders(self, orders: Iterable[Order]) -> None:
        """The own API names orders by client order id everywhere: nothing to learn."""

    def learn_order_id(self, venue_order_id: int, client_order_id: str) -> None:
        """Nothing to learn (see :meth:`learn_orders`)."""

    def unresolved_orders(self, stream: str, content: bytes) -> list[tuple[int, OrderRequest]]:
        return []

    def learn_order(self, venue_order_id: int, content: bytes | None) -> None:
        """Nothing to learn (see :meth:`learn_orders`)."""

    def order_document(self, content: bytes, client_order_id: str, symbol: str) -> object:
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise UnreadableAnswer(f"not JSON: {exc}"[:200]) from None

    def open_order_documents(self, content: bytes) -> list[dict[str, object]]:
        return [body for body in _json_list(content) if isinstance(body, dict)]

    def fill_documents(self, stream: str, content: bytes) -> list[dict[str, object]]:
        return _json_list(content)  # type: ignore[return-value]


def _json_list(content: bytes) -> list[object]:
    try:
        document = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise UnreadableAnswer(f"not JSON: {exc}"[:200]) from None
    if not isinstance(document, list):
        raise UnreadableAnswer("the answer is not a list")
    return document


def _error(status: int, content: bytes) -> str:
    """A refusal's reason: the status and the own API's ``error`` text."""
    try:
        body = orjson.loads(content)
        return f"{status}: {body.get('error', '')}"[:200]
    except (orjson.JSONDecodeError, AttributeError):
        return f"{status}"
