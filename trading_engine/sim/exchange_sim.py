"""The exchange simulator: the order API and a market-data publisher.

A real HTTP server (aiohttp.web) implementing the exchange order API
(API key check, idempotency by ``client_order_id``, limit and market
orders, IOC and GTC, resting orders filled as the book moves, the fills
log), with a matching engine against its own seeded random-walk book per
symbol. The same books are published to an engine's feed port through the
publisher library (snapshots, updates, trades, sequence numbers).

Matching follows :mod:`trading_engine.sim.matching` (the rules the replay
venue uses too): an order fills against the levels shown at that moment,
without consuming them, and a resting GTC order fills, up to the size at
the touch, on each step of the book that crosses its price.

Faults are injected by probability, drawn from a seeded generator:
``fail_before`` (503 before the order is taken), ``fail_after`` (500 after
it was taken and matched), ``hang`` (the answer is held past the client's
timeout, after the order was taken), ``late_answer`` (the answer is held
``late_answer_s`` after the order was taken and filled: its fills are in
``/fills`` before the answer arrives), ``rate_limit`` (429 with a
Retry-After on ``POST /orders``), ``read_rate_limit`` (429 on reads:
``GET /orders/{id}`` and ``GET /fills``), ``forget`` (a resting order is
lost: ``GET`` and ``DELETE`` answer 404 for it and it never fills),
``reset`` (the connection is dropped after the order was taken),
``accept_close`` (a new connection is closed at once, before any request),
``expire`` (on each move of its book, a resting order is canceled by the
exchange, ``reason`` ``expired``) and ``latency_s`` added to every answer.
``unknown_status`` and ``stream_drop`` are the Binance dialect's
(:mod:`trading_engine.sim.binance`). Tests may change ``faults`` while
the simulator runs. On the feed side:
``feed_gap`` (a sequence number is skipped), ``feed_duplicate`` (a frame
is sent twice) and ``feed_cross`` (an update crosses the book, the next
one uncrosses it).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from ..core.errors import InvalidValue
from ..core.instruments import Instrument
from ..core.orders import POST_ONLY_REJECTED
from ..core.sharding import shard_of
from ..io.webserver import json_response, serve
from ..lowlevel.tasks import TaskCrashes, cancel_and_wait
from .marketsim import RandomWalkBook
from .matching import MatchFill, MatchingEngine, MatchOrder, SortedLevels
from .publisher import Publisher

__all__ = ["ExchangeSimulator", "Faults"]

log = logging.getLogger("trading_engine.exchange_sim")

_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


@dataclass
class Faults:
    """Fault probabilities (0-1) and delays for the simulator."""

    fail_before: float = 0.0
    fail_after: float = 0.0
    hang: float = 0.0
    hang_s: float = 2.0
    rate_limit: float = 0.0
    retry_after_s: int = 1
    read_rate_limit: float = 0.0
    forget: float = 0.0
    late_answer: float = 0.0
    late_answer_s: float = 0.05
    accept_close: float = 0.0
    reset: float = 0.0
    latency_s: float = 0.0
    expire: float = 0.0
    unknown_status: float = 0.0
    stream_drop: float = 0.0
    feed_gap: float = 0.0
    feed_duplicate: float = 0.0
    feed_cross: float = 0.0


@dataclass(eq=False)
class SimOrder(MatchOrder):
    """An order the simulator took: the matching state plus the API's view of it."""

    order_id: str = ""
    reason: str | None = None
    instrument: Instrument = field(repr=False, default=None)  # type: ignore[assignment]
    #: CLOCK_MONOTONIC ns when the request's first bytes arrived (stamping on).
    arrival_ns: int = 0
    #: Lost by the venue (the ``forget`` fault): reads and cancels answer 404.
    forgotten: bool = False

    def body(self) -> dict[str, Any]:
        inst = self.instrument
        avg = None
        if self.filled:
            # The average fill price at the tick's precision, rounded half
            # to even only when the fills are at several prices.
            from fractions import Fraction

            avg = inst.format_price_fraction(Fraction(self.cost, self.filled))
        return {
            "order_id": self.order_id,
            "client_order_id": self.client_order_id,
            "status": self.status,
            "filled_quantity": inst.format_size(self.filled),
            "avg_price": avg,
            "reason": self.reason,
            # Beyond the API's minimum: what the order is, so that a client
            # reconciling open orders it has no record of can adopt them.
            "symbol": self.symbol,
            "side": self.side,
            "type": self.type,
            "price": None if self.price is None else inst.format_price(self.price),
            "quantity": inst.format_size(self.quantity),
            "time_in_force": self.time_in_force,
        }

    @property
    def is_open(self) -> bool:
        return self.status in ("new", "partially_filled") and not self.forgotten


