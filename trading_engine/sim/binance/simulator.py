"""The exchange simulator speaking the Binance spot REST API.

:class:`BinanceSimulator` is the :class:`~trading_engine.sim.exchange_sim.ExchangeSimulator`
(its books, its matching engine, its market-data publisher and its fault
flags) behind the venue's endpoints instead of the project's own:

* ``GET /api/v3/ping``, ``/api/v3/time``, ``/api/v3/exchangeInfo``;
* ``POST``, ``GET`` and ``DELETE /api/v3/order`` (LIMIT with GTC, IOC or
  FOK, LIMIT_MAKER, MARKET; ``newOrderRespType`` ACK, RESULT or FULL);
  ``GET`` and ``DELETE /api/v3/openOrders``; ``GET /api/v3/allOrders``;
  ``GET /api/v3/myTrades``; ``GET /api/v3/rateLimit/order``;
* the user data stream (:mod:`.streams`): ``GET /ws-api/v3`` and the
  listen keys (``/api/v3/userDataStream``, ``GET /ws/<listenKey>``).

Requests are checked as the venue checks them (:mod:`.auth`,
:mod:`.limits`, :mod:`.rules`) and refused with its error codes. Faults
(:class:`~trading_engine.sim.exchange_sim.Faults`) map onto the venue's
answers: ``fail_before`` is a 503 (``-1008``) before the order is taken,
``fail_after`` a 500 (``-1001``) after it was taken, ``unknown_status`` a
``-1007`` ("execution status unknown") after it was taken, ``rate_limit``
and ``read_rate_limit`` 429s (``-1003``) with ``Retry-After``, ``forget``
an order the venue then denies knowing (``-2013`` and ``-2011``),
``hang``, ``late_answer``, ``reset``, ``accept_close`` and ``latency_s`` as
in the own dialect, ``expire`` a resting order the venue expires
(``EXPIRED``) and ``stream_drop`` a user data stream connection dropped
after an event.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import string
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from ...core.instruments import Instrument
from ..exchange_sim import ExchangeSimulator, Faults, SimOrder
from ..matching import MatchFill
from .auth import ApiKeys, check_timing, rest_payload
from .errors import VenueError
from .limits import LimitSettings, RateLimiter
from .rules import (
    WIRE_PATTERN,
    FilterFailure,
    SymbolRules,
    SymbolSettings,
    parse_wire_decimal,
    wire,
)
from .streams import UserDataStreams

__all__ = ["UNKNOWN_STATUS_HTTP", "BinanceOrder", "BinanceSimulator"]

#: The HTTP status of a ``-1007`` answer. The venue's documentation names the
#: code and its meaning (execution status unknown) but no status; a client
#: must go by the code.
UNKNOWN_STATUS_HTTP: Final = 408
_CLIENT_ID_PATTERN: Final = r"^[\.A-Z\:/a-z0-9_-]{1,36}$"
_STP_MODES: Final = frozenset({"NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"})
_UNSUPPORTED_TYPES: Final = {
    "STOP_LOSS": "Stop loss orders are not supported for this symbol.",
    "STOP_LOSS_LIMIT": "Stop loss limit orders are not supported for this symbol.",
    "TAKE_PROFIT": "Take profit orders are not supported for this symbol.",
    "TAKE_PROFIT_LIMIT": "Take profit limit orders are not supported for this symbol.",
}
_NEW_ORDER_PARAMS: Final = frozenset({
    "symbol", "side", "type", "timeInForce", "quantity", "quoteOrderQty", "price",
    "newClientOrderId", "strategyId", "strategyType", "stopPrice", "trailingDelta",
    "icebergQty", "newOrderRespType", "selfTradePreventionMode", "pegPriceType",
    "pegOffsetValue", "pegOffsetType",
})  # fmt: skip
_SIGNED: Final = frozenset({"timestamp", "recvWindow", "signature"})
#: An id, a time or a count: the venue's LONG, ASCII digits only (``str.isdigit``
#: takes other scripts' digits, and ``int`` refuses more than 4,300 of them).
_LONG: Final = re.compile(r"[0-9]{1,20}")
_ZERO: Final = Decimal(0)


def _client_id() -> str:
    """An order id the venue makes up when the client sends none (22 letters and digits)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(22))


