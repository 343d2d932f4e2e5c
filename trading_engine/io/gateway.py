"""The order gateway: the exchange order API, paced, behind a breaker.

:class:`HttpGateway` is an :class:`~trading_engine.core.orders.OrderSink`.
The engine calls ``allow``/``submit``/``cancel`` synchronously on the hot
path. ``POST /orders`` goes out on the pre-warmed fast path
(:mod:`trading_engine.io.fastpath`) when ``[gateway] mode = "fast"`` (the
default) and a warm connection is idle; everything else (reads, cancels,
fills, settlement, re-sends) goes over one long-lived
``httpx.AsyncClient``. Both speak ``https://`` with
``ssl.create_default_context()`` (plus ``[gateway] ca_file`` if set).

The gateway keeps only requests in flight, never a second order store:
the orders themselves, their fills and their exposure belong to the
engine's ledger, which it reaches through the
:class:`~trading_engine.core.orders.ExecutionListener`. Answers are parsed
here, once, into typed reports (:mod:`trading_engine.core.reports`) with
every field bounded.

Pacing: one :class:`~trading_engine.io.scheduler.RequestScheduler` owns
the venue's request budget (``max_requests_per_s`` in any 1 s) with the
priorities cancel > order > settle > poll. A new order takes a slot at
once (or within ``max_order_wait_s``) or is refused now: ``submit``
returns the reason (``rate_limited``, ``halted``). A 429 pauses the whole
venue until its ``Retry-After`` (capped by ``max_retry_after_s``); the
order answered 429 is sent again at most ``order_retry_max`` times within
``order_retry_deadline_s`` of its first send, behind every waiting cancel,
or closed ``rejected`` (``venue_rate_limited``). An order canceled before
its request leaves (waiting for a slot, or out a 429) is never sent.

Outcomes: every answer to every request has one, listed in
docs/design.md ("Order outcomes"). The rule under all of it: an answer
that says nothing about an order leaves the order ``unknown``, and an
unknown order is settled by reading it back with the same
``client_order_id``; a re-send only follows a read that answered 404.
Resting orders are audited: every half of ``resting_order_check_s`` the
venue's open orders are listed, and a resting order missing from the
list is read back (a venue-initiated cancel or expiry is seen within
``resting_order_check_s``).

The circuit breaker sees order placements only (first sends and
re-sends, 429 retries excluded); reads have their own failure counts and
back-off (:class:`~trading_engine.lowlevel.backoff.Backoff`, the one
jitter rule).

Counters (:attr:`HttpGateway.counts`, exported as
``trading_engine_gateway_events_total{event}``): see ``EVENTS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import httpx
import orjson

from ..config import GatewayConfig
from ..core.breaker import CircuitBreaker
from ..core.errors import UnreadableAnswer
from ..core.instruments import Instrument
from ..core.orders import ExecutionListener, Order, OrderStatus, OrderType, TimeInForce
from ..core.protocol import Side
from ..core.reports import MAX_FILL_ID, parse_fill, parse_order_body
from ..lowlevel.backoff import Backoff
from ..lowlevel.metrics import LatencyHistogram
from ..lowlevel.tasks import TaskCrashes, cancel_and_wait
from .fastpath import Answer, FastOrderChannel, FastPathError, UnparsedAnswer
from .scheduler import Dropped, Priority, RequestScheduler, retry_after_s

__all__ = ["EVENTS", "HttpGateway", "Reply", "ssl_context"]

log = logging.getLogger("trading_engine.gateway")

_REJECTED = OrderStatus.REJECTED
_CANCELED = OrderStatus.CANCELED
#: Decimal strings kept for order bodies before the cache starts again.
_DECIMAL_TEXTS_MAX: Final = 65_536

#: The reason of an order refused locally for want of a request slot.
RATE_LIMITED: Final = "rate_limited"
#: The reason of an order closed locally: a cancel and a read both answered 404.
NOT_FOUND: Final = "not_found"
#: The reason of an order closed locally: never taken, and a halt or stop began.
HALTED: Final = "halted"
#: The reason of an order closed locally: answered 429 past its retries or deadline.
VENUE_RATE_LIMITED: Final = "venue_rate_limited"
#: The reason of an order closed locally: canceled before its request left.
CANCELED_UNSENT: Final = "canceled_unsent"

#: The reason of an order closed locally: unknown, never seen by the venue, and too
#: old to send again (``order_retry_deadline_s``).
RESEND_EXPIRED: Final = "resend_expired"

#: Every counter the gateway keeps (always exported, 0 until seen).
EVENTS: Final = (
    "timeout",  # a request got no answer within timeout_s
    "connection_error",  # a request's connection failed before an answer
    "unknown",  # an order's placement outcome became unknown
    "settled",  # an unknown order was settled by reading it back
    "resent",  # an order read back as 404 was sent again under its id
    "resend_held",  # a re-send waited because the breaker was open
    "rate_limited",  # a new order refused locally: no request slot
    "venue_rate_limited",  # a 429 answer (any request)
    "retry_abandoned",  # an order answered 429 closed: past its retries or deadline
    "canceled_unsent",  # an order canceled before its request left: never sent
    "resend_expired",  # an unknown order read back 404 past order_retry_deadline_s: closed
    "unreadable_answer",  # a 200 order answer that could not be read
    "unparsed_answer",  # a fast-path answer the client could not parse (not the venue's failure)
    "unreadable_fill",  # a fill of ours that could not be read
    "unreadable_fills",  # a fills answer that was not a readable list, or an entry without id
    "not_found",  # an order closed locally after DELETE and GET answered 404
    "cancel_refused",  # a cancel answered 4xx (not 404/429)
    "cancel_failed",  # a cancel with no answer or a 5xx (retried)
    "rejected",  # an order answered 4xx (not 429)
    "dropped",  # queued order or poll work dropped by a halt or stop
    "halted_unsent",  # an order never taken, closed locally after a halt
    "read_failed",  # a read (GET) that said nothing (not 200/404)
    "resting_checks",  # a listing of the venue's open orders for the resting-order audit
    "resting_missing",  # a resting order missing from the venue's list (read back)
    "fills_log_checks",  # a read of the fills log at the cursor (is it still the same log?)
)

#: Reply from either path: an httpx.Response or a fast-path Answer.
Reply = httpx.Response | Answer


def ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """The TLS context of both paths: the system's trust store plus ``ca_file``.

    Raises ``OSError``/``ssl.SSLError`` when ``ca_file`` cannot be read.
    """
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


class HttpGateway:
    """OrderSink speaking the exchange order API (fast path and httpx)."""

    def __init__(
        self,
        config: GatewayConfig,
        listener: ExecutionListener,
        instruments: Mapping[str, Instrument],
        breaker: CircuitBreaker,
        *,
        api_key: str,
        clock: Callable[[], int] = time.monotonic_ns,
        wall_clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        fast: FastOrderChannel | None = None,
        crashes: TaskCrashes | None = None,
    ) -> None:
        self.config = config
        #: Crash accounting of the request tasks (the engine's; a crash halts trading).
        self.crashes = crashes if crashes is not None else TaskCrashes()
        self.breaker = breaker
        self.fast = fast
        self._listener = listener
        self._instruments = instruments
        self._decimal_texts: dict[tuple[str, bool, int], bytes] = {}
        self._body_fields: dict[tuple[str, Side, OrderType, TimeInForce, bool], bytes] = {}
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()
        verify: ssl.SSLContext | bool = True
        if config.base_url.startswith("https://"):
            verify = ssl_context(config.ca_file)
        self.client = httpx.AsyncClient(
            base_url=config.base_url,
            headers={"X-API-Key": api_key, "Content-Type": "application/json"},
            timeout=httpx.Timeout(config.timeout_s),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
            transport=transport,
            verify=verify,
        )
        self.scheduler = RequestScheduler(config.max_requests_per_s, clock)
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Orders whose placement (first send, 429 retries, settlement) is running.
        self._placing: set[str] = set()
        #: Orders not on the venue yet: waiting for a slot or out a 429. The task
        #: that will send each, and whether it still holds a breaker permit.
        self._unsent: dict[str, tuple[asyncio.Task[Any] | None, bool]] = {}
        #: Orders with a cancel running (never two at once).
        self._canceling: set[str] = set()
        self._last_sent_ns: dict[str, int] = {}
        self._fills_cursor = 0
        #: The fills log was found reset (reported once until it is whole again).
        self._fills_log_reset = False
        self._fills_wanted = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self._auditor: asyncio.Task[None] | None = None
        self.roundtrip = LatencyHistogram()
        self.counts: Counter[str] = Counter()
        #: Failed reads by what was read (``order``, ``fills``, ``open_orders``).
        self.read_failures: Counter[str] = Counter()
        #: True once the exchange answered a request (``GET /fills``) with 200:
        #: the address and the API key work (``/readyz``).
        self.reached = False

    def __repr__(self) -> str:
        return f"HttpGateway({self.config.base_url!r}, breaker={self.breaker.state.label})"

    def _backoff(self) -> Backoff:
        return Backoff(
            self.config.settle_backoff_s,
            max(self.config.settle_backoff_s, self.config.read_backoff_max_s),
            self._rng,
        )

    # -- OrderSink ----------------------------------------------------------------

    def allow(self) -> bool:
        """The breaker's permission for one placement (a trial while half-open)."""
        return self.breaker.allow()

    def submit(self, order: Order) -> str | None:
        """Send now, or refuse now: returns ``rate_limited`` or ``halted``, else None."""
        scheduler = self.scheduler
        if not scheduler.accepting_orders:
            return self._refused(HALTED)
        if scheduler.try_now(Priority.ORDER):
            self._send_first(order)
            return None
        wait_s = self.config.max_order_wait_s
        if wait_s > 0 and not scheduler.paused():
            cid = order.client_order_id
            task = self._spawn(self._place_after_wait(order, wait_s), f"place:{cid}")
            self._unsent[cid] = (task, True)
            return None
        return self._refused(RATE_LIMITED)

    def cancel(self, order: Order) -> None:
        """Cancel ``order``: locally if its request has not left, else ``DELETE`` it.

        Never two cancels of one order at once: a cancel already running
        for it is enough.
        """
        cid = order.client_order_id
        unsent = self._unsent.pop(cid, None)
        if unsent is not None:
            task, holds_permit = unsent
            if task is not None and task is not asyncio.current_task():
                task.cancel()
            if holds_permit:
                self.breaker.release()
            self.counts["canceled_unsent"] += 1
            self._listener.on_status(cid, _CANCELED, CANCELED_UNSENT)
            return
        if cid in self._canceling:
            return
        self._canceling.add(cid)
        self._spawn(self._cancel(order), f"cancel:{cid}")

    def forget(self, client_order_id: str) -> None:
        """A closed order left the ledger: nothing of it is kept here but requests in flight."""
        self._last_sent_ns.pop(client_order_id, None)

    def stop_orders(self) -> None:
        """A halt or stop began: no new order leaves; queued order and poll work is dropped."""
        self.counts["dropped"] += self.scheduler.stop_orders()

    def resume_orders(self) -> None:
        """Trading resumed: new orders may have request slots again."""
        self.scheduler.resume_orders()

    def not_ready(self) -> str | None:
        """Why orders cannot go yet: the exchange not reached with this key, or None."""
        if self.reached:
            return None
        return f"the gateway has not reached the exchange at {self.config.base_url} yet"

    def breaker_state(self) -> str:
        return str(self.breaker.state.label)

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Start polling fills, auditing resting orders and warming the fast path."""
        if self._poller is None:
            loop = asyncio.get_running_loop()
            self._poller = self.crashes.spawn(
                self._poll_fills_forever(), name="gateway-fills", kind="fills-poll",
                halts="gateway", loop=loop,
            )  # fmt: skip
            self._auditor = self.crashes.spawn(
                self._audit_forever(), name="gateway-audit", kind="resting-audit",
                halts="gateway", loop=loop,
            )  # fmt: skip
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
        """Stop polling and auditing, read the last fills, cancel what is in flight, close."""
        await cancel_and_wait(self._poller)
        await cancel_and_wait(self._auditor)
        self._poller = self._auditor = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        if self.fast is not None:
            await self.fast.close()
        if self.scheduler.granted[Priority.ORDER] and not self.client.is_closed:
            try:
                await self.poll_fills()
            except Exception:
                log.exception("reading the last fills failed")
        self.scheduler.close()
        await self.client.aclose()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        # The kind is the name's first word (place, cancel, read-back): bounded labels.
        kind = name.partition(":")[0]
        halts = None if kind == "fast-path-connect" else "gateway"
        task = self.crashes.spawn(coro, name=name, kind=kind, halts=halts)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def tasks_in_flight(self) -> int:
        """Request tasks alive (placements, settlements, cancels)."""
        return len(self._tasks)

    @property
    def orders_in_flight(self) -> int:
        """Orders with a request in flight or waiting to be sent (placements, cancels)."""
        return len(self._placing | self._canceling | self._unsent.keys())

    # -- requests -------------------------------------------------------------------

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
        texts = self._decimal_texts
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
        texts = self._decimal_texts
        if len(texts) >= _DECIMAL_TEXTS_MAX:
            texts.clear()
        texts[key] = text
        return text

    def _refused(self, reason: str) -> str:
        """A new order refused locally (it never left): the breaker permit is given back."""
        self.breaker.release()
        self.counts[RATE_LIMITED if reason == RATE_LIMITED else "halted_unsent"] += 1
        return reason

    def _send_first(self, order: Order) -> None:
        """The first request of an order whose slot is taken: fast path if a connection is idle."""
        body = self.order_body(order)
        fast = self.fast
        cid = order.client_order_id
        self._placing.add(cid)
        if fast is not None:
            start = self._clock()
            listener = self._listener
            # Tick-to-trade ends as the request is handed to the kernel.
            waiter = fast.try_send(body, lambda: listener.on_written(order))
            if waiter is not None:
                self._last_sent_ns[cid] = start
                self._spawn(self._place(order, body, (waiter, start)), f"place:{cid}")
                return
        self._spawn(self._place(order, body, slot_taken=True), f"place:{cid}")

    async def _place_after_wait(self, order: Order, wait_s: float) -> None:
        cid = order.client_order_id
        try:
            async with asyncio.timeout(wait_s):
                await self.scheduler.acquire(Priority.ORDER)
        except (TimeoutError, Dropped):
            if self._unsent.pop(cid, None) is not None:
                reason = RATE_LIMITED if self.scheduler.accepting_orders else HALTED
                self._listener.on_status(cid, _REJECTED, self._refused(reason))
            return
        if self._unsent.pop(cid, None) is None:
            return  # canceled while it waited: never sent
        self._send_first(order)

    # -- placing ----------------------------------------------------------------------

    async def _place(
        self,
        order: Order,
        body: bytes,
        sent: tuple[asyncio.Future[Answer], int] | None = None,
        *,
        slot_taken: bool = False,
    ) -> None:
        """Place an order until its outcome is known (its first request may be sent)."""
        cid = order.client_order_id
        self._placing.add(cid)
        try:
            await self._placed(order, body, sent, slot_taken)
        finally:
            self._placing.discard(cid)
            self._unsent.pop(cid, None)
            self._last_sent_ns.pop(cid, None)
        if order.cancel_requested and order.is_open and cid not in self._canceling:
            # A cancel asked for while the placement was unsettled.
            self._canceling.add(cid)
            await self._cancel(order)

    async def _placed(
        self,
        order: Order,
        body: bytes,
        sent: tuple[asyncio.Future[Answer], int] | None,
        slot_taken: bool,
    ) -> None:
        cid = order.client_order_id
        first = True
        retries = 0
        deadline_ns = self._clock() + round(self.config.order_retry_deadline_s * 1e9)
        while True:
            reply: Reply | None
            if sent is not None:
                reply = await self._fast_answer(*sent)  # its breaker outcome recorded
                sent = None
            else:
                if not slot_taken:
                    try:
                        await self.scheduler.acquire(Priority.ORDER)
                    except Dropped:
                        # Only a 429'd order waits here: the venue never took it.
                        self._close_unsent(order)
                        return
                    if self._unsent.pop(cid, None) is None:
                        return  # canceled while it waited out the 429: never sent again
                slot_taken = False
                started = self._clock()
                self._last_sent_ns[cid] = started
                reply = await self._http("POST", "/orders", body, written=order if first else None)
                if first:
                    self._record_placement(started, reply)
            first = False
            if reply is None or reply.status_code >= 500:
                if order.status is not OrderStatus.PENDING_NEW:
                    return  # its state was learned meanwhile (a cancel's answer)
                self._unknown(order, "no answer" if reply is None else f"{reply.status_code}")
                await self._settle(order, body)
                return
            code = reply.status_code
            if code == 200:
                if not self._apply(order, reply):
                    self._unknown(order, "unreadable answer")
                    await self._settle(order, body)
                return
            if code == 429:
                delay = self._venue_paused(reply)
                retries += 1
                resend_ns = self._clock() + round(delay * 1e9)
                if retries > self.config.order_retry_max or resend_ns > deadline_ns:
                    # The venue did not take it: closed now, never sent late.
                    self.counts["retry_abandoned"] += 1
                    self._listener.on_status(cid, _REJECTED, VENUE_RATE_LIMITED)
                    return
                if order.cancel_requested:
                    self.counts["canceled_unsent"] += 1
                    self._listener.on_status(cid, _CANCELED, CANCELED_UNSENT)
                    return
                # Off the venue until its retry: a cancel now closes it locally.
                self._unsent[cid] = (asyncio.current_task(), False)
                await asyncio.sleep(delay)
                continue
            self.counts["rejected"] += 1
            self._listener.on_status(cid, _REJECTED, _error(reply))
            return

    def _unknown(self, order: Order, why: str) -> None:
        if order.status is OrderStatus.PENDING_NEW:
            self.counts["unknown"] += 1
            self._listener.on_status(order.client_order_id, OrderStatus.UNKNOWN, why)

    def _close_unsent(self, order: Order) -> None:
        """An order the venue never took, after a halt or stop began: closed locally."""
        self.counts["halted_unsent"] += 1
        self._listener.on_status(order.client_order_id, _REJECTED, HALTED)

    async def _settle(self, order: Order, body: bytes) -> None:
        """Learn the outcome of an order whose request got no clear answer.

        Reads ``GET /orders/{id}`` with capped exponential back-off and
        jitter until it answers 200 (applied) or 404. A 404 means the venue
        has not seen the order: it is sent again under the same id (the
        idempotency key), with the breaker's permission (while it is open
        the order is read again later instead). After a halt or stop
        nothing is sent again: two 404s at least ``timeout_s`` after the
        last send close it locally (``halted``): the request may still have
        been in flight at the first.
        """
        cid = order.client_order_id
        backoff = self._backoff()
        quiet_404s = 0
        # Past this, a 404 is not answered with a re-send: the order would leave late.
        resend_until_ns = self._clock() + round(self.config.order_retry_deadline_s * 1e9)
        while order.is_open:
            await asyncio.sleep(backoff.next_s())
            reply = await self._read(f"/orders/{cid}", Priority.SETTLE, "order")
            if reply is None:
                continue
            if reply.status_code == 200:
                if self._apply(order, reply):
                    self.counts["settled"] += 1
                    return
                continue
            # 404: the venue has not seen it.
            late = self._clock() > resend_until_ns
            if not self.scheduler.accepting_orders or late:
                quiet_ns = self._clock() - self._last_sent_ns.get(cid, 0)
                if quiet_ns >= self.config.timeout_s * 1e9:
                    quiet_404s += 1
                    if quiet_404s >= 2:
                        if late and self.scheduler.accepting_orders:
                            self.counts["resend_expired"] += 1
                            self._listener.on_status(cid, _REJECTED, RESEND_EXPIRED)
                        else:
                            self._close_unsent(order)
                        return
                continue
            if order.cancel_requested:
                # Never on the venue, and no longer wanted: not sent again.
                self.counts["canceled_unsent"] += 1
                self._listener.on_status(cid, _CANCELED, CANCELED_UNSENT)
                return
            if not self.breaker.allow():
                self.counts["resend_held"] += 1
                continue
            try:
                await self.scheduler.acquire(Priority.ORDER)
            except Dropped:
                self.breaker.release()
                continue
            self.counts["resent"] += 1
            started = self._last_sent_ns[cid] = self._clock()
            resent = await self._http("POST", "/orders", body)
            self._record_placement(started, resent)
            if resent is None or resent.status_code >= 500:
                continue
            if resent.status_code == 200:
                if self._apply(order, resent):
                    return
                continue
            if resent.status_code == 429:
                self._venue_paused(resent)
                continue
            self.counts["rejected"] += 1
            self._listener.on_status(cid, _REJECTED, _error(resent))
            return

    async def _read(self, url: str, priority: Priority, what: str) -> Reply | None:
        """A GET with its slot; the reply when it is 200 or 404, else None (counted).

        Anything else (no answer, 429, 400/401/403, 5xx) says nothing about
        what was read; a 429 also pauses the venue. Raises
        :class:`Dropped` for a poll dropped by a halt or stop.
        """
        await self.scheduler.acquire(priority)
        reply = await self._http("GET", url)
        if reply is not None and reply.status_code in (200, 404):
            self.reached = True
            return reply
        self.counts["read_failed"] += 1
        self.read_failures[what] += 1
        if reply is not None and reply.status_code == 429:
            self._venue_paused(reply)
        return None

    # -- cancelling ---------------------------------------------------------------------

    async def _cancel(self, order: Order) -> None:
        """``DELETE`` until the venue answers with the order's final state (one at a time)."""
        try:
            await self._cancel_until_final(order)
        finally:
            self._canceling.discard(order.client_order_id)

    async def _cancel_until_final(self, order: Order) -> None:
        """DELETE until the venue answers with the order's final state.

        404 while the order's placement is still being settled: the venue
        has not taken it yet, and the placement cancels it once it has an
        answer (see :meth:`_place`). 404 otherwise: the order is read back;
        a second 404 means the venue does not hold it, and it is closed
        locally (``canceled``, reason ``not_found``); a read that says
        nothing closes nothing (the DELETE is tried again). A 4xx refusal
        is counted and the order read back once; it stays open, and a
        halt or stop cancels it again.
        """
        cid = order.client_order_id
        backoff = self._backoff()
        while order.is_open:
            await self.scheduler.acquire(Priority.CANCEL)
            reply = await self._http("DELETE", f"/orders/{cid}")
            if not order.is_open:
                return  # settled meanwhile (its placement's answer, a read)
            code = 0 if reply is None else reply.status_code
            if reply is not None and code == 200:
                if self._apply(order, reply):
                    return  # the venue's word on the cancel (a final state, or why not)
                await self._read_back(order)
                if not order.is_open:
                    return
            elif code == 404:
                if cid in self._placing:
                    return  # the placement cancels it when it is settled
                back = await self._read(f"/orders/{cid}", Priority.CANCEL, "order")
                if not order.is_open:
                    return
                if back is not None and back.status_code == 404:
                    self.counts["not_found"] += 1
                    self._listener.on_order_fault(cid, "not_found")
                    self._listener.on_status(cid, _CANCELED, NOT_FOUND)
                    return
                if back is not None:
                    self._apply(order, back)
            elif reply is not None and code == 429:
                self._venue_paused(reply)
                continue
            elif reply is not None and 400 <= code < 500:
                self.counts["cancel_refused"] += 1
                log.error("cancel of %s refused: %s", cid, _error(reply))
                self._listener.on_order_fault(cid, "cancel_refused")
                await self._read_back(order)
                return
            else:
                self.counts["cancel_failed"] += 1
            await asyncio.sleep(backoff.next_s())

    async def _read_back(self, order: Order, attempts: int = 8) -> None:
        """Read an order back until one readable answer (at most ``attempts`` reads)."""
        cid = order.client_order_id
        backoff = self._backoff()
        for _ in range(attempts):
            reply = await self._read(f"/orders/{cid}", Priority.SETTLE, "order")
            if reply is not None and reply.status_code == 200 and self._apply(order, reply):
                return
            if reply is not None and reply.status_code == 404:
                return
            await asyncio.sleep(backoff.next_s())

    # -- answers ------------------------------------------------------------------------

    def _apply(self, order: Order, reply: Reply) -> bool:
        """Report a 200 order body to the listener; False (counted) if it is not taken."""
        cid = order.client_order_id
        try:
            report = parse_order_body(
                orjson.loads(reply.content), self._instruments[order.symbol], cid
            )
        except (orjson.JSONDecodeError, UnreadableAnswer) as exc:
            log.error("unreadable order answer for %s (%s): %r", cid, exc, reply.content[:200])
            self.counts["unreadable_answer"] += 1
            self._listener.on_order_fault(cid, "unreadable_answer")
            return False
        if not self._listener.on_report(report):
            self.counts["unreadable_answer"] += 1
            return False
        if order.reported > order.feed_filled:
            self._fills_wanted.set()
        return True

    # -- fills ------------------------------------------------------------------------

    async def poll_fills(self) -> int:
        """Read new fills once; returns how many were handed on, -1 if the read failed.

        Every fill above the cursor of a symbol this process trades goes to
        the listener (the ledger keeps what is this engine's and counts
        each id once); the cursor then moves past it. An entry that cannot
        be read is counted and, when its order is this engine's, the order
        is read back (its answer carries the cumulative fill). Raises
        :class:`Dropped` when a halt or stop drops the queued poll.
        """
        fills = await self._read_fills(self._fills_cursor)
        if fills is None:
            return -1
        applied = 0
        listener = self._listener
        # In fill-id order, whatever order the venue listed them in: the
        # cursor must not pass a fill that is still to come in this answer.
        fills.sort(key=_fill_order)
        for entry in fills:
            fill_id = entry.get("fill_id") if isinstance(entry, dict) else None
            if type(fill_id) is not int or not 0 <= fill_id <= MAX_FILL_ID:
                self.counts["unreadable_fills"] += 1
                log.error("fill without a readable id: %r", entry)
                continue
            if fill_id <= self._fills_cursor:
                continue  # redelivered: counted once, when it was new
            self._fills_cursor = fill_id
            try:
                fill = parse_fill(entry, self._instruments)
            except UnreadableAnswer as exc:
                cid = entry.get("client_order_id")
                order = listener.order(cid) if isinstance(cid, str) else None
                if order is None:
                    continue  # not this engine's
                self.counts["unreadable_fill"] += 1
                log.error("unreadable fill %r: %s", entry, exc)
                listener.on_order_fault(cid, "unreadable_fill")
                self._spawn(self._read_back(order), f"read-back:{cid}")
                continue
            if fill is None:
                continue  # a symbol this process does not trade
            # Every fill of its symbols goes to the ledger, which tells the
            # deployment's orders (tracked, or closed and gone) from others'.
            listener.on_fill(fill)
            applied += 1
        return applied

    async def _read_fills(self, since: int) -> list[Any] | None:
        """``GET /fills?since=N`` (poll class): the answer's list, None when there is none.

        A failed read counts ``read_failed``, an answer that is not a JSON
        list ``unreadable_fills``; both count a fills read failure. Raises
        :class:`Dropped` when a halt or stop drops the read.
        """
        reply = await self._read(f"/fills?since={since}", Priority.POLL, "fills")
        if reply is None or reply.status_code != 200:
            if reply is not None:
                self.counts["read_failed"] += 1
                self.read_failures["fills"] += 1
            return None
        try:
            fills = orjson.loads(reply.content)
            if not isinstance(fills, list):
                raise TypeError("not a list")
        except (orjson.JSONDecodeError, TypeError):
            self.counts["unreadable_fills"] += 1
            self.read_failures["fills"] += 1
            log.error("unreadable fills answer: %r", reply.content[:200])
            return None
        return fills

    @property
    def fills_cursor(self) -> int:
        """The highest fill id read from the venue's fills log."""
        return self._fills_cursor

    async def _poll_fills_forever(self) -> None:
        """Poll ``/fills`` every ``fills_poll_s`` (at once when an answer reports fills).

        Failed reads back off (:class:`Backoff`) up to ``read_backoff_max_s``.
        """
        config = self.config
        backoff = Backoff(config.fills_poll_s, max(config.fills_poll_s, config.read_backoff_max_s))
        interval = config.fills_poll_s
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
            # cancellation that races its timeout, and the poller never stops.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._fills_wanted.wait()
            self._fills_wanted.clear()
            try:
                applied = await self.poll_fills()
            except Dropped:
                continue
            except Exception:
                log.exception("polling fills failed")
                applied = -1
            if applied < 0:
                interval = backoff.next_s()
            else:
                backoff.reset()
                interval = config.fills_poll_s

    # -- resting orders ---------------------------------------------------------------

    async def audit_resting(self) -> int:
        """Find resting orders the venue no longer lists as open, and read each back.

        Lists ``GET /orders?status=open`` (a poll-class request) and reads
        back every order the ledger had as resting when the list was asked
        for that the list lacks and no request of this gateway is settling:
        a venue-initiated cancel or expiry, or a fill the fills feed has not
        shown yet. Returns how many were read back; -1 if the list could not
        be read. Raises :class:`Dropped` when a halt or stop drops it.
        """
        resting = self._listener.resting_orders()
        if not resting:
            return 0
        reply = await self._read("/orders?status=open", Priority.POLL, "open_orders")
        if reply is None or reply.status_code != 200:
            return -1
        self.counts["resting_checks"] += 1
        try:
            bodies = orjson.loads(reply.content)
            if not isinstance(bodies, list):
                raise TypeError("not a list")
            listed = {body.get("client_order_id") for body in bodies if isinstance(body, dict)}
        except (orjson.JSONDecodeError, TypeError):
            self.counts["read_failed"] += 1
            self.read_failures["open_orders"] += 1
            return -1
        busy = self._placing | self._canceling
        missing = [
            order
            for order in resting
            if order.is_open
            and order.client_order_id not in listed
            and order.client_order_id not in busy
        ]
        for order in missing:
            self.counts["resting_missing"] += 1
            await self._read_back(order, attempts=3)
        return len(missing)

    async def check_fills_log(self) -> bool | None:
        """Is the venue's fills log still the one the cursor counts in?

        Fill ids increase and fills are never deleted, so the same log
        answers ``GET /fills?since=<cursor - 1>`` with at least the fill at
        the cursor. A log that lists no fill at or above the cursor was
        reset while the engine ran (a venue restarted with an empty log):
        its new fills carry ids at or below the cursor, which the poller
        skips as read, so positions would silently stop following the
        venue. That is the halting order fault ``fills_log_reset``
        (reported once until the log is whole again; a restart then stops
        at the venue check, see docs/operations.md). Returns True when the
        log holds the cursor, False when it was reset, None when there is
        nothing to check (no fill read yet) or the log could not be read.
        Raises :class:`Dropped` when a halt or stop drops the read.
        """
        cursor = self._fills_cursor
        if cursor <= 0:
            return None
        fills = await self._read_fills(cursor - 1)
        if fills is None:
            return None
        self.counts["fills_log_checks"] += 1
        if any(
            isinstance(entry, dict)
            and type(entry.get("fill_id")) is int
            and entry["fill_id"] >= cursor
            for entry in fills
        ):
            self._fills_log_reset = False
            return True
        if not self._fills_log_reset:
            self._fills_log_reset = True
            log.error(
                "the venue's fills log lists no fill at or above %d, the last fill id read: "
                "it was reset; fills from now on cannot be told from fills already read",
                cursor,
            )
            self._listener.on_order_fault("*", "fills_log_reset")
        return False

    async def _audit_forever(self) -> None:
        """Every half of ``resting_order_check_s`` (with jitter): audit resting
        orders (:meth:`audit_resting`) and check the fills log (:meth:`check_fills_log`)."""
        half = self.config.resting_order_check_s / 2
        while True:
            await asyncio.sleep(half * (0.5 + 0.5 * self._rng.random()))
            for check in (self.audit_resting, self.check_fills_log):
                try:
                    await check()
                except Dropped:
                    continue
                except Exception:
                    log.exception("%s failed", check.__name__)

    async def _http(
        self, method: str, url: str, content: bytes | None = None, written: Order | None = None
    ) -> Reply | None:
        """One httpx call (its slot already granted); None when nothing was answered.

        ``written``: the order whose tick-to-trade ends as httpcore writes
        the request's body, its last bytes. httpcore's ``trace`` extension
        reports ``http11.send_request_body.started`` immediately before
        that write, with no await in between (the body is framed and handed
        to the transport synchronously); ``.complete`` only comes after
        anyio has yielded to the loop once more, so it would add whatever
        else the loop runs meanwhile.
        """
        extensions: dict[str, Any] = {}
        if written is not None:
            listener = self._listener

            async def trace(name: str, info: dict[str, Any]) -> None:
                if name == "http11.send_request_body.started":
                    listener.on_written(written)

            extensions["trace"] = trace
        start = self._clock()
        try:
            response = await self.client.request(
                method, url, content=content, extensions=extensions
            )
        except httpx.TimeoutException:
            self.counts["timeout"] += 1
            return None
        except httpx.TransportError as exc:
            self.counts["connection_error"] += 1
            log.warning("%s %s: %s", method, url, type(exc).__name__)
            return None
        self.roundtrip.observe_ns(self._clock() - start)
        return response

    async def _fast_answer(self, waiter: asyncio.Future[Answer], start_ns: int) -> Answer | None:
        """The fast path's answer, its outcome recorded by the breaker; None when none was read.

        An answer the fast path could not parse (``unparsed_answer``) is the
        client's refusal, not the venue's failure: the breaker does not
        record it (a half-open trial permit is given back), and the order's
        outcome is unknown like any unanswered one.
        """
        assert self.fast is not None
        try:
            async with asyncio.timeout(self.config.timeout_s):
                answer = await waiter
        except TimeoutError:
            self.fast.abandon(waiter)
            self.counts["timeout"] += 1
            self._record_placement(start_ns, None)
            return None
        except UnparsedAnswer as exc:
            self.counts["unparsed_answer"] += 1
            log.error("fast path POST /orders: unparsed answer: %s", exc)
            self.breaker.release()
            return None
        except FastPathError as exc:
            self.counts["connection_error"] += 1
            log.warning("fast path POST /orders: %s", exc)
            self._record_placement(start_ns, None)
            return None
        self.roundtrip.observe_ns(self._clock() - start_ns)
        self._record_placement(start_ns, answer)
        return answer

    def _record_placement(self, started_ns: int, reply: Reply | None) -> None:
        """A placement's outcome for the breaker: no answer or a 5xx is a failure."""
        failed = reply is None or reply.status_code >= 500
        self.breaker.record(self._clock() - started_ns, failed=failed)

    def _venue_paused(self, reply: Reply) -> float:
        """A 429: pause the whole venue for its Retry-After; returns the delay (s)."""
        delay = retry_after_s(
            reply.headers.get("retry-after"),
            self._wall_clock(),
            default_s=1.0,
            cap_s=self.config.max_retry_after_s,
            date=reply.headers.get("date"),
        )
        self.counts["venue_rate_limited"] += 1
        self.scheduler.pause(delay)
        return delay

    # -- reconciliation reads (engine.reconcile.VenueReader) ----------------------------

    async def open_orders(self) -> list[dict[str, Any]]:
        """The exchange's open orders (for reconciliation). Raises ``ConnectionError``."""
        result = await self._read_json("GET", "/orders?status=open")
        if not isinstance(result, list):
            raise ConnectionError("GET /orders?status=open: the answer is not a list")
        return result

    async def fills(self, since: int) -> list[dict[str, Any]]:
        """``GET /fills?since=N``: the fills after ``since`` (for reconciliation)."""
        result: list[dict[str, Any]] = await self._read_json("GET", f"/fills?since={since}")
        return result

    async def read_order(self, client_order_id: str) -> dict[str, Any] | None:
        """``GET /orders/{id}``: the order's body, None when the exchange never saw it."""
        result: dict[str, Any] | None = await self._read_json(
            "GET", f"/orders/{client_order_id}", missing_ok=True
        )
        return result

    async def cancel_order(self, client_order_id: str) -> dict[str, Any] | None:
        """``DELETE /orders/{id}``: the order's body after the cancel, None when unknown."""
        result: dict[str, Any] | None = await self._read_json(
            "DELETE", f"/orders/{client_order_id}", missing_ok=True
        )
        return result

    def resume(self, fills_cursor: int, orders: Iterable[Order] = ()) -> None:
        """Read fills after ``fills_cursor`` from now on (the ledger tracks ``orders``)."""
        self._fills_cursor = max(self._fills_cursor, fills_cursor)

    async def _read_json(self, method: str, url: str, *, missing_ok: bool = False) -> Any:
        """One reconciliation request through the venue's budget.

        A 429 pauses the venue (the next slot waits for ``Retry-After``)
        and the request is tried again, up to 5 times. Raises
        ``ConnectionError`` when unanswered, refused, unreadable or dropped.
        """
        priority = Priority.CANCEL if method == "DELETE" else Priority.POLL
        for _ in range(5):
            try:
                await self.scheduler.acquire(priority)
            except Dropped:
                raise ConnectionError(f"{method} {url}: dropped by a halt or stop") from None
            reply = await self._http(method, url)
            if reply is not None and reply.status_code == 429:
                self._venue_paused(reply)
                continue
            if reply is not None and reply.status_code == 404 and missing_ok:
                return None
            if reply is None or reply.status_code != 200:
                code = "no answer" if reply is None else str(reply.status_code)
                if code in ("401", "403"):
                    code += f" (the exchange refused the API key in {self.config.api_key_env})"
                raise ConnectionError(f"{method} {url}: {code}")
            self.reached = True
            try:
                return orjson.loads(reply.content)
            except orjson.JSONDecodeError as exc:
                raise ConnectionError(f"{method} {url}: unreadable answer") from exc
        raise ConnectionError(f"{method} {url}: still rate limited")


def _fill_order(entry: object) -> int:
    """Sort key of a fills-log entry: its id, or -1 when it has none readable (read first)."""
    fill_id = entry.get("fill_id") if isinstance(entry, dict) else None
    return fill_id if type(fill_id) is int else -1


def _error(reply: Reply) -> str:
    try:
        body = orjson.loads(reply.content)
        return f"{reply.status_code}: {body.get('error', '')}"[:200]
    except (orjson.JSONDecodeError, AttributeError):
        return f"{reply.status_code}"