class ExchangeSimulator:
    """The simulated exchange: order API on ``port``, books published to ``feed``."""

    def __init__(
        self,
        instruments: list[Instrument],
        *,
        api_key: str,
        host: str = "127.0.0.1",
        port: int = 8080,
        feed: tuple[str, int] | None = None,
        rate: float = 200.0,
        seed: int = 0,
        faults: Faults | None = None,
        snapshot_every: int = 200,
        feed_shards: int = 1,
        stamp_arrivals: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.instruments = {inst.symbol: inst for inst in instruments}
        self.api_key = api_key
        self.host = host
        self.port = port
        self.feed = feed
        self.feed_shards = feed_shards
        self.stamp_arrivals = stamp_arrivals
        #: Serve the order API over TLS (https://) with this context.
        self.ssl_context = ssl_context
        self._stampers: dict[asyncio.BaseTransport, _Stamping] = {}
        self._stamped_server: asyncio.Server | None = None
        self.rate = rate
        self.faults = faults or Faults()
        self.snapshot_every = snapshot_every
        self._rng = random.Random(seed)
        self.walks = {
            inst.symbol: RandomWalkBook(inst, seed=seed * 7919 + i, trade_probability=0.05)
            for i, inst in enumerate(instruments)
        }
        self.orders: dict[str, SimOrder] = {}
        self.matching = MatchingEngine()
        self.fills: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}
        #: (CLOCK_MONOTONIC ns, method, path) of the latest requests, oldest first.
        self.request_log: deque[tuple[int, str, str]] = deque(maxlen=100_000)
        self._next_order = 0
        self._since_snapshot: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self._publisher_tasks: list[asyncio.Task[None]] = []
        #: Crashes of the market-data publishers, by kind.
        self.task_crashes = TaskCrashes()
        self.published = 0

    # -- lifecycle --------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_post("/orders", self._post_order)
        app.router.add_get("/orders", self._list_orders)
        app.router.add_get("/orders/{client_order_id}", self._get_order)
        app.router.add_delete("/orders/{client_order_id}", self._delete_order)
        app.router.add_get("/fills", self._get_fills)
        if self.stamp_arrivals:
            app.router.add_get("/bench/arrivals", self._get_arrivals)
        return app

    async def start(self) -> None:
        if self.stamp_arrivals or self.faults.accept_close:
            await self._serve_stamped()
        else:
            self._runner, self.port = await serve(
                self.app(), self.host, self.port, self.ssl_context
            )
        if self.feed is not None:
            self.publish_to(*self.feed, shards=self.feed_shards)
        scheme = "https" if self.ssl_context is not None else "http"
        log.info("exchange simulator on %s://%s:%d", scheme, self.host, self.port)

    def publish_to(self, host: str, port: int, shards: int = 1) -> None:
        """Start (or move) publishing the books to an engine's feed port.

        With ``shards`` > 1, each symbol goes to ``port + shard_of(symbol, shards)``:
        the feed port of the worker that owns it (``run --workers N``).
        """
        for task in self._publisher_tasks:
            task.cancel()
        self._publisher_tasks.clear()
        self.feed = (host, port)
        self.feed_shards = shards
        groups: dict[int, list[str]] = {}
        for symbol in self.walks:
            groups.setdefault(shard_of(symbol, shards), []).append(symbol)
        loop = asyncio.get_running_loop()
        for shard, symbols in sorted(groups.items()):
            self._publisher_tasks.append(
                self.task_crashes.spawn(
                    self._publish_forever(host, port + shard, symbols),
                    name=f"exchange-sim-publisher-{shard}",
                    kind="publisher",
                    loop=loop,
                )
            )

    async def _serve_stamped(self) -> None:
        """Serve the app through :class:`_Stamping`, which notes when each request's bytes arrive.

        For the latency benchmark: an order's arrival is the moment its first
        bytes reach this process, before any HTTP parsing.
        """
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        self._runner = runner
        handler_factory = runner.server
        assert handler_factory is not None
        stampers = self._stampers

        def factory() -> asyncio.Protocol:
            if self._roll(self.faults.accept_close):
                self._count("accept_close")
                return _Closing()
            return _Stamping(handler_factory(), stampers)

        loop = asyncio.get_running_loop()
        self._stamped_server = await loop.create_server(
            factory, self.host, self.port, ssl=self.ssl_context
        )
        self.port = self._stamped_server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for task in self._publisher_tasks:
            await cancel_and_wait(task)
        self._publisher_tasks.clear()
        if self._stamped_server is not None:
            self._stamped_server.close()
            await self._stamped_server.wait_closed()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> ExchangeSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    # -- HTTP -------------------------------------------------------------------

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        return await self._stamped(request, handler, self._handle)

    async def _stamped(
        self,
        request: web.Request,
        handler: Any,
        inner: Callable[[web.Request, Any], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """``inner(request, handler)``, its time stamped when the connection is measured."""
        stamper = self._stampers.get(request.transport) if request.transport else None
        if stamper is None:
            return await inner(request, handler)
        stamper.begin()
        try:
            return await inner(request, handler)
        finally:
            stamper.end()

    def _arrival_ns(self, request: web.Request) -> int:
        """CLOCK_MONOTONIC ns when ``request``'s first bytes arrived (0: not stamped).

        Read from the connection's stamp, which was taken before any parsing:
        nothing is timed on the order's way through the venue.
        """
        stamper = self._stampers.get(request.transport) if request.transport else None
        return stamper.request_ns if stamper is not None else 0

    async def _handle(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.request_log.append((time.monotonic_ns(), request.method, request.path))
        if request.headers.get("X-API-Key") != self.api_key:
            self._count("unauthorized")
            return json_response({"error": "bad or missing API key"}, 401)
        if self.faults.latency_s:
            await asyncio.sleep(self.faults.latency_s)
        response: web.StreamResponse = await handler(request)
        return response

    def _roll(self, probability: float) -> bool:
        return probability > 0 and self._rng.random() < probability

    async def _post_order(self, request: web.Request) -> web.StreamResponse:
        faults = self.faults
        if self._roll(faults.rate_limit):
            self._count("rate_limited")
            return json_response(
                {"error": "rate limited"}, 429, {"Retry-After": str(faults.retry_after_s)}
            )
        if self._roll(faults.fail_before):
            self._count("fail_before")
            return json_response({"error": "unavailable"}, 503)
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return json_response({"error": "body is not JSON"}, 400)
        if not isinstance(body, dict):
            return json_response({"error": "body is not an object"}, 400)
        client_order_id = body.get("client_order_id")
        if not isinstance(client_order_id, str) or not _CLIENT_ID.fullmatch(client_order_id):
            return json_response({"error": "client_order_id must be 1-64 of [A-Za-z0-9._:-]"}, 400)
        existing = self.orders.get(client_order_id)
        if existing is not None:
            self._count("idempotent_replay")
            return json_response(existing.body(), 200)
        order = self._new_order(body, client_order_id)
        if isinstance(order, str):
            return json_response({"error": order}, 400)
        order.arrival_ns = self._arrival_ns(request)
        self.orders[client_order_id] = order
        self._count("orders")
        self._record(self.matching.submit(order, self._levels(order.symbol)))
        if order.status == "rejected":
            # Post-only and it would have taken: refused whole, with the reason.
            order.reason = POST_ONLY_REJECTED
            self._count("post_only_rejected")
        if self._roll(faults.fail_after):
            self._count("fail_after")
            return json_response({"error": "internal error"}, 500)
        if self._roll(faults.reset):
            self._count("reset")
            transport = request.transport
            if transport is not None:
                transport.abort()
            raise web.HTTPInternalServerError()
        if order.is_open and order.type == "limit" and self._roll(faults.forget):
            self._count("forget")
            order.forgotten = True
        if self._roll(faults.hang):
            self._count("hang")
            await asyncio.sleep(faults.hang_s)
        elif self._roll(faults.late_answer):
            self._count("late_answer")
            await asyncio.sleep(faults.late_answer_s)
        return json_response(order.body(), 200)

    def _new_order(self, body: dict[str, Any], client_order_id: str) -> SimOrder | str:
        symbol = body.get("symbol")
        inst = self.instruments.get(symbol) if isinstance(symbol, str) else None
        if inst is None:
            return f"unknown symbol {symbol!r}"
        side = body.get("side")
        if side not in ("buy", "sell"):
            return "side must be buy or sell"
        kind = body.get("type")
        if kind not in ("limit", "market"):
            return "type must be limit or market"
        tif = body.get("time_in_force", "GTC")
        if tif not in ("GTC", "IOC"):
            return "time_in_force must be GTC or IOC"
        post_only = body.get("post_only", False)
        if type(post_only) is not bool:
            return "post_only must be true or false"
        if post_only and (kind != "limit" or tif != "GTC"):
            return "post_only needs a GTC limit order"
        price: int | None = None
        # Decimal strings, as the API says: a JSON number (a binary float) is refused.
        for name in ("price", "quantity"):
            if body.get(name) is not None and type(body[name]) is not str:
                return f"{name} must be a decimal string"
        try:
            if kind == "limit":
                if "price" not in body:
                    return "a limit order needs a price"
                price = inst.price_to_ticks(body["price"])
            elif body.get("price") is not None:
                return "a market order has no price"
            quantity = inst.size_to_lots(body.get("quantity"))
        except InvalidValue as exc:
            return f"invalid price or quantity: {exc.reason}"
        if quantity <= 0:
            return "quantity must be positive"
        self._next_order += 1
        return SimOrder(
            client_order_id, inst.symbol, side, kind, price, quantity, tif,
            order_id=f"X-{self._next_order}", instrument=inst, post_only=post_only,
        )  # fmt: skip

    def _levels(self, symbol: str) -> SortedLevels:
        walk = self.walks[symbol]
        return SortedLevels(walk.bids, walk.asks)

    def _record(self, fills: list[MatchFill]) -> None:
        """Append fills to the fills log (``GET /fills``)."""
        for fill in fills:
            order = fill.order
            assert isinstance(order, SimOrder)
            self.fills.append(
                {
                    "fill_id": len(self.fills) + 1,
                    "client_order_id": order.client_order_id,
                    "symbol": order.symbol,
                    "side": order.side,
                    "price": order.instrument.format_price(fill.price),
                    "quantity": order.instrument.format_size(fill.lots),
                    "ts": time.time_ns(),
                }
            )

    async def _get_arrivals(self, request: web.Request) -> web.StreamResponse:
        return json_response(
            [
                {
                    "client_order_id": order.client_order_id,
                    "price": order.instrument.format_price(order.price)
                    if order.price is not None
                    else None,
                    "arrival_ns": order.arrival_ns,
                }
                for order in self.orders.values()
            ],
            200,
        )

    def _read_limited(self) -> web.StreamResponse | None:
        if self._roll(self.faults.read_rate_limit):
            self._count("read_rate_limited")
            return json_response(
                {"error": "rate limited"}, 429, {"Retry-After": str(self.faults.retry_after_s)}
            )
        return None

    async def _get_order(self, request: web.Request) -> web.StreamResponse:
        limited = self._read_limited()
        if limited is not None:
            return limited
        order = self.orders.get(request.match_info["client_order_id"])
        if order is None or order.forgotten:
            return json_response({"error": "unknown order"}, 404)
        return json_response(order.body(), 200)

    async def _delete_order(self, request: web.Request) -> web.StreamResponse:
        order = self.orders.get(request.match_info["client_order_id"])
        if order is None or order.forgotten:
            return json_response({"error": "unknown order"}, 404)
        if order.is_open:
            order.status = "canceled"
            self._count("canceled")
        return json_response(order.body(), 200)

    async def _list_orders(self, request: web.Request) -> web.StreamResponse:
        wanted = request.query.get("status")
        if wanted is not None and wanted != "open":
            # The API lists open orders only; any other filter is a client error.
            return json_response({"error": f"status must be 'open', not {wanted[:40]!r}"}, 400)
        orders = [o for o in self.orders.values() if wanted is None or o.is_open]
        return json_response([o.body() for o in orders], 200)

    async def _get_fills(self, request: web.Request) -> web.StreamResponse:
        limited = self._read_limited()
        if limited is not None:
            return limited
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            return json_response({"error": "since must be an integer"}, 400)
        return json_response(self.fills[max(0, since) :], 200)

    # -- the book walk and the feed ------------------------------------------------

    def step(self, symbols: Iterable[str] | None = None) -> list[bytes]:
        """Move every book (or those of ``symbols``) once; fill resting orders.

        Returns the frames to publish.
        """
        frames = []
        faults = self.faults
        walks = self.walks
        for symbol in walks if symbols is None else symbols:
            walk = walks[symbol]
            if self._roll(faults.feed_gap):
                walk.seq += 1  # a sequence number the engine will never see
                self._count("feed_gap")
            frame = walk.next_frame()
            frames.append(frame)
            if self._roll(faults.feed_duplicate):
                frames.append(frame)
                self._count("feed_duplicate")
            if self._roll(faults.feed_cross):
                # A bid above the best ask, then its removal.
                crossing = walk.instrument.format_price(walk.best_ask + 1)
                for size in ("1", "0"):
                    walk.seq += 1
                    update = {"type": "update", "symbol": symbol, "seq": walk.seq,
                              "bids": [[crossing, size]], "asks": []}  # fmt: skip
                    frames.append(orjson.dumps(update, option=orjson.OPT_APPEND_NEWLINE))
                self._count("feed_cross")
            since = self._since_snapshot.get(symbol, 0) + 1
            if since >= self.snapshot_every:
                # Periodic snapshots let a book that went stale recover.
                frames.append(walk.snapshot_frame())
                since = 0
            self._since_snapshot[symbol] = since
            self._record(self.matching.on_book(symbol, self._levels(symbol)))
            if faults.expire:
                self._expire_some(symbol)
        return frames

    def _expire_some(self, symbol: str) -> None:
        """The ``expire`` fault: each resting order of ``symbol`` may be canceled by the venue."""
        for order in self.matching.resting_of(symbol):
            if self._roll(self.faults.expire):
                self.matching.cancel(order.client_order_id)
                assert isinstance(order, SimOrder)
                self._expired(order)

    def _expired(self, order: SimOrder) -> None:
        """``order`` was just canceled by the venue (its status is already ``canceled``)."""
        order.reason = "expired"
        self._count("expired")

    async def _publish_forever(self, host: str, port: int, symbols: list[str]) -> None:
        delay = 0.2
        while True:
            try:
                async with Publisher(host, port) as publisher:
                    delay = 0.2
                    await publisher.send(b"".join(self.walks[s].snapshot_frame() for s in symbols))
                    # Each shard publishes its share of the total rate.
                    interval = len(symbols) / self.rate
                    while True:
                        frames = self.step(symbols)
                        await publisher.send(b"".join(frames))
                        self.published += len(frames)
                        await asyncio.sleep(interval)
            except (ConnectionError, OSError) as exc:
                log.info("feed %s:%d unavailable (%s); retrying in %.1f s", host, port, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


class _Closing(asyncio.Protocol):
    """The ``accept_close`` fault: a connection closed as soon as it is accepted."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.abort()


class _Stamping(asyncio.Protocol):
    """Forwards to aiohttp's request handler; stamps the first bytes of each request.

    Clients of the order API send one request at a time per connection: the
    first bytes that arrive while no request is being handled start the
    next one. Bytes that arrive while one is handled (a body sent after its
    head) are part of it and are not stamped.
    """

    def __init__(self, inner: Any, stampers: dict[asyncio.BaseTransport, _Stamping]) -> None:
        self.inner = inner
        self.stampers = stampers
        self.transport: asyncio.BaseTransport | None = None
        self.arrival_ns = 0  # the next request's first bytes
        self.request_ns = 0  # the request being handled
        self.handling = False

    def begin(self) -> None:
        """A request is being handled: its stamp moves to ``request_ns``."""
        self.handling = True
        self.request_ns, self.arrival_ns = self.arrival_ns, 0

    def end(self) -> None:
        self.handling = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.stampers[transport] = self
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self.handling and not self.arrival_ns:
            self.arrival_ns = time.monotonic_ns()
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        result: bool | None = self.inner.eof_received()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.stampers.pop(self.transport, None)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()