def _mandatory(name: str) -> VenueError:
    return VenueError(
        400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def _not_required(name: str) -> VenueError:
    return VenueError(400, -1106, f"Parameter '{name}' sent when not required.")


def _new_order_rejected(message: str) -> VenueError:
    return VenueError(400, -2010, message)


@dataclass(eq=False)
class BinanceOrder(SimOrder):
    """An order of the Binance dialect: the simulator's order plus what the venue shows of it."""

    binance_id: int = 0
    binance_type: str = "LIMIT"
    created_ms: int = 0
    updated_ms: int = 0
    stp_mode: str = "NONE"
    #: Canceled by a cancel request (``CANCELED``), rather than by its type's rule (``EXPIRED``).
    user_canceled: bool = False
    venue_expired: bool = False
    #: Expired by self-trade prevention (``EXPIRED_IN_MATCH``), with the lots prevented.
    prevented_lots: int = 0
    prevented_match_id: int = 0
    stp_expired: bool = False
    fills_at_placement: list[dict[str, Any]] = field(default_factory=list)

    @property
    def binance_status(self) -> str:
        """The venue's status word."""
        if self.stp_expired:
            return "EXPIRED_IN_MATCH"
        status = self.status
        if status == "canceled":
            return "CANCELED" if self.user_canceled else "EXPIRED"
        return status.upper()

    @property
    def binance_tif(self) -> str:
        return "GTC" if self.binance_type != "LIMIT" else self.time_in_force


@dataclass
class _Trade:
    id: int
    order: BinanceOrder
    price: int
    lots: int
    commission: Decimal
    commission_asset: str
    time_ms: int
    maker: bool


class BinanceSimulator(ExchangeSimulator):
    """The exchange simulator on Binance's spot REST API (see the module docstring).

    ``keys`` are the account's API keys; ``symbols`` adds minimum quantity,
    minimum notional and fees to instruments; ``limits`` sets the weight and
    order limits and the ban; ``clock_skew_ms`` moves the venue's clock
    (``serverTime`` and the ``recvWindow`` check) by that much; ``clock_ms``
    replaces the wall clock (tests). Other arguments are the own dialect's.
    """

    def __init__(
        self,
        instruments: list[Instrument],
        *,
        keys: ApiKeys,
        symbols: dict[str, SymbolSettings] | None = None,
        limits: LimitSettings | None = None,
        clock_skew_ms: int = 0,
        clock_ms: Callable[[], int] | None = None,
        stp_mode: str = "EXPIRE_MAKER",
        max_num_orders: int = 200,
        listen_key_ttl_s: float = 3600.0,
        host: str = "127.0.0.1",
        port: int = 8080,
        feed: tuple[str, int] | None = None,
        rate: float = 200.0,
        seed: int = 0,
        faults: Faults | None = None,
        snapshot_every: int = 200,
        feed_shards: int = 1,
        stamp_arrivals: bool = False,
        ssl_context: Any = None,
    ) -> None:
        if stp_mode not in _STP_MODES:
            raise ValueError(f"stp_mode must be one of {sorted(_STP_MODES)}, got {stp_mode!r}")
        super().__init__(
            instruments, api_key="", host=host, port=port, feed=feed, rate=rate, seed=seed,
            faults=faults, snapshot_every=snapshot_every, feed_shards=feed_shards,
            stamp_arrivals=stamp_arrivals, ssl_context=ssl_context,
        )  # fmt: skip
        symbols = symbols or {}
        self.keys = keys
        self.rules = {
            inst.symbol: SymbolRules(
                inst, symbols.get(inst.symbol), max_num_orders=max_num_orders, stp_mode=stp_mode
            )
            for inst in instruments
        }
        self.limiter = RateLimiter(limits)
        self.clock_skew_ms = clock_skew_ms
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self.listen_key_ttl_s = listen_key_ttl_s
        self.streams = UserDataStreams(self)
        #: Every order the venue took, by orderId.
        self.binance_orders: dict[int, BinanceOrder] = {}
        #: (symbol, clientOrderId) -> the latest orderId under it.
        self._by_client: dict[tuple[str, str], int] = {}
        #: The account's trades, by symbol, oldest first (ids per symbol from 1).
        self.trades: dict[str, list[_Trade]] = {inst.symbol: [] for inst in instruments}
        self._next_binance_id = 0
        self._next_match_id = 0

    # -- what the streams use ------------------------------------------------------

    def now_ms(self) -> int:
        """The venue's clock: wall milliseconds plus ``clock_skew_ms``."""
        return self._clock_ms() + self.clock_skew_ms

    def roll(self, probability: float) -> bool:
        return self._roll(probability)

    def count(self, name: str) -> None:
        self._count(name)

    # -- the application -------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._stamp, self._errors])
        route = app.router
        route.add_get("/api/v3/ping", self._ping)
        route.add_get("/api/v3/time", self._time)
        route.add_get("/api/v3/exchangeInfo", self._exchange_info)
        route.add_post("/api/v3/order", self._place_order)
        route.add_get("/api/v3/order", self._query_order)
        route.add_delete("/api/v3/order", self._cancel_order)
        route.add_get("/api/v3/openOrders", self._open_orders)
        route.add_delete("/api/v3/openOrders", self._cancel_open_orders)
        route.add_get("/api/v3/allOrders", self._all_orders)
        route.add_get("/api/v3/myTrades", self._my_trades)
        route.add_get("/api/v3/rateLimit/order", self._order_count)
        route.add_post("/api/v3/userDataStream", self._listen_key_new)
        route.add_put("/api/v3/userDataStream", self._listen_key_keepalive)
        route.add_delete("/api/v3/userDataStream", self._listen_key_close)
        route.add_get("/ws-api/v3", self.streams.serve_api)
        route.add_get("/ws/{listen_key}", self.streams.serve_listen_key)
        if self.stamp_arrivals:
            route.add_get("/bench/arrivals", self._get_arrivals)
        return app

    async def stop(self) -> None:
        await self.streams.drop_all()
        await super().stop()

    @web.middleware
    async def _stamp(self, request: web.Request, handler: Any) -> web.StreamResponse:
        return await self._stamped(request, handler, self._log)

    async def _log(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.request_log.append((time.monotonic_ns(), request.method, request.path))
        if self.faults.latency_s:
            await asyncio.sleep(self.faults.latency_s)
        response: web.StreamResponse = await handler(request)
        return response

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Render refusals as the venue does; every answer carries the minute's weight."""
        try:
            response: web.StreamResponse = await handler(request)
        except VenueError as exc:
            self._count(f"error_{exc.code}")
            response = self._json(exc.body(), exc.status, exc.headers)
        if request.path.startswith("/api/") and not response.prepared:
            response.headers["X-MBX-USED-WEIGHT-1M"] = str(self.limiter.used_weight(self.now_ms()))
        return response

    @staticmethod
    def _json(
        body: object, status: int = 200, headers: dict[str, str] | None = None
    ) -> web.Response:
        return web.Response(
            body=orjson.dumps(body), status=status, content_type="application/json",
            headers=headers,
        )  # fmt: skip

    async def _begin(
        self,
        request: web.Request,
        weight: int | Callable[[dict[str, str]], int],
        security: str,
        allowed: Iterable[str] = (),
    ) -> dict[str, str]:
        """Parse, weigh and authenticate a request; returns its parameters.

        ``security`` is ``NONE``, ``USER_STREAM`` (API key) or ``SIGNED``
        (API key, signature, timing). Raises :class:`VenueError` with the
        venue's answer when the request is refused.
        """
        query = request.rel_url.raw_query_string
        body = ""
        if request.method != "GET" and request.can_read_body:
            body = (await request.read()).decode("utf-8", "replace")
        params: dict[str, str] = {}
        problem: VenueError | None = None
        for text in (body, query):  # the query string's value wins over the body's
            seen: set[str] = set()
            for name, value in parse_qsl(text, keep_blank_values=True):
                if name in seen:
                    problem = VenueError(400, -1101, "Duplicate values for a parameter detected.")
                seen.add(name)
                params[name] = value
        now = self.now_ms()
        self.limiter.admit(weight(params) if callable(weight) else weight, now)
        if problem is not None:
            raise problem
        if security != "NONE":
            self.keys.check_key(request.headers.get("X-MBX-APIKEY"))
        if security == "SIGNED":
            payload, signature = rest_payload(query, body)
            api_key = request.headers["X-MBX-APIKEY"]
            if not self.keys.verify(api_key, payload, signature):
                raise VenueError(400, -1022, "Signature for this request is not valid.")
            check_timing(params.get("timestamp"), params.get("recvWindow"), now)
        extra = set(params) - set(allowed) - (_SIGNED if security == "SIGNED" else set())
        if extra:
            read = len(params) - len(extra)
            raise VenueError(
                400, -1104,
                f"Not all sent parameters were read; read '{read}' parameter(s) but was sent "
                f"'{len(params)}'.",
            )  # fmt: skip
        return params

    def _symbol(self, params: dict[str, str], required: bool = True) -> SymbolRules | None:
        symbol = params.get("symbol")
        if not symbol:
            if required:
                raise _mandatory("symbol")
            return None
        rules = self.rules.get(symbol)
        if rules is None:
            raise VenueError(400, -1121, "Invalid symbol.")
        return rules

    def _read_limited(self) -> web.StreamResponse | None:
        if self._roll(self.faults.read_rate_limit):
            self._count("read_rate_limited")
            raise self._injected_429()
        return None

    def _injected_429(self) -> VenueError:
        """The ``rate_limit`` faults: a 429 as a weight limit would give, with its backoff."""
        now = self.now_ms()
        retry = self.faults.retry_after_s
        self.limiter.note_429(now, now + retry * 1000)
        return VenueError(
            429, -1003,
            "Too much request weight used; current limit is "
            f"{self.limiter.settings.weight_per_minute} request weight per 1 MINUTE. "
            "Please use WebSocket Streams for live updates to avoid polling the API.",
            {"Retry-After": str(retry)},
        )  # fmt: skip

    # -- general endpoints -----------------------------------------------------------

    async def _ping(self, request: web.Request) -> web.StreamResponse:
        await self._begin(request, 1, "NONE")
        return self._json({})

    async def _time(self, request: web.Request) -> web.StreamResponse:
        await self._begin(request, 1, "NONE")
        return self._json({"serverTime": self.now_ms()})

    async def _exchange_info(self, request: web.Request) -> web.StreamResponse:
        params = await self._begin(
            request, 20, "NONE",
            ("symbol", "symbols", "permissions", "showPermissionSets", "symbolStatus"),
        )  # fmt: skip
        wanted: list[str] | None = None
        if "symbol" in params:
            wanted = [params["symbol"]]
        elif "symbols" in params:
            try:
                listed = orjson.loads(params["symbols"])
            except orjson.JSONDecodeError:
                raise VenueError(
                    400, -1135, "JSON sent for parameter 'symbols' is not valid"
                ) from None
            if not isinstance(listed, list) or not all(isinstance(s, str) for s in listed):
                raise VenueError(400, -1135, "JSON sent for parameter 'symbols' is not valid")
            wanted = listed
        if wanted is not None and any(symbol not in self.rules for symbol in wanted):
            raise VenueError(400, -1121, "Invalid symbol.")
        symbols = [self.rules[s] for s in (wanted if wanted is not None else self.rules)]
        return self._json({
            "timezone": "UTC",
            "serverTime": self.now_ms(),
            "rateLimits": self.limiter.settings.rate_limits(),
            "exchangeFilters": [],
            "symbols": [rules.exchange_info() for rules in symbols],
        })  # fmt: skip

    # -- orders ----------------------------------------------------------------------

    async def _place_order(self, request: web.Request) -> web.StreamResponse:
        faults = self.faults
        params = await self._begin(request, 1, "SIGNED", _NEW_ORDER_PARAMS)
        if self._roll(faults.rate_limit):
            self._count("rate_limited")
            raise self._injected_429()
        if self._roll(faults.fail_before):
            self._count("fail_before")
            raise VenueError(
                503, -1008,
                "Server is currently overloaded with other requests. Please try again in a few "
                "minutes.",
            )  # fmt: skip
        order, answer_type = self._take(params)
        # The bench's stamp, taken at the request's first bytes, is noted after
        # matching: the order's way through the venue carries no timing.
        order.arrival_ns = self._arrival_ns(request)
        now = self.now_ms()
        if self._roll(faults.fail_after):
            self._count("fail_after")
            raise VenueError(
                500, -1001, "Internal error; unable to process your request. Please try again."
            )
        if self._roll(faults.unknown_status):
            self._count("unknown_status")
            raise VenueError(
                UNKNOWN_STATUS_HTTP, -1007,
                "Timeout waiting for response from backend server. Send status unknown; "
                "execution status unknown.",
            )  # fmt: skip
        if self._roll(faults.reset):
            self._count("reset")
            if request.transport is not None:
                request.transport.abort()
            raise web.HTTPInternalServerError()
        if order.is_open and self._roll(faults.forget):
            self._count("forget")
            order.forgotten = True
            self.matching.cancel(order.client_order_id)
        # The venue's answer tells the order as the matching engine left it: fills the
        # book makes while the answer is held belong to later reports, not to it.
        answer = self._placement(order, answer_type)
        if self._roll(faults.hang):
            self._count("hang")
            await asyncio.sleep(faults.hang_s)
        elif self._roll(faults.late_answer):
            self._count("late_answer")
            await asyncio.sleep(faults.late_answer_s)
        count_10s, count_day = self.limiter.order_counts(now)
        headers = {"X-MBX-ORDER-COUNT-10S": str(count_10s), "X-MBX-ORDER-COUNT-1D": str(count_day)}
        return self._json(answer, 200, headers)

    def _take(self, params: dict[str, str]) -> tuple[BinanceOrder, str]:
        """Check a new order, then match it: the order and its answer type, or raise the refusal."""
        rules = self._symbol(params)
        assert rules is not None
        side = params.get("side")
        if not side:
            raise _mandatory("side")
        if side not in ("BUY", "SELL"):
            raise VenueError(400, -1117, "Invalid side.")
        kind = params.get("type")
        if not kind:
            raise _mandatory("type")
        if kind in _UNSUPPORTED_TYPES:
            raise _new_order_rejected(_UNSUPPORTED_TYPES[kind])
        if kind not in ("LIMIT", "LIMIT_MAKER", "MARKET"):
            raise VenueError(400, -1116, "Invalid orderType.")
        answer_type = params.get("newOrderRespType", "FULL" if kind != "LIMIT_MAKER" else "ACK")
        if answer_type not in ("ACK", "RESULT", "FULL"):
            raise _mandatory("newOrderRespType")
        stp_mode = params.get("selfTradePreventionMode", rules.stp_mode)
        if stp_mode not in _STP_MODES:
            raise _mandatory("selfTradePreventionMode")
        tif = params.get("timeInForce")
        if kind == "LIMIT":
            if not tif:
                raise _mandatory("timeInForce")
            if tif not in ("GTC", "IOC", "FOK"):
                raise VenueError(400, -1115, "Invalid timeInForce.")
        elif tif is not None:
            raise _not_required("timeInForce")
        if "icebergQty" in params:
            raise _new_order_rejected("Iceberg orders are not supported for this symbol.")
        if "trailingDelta" in params:
            raise _new_order_rejected("Trailing stop orders are not supported for this symbol.")
        for name in ("stopPrice", "pegPriceType", "pegOffsetValue", "pegOffsetType"):
            if name in params:
                raise _not_required(name)
        if "quoteOrderQty" in params:
            if kind != "MARKET":
                raise _not_required("quoteOrderQty")
            raise _new_order_rejected(
                "Quote order qty market orders are not support for this symbol."
            )
        price: Decimal | None = None
        if kind == "MARKET":
            if "price" in params:
                raise _not_required("price")
        else:
            price = self._decimal(params, "price")
        quantity = self._decimal(params, "quantity")
        client_order_id = params.get("newClientOrderId") or _client_id()
        if not _matches(client_order_id):
            raise VenueError(
                400, -1100,
                "Illegal characters found in parameter 'newClientOrderId'; legal range is "
                f"'{_CLIENT_ID_PATTERN}'.",
            )  # fmt: skip
        if any(
            order.client_order_id == client_order_id and order.is_open
            for order in self.matching.resting.values()
        ):
            raise _new_order_rejected("Duplicate order sent.")
        reference = self._reference(rules.symbol)
        open_orders = sum(1 for o in self.matching.resting_of(rules.symbol) if o.is_open)
        try:
            rules.check(side, kind == "MARKET", price, quantity, reference, open_orders)
        except FilterFailure as failure:
            raise VenueError(400, -1013, f"Filter failure: {failure.args[0]}") from None
        now = self.now_ms()
        self.limiter.admit_order(now)
        inst = rules.instrument
        order = BinanceOrder(
            client_order_id, rules.symbol, side.lower(), "market" if kind == "MARKET" else "limit",
            None if price is None else inst.price_to_ticks(str(price)),
            inst.size_to_lots(str(quantity)),
            "IOC" if kind == "MARKET" else (tif or "GTC"),
            instrument=inst, post_only=kind == "LIMIT_MAKER", binance_type=kind,
            created_ms=now, updated_ms=now, stp_mode=stp_mode,
        )  # fmt: skip
        counter = None
        if not order.post_only and stp_mode != "NONE":
            counter = self._prevent_self_trade(order)
        if counter is not None:
            self._store(order)
            self.limiter.count_order(now)
            self._count("orders")
            self._report(order, "NEW", state=("NEW", 0, 0))
            self._report(order, "TRADE_PREVENTION", counter=counter)
            return order, answer_type
        fills = self.matching.submit(order, self._levels(order.symbol))
        if order.status == "rejected":
            self._count("post_only_rejected")
            raise _new_order_rejected("Order would immediately match and take.")
        self._store(order)
        self.limiter.count_order(now)
        self._count("orders")
        self._report(order, "NEW", state=("NEW", 0, 0))
        self._record(fills, maker=False)
        if order.status == "canceled":
            self._report(order, "EXPIRED")
        return order, answer_type

    def _store(self, order: BinanceOrder) -> None:
        """The venue took ``order``: it gets the next orderId (a refused order gets none)."""
        self._next_binance_id += 1
        order.binance_id = self._next_binance_id
        order.order_id = str(order.binance_id)
        self.binance_orders[order.binance_id] = order
        self._by_client[(order.symbol, order.client_order_id)] = order.binance_id
        self.orders[f"{order.symbol}:{order.binance_id}"] = order

    @staticmethod
    def _decimal(params: dict[str, str], name: str) -> Decimal:
        text = params.get(name)
        if not text:
            raise _mandatory(name)
        value = parse_wire_decimal(text)
        if value is None:
            raise VenueError(
                400, -1100,
                f"Illegal characters found in parameter '{name}'; legal range is '{WIRE_PATTERN}'.",
            )  # fmt: skip
        if value != value.quantize(Decimal("1e-8"), rounding="ROUND_DOWN"):
            raise VenueError(400, -1111, f"Parameter '{name}' has too much precision.")
        return value

    def _reference(self, symbol: str) -> Decimal:
        """The reference price of the price filters: the mid of the book."""
        walk = self.walks[symbol]
        rules = self.rules[symbol]
        return (rules.price(walk.best_bid) + rules.price(walk.best_ask)) / 2

    def _prevent_self_trade(self, taker: BinanceOrder) -> BinanceOrder | None:
        """Self-trade prevention; the order it would have matched when the taker expires.

        The taker then is ``EXPIRED_IN_MATCH`` with nothing filled.

        The simulator's own orders are not in its book, so an order "would
        match" one of the account's resting orders when it crosses that
        order's price. ``EXPIRE_TAKER`` expires the new order, ``EXPIRE_MAKER``
        the resting ones it crosses, ``EXPIRE_BOTH`` both.
        """
        crossed = [
            resting for resting in self.matching.resting_of(taker.symbol)
            if isinstance(resting, BinanceOrder) and resting.is_open and resting.side != taker.side
            and resting.price is not None
            and (taker.price is None or (taker.price >= resting.price if taker.side == "buy"
                                         else taker.price <= resting.price))
        ]  # fmt: skip
        if not crossed:
            return None
        self._next_match_id += 1
        match_id = self._next_match_id
        self._count("self_trade_prevented")
        if taker.stp_mode in ("EXPIRE_MAKER", "EXPIRE_BOTH"):
            for maker in crossed:
                self.matching.cancel(maker.client_order_id)
                maker.stp_expired = True
                maker.prevented_lots = maker.quantity - maker.filled
                maker.prevented_match_id = match_id
                maker.updated_ms = self.now_ms()
                self._report(maker, "TRADE_PREVENTION", counter=taker)
        if taker.stp_mode in ("EXPIRE_TAKER", "EXPIRE_BOTH"):
            taker.status = "canceled"
            taker.stp_expired = True
            taker.prevented_lots = taker.quantity
            taker.prevented_match_id = match_id
            return crossed[0]
        return None

    def _lookup(self, params: dict[str, str], missing: VenueError) -> BinanceOrder:
        """The order named by ``orderId`` and/or ``origClientOrderId``; else raise ``missing``."""
        rules = self._symbol(params)
        assert rules is not None
        order_id = params.get("orderId")
        client_id = params.get("origClientOrderId")
        if not order_id and not client_id:
            raise VenueError(
                400,
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        order: BinanceOrder | None = None
        if order_id:
            found_id = self._optional_int(params, "orderId")
            assert found_id is not None
            order = self.binance_orders.get(found_id)
            if order is not None and client_id and order.client_order_id != client_id:
                order = None
        else:
            assert client_id is not None
            found = self._by_client.get((rules.symbol, client_id))
            order = None if found is None else self.binance_orders[found]
        if order is None or order.symbol != rules.symbol or order.forgotten:
            raise missing
        return order

    async def _query_order(self, request: web.Request) -> web.StreamResponse:
        params = await self._begin(request, 4, "SIGNED", ("symbol", "orderId", "origClientOrderId"))
        self._read_limited()
        order = self._lookup(params, VenueError(400, -2013, "Order does not exist."))
        return self._json(self._order_body(order))

    async def _cancel_order(self, request: web.Request) -> web.StreamResponse:
        params = await self._begin(
            request, 1, "SIGNED",
            ("symbol", "orderId", "origClientOrderId", "newClientOrderId", "cancelRestrictions"),
        )  # fmt: skip
        unknown = VenueError(400, -2011, "Unknown order sent.")
        order = self._lookup(params, unknown)
        restriction = params.get("cancelRestrictions")
        if restriction is not None and restriction not in ("ONLY_NEW", "ONLY_PARTIALLY_FILLED"):
            raise VenueError(400, -1145, "Invalid cancelRestrictions")
        if not order.is_open:
            raise unknown
        if restriction is not None and order.binance_status != restriction.removeprefix("ONLY_"):
            raise VenueError(400, -2011, "Order was not canceled due to cancel restrictions.")
        cancel_id = params.get("newClientOrderId") or _client_id()
        return self._json(self._cancel(order, cancel_id))

    def _cancel(self, order: BinanceOrder, cancel_id: str) -> dict[str, Any]:
        self.matching.cancel(order.client_order_id)
        order.status = "canceled"
        order.user_canceled = True
        order.updated_ms = self.now_ms()
        self._count("canceled")
        self._report(order, "CANCELED", cancel_id=cancel_id)
        body = self._order_fields(order)
        body["origClientOrderId"] = order.client_order_id
        body["clientOrderId"] = cancel_id
        body["transactTime"] = order.updated_ms
        return body

    async def _cancel_open_orders(self, request: web.Request) -> web.StreamResponse:
        params = await self._begin(request, 1, "SIGNED", ("symbol",))
        rules = self._symbol(params)
        assert rules is not None
        open_orders = self._open_of(rules.symbol)
        if not open_orders:
            raise VenueError(400, -2011, "Unknown order sent.")
        return self._json([self._cancel(order, _client_id()) for order in open_orders])

    def _open_of(self, symbol: str | None) -> list[BinanceOrder]:
        return [
            order for order in self.binance_orders.values()
            if order.is_open and (symbol is None or order.symbol == symbol)
        ]  # fmt: skip

    async def _open_orders(self, request: web.Request) -> web.StreamResponse:
        params = await self._begin(
            request, lambda p: 6 if p.get("symbol") else 80, "SIGNED", ("symbol",)
        )
        self._read_limited()
        rules = self._symbol(params, required=False)
        symbol = None if rules is None else rules.symbol
        return self._json([self._order_body(order) for order in self._open_of(symbol)])

    async def _all_orders(self, request: web.Request) -> web.StreamResponse:
        params = await self._begin(
            request, 20, "SIGNED", ("symbol", "orderId", "startTime", "endTime", "limit")
        )
        self._read_limited()
        rules = self._symbol(params)
        assert rules is not None
        limit = self._limit(params)
        orders = [
            o for o in self.binance_orders.values() if o.symbol == rules.symbol and not o.forgotten
        ]
        from_id = self._optional_int(params, "orderId")
        start, end = self._time_range(params)
        if from_id is not None:
            orders = [o for o in orders if o.binance_id >= from_id][:limit]
        else:
            orders = [o for o in orders if (start is None or o.created_ms >= start)
                      and (end is None or o.created_ms <= end)]  # fmt: skip
            orders = orders[:limit] if start is not None else orders[-limit:]
        return self._json([self._order_body(order) for order in orders])

    async def _my_trades(self, request: web.Request) -> web.StreamResponse:
        params = await self._begin(
            request, lambda p: 5 if p.get("orderId") else 20, "SIGNED",
            ("symbol", "orderId", "startTime", "endTime", "fromId", "limit"),
        )  # fmt: skip
        self._read_limited()
        rules = self._symbol(params)
        assert rules is not None
        limit = self._limit(params)
        order_id = self._optional_int(params, "orderId")
        from_id = self._optional_int(params, "fromId")
        start, end = self._time_range(params)
        if (from_id is not None and (start is not None or end is not None)) or (
            order_id is not None and (start is not None or end is not None)
        ):
            raise VenueError(400, -1128, "Combination of optional parameters invalid.")
        trades = self.trades[rules.symbol]
        if order_id is not None:
            trades = [t for t in trades if t.order.binance_id == order_id]
        if from_id is not None:
            trades = [t for t in trades if t.id >= from_id][:limit]
        elif start is not None:
            trades = [t for t in trades if t.time_ms >= start and (end is None or t.time_ms <= end)]
            trades = trades[:limit]
        else:
            trades = [t for t in trades if end is None or t.time_ms <= end][-limit:]
        return self._json([self._trade_body(t) for t in trades])

    async def _order_count(self, request: web.Request) -> web.StreamResponse:
        await self._begin(request, 40, "SIGNED")
        ten, day = self.limiter.order_counts(self.now_ms())
        settings = self.limiter.settings
        return self._json([
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10,
             "limit": settings.orders_per_10s, "count": ten},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1,
             "limit": settings.orders_per_day, "count": day},
        ])  # fmt: skip

    @staticmethod
    def _optional_int(params: dict[str, str], name: str) -> int | None:
        text = params.get(name)
        if text is None:
            return None
        if not _LONG.fullmatch(text):
            raise _mandatory(name)
        return int(text)

    def _limit(self, params: dict[str, str]) -> int:
        limit = self._optional_int(params, "limit")
        if limit is None:
            return 500
        if not 1 <= limit <= 1000:
            raise VenueError(
                400, -1102, "'limit' contains unexpected value. Cannot be greater than '1000'."
            )
        return limit

    def _time_range(self, params: dict[str, str]) -> tuple[int | None, int | None]:
        start = self._optional_int(params, "startTime")
        end = self._optional_int(params, "endTime")
        if start is not None and end is not None and end - start > 86_400_000:
            raise VenueError(400, -1127, "More than 24 hours between startTime and endTime.")
        return start, end

    # -- listen keys -----------------------------------------------------------------

    async def _listen_key_new(self, request: web.Request) -> web.StreamResponse:
        await self._begin(request, 2, "USER_STREAM")
        return self._json({"listenKey": self.streams.create_listen_key()})

    async def _listen_key_keepalive(self, request: web.Request) -> web.StreamResponse:
        params = await self._begin(request, 2, "USER_STREAM", ("listenKey",))
        if not params.get("listenKey"):
            raise _mandatory("listenKey")
        self.streams.keepalive(params["listenKey"])
        return self._json({})

    async def _listen_key_close(self, request: web.Request) -> web.StreamResponse:
        params = await self._begin(request, 2, "USER_STREAM", ("listenKey",))
        if not params.get("listenKey"):
            raise _mandatory("listenKey")
        await self.streams.close_listen_key(params["listenKey"])
        return self._json({})

    # -- fills and events ----------------------------------------------------------

    def _record(self, fills: list[MatchFill], maker: bool = True) -> None:
        """Fills of the account: the venue's trades and their execution reports.

        Fills made when an order arrives are taker fills; fills of resting
        orders as the book moves (the default) are maker fills.
        """
        super()._record(fills)
        now = self.now_ms()
        # The order's state before these fills, for reports that tell them one by one.
        before: dict[int, tuple[int, int]] = {}
        for fill in fills:
            filled, cost = before.get(id(fill.order), (fill.order.filled, fill.order.cost))
            before[id(fill.order)] = (filled - fill.lots, cost - fill.price * fill.lots)
        for fill in fills:
            order = fill.order
            assert isinstance(order, BinanceOrder)
            rules = self.rules[order.symbol]
            trades = self.trades[order.symbol]
            cost = fill.price * fill.lots
            commission, asset = rules.commission(order.side == "buy", maker, fill.lots, cost)
            trade = _Trade(
                len(trades) + 1, order, fill.price, fill.lots, commission, asset, now, maker
            )
            trades.append(trade)
            order.updated_ms = now
            if not maker:
                order.fills_at_placement.append({
                    "price": wire(rules.price(fill.price)), "qty": wire(rules.quantity(fill.lots)),
                    "commission": wire(commission), "commissionAsset": asset, "tradeId": trade.id,
                })  # fmt: skip
            filled, cost = before[id(order)]
            filled, cost = filled + fill.lots, cost + fill.price * fill.lots
            before[id(order)] = (filled, cost)
            status = "FILLED" if filled >= order.quantity else "PARTIALLY_FILLED"
            self._report(order, "TRADE", trade=trade, state=(status, filled, cost))

    def _expired(self, order: SimOrder) -> None:
        super()._expired(order)
        assert isinstance(order, BinanceOrder)
        order.venue_expired = True
        order.updated_ms = self.now_ms()
        self._report(order, "EXPIRED")

    def _report(
        self,
        order: BinanceOrder,
        execution: str,
        *,
        trade: _Trade | None = None,
        cancel_id: str | None = None,
        counter: BinanceOrder | None = None,
        state: tuple[str, int, int] | None = None,
    ) -> None:
        """Publish an ``executionReport`` of ``order`` on the user data stream.

        ``state`` is (status, filled lots, cost) as of this report, when the
        order has moved on since (a report of each of several fills made at
        once); by default the order's state now.
        """
        rules = self.rules[order.symbol]
        now = self.now_ms()
        status, filled, cost = state or (order.binance_status, order.filled, order.cost)
        on_book = status in ("NEW", "PARTIALLY_FILLED") and order.binance_type != "MARKET"
        event: dict[str, Any] = {
            "e": "executionReport", "E": now, "s": order.symbol,
            "c": cancel_id or order.client_order_id, "S": order.side.upper(),
            "o": order.binance_type, "f": order.binance_tif,
            "q": wire(rules.quantity(order.quantity)),
            "p": wire(_ZERO if order.price is None else rules.price(order.price)),
            "P": wire(_ZERO), "F": wire(_ZERO), "g": -1,
            "C": order.client_order_id if cancel_id else "",
            "x": execution, "X": status, "r": "NONE", "i": order.binance_id,
            "l": wire(rules.quantity(trade.lots) if trade else _ZERO),
            "z": wire(rules.quantity(filled)),
            "L": wire(rules.price(trade.price) if trade else _ZERO),
            "n": wire(trade.commission) if trade else "0",
            "N": trade.commission_asset if trade else None,
            "T": now, "t": trade.id if trade else -1, "I": 0, "w": on_book,
            "m": trade.maker if trade else False, "M": False, "O": order.created_ms,
            "Z": wire(rules.quote(cost)),
            "Y": wire(rules.quote(trade.price * trade.lots) if trade else _ZERO),
            "Q": wire(_ZERO), "V": order.stp_mode,
        }  # fmt: skip
        if on_book:
            event["W"] = order.created_ms
        if execution == "TRADE_PREVENTION" and counter is not None:
            event.update({
                "v": order.prevented_match_id, "A": wire(rules.quantity(order.prevented_lots)),
                "B": wire(rules.quantity(order.prevented_lots)), "u": order.prevented_match_id,
                "U": counter.binance_id, "Cs": counter.symbol,
            })  # fmt: skip
        self.streams.publish(event)

    # -- answers -----------------------------------------------------------------

    def _order_fields(self, order: BinanceOrder) -> dict[str, Any]:
        """The fields every answer about an order shares."""
        rules = self.rules[order.symbol]
        fields: dict[str, Any] = {
            "symbol": order.symbol, "orderId": order.binance_id, "orderListId": -1,
            "clientOrderId": order.client_order_id,
            "price": wire(_ZERO if order.price is None else rules.price(order.price)),
            "origQty": wire(rules.quantity(order.quantity)),
            "executedQty": wire(rules.quantity(order.filled)),
            "origQuoteOrderQty": wire(_ZERO),
            "cummulativeQuoteQty": wire(rules.quote(order.cost)),
            "status": order.binance_status, "timeInForce": order.binance_tif,
            "type": order.binance_type, "side": order.side.upper(),
            "selfTradePreventionMode": order.stp_mode,
        }  # fmt: skip
        if order.stp_expired:
            fields["preventedMatchId"] = order.prevented_match_id
            fields["preventedQuantity"] = wire(rules.quantity(order.prevented_lots))
        return fields

    def _placement(self, order: BinanceOrder, answer_type: str) -> dict[str, Any]:
        head = {
            "symbol": order.symbol, "orderId": order.binance_id, "orderListId": -1,
            "clientOrderId": order.client_order_id, "transactTime": order.created_ms,
        }  # fmt: skip
        if answer_type == "ACK":
            return head
        body = {**head, **self._order_fields(order), "workingTime": order.created_ms}
        if answer_type == "FULL":
            body["fills"] = order.fills_at_placement
        return body

    def _order_body(self, order: BinanceOrder) -> dict[str, Any]:
        body = self._order_fields(order)
        body.update({
            "stopPrice": wire(_ZERO), "icebergQty": wire(_ZERO), "time": order.created_ms,
            "updateTime": order.updated_ms, "isWorking": True, "workingTime": order.created_ms,
        })  # fmt: skip
        return body

    def _trade_body(self, trade: _Trade) -> dict[str, Any]:
        order = trade.order
        rules = self.rules[order.symbol]
        return {
            "symbol": order.symbol, "id": trade.id, "orderId": order.binance_id,
            "orderListId": -1, "price": wire(rules.price(trade.price)),
            "qty": wire(rules.quantity(trade.lots)),
            "quoteQty": wire(rules.quote(trade.price * trade.lots)),
            "commission": wire(trade.commission), "commissionAsset": trade.commission_asset,
            "time": trade.time_ms, "isBuyer": order.side == "buy", "isMaker": trade.maker,
            "isBestMatch": True,
        }  # fmt: skip

    # -- the venue resets ------------------------------------------------------------

    def reset_account(self) -> None:
        """Forget every order and trade and start the ids again from 1, as the venue's testnet does.

        The counterpart of clearing the own dialect's fills log: an engine
        whose journal names trades the venue no longer lists must notice.
        """
        for order in list(self.matching.resting.values()):
            self.matching.cancel(order.client_order_id)
        self.binance_orders.clear()
        self._by_client.clear()
        self.orders.clear()
        self.fills.clear()
        for trades in self.trades.values():
            trades.clear()
        self._next_binance_id = 0
        self._count("account_reset")


_CLIENT_ID: Final = re.compile(_CLIENT_ID_PATTERN[1:-1])


def _matches(client_order_id: str) -> bool:
    return _CLIENT_ID.fullmatch(client_order_id) is not None
