"""The order gateway: the exchange order API over httpx, behind a breaker.

:class:`HttpGateway` is an :class:`~trading_engine.orders.OrderSink`. The
engine calls ``allow``/``submit``/``cancel`` synchronously on the hot
path; each request then runs as a task on the loop, over one long-lived
``httpx.AsyncClient`` (keep-alive pool, ``[gateway] timeout_s``, the API
key read from the environment variable the config names, never logged).

Outcome policy, per the exchange API:

* 200: the answer's ``filled_quantity`` and ``avg_price`` go to
  ``on_order_report`` (the engine credits the position at once), then its
  status to ``on_status``; single fills are learned from ``GET /fills``
  (polled, and polled at once when an answer reports fills the feed has
  not listed) and passed with their ``fill_id``, so the engine adds only
  what answers did not and positions equal the exchange's fills log.
* 400/401/403 (any 4xx but 429): the order is ``rejected``. Not a breaker
  failure: the venue is healthy.
* 429: retried after ``Retry-After`` seconds with the same
  ``client_order_id``; a local token bucket keeps requests under
  ``[gateway] max_requests_per_s``.
* timeout, connection error, 5xx: the outcome is unknown. The order is
  marked ``unknown`` and settled by ``GET /orders/{client_order_id}``
  with exponential backoff and jitter; a 404 there means the exchange has
  not seen it, and the order is sent again *with the same id* (the
  exchange treats the id as an idempotency key), never under a new one.

Every call's outcome feeds the circuit breaker (5xx, timeouts and
connection errors are failures); while it is open, ``allow`` is False and
the engine denies orders at once with ``circuit_open``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
import orjson

from ..config import GatewayConfig
from ..core.breaker import CircuitBreaker
from ..core.errors import InvalidValue
from ..core.instruments import Instrument
from ..core.orders import ExecutionListener, Order, OrderStatus, OrderType, TimeInForce
from ..core.protocol import Side
from ..core.risk import TokenBucket
from ..lowlevel.metrics import LatencyHistogram
from ..lowlevel.tasks import cancel_and_wait
from .fastpath import Answer, FastOrderChannel, FastPathError

__all__ = ["HttpGateway", "Reply"]

log = logging.getLogger("trading_engine.gateway")

_STATUSES = {status.value: status for status in OrderStatus}

#: An exchange answer from either path (httpx.Response or fastpath.Answer).
Reply = httpx.Response | Answer


class HttpGateway:
    """OrderSink speaking the exchange order API with httpx."""

    def __init__(
        self,
        config: GatewayConfig,
        listener: ExecutionListener,
        instruments: Mapping[str, Instrument],
        breaker: CircuitBreaker,
        *,
        api_key: str,
        clock: Callable[[], int] = time.monotonic_ns,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        fast: FastOrderChannel | None = None,
    ) -> None:
        self.config = config
        self.breaker = breaker
        self.fast = fast
        self._listener = listener
        self._instruments = instruments
        self._body_fields: dict[tuple[str, Side, OrderType, TimeInForce], bytes] = {}
        self._clock = clock
        self._rng = rng or random.Random()
        self.client = httpx.AsyncClient(
            base_url=config.base_url,
            headers={"X-API-Key": api_key, "Content-Type": "application/json"},
            timeout=httpx.Timeout(config.timeout_s),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
            transport=transport,
        )
        self._bucket = TokenBucket(
            config.max_requests_per_s, clock, burst=max(1, int(config.max_requests_per_s))
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._known: dict[str, Order] = {}
        self._placing: set[str] = set()
        self._fills_cursor = 0
        self._fills_wanted = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self.roundtrip = LatencyHistogram()
        self.counts: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"HttpGateway({self.config.base_url!r}, breaker={self.breaker.state.label})"

    # -- OrderSink ----------------------------------------------------------------

    def allow(self) -> bool:
        return self.breaker.allow()

    def submit(self, order: Order) -> None:
        self._known[order.client_order_id] = order
        fast = self.fast
        if fast is not None and self._bucket.take():
            body = self.order_body(order)
            start = self._clock()
            waiter = fast.try_send(body)
            if waiter is not None:
                # The request is on the socket: tick-to-trade ends here, exactly.
                self._listener.on_written(order)
                self._spawn(
                    self._place(order, body, (waiter, start)), f"place:{order.client_order_id}"
                )
                return
            self._bucket.give_back()
        self._spawn(self._place(order), f"place:{order.client_order_id}")

    def cancel(self, order: Order) -> None:
        self._spawn(self._cancel(order), f"cancel:{order.client_order_id}")

    def forget(self, client_order_id: str) -> None:
        """Drop a closed, settled order the engine no longer keeps (its late fills are ignored)."""
        self._known.pop(client_order_id, None)

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Start polling fills and warming the fast path (needs a running loop)."""
        if self._poller is None:
            loop = asyncio.get_running_loop()
            self._poller = loop.create_task(self._poll_fills_forever(), name="gateway-fills")
            if self.fast is not None:
                self._spawn(self.fast.start(), "fast-path-connect")

    async def drain(self, within_s: float = 5.0) -> bool:
        """Wait for every in-flight request to finish; False if some did not."""
        deadline = time.monotonic() + within_s
        while self._tasks:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.error(
                    "still in flight after %.1f s: %s",
                    within_s,
                    ", ".join(sorted(task.get_name() for task in self._tasks)),
                )
                return False
            await asyncio.wait(set(self._tasks), timeout=remaining)
        return True

    async def close(self) -> None:
        """Stop polling, read the last fills, cancel what is in flight, close."""
        await cancel_and_wait(self._poller)
        self._poller = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        if self.fast is not None:
            await self.fast.close()
        if self._known and not self.client.is_closed:
            try:
                await self.poll_fills()
            except Exception:
                log.exception("reading the last fills failed")
        await self.client.aclose()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    # -- requests -------------------------------------------------------------------

    def order_body(self, order: Order) -> bytes:
        """The ``POST /orders`` JSON body.

        The fields an order shares with others of its symbol, side, type and
        time in force are encoded once; the client order id (restricted to
        ``[A-Za-z0-9._:-]``) and the decimal strings need no escaping. Half
        the cost of building a dict for ``orjson.dumps``, on the hot path.
        """
        key = (order.symbol, order.side, order.type, order.time_in_force)
        fixed = self._body_fields.get(key)
        if fixed is None:
            fixed = self._body_fields[key] = orjson.dumps(
                {
                    "symbol": order.symbol,
                    "side": order.side.value,
                    "type": order.type.value,
                    "time_in_force": order.time_in_force.value,
                }
            )[1:-1]
        inst = self._instruments[order.symbol]
        body = b'{"client_order_id":"%s",%s,"quantity":"%s"' % (
            order.client_order_id.encode(),
            fixed,
            inst.format_size(order.quantity).encode(),
        )
        if order.type is OrderType.LIMIT:
            assert order.price is not None
            body += b',"price":"%s"' % inst.format_price(order.price).encode()
        return body + b"}"

    async def _request(
        self, method: str, url: str, content: bytes | None = None, written: Order | None = None
    ) -> httpx.Response | None:
        """One call through the rate limiter, timed and recorded in the breaker.

        Returns None when the outcome is unknown (timeout, connection error).
        ``written``: the order whose tick-to-trade ends as its request is
        handed to httpx (which does not expose the moment the bytes reach
        the socket; nothing else runs in between).
        """
        # The bucket refills with time, not on an event, so sleeping is right.
        while not self._bucket.take():  # noqa: ASYNC110
            await asyncio.sleep(self._bucket.wait_s())
        if written is not None:
            self._listener.on_written(written)
        start = self._clock()
        try:
            response = await self.client.request(method, url, content=content)
        except httpx.TimeoutException:
            self.breaker.record(self._clock() - start, failed=True)
            self._count("timeout")
            return None
        except httpx.TransportError as exc:
            self.breaker.record(self._clock() - start, failed=True)
            self._count("connection_error")
            log.warning("%s %s: %s", method, url, type(exc).__name__)
            return None
        elapsed = self._clock() - start
        self.roundtrip.observe_ns(elapsed)
        self.breaker.record(elapsed, failed=response.status_code >= 500)
        return response

    async def _fast_answer(self, waiter: asyncio.Future[Answer], start_ns: int) -> Answer | None:
        """The fast path's answer, timed and recorded like an httpx call."""
        assert self.fast is not None
        try:
            async with asyncio.timeout(self.config.timeout_s):
                answer = await waiter
        except TimeoutError:
            self.fast.abandon(waiter)
            self.breaker.record(self._clock() - start_ns, failed=True)
            self._count("timeout")
            return None
        except FastPathError as exc:
            self.breaker.record(self._clock() - start_ns, failed=True)
            self._count("connection_error")
            log.warning("fast path POST /orders: %s", exc)
            return None
        elapsed = self._clock() - start_ns
        self.roundtrip.observe_ns(elapsed)
        self.breaker.record(elapsed, failed=answer.status_code >= 500)
        return answer

    async def _place(
        self,
        order: Order,
        body: bytes | None = None,
        sent: tuple[asyncio.Future[Answer], int] | None = None,
    ) -> None:
        """Place an order (its first request already sent when ``sent`` is given)."""
        if body is None:
            body = self.order_body(order)
        self._placing.add(order.client_order_id)
        try:
            await self._place_until_answered(order, body, sent)
        finally:
            self._placing.discard(order.client_order_id)
        if order.cancel_requested and order.is_open:
            # A cancel asked for while the placement was unsettled.
            await self._cancel(order)

    async def _place_until_answered(
        self, order: Order, body: bytes, sent: tuple[asyncio.Future[Answer], int] | None
    ) -> None:
        first: Order | None = order if sent is None else None
        while True:
            response: Reply | None
            if sent is not None:
                response = await self._fast_answer(*sent)
                sent = None
            else:
                response = await self._request("POST", "/orders", body, written=first)
            first = None
            if response is None or response.status_code >= 500:
                if order.status is not OrderStatus.PENDING_NEW:
                    # Its state was learned meanwhile (a cancel's answer): settled.
                    return
                self._count("unknown")
                self._listener.on_status(order.client_order_id, OrderStatus.UNKNOWN, "no answer")
                await self._settle(order, body)
                return
            code = response.status_code
            if code == 200:
                self._apply(order, response)
                return
            if code == 429:
                self._count("rate_limited")
                await asyncio.sleep(_retry_after_s(response))
                continue
            self._count("rejected")
            self._listener.on_status(order.client_order_id, OrderStatus.REJECTED, _error(response))
            return

    async def _settle(self, order: Order, body: bytes) -> None:
        """Learn the outcome of an order whose request got no clear answer."""
        delay = self.config.settle_backoff_s
        while True:
            await asyncio.sleep(delay * (0.5 + self._rng.random()))
            delay = min(delay * 2, 2.0)
            response = await self._request("GET", f"/orders/{order.client_order_id}")
            if response is None or response.status_code >= 500:
                continue
            if response.status_code == 200:
                self._count("settled")
                self._apply(order, response)
                return
            if response.status_code == 404:
                # Never seen: send it again under the same id (idempotent).
                self._count("resent")
                resent = await self._request("POST", "/orders", body)
                if resent is not None and resent.status_code == 200:
                    self._apply(order, resent)
                    return
                if resent is not None and 400 <= resent.status_code < 500:
                    if resent.status_code == 429:
                        await asyncio.sleep(_retry_after_s(resent))
                        continue
                    self._listener.on_status(
                        order.client_order_id, OrderStatus.REJECTED, _error(resent)
                    )
                    return
                continue
            self._listener.on_status(order.client_order_id, OrderStatus.REJECTED, _error(response))
            return

    async def _cancel(self, order: Order) -> None:
        """DELETE until the exchange answers with the order's final state.

        A 404 while the order's placement is still being settled means the
        exchange has not taken it yet: the placement sends the cancel again
        once it has an answer (see :meth:`_place`).
        """
        delay = self.config.settle_backoff_s
        while order.is_open:
            response = await self._request("DELETE", f"/orders/{order.client_order_id}")
            if response is not None and response.status_code == 200:
                self._apply(order, response)
                return
            if response is not None and response.status_code == 404:
                if order.client_order_id in self._placing:
                    return  # the placement will cancel it when it is settled
            elif response is not None and response.status_code == 429:
                await asyncio.sleep(_retry_after_s(response))
                continue
            elif response is not None and 400 <= response.status_code < 500:
                log.error("cancel of %s refused: %s", order.client_order_id, _error(response))
                return
            await asyncio.sleep(delay * (0.5 + self._rng.random()))
            delay = min(delay * 2, 1.0)

    def _apply(self, order: Order, response: Reply) -> None:
        try:
            body = orjson.loads(response.content)
            status = _STATUSES[body["status"]]
            filled = self._instruments[order.symbol].size_to_lots(body["filled_quantity"])
            average = _avg_price(body.get("avg_price"))
        except (orjson.JSONDecodeError, KeyError, TypeError, InvalidValue):
            log.error(
                "unreadable order answer for %s: %r", order.client_order_id, response.content[:200]
            )
            self._count("bad_answer")
            self._listener.on_order_fault(order.client_order_id, "unreadable_answer")
            return
        self._listener.on_accepted(order.client_order_id, body.get("order_id"))
        if filled > order.feed_filled:
            self._fills_wanted.set()
        self._listener.on_order_report(order.client_order_id, filled, average)
        if status is OrderStatus.PENDING_NEW or status is OrderStatus.UNKNOWN:
            return
        if status is order.status and status is not OrderStatus.PARTIALLY_FILLED:
            return
        self._listener.on_status(order.client_order_id, status, body.get("reason"))

    # -- fills ------------------------------------------------------------------------

    async def poll_fills(self) -> int:
        """Read new fills once; returns how many were applied."""
        response = await self._request("GET", f"/fills?since={self._fills_cursor}")
        if response is None or response.status_code != 200:
            return 0
        applied = 0
        for fill in orjson.loads(response.content):
            fill_id = int(fill["fill_id"])
            if fill_id <= self._fills_cursor:
                continue
            self._fills_cursor = fill_id
            order = self._known.get(fill["client_order_id"])
            if order is None:
                continue  # another client's order
            inst = self._instruments[order.symbol]
            try:
                price = inst.price_to_ticks(fill["price"])
                lots = inst.size_to_lots(fill["quantity"])
            except InvalidValue:
                log.error("unreadable fill %r", fill)
                self._listener.on_order_fault(order.client_order_id, "unreadable_fill")
                continue
            self._listener.on_fill(order.client_order_id, price, lots, fill_id)
            applied += 1
        return applied

    async def _poll_fills_forever(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
            # cancellation that races its timeout, and the poller never stops.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.fills_poll_s):
                    await self._fills_wanted.wait()
            self._fills_wanted.clear()
            try:
                await self.poll_fills()
            except Exception:
                log.exception("polling fills failed")

    async def open_orders(self) -> list[dict[str, Any]]:
        """The exchange's open orders (for reconciliation)."""
        response = await self._request("GET", "/orders?status=open")
        if response is None or response.status_code != 200:
            raise ConnectionError("could not read open orders")
        result: list[dict[str, Any]] = orjson.loads(response.content)
        return result


def _avg_price(value: object) -> Decimal | None:
    """An answer's ``avg_price``: the exact decimal, None when null; InvalidValue otherwise."""
    if value is None:
        return None
    if type(value) is str:
        text = value
    elif type(value) is int or type(value) is float:
        text = repr(value)  # a float's shortest round-tripping form
    else:
        raise InvalidValue("malformed", value)
    try:
        price = Decimal(text)
    except InvalidOperation:
        raise InvalidValue("malformed", value) from None
    if not price.is_finite() or price <= 0:
        raise InvalidValue("malformed", value)
    return price


def _retry_after_s(response: Reply) -> float:
    value = response.headers.get("Retry-After", "1")
    try:
        return max(0.0, float(int(value)))
    except ValueError:
        return 1.0


def _error(response: Reply) -> str:
    try:
        body = orjson.loads(response.content)
        return f"{response.status_code}: {body.get('error', '')}"[:200]
    except (orjson.JSONDecodeError, AttributeError):
        return f"{response.status_code}"
