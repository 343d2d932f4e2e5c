"""Binance spot as the gateway's order-API dialect, on top of :mod:`.orders`'s codec.

:class:`BinanceOrderDialect` is an :class:`~trading_engine.io.order_api.OrderApiDialect`:
the gateway keeps its rules (scheduler, breaker, settle-by-read-back, re-send
only after a read answered "not found", the resting-order audit, the fills
poll) and this module says how each request looks on Binance and what each
answer means:

* every signed request is built when it leaves: ``timestamp`` is the
  venue's clock (:class:`~.clock.VenueClock`: this host's wall clock plus
  the offset measured from ``GET /api/v3/time`` round trips), ``recvWindow``
  the configured window;
* answers map onto the gateway's outcome table through the codec's
  :func:`~.orders.classify_error`: refusals keep the venue's code and
  message (``binance -2010: Account has insufficient balance ...``), a 5xx
  or an "execution status unknown" code is unknown and settled by reading
  back by ``origClientOrderId``, ``-2011``/``-2013`` are "not found", 429
  pauses the venue, 418 halts until the ban ends, ``-1021`` re-measures the
  clock, ``-1022``/``-2014``/``-2015`` halt;
* fills come from ``GET /api/v3/myTrades`` per symbol (trade ids count per
  symbol: one fills stream, one cursor, per engine symbol, read from
  ``fromId = cursor + 1``). A trade names its order by the venue's
  ``orderId``; the dialect learns each order's id from every order answer
  (and from the ledger's orders at start), and a trade of an order it
  cannot name is resolved by reading that order by ``orderId``
  (:meth:`unresolved_orders`);
* the ``X-MBX-USED-WEIGHT-1M`` header says how much of the minute's
  request weight is used (:meth:`used_weight_share`); the fills poll is
  never more frequent than the weight allows (:attr:`fills_poll_floor_s`).

Reconciliation reads the project's own API documents: this dialect writes
Binance's answers in that shape (:meth:`order_document`, :meth:`fill_documents`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from decimal import Decimal
from functools import partial
from typing import Final

import orjson

from ...core.errors import ConfigError, InvalidValue, UnreadableAnswer
from ...core.orders import Order, Price
from ...core.protocol import Side
from ...core.reports import MAX_FILL_ID, FillReport
from ...io.order_api import (
    AnswerKind,
    FillEntry,
    OrderRequest,
    ParsedOrder,
    Verdict,
)
from .clock import VenueClock
from .filters import FILTER_REASONS, SymbolFilters, parse_symbol_filters
from .orders import BinanceRequest, BinanceSpotCodec, ErrorKind, classify_error, parse_usage

__all__ = [
    "MY_TRADES_WEIGHT",
    "ORDER_LIMIT_10S",
    "POLL_WEIGHT_SHARE",
    "WEIGHT_LIMIT_1M",
    "BinanceOrderDialect",
]

#: Binance spot's request-weight limit per minute and IP (``exchangeInfo``'s
#: ``REQUEST_WEIGHT`` rate limit, 6,000 since 2023-08-25).
WEIGHT_LIMIT_1M: Final = 6000
#: Binance spot's orders per 10 s and account (``exchangeInfo``'s ``ORDERS`` limit).
ORDER_LIMIT_10S: Final = 100
#: ``GET /api/v3/myTrades``'s weight.
MY_TRADES_WEIGHT: Final = 20
#: The share of the weight limit the fills poll may use on its own.
POLL_WEIGHT_SHARE: Final = 0.25
#: Venue order ids remembered (order id -> client order id) before the oldest go.
_ORDER_IDS_MAX: Final = 100_000
#: Limit order shapes whose static filter verdicts are kept (then the cache starts over).
_VERDICTS_MAX: Final = 65_536
_UNSEEN: Final = "unseen"
_KINDS: Final = {kind.value: AnswerKind(kind.value) for kind in ErrorKind}
_FORM: Final = "application/x-www-form-urlencoded"
_OK: Final = Verdict(AnswerKind.OK)
_SIDES: Final = {"BUY": "buy", "SELL": "sell"}
_TYPES: Final = {"LIMIT": "limit", "LIMIT_MAKER": "limit", "MARKET": "market"}


class BinanceOrderDialect:
    """The gateway's dialect for Binance spot (see the module docstring).

    ``codec`` builds and reads every message (its instruments are the
    engine's); ``api_key`` is the key the codec sends (for the fast path's
    pre-built head); ``clock`` is the venue's clock that stamps every
    signed request (default: a new one, whose transport the gateway sets);
    ``weight_limit_1m`` the venue's request-weight limit per minute,
    ``order_limit_10s`` the account's order limit per 10 seconds.
    """

    name: str = "binance"
    fast_target: str = "/api/v3/order"
    rule_reasons: tuple[str, ...] = (*FILTER_REASONS, "venue_rules_unknown")

    def __init__(
        self,
        codec: BinanceSpotCodec,
        api_key: str,
        *,
        clock: VenueClock | None = None,
        weight_limit_1m: int = WEIGHT_LIMIT_1M,
        order_limit_10s: int = ORDER_LIMIT_10S,
    ) -> None:
        self.codec = codec
        #: The venue's clock: every signed request's ``timestamp``.
        self.clock: VenueClock = clock if clock is not None else VenueClock(None)
        self.weight_limit_1m = weight_limit_1m
        self.order_limit_10s = order_limit_10s
        self.client_headers: Mapping[str, str] = {}
        self.fast_headers: tuple[tuple[str, str], ...] = (
            ("X-MBX-APIKEY", api_key),
            ("Content-Type", _FORM),
        )
        self.fill_streams: tuple[str, ...] = tuple(sorted(codec.instruments))
        self.recv_window_ms: int | None = codec.recv_window_ms
        # myTrades at MY_TRADES_WEIGHT per symbol, within POLL_WEIGHT_SHARE of the limit.
        per_s = weight_limit_1m * POLL_WEIGHT_SHARE / 60
        self.fills_poll_floor_s: float = len(self.fill_streams) * MY_TRADES_WEIGHT / per_s
        #: Venue order id -> client order id, learned from answers (bounded).
        self._order_ids: dict[int, str] = {}
        #: Each engine symbol's filters, from :meth:`load_rules`.
        self._filters: dict[str, SymbolFilters] = {}
        #: A limit order shape's verdict on the filters that depend on it alone.
        self._static_verdicts: dict[tuple[str, Side, bool, int, int], str | None] = {}

    def __repr__(self) -> str:
        return f"BinanceOrderDialect({self.codec!r})"

    # -- time ---------------------------------------------------------------------------

    def timestamp_ms(self) -> int:
        """The venue's clock now, as this host estimates it (ms)."""
        return self.clock.timestamp_ms()

    # -- trading rules ------------------------------------------------------------------

    def rules_request(self) -> OrderRequest | None:
        """``GET /api/v3/exchangeInfo`` of the engine's symbols (weight 20, unsigned)."""
        return _request(self.codec.exchange_info())

    def load_rules(self, content: bytes) -> None:
        """Take exchangeInfo: each symbol's filters, and its assets where the config names none.

        Raises :class:`~trading_engine.core.errors.UnreadableAnswer` naming
        the symbol and field (:func:`.filters.parse_symbol_filters`), and
        :class:`~trading_engine.core.errors.ConfigError` naming the key
        when the venue's assets of a symbol differ from the configured ones
        (no retry makes them agree).
        """
        codec = self.codec
        by_venue = {codec.venue_symbols[s]: codec.instruments[s] for s in codec.instruments}
        filters = parse_symbol_filters(content, by_venue)
        for symbol, venue_symbol in codec.venue_symbols.items():
            found = filters[venue_symbol]
            for assets, theirs, what in (
                (codec.quote_assets, found.quote_asset, "quote_asset"),
                (codec.base_assets, found.base_asset, "base_asset"),
            ):
                ours = assets.setdefault(symbol, theirs)
                if ours != theirs:
                    message = (
                        f"instruments[{symbol}].{what}: binance lists {venue_symbol} with "
                        f"{what} {theirs!r}, the configuration says {ours!r}"
                    )
                    raise ConfigError(message, [message])
        self._filters = {s: filters[v] for s, v in codec.venue_symbols.items()}
        self._static_verdicts.clear()

    def rule_refusal(
        self, order: Order, reference_price: Price | None, open_orders: int | None
    ) -> str | None:
        """The first of the symbol's filters ``order`` fails (:meth:`.filters.SymbolFilters.check`).

        ``venue_rules_unknown`` before :meth:`load_rules` has read the symbol's filters.
        """
        found = self._filters.get(order.symbol)
        if found is None:
            return "venue_rules_unknown"
        price = order.price
        if price is None:  # a market order's notional needs the reference: checked whole
            return found.check(
                order.side,
                order.type,
                order.quantity,
                None,
                post_only=order.post_only,
                reference_price=reference_price,
                open_orders=open_orders,
            )
        # A limit order's verdict on every filter but the market-bound ones
        # depends on the order alone: computed once per order shape.
        key = (order.symbol, order.side, order.post_only, order.quantity, price)
        static = self._static_verdicts.get(key, _UNSEEN)
        if static is _UNSEEN:
            static = found.check(
                order.side, order.type, order.quantity, price, post_only=order.post_only
            )
            verdicts = self._static_verdicts
            if len(verdicts) >= _VERDICTS_MAX:
                verdicts.clear()
            verdicts[key] = static
        if static is not None:
            return static
        return found.check_dynamic(order.side, price, reference_price, open_orders)

    def time_request(self) -> OrderRequest | None:
        return _request(self.codec.server_time())

    # -- requests -----------------------------------------------------------------------

    def new_order(self, order: Order) -> OrderRequest:
        # The hot path: the signed body straight into the gateway's request.
        codec = self.codec
        body = codec.new_order_body(order, self.clock.timestamp_ms())
        return OrderRequest("POST", "/api/v3/order", body, codec.form_headers, 1)

    def read_order(self, client_order_id: str, symbol: str) -> OrderRequest:
        request = self.codec.query_order(symbol, client_order_id, self.timestamp_ms())
        return _request(request, partial(self.read_order, client_order_id, symbol))

    def cancel_order(self, client_order_id: str, symbol: str) -> OrderRequest:
        request = self.codec.cancel_order(symbol, client_order_id, self.timestamp_ms())
        return _request(request, partial(self.cancel_order, client_order_id, symbol))

    def open_orders(self, symbols: Collection[str]) -> list[OrderRequest]:
        return [self._open_orders(symbol) for symbol in sorted(symbols)]

    def _open_orders(self, symbol: str) -> OrderRequest:
        request = self.codec.open_orders(self.timestamp_ms(), symbol)
        return _request(request, partial(self._open_orders, symbol))

    def read_fills(self, stream: str, after: int) -> OrderRequest:
        from_id = min(after + 1, MAX_FILL_ID)
        request = self.codec.my_trades(stream, self.timestamp_ms(), from_id=from_id)
        return _request(request, partial(self.read_fills, stream, after))

    def read_order_id(self, symbol: str, order_id: int) -> OrderRequest:
        """The request reading an order by the venue's order id (a trade's ``orderId``)."""
        request = self.codec.query_order_id(symbol, order_id, self.timestamp_ms())
        return _request(request, partial(self.read_order_id, symbol, order_id))

    # -- answers ------------------------------------------------------------------------

    def classify(self, status: int, headers: Mapping[str, str], content: bytes) -> Verdict:
        """200 ok; any other answer as :func:`~.orders.classify_error` reads it."""
        if status == 200:
            return _OK
        error = classify_error(status, content, headers.get("retry-after"))
        until = None if error.until_ms is None else error.until_ms / 1000
        return Verdict(_KINDS[error.kind.value], error.reason, until)

    def used_weight_share(self, headers: Mapping[str, str]) -> float | None:
        """``X-MBX-USED-WEIGHT-1M`` over the minute's limit (None when absent)."""
        if not any(name.lower().startswith("x-mbx-") for name in headers):
            return None
        used = parse_usage(headers).weight_1m
        return None if used is None else used / self.weight_limit_1m

    def order_count_share(self, headers: Mapping[str, str]) -> float | None:
        """``X-MBX-ORDER-COUNT-10S`` over the 10-second order limit (None when absent)."""
        if not any(name.lower().startswith("x-mbx-order-count") for name in headers):
            return None
        counted = parse_usage(headers).orders_10s
        return None if counted is None else counted / self.order_limit_10s

    def _learn(self, order_id: int | None, client_order_id: str) -> None:
        if order_id is None:
            return
        ids = self._order_ids
        if order_id not in ids and len(ids) >= _ORDER_IDS_MAX:
            # The oldest go first (insertion order): their trades were read long ago.
            for stale in list(ids)[: _ORDER_IDS_MAX // 10]:
                del ids[stale]
        ids[order_id] = client_order_id

    def learn_order_id(self, venue_order_id: int, client_order_id: str) -> None:
        self._learn(venue_order_id, client_order_id)

    def learn_orders(self, orders: Iterable[Order]) -> None:
        for order in orders:
            venue_id = order.exchange_order_id
            if venue_id is not None and venue_id.isdigit() and len(venue_id) < 20:
                self._learn(int(venue_id), order.client_order_id)

    def parse_order(self, content: bytes, client_order_id: str, symbol: str) -> ParsedOrder:
        answer = self.codec.parse_order(content, client_order_id, symbol)
        self._learn(answer.order_id, client_order_id)
        return ParsedOrder(answer.report, tuple(fill.report for fill in answer.fills))

    def learn_order(self, venue_order_id: int, content: bytes | None) -> None:
        """An order read by its venue id: remember its client order id.

        ``content`` None: the venue does not know the order; its trades are
        handed to no order (remembered as nobody's, never read again).
        Raises :class:`UnreadableAnswer` for an answer outside the venue's
        API or naming another order.
        """
        if content is None:
            self._learn(venue_order_id, "")
            return
        answer = self.codec.parse_order(content)
        if answer.order_id != venue_order_id:
            raise UnreadableAnswer(
                f"binance order: orderId {answer.order_id} is not {venue_order_id}"
            )
        self._learn(venue_order_id, answer.report.client_order_id)

    def open_order_ids(self, content: bytes) -> set[str]:
        listed = set()
        for answer in self.codec.parse_open_orders(content):
            cid = answer.report.client_order_id
            self._learn(answer.order_id, cid)
            listed.add(cid)
        return listed

    def unresolved_orders(self, stream: str, content: bytes) -> list[tuple[int, OrderRequest]]:
        """Reads of the orders a trades answer names that no answer named yet (by ``orderId``)."""
        try:
            document = orjson.loads(content)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(document, list):
            return []
        unknown = {
            entry["orderId"]
            for entry in document
            if isinstance(entry, dict)
            and type(entry.get("orderId")) is int
            and 0 <= entry["orderId"] <= MAX_FILL_ID
            and entry["orderId"] not in self._order_ids
        }
        # At most 20 a poll (weight 4 each): the rest wait for the next poll, whose
        # cursor stops before their trades (parse_fills).
        return [
            (order_id, self.read_order_id(stream, order_id)) for order_id in sorted(unknown)[:20]
        ]

    def parse_fills(self, stream: str, content: bytes) -> list[FillEntry]:
        """Each trade of a ``myTrades`` answer read on its own (one bad trade spoils no other)."""
        try:
            document = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise UnreadableAnswer(f"binance myTrades: not JSON: {exc}"[:200]) from None
        if not isinstance(document, list):
            raise UnreadableAnswer("binance myTrades: the answer is not a list")
        entries: list[FillEntry] = []
        codec, names = self.codec, self._order_ids
        # In trade-id order (as the venue lists them): the stop below must hold the cursor.
        document.sort(key=_trade_id)
        for entry in document:
            trade_id = entry.get("id") if isinstance(entry, dict) else None
            if type(trade_id) is not int or not 0 <= trade_id <= MAX_FILL_ID:
                problem = f"binance trade without a readable id: {entry!r}"[:200]
                entries.append(FillEntry(None, None, None, problem))
                continue
            assert isinstance(entry, dict)
            order_id = entry.get("orderId")
            cid = names.get(order_id) if type(order_id) is int else None
            if cid is None and type(order_id) is int:
                # An order not named yet (unresolved_orders): the cursor stops here.
                break
            try:
                page = codec.parse_my_trades([entry], stream, names)
            except UnreadableAnswer as exc:
                entries.append(FillEntry(trade_id, cid, None, str(exc)))
                continue
            fill = page.fills[0].report if page.fills and cid else None
            entries.append(FillEntry(trade_id, cid or None, fill))
        return entries

    # -- reconciliation documents (the own API's shape) -----------------------------

    def order_document(self, content: bytes, client_order_id: str, symbol: str) -> object:
        parsed = self.parse_order(content, client_order_id, symbol)
        raw = orjson.loads(content)
        return self._document(raw, parsed, symbol)

    def _document(
        self, raw: Mapping[str, object], parsed: ParsedOrder, symbol: str
    ) -> dict[str, object]:
        report = parsed.report
        instrument = self.codec.instruments[symbol]
        document: dict[str, object] = {
            "client_order_id": report.client_order_id,
            "symbol": symbol,
            "side": _SIDES.get(str(raw.get("side")), raw.get("side")),
            "type": _TYPES.get(str(raw.get("type")), raw.get("type")),
            "quantity": _on_grid(
                raw.get("origQty"), instrument.size_to_lots, instrument.format_size
            ),
            "status": report.status.value,
            "filled_quantity": instrument.format_size(report.filled_lots),
        }
        if raw.get("type") != "MARKET":
            document["price"] = _on_grid(
                raw.get("price"), instrument.price_to_ticks, instrument.format_price
            )
            document["time_in_force"] = raw.get("timeInForce", "GTC")
        average = report.avg_price
        if type(average) is int and report.filled_lots:
            # Between ticks the own API has no exact text: reconciliation prices lots by fills.
            document["avg_price"] = instrument.format_price(average)
        if report.exchange_order_id is not None:
            document["order_id"] = report.exchange_order_id
        if report.reason is not None:
            document["reason"] = report.reason
        return document

    def open_order_documents(self, content: bytes) -> list[dict[str, object]]:
        raw_list = orjson.loads(content)
        documents = []
        answers = self.codec.parse_open_orders(content)
        by_cid = {str(raw.get("clientOrderId")): raw for raw in raw_list if isinstance(raw, dict)}
        for answer in answers:
            cid = answer.report.client_order_id
            self._learn(answer.order_id, cid)
            raw = by_cid.get(cid, {})
            symbol = self.codec.engine_symbols[str(raw.get("symbol"))]
            documents.append(self._document(raw, ParsedOrder(answer.report), symbol))
        return documents

    def fill_documents(self, stream: str, content: bytes) -> list[dict[str, object]]:
        instrument = self.codec.instruments[stream]
        unit = Decimal(instrument.tick_size) * Decimal(instrument.lot_size)
        documents: list[dict[str, object]] = []
        for entry in self.parse_fills(stream, content):
            fill = entry.fill
            if entry.problem is not None and entry.fill_id is not None:
                raise UnreadableAnswer(f"binance trade {entry.fill_id}: {entry.problem}"[:200])
            if fill is None or entry.fill_id is None:
                continue
            documents.append(
                _fill_document(fill, instrument.format_price, instrument.format_size, unit)
            )
        return documents


def _trade_id(entry: object) -> int:
    trade_id = entry.get("id") if isinstance(entry, dict) else None
    return trade_id if type(trade_id) is int else -1


def _fill_document(
    fill: FillReport,
    format_price: Callable[[int], str],
    format_size: Callable[[int], str],
    unit: Decimal,
) -> dict[str, object]:
    assert fill.side is not None
    document: dict[str, object] = {
        "fill_id": fill.fill_id,
        "client_order_id": fill.client_order_id,
        "symbol": fill.symbol,
        "side": fill.side.value,
        "price": format_price(int(fill.price)),
        "quantity": format_size(fill.lots),
    }
    if fill.fee is not None:
        document["fee"] = _plain(Decimal(fill.fee) * unit)
    if fill.fee_asset is not None:
        # The venue's own amount and asset (the fee above is its value, when it has one).
        document["venue_fee"] = fill.venue_fee
        document["fee_asset"] = fill.fee_asset
    return document


def _on_grid(value: object, read: Callable[[str], int], write: Callable[[int], str]) -> object:
    """A venue decimal (``"99.49000000"``) as the instrument writes it (``"99.49"``), else as is."""
    if type(value) is not str:
        return value
    try:
        return write(read(value))
    except (InvalidValue, ValueError):
        return value


def _plain(value: Decimal) -> str:
    """A decimal written without an exponent."""
    return format(value.normalize(), "f")


def _request(
    request: BinanceRequest, rebuild: Callable[[], OrderRequest] | None = None
) -> OrderRequest:
    return OrderRequest(
        request.method, request.target, request.body, request.headers, request.weight, rebuild
    )
