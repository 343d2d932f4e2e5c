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
from functools import partial
from typing import Any, Final, Protocol
from urllib.parse import unquote

import httpx

from ..config import GatewayConfig
from ..core.breaker import CircuitBreaker
from ..core.errors import ConfigError, EngineError, UnreadableAnswer
from ..core.instruments import Instrument
from ..core.orders import ExecutionListener, Order, OrderStatus, Price
from ..core.reports import FillReport, OrderReport
from ..lowlevel.backoff import Backoff
from ..lowlevel.metrics import LatencyHistogram
from ..lowlevel.tasks import TaskCrashes, cancel_and_wait
from .fastpath import Answer, FastOrderChannel, FastPathError, UnparsedAnswer
from .order_api import (
    ALL_SYMBOLS,
    DECIMAL_TEXTS_MAX,
    AnswerKind,
    FillEntry,
    OrderApiDialect,
    OrderRequest,
    OwnApiDialect,
    Verdict,
)
from .scheduler import Dropped, Priority, RequestScheduler, retry_after_s

__all__ = ["EVENTS", "HttpGateway", "Reply", "VenueLink", "ssl_context"]

log = logging.getLogger("trading_engine.gateway")

_REJECTED = OrderStatus.REJECTED
_CANCELED = OrderStatus.CANCELED
_OK = AnswerKind.OK
_NOT_FOUND = AnswerKind.NOT_FOUND
#: Decimal strings the own API's order bodies keep (the own dialect's cache).
_DECIMAL_TEXTS_MAX: Final = DECIMAL_TEXTS_MAX
#: What a request that got no answer means.
_NO_ANSWER: Final = Verdict(AnswerKind.UNKNOWN, "no answer")

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
#: The reason of an order refused locally: the venue's API cannot express it.
UNENCODABLE: Final = "unencodable"
#: A new order refused locally because it breaks one of the venue's trading rules.
VENUE_RULE: Final = "venue_rule"
#: The share of the venue's request weight used (its rate-limit headers) from
#: which polls and audits wait for the venue's next minute.
WEIGHT_TIGHT_SHARE: Final = 0.8
#: The share of the venue's 10-second order limit used (its order-count headers)
#: from which new orders are refused ``rate_limited`` until its next 10 s.
ORDER_COUNT_TIGHT_SHARE: Final = 0.9

#: The longest ban the gateway believes (seconds): Binance bans a client for
#: "from 2 minutes to 3 days" (its REST API's "LIMITS" section); an answer naming
#: a later end is read as this long.
MAX_BAN_S: Final = 3 * 86_400.0

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
    "unencodable",  # a new order the venue's API cannot express: refused locally
    "venue_rule",  # a new order breaking the venue's trading rules: refused locally
    "filled_read_back",  # fills completed an order still open (its report lost): read back
    "rules_loaded",  # the venue's trading rules read (start-up)
    "venue_banned",  # an answer saying the venue banned this client (418): trading halts
    "pause_restored",  # start-up: an earlier run's 429 pause or ban still runs (journal)
    "auth_failed",  # an answer refusing the API key or the signature: trading halts
    "clock_skew",  # an answer saying the request's timestamp was outside the venue's window
    "clock_synced",  # the venue's clock offset measured
    "clock_failed",  # the venue's time could not be read
    "clock_refused",  # start-up refused: the venue's clock is off by more than the window
    "weight_tight",  # an answer saying the venue's used request weight is near its limit
    "order_count_tight",  # an answer saying the venue's 10-second order count is near its limit
    "poll_deferred",  # a fills poll or audit deferred to the venue's next weight minute
    "stream_fill_read",  # a stream's fill at or below its fills cursor: the poll handed it on
    "stream_report_mismatch",  # a stream report naming our order id on another venue order
    "poll_fill_streamed",  # a polled fill the stream had handed on already: not again
)


class PauseJournal(Protocol):
    """Where the venue's pauses are kept across runs (the engine's journal)."""

    def venue_paused(self, heard_s: float, until_s: float, *, banned: bool = False) -> None:
        """A pause (a 429, or a 418 ban) heard at ``heard_s`` ends at ``until_s`` (Unix s)."""

    def venue_pauses(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """The last 429 pause and the last ban: ``((heard, until), (heard, until))``."""


def _utc(wall_s: float) -> str:
    """Unix seconds as ISO 8601 UTC, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall_s))


def _left(now: float, heard: float, until: float, longest: float) -> float:
    """Seconds left of a journaled pause: to ``until``, but never more than it lasted
    when heard at ``heard`` nor than ``longest`` (0 when over or never journaled)."""
    if until <= now:
        return 0.0
    return max(0.0, min(until - now, until - heard, longest))


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


class VenueLink(Protocol):
    """A venue connection beside the order requests (the user data stream).

    Attached to :attr:`HttpGateway.links` by the engine layer; the gateway
    starts it after start-up reconciliation, closes it first at its close,
    and merges :meth:`status` into ``/status``'s ``venue`` object.
    """

    def start(self) -> None:
        """Start its task (on the running loop)."""

    async def close(self) -> None:
        """Stop its task and wait for it."""

    def status(self) -> Mapping[str, Any]:
        """Its entries of the ``venue`` object of ``/status`` (JSON values)."""


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
        dialect: OrderApiDialect | None = None,
    ) -> None:
        self.config = config
        #: How the venue's order API is spoken (default: the project's own).
        self.dialect: OrderApiDialect = (
            dialect if dialect is not None else OwnApiDialect(api_key, instruments)
        )
        #: Crash accounting of the request tasks (the engine's; a crash halts trading).
        self.crashes = crashes if crashes is not None else TaskCrashes()
        self.breaker = breaker
        self.fast = fast
        self._listener = listener
        self._instruments = instruments
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()
        verify: ssl.SSLContext | bool = True
        if config.base_url.startswith("https://"):
            verify = ssl_context(config.ca_file)
        self.client = httpx.AsyncClient(
            base_url=config.base_url,
            headers=dict(self.dialect.client_headers),
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
        #: Orders the fills filled whose final state is being read back.
        self._completing: set[str] = set()
        self._last_sent_ns: dict[str, int] = {}
        #: The highest fill id read, by fills stream (``OrderApiDialect.fill_streams``).
        self._fills_cursors: dict[str, int] = dict.fromkeys(self.dialect.fill_streams, 0)
        #: Fill ids above each stream's cursor the venue's own stream handed on (the
        #: poll skips them; pruned as the cursor passes them).
        self._streamed_fills: dict[str, set[int]] = {s: set() for s in self._fills_cursors}
        #: The fills log was found reset (reported once until it is whole again).
        self._fills_log_reset = False
        #: Why this process can no longer trust its fills cursors: set when a fills log
        #: is found reset and never cleared (fills it skipped as read are lost to it;
        #: only a restart's venue check settles them). See :meth:`check_fills_log`.
        self.fills_log_reset_seen: str | None = None
        self._fills_wanted = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self._auditor: asyncio.Task[None] | None = None
        #: Order requests (placements, re-sends, cancels) written -> their answer read; a
        #: request that timed out or lost its connection has no answer (``counts``).
        self.roundtrip = LatencyHistogram()
        self.counts: Counter[str] = Counter()
        #: Failed reads by what was read (``order``, ``fills``, ``open_orders``).
        self.read_failures: Counter[str] = Counter()
        #: The venue's trading rules (a dialect with a rules request) checked
        #: before an order is sent; loaded by the first read (start-up).
        self._rules = self.dialect.rules_request() is not None
        self._rules_loaded = not self._rules
        #: New orders refused by a venue rule, by the rule's reason (``price_filter_tick``).
        self.rule_refusals: Counter[str] = Counter()
        #: ``order -> (reference price in ticks or None, other open orders on
        #: its symbol or None)`` for the venue's rules (the book's mid, the
        #: ledger's count); given by the engine, None: neither is known.
        self.market: Callable[[Order], tuple[Price | None, int | None]] | None = None
        #: True once the exchange answered a request (``GET /fills``) with 200:
        #: the address and the API key work (``/readyz``).
        self.reached = False
        #: The end of the venue's ban (wall-clock s), once one was answered (418).
        self.banned_until: float | None = None
        #: Told the end (wall-clock s) of every pause the venue asks for: a 429's
        #: ``Retry-After``, or a 418 ban (``banned=True``). See :meth:`keep_pauses`.
        self.on_pause: Callable[..., None] | None = None
        #: The pause of each kind (False: 429, True: ban) told to ``on_pause`` last:
        #: ``(heard, until)`` wall-clock s. A shorter one heard while it runs is not told.
        self._told: dict[bool, tuple[float, float]] = {False: (0.0, 0.0), True: (0.0, 0.0)}
        #: The share of the venue's request weight used, as its last answer said.
        self.used_weight_share: float | None = None
        self._polls_wait_until = 0.0
        #: New orders are refused until then (wall-clock s): the venue's order count is full.
        self._orders_wait_until = 0.0
        #: The venue's key refusal was logged (one line until the key works again).
        self._auth_logged = False
        #: A connection error was logged (one line per outage).
        self._unreachable_logged = False
        self._clock_wanted = False
        self._clock_checked = False
        #: A time request's slot was taken (:meth:`_time_slot`) and not yet used.
        self._time_slot_held = False
        signing_clock = self.dialect.clock
        if signing_clock is not None and signing_clock.fetch is None:
            # The venue's time is read through this gateway: its budget, pauses and bans.
            signing_clock.fetch = self.venue_time
            signing_clock.slot = self._time_slot
        #: The fills poll's interval now (s): ``fills_poll_s``, or a venue stream's
        #: slower one while the stream pushes fills (:meth:`set_fills_poll_s`).
        self.fills_poll_s = config.fills_poll_s
        #: What else talks to the venue beside the requests (a user data stream):
        #: started and closed with the gateway, shown in ``/status``.
        self.links: list[VenueLink] = []

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
        """Send now, or refuse now: the reason (``rate_limited``, ``halted``, ``unencodable:
        ...`` for an order the venue's API cannot express), else None."""
        scheduler = self.scheduler
        if not scheduler.accepting_orders:
            return self._refused(HALTED)
        if self._rules:
            market = self.market
            reference, open_orders = market(order) if market else (None, None)
            rule = self.dialect.rule_refusal(order, reference, open_orders)
            if rule is not None:
                self.rule_refusals[rule] += 1
                return self._refused(f"{VENUE_RULE}: {rule}")
        if self._orders_wait_until and self._wall_clock() < self._orders_wait_until:
            # The venue would answer 429 and pause every request: refused now instead.
            return self._refused(RATE_LIMITED)
        if scheduler.try_now(Priority.ORDER):
            return self._send_first(order)
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

    def stream_update(
        self,
        report: OrderReport | None,
        fill: FillReport | None,
        venue_order_id: int | None,
        *,
        symbol: str | None = None,
    ) -> None:
        """An execution report of the venue's own stream (Binance's user data stream).

        ``report`` (the order's state, cumulative) goes to the ledger for an
        order it tracks, ``fill`` to the ledger whatever the order (it tells
        this deployment's from others' and counts each fill id once); the
        dialect learns ``venue_order_id`` (its trades name the order by it).
        The fills poll stays the fallback: what the stream missed, the poll
        reads from each stream's cursor. A fill at or below its stream's
        cursor was handed on by the poll already and is dropped here
        (``stream_fill_read``), and one above it is remembered so that the
        poll, reaching it, moves its cursor past without handing it on again
        (``poll_fill_streamed``): the ledger counts a fill id once only while
        it holds the order, and would credit a second copy as an overfill.
        A report whose ``symbol`` (the engine's) or venue order id is not
        those of the tracked order its client order id names is another
        order's (the venue numbers orders per symbol, and other programs
        may reuse an id): it and its fill are dropped, counted
        ``stream_report_mismatch``, and the order keeps its state.
        """
        if report is not None:
            cid = report.client_order_id
            order = self._listener.order(cid)
            if order is not None and (
                (symbol is not None and symbol != order.symbol)
                or (
                    venue_order_id is not None
                    and order.exchange_order_id is not None
                    and str(venue_order_id) != order.exchange_order_id
                )
            ):
                self.counts["stream_report_mismatch"] += 1
                # The first at warning; a venue sending many costs no log flood.
                say = log.warning if self.counts["stream_report_mismatch"] == 1 else log.debug
                say(
                    "user stream: a report for %s names %s order %s, the order is %s %s: ignored",
                    cid, symbol, venue_order_id, order.symbol, order.exchange_order_id,
                )  # fmt: skip
                return
            if venue_order_id is not None:
                self.dialect.learn_order_id(venue_order_id, cid)
            if order is not None and order.is_open and cid not in self._placing:
                self._listener.on_report(report)
        if fill is not None:
            if self._read_by_poll(fill):
                # Already handed on by the poll; the ledger may have let the
                # order go since, and would take this copy as an overfill.
                self.counts["stream_fill_read"] += 1
                return
            self._listener.on_fill(fill)
            if fill.fill_id is not None:
                streamed = self._streamed_fills.get(self._fill_stream(fill))
                if streamed is not None:
                    streamed.add(fill.fill_id)
            self._completed_by_fills(fill.client_order_id)

    def _fill_stream(self, fill: FillReport) -> str:
        """The fills stream (cursor) ``fill`` belongs to: its symbol's, else the one ``*``."""
        return fill.symbol if fill.symbol in self._fills_cursors else "*"

    def _read_by_poll(self, fill: FillReport) -> bool:
        """Is ``fill`` at or below its fills stream's cursor (the poll read it)?"""
        fill_id = fill.fill_id
        if fill_id is None:
            return False
        cursor = self._fills_cursors.get(self._fill_stream(fill))
        return cursor is not None and fill_id <= cursor

    def _completed_by_fills(self, cid: str) -> None:
        """Fills brought an open order's lots to its quantity: read it back now.

        Its final report was lost (a stream that dropped, an answer never
        read); the fills say every lot traded, the read-back says the
        order's state, as for any order an answer left unsaid, at once
        rather than at the next resting-order audit.
        """
        order = self._listener.order(cid)
        if (
            order is None
            or not order.is_open
            or order.feed_filled < order.quantity
            or cid in self._placing
            or cid in self._canceling
            or cid in self._completing
        ):
            return
        self._completing.add(cid)
        self.counts["filled_read_back"] += 1
        self._spawn(self._read_back_completed(order), f"read-back:{cid}")

    async def _read_back_completed(self, order: Order) -> None:
        try:
            await self._read_back(order)
        finally:
            self._completing.discard(order.client_order_id)

    def poll_fills_soon(self) -> None:
        """Read every fills stream at once (the venue's stream went live or down:
        what it sent meanwhile is read from each cursor)."""
        self._fills_wanted.set()

    def set_fills_poll_s(self, seconds: float) -> None:
        """Poll fills every ``seconds`` from the next poll on (still at least the
        dialect's floor); ``ValueError`` unless > 0."""
        if not seconds > 0:
            raise ValueError(f"a fills poll interval must be > 0, got {seconds}")
        self.fills_poll_s = seconds

    def refuse_key(self, reason: str) -> None:
        """The venue refused the key or signature off the request path (its stream):
        as an answer refusing it, one log line naming the variables, and trading halts."""
        self._auth_failed(Verdict(AnswerKind.AUTH_FAILED, reason))

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

    def venue_status(self) -> dict[str, Any]:
        """The ``venue`` object of ``/status``: the dialect, its ban, clock and weight.

        ``ban_until``: the end of the venue's ban (UTC, ISO 8601) after a ban
        answer (418), else None; ``clock_offset_ms``: the venue's clock minus
        this host's as last measured (None: the dialect signs no timestamp,
        or not measured yet); ``used_weight_share``: the share of the venue's
        request-weight limit its last answer said was used (None: not said).
        """
        until = self.banned_until
        share = self.used_weight_share
        return {
            "dialect": self.dialect.name,
            "ban_until": None if until is None else _utc(until),
            "clock_offset_ms": self.clock_offset_ms,
            "used_weight_share": None if share is None else round(share, 4),
            **{key: value for link in self.links for key, value in link.status().items()},
        }

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
            for link in self.links:
                link.start()

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
        for link in self.links:
            await link.close()
        await cancel_and_wait(self._poller)
        await cancel_and_wait(self._auditor)
        self._poller = self._auditor = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        if self.fast is not None:
            await self.fast.close()
        banned = self.banned_until is not None and self.banned_until > self._wall_clock()
        if self.scheduler.granted[Priority.ORDER] and (banned or self.scheduler.paused()):
            # A ban (minutes to days) or a 429's pause (up to max_retry_after_s) would
            # hold the stop past its bound: the next start reads them.
            log.warning(
                "the venue %s: the last fills are read at the next start",
                "banned this client" if banned else "asked for a pause (429)",
            )
        elif self.scheduler.granted[Priority.ORDER] and not self.client.is_closed:
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
        """The new-order request's body in the gateway's dialect (own API: the JSON body)."""
        dialect = self.dialect
        if isinstance(dialect, OwnApiDialect):
            return dialect.order_body(order)
        return dialect.new_order(order).body or b""

    @property
    def _decimal_texts(self) -> dict[tuple[str, bool, int], bytes]:
        """The own API's decimal-string cache (empty for another dialect)."""
        dialect = self.dialect
        return dialect.decimal_texts if isinstance(dialect, OwnApiDialect) else {}

    def _refused(self, reason: str) -> str:
        """A new order refused locally (it never left): the breaker permit is given back."""
        self.breaker.release()
        if reason == RATE_LIMITED:
            self.counts[RATE_LIMITED] += 1
        elif reason == HALTED:
            self.counts["halted_unsent"] += 1
        elif reason.startswith(VENUE_RULE):
            self.counts[VENUE_RULE] += 1
        else:
            self.counts["unencodable"] += 1
        return reason

    def _send_first(self, order: Order) -> str | None:
        """The first request of an order whose slot is taken: fast path if a connection is idle.

        Returns the reason when the dialect cannot express the order (it
        never leaves), else None.
        """
        try:
            request = self.dialect.new_order(order)
        except ValueError as exc:
            log.error("order %s cannot be sent: %s", order.client_order_id, exc)
            return self._refused(f"{UNENCODABLE}: {exc}"[:200])
        fast = self.fast
        cid = order.client_order_id
        self._placing.add(cid)
        if fast is not None and request.body is not None:
            start = self._clock()
            listener = self._listener
            # Tick-to-trade ends as the request is handed to the kernel.
            waiter = fast.try_send(request.body, lambda: listener.on_written(order))
            if waiter is not None:
                self._last_sent_ns[cid] = start
                self._spawn(self._place(order, request, (waiter, start)), f"place:{cid}")
                return None
        self._spawn(self._place(order, request, slot_taken=True), f"place:{cid}")
        return None

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
        refused = self._send_first(order)
        if refused is not None:
            self._listener.on_status(cid, _REJECTED, refused)

    def _new_request(self, order: Order) -> OrderRequest | None:
        """The order's request built again (a venue that signs needs a fresh timestamp)."""
        try:
            return self.dialect.new_order(order)
        except ValueError:  # it was encoded once: the same order encodes again
            return None

    # -- placing ----------------------------------------------------------------------

    async def _place(
        self,
        order: Order,
        request: OrderRequest,
        sent: tuple[asyncio.Future[Answer], int] | None = None,
        *,
        slot_taken: bool = False,
    ) -> None:
        """Place an order until its outcome is known (its first request may be sent)."""
        cid = order.client_order_id
        self._placing.add(cid)
        try:
            await self._placed(order, request, sent, slot_taken)
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
        request: OrderRequest | None,
        sent: tuple[asyncio.Future[Answer], int] | None,
        slot_taken: bool,
    ) -> None:
        cid = order.client_order_id
        first = True
        retries = 0
        skew_retried = False
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
                    request = self._new_request(order)  # signed at the time it leaves
                slot_taken = False
                started = self._clock()
                self._last_sent_ns[cid] = started
                reply = None
                if request is not None:
                    reply = await self._send(request, written=order if first else None, timed=True)
                if first:
                    self._record_placement(started, reply)
            first = False
            verdict = self._verdict(reply)
            kind = verdict.kind
            if kind is AnswerKind.UNKNOWN:
                if order.status is not OrderStatus.PENDING_NEW:
                    return  # its state was learned meanwhile (a cancel's answer)
                self._unknown(order, verdict.reason)
                await self._settle(order)
                return
            if kind is _OK:
                assert reply is not None
                if not self._apply(order, reply):
                    self._unknown(order, "unreadable answer")
                    await self._settle(order)
                return
            skew = kind is AnswerKind.CLOCK_SKEW and not skew_retried
            if kind is AnswerKind.RATE_LIMITED or skew:
                assert reply is not None
                if kind is AnswerKind.RATE_LIMITED:
                    delay = self._venue_paused(reply)
                    retries += 1
                    resend_ns = self._clock() + round(delay * 1e9)
                    if retries > self.config.order_retry_max or resend_ns > deadline_ns:
                        # The venue did not take it: closed now, never sent late.
                        self.counts["retry_abandoned"] += 1
                        self._listener.on_status(cid, _REJECTED, VENUE_RATE_LIMITED)
                        return
                else:
                    # Outside the venue's receive window: it was not taken. The clock is
                    # measured again and the same client order id sent once more.
                    skew_retried = True
                    delay = 0.0
                    self.counts["clock_skew"] += 1
                    await self.sync_clock(resync=True)
                if order.cancel_requested:
                    self.counts["canceled_unsent"] += 1
                    self._listener.on_status(cid, _CANCELED, CANCELED_UNSENT)
                    return
                # Off the venue until its retry: a cancel now closes it locally.
                self._unsent[cid] = (asyncio.current_task(), False)
                if delay > 0:
                    await asyncio.sleep(delay)
                continue
            assert reply is not None
            self._refusal(cid, verdict, reply)
            return

    def _refusal(self, cid: str, verdict: Verdict, reply: Reply) -> None:
        """A placement the venue did not take: closed ``rejected`` with the venue's reason."""
        kind = verdict.kind
        if kind is AnswerKind.BANNED:
            self._banned(verdict, reply)
        elif kind is AnswerKind.AUTH_FAILED:
            self._auth_failed(verdict)
        self.counts["rejected"] += 1
        self._listener.on_status(cid, _REJECTED, verdict.reason or str(reply.status_code))

    def _unknown(self, order: Order, why: str) -> None:
        if order.status is OrderStatus.PENDING_NEW:
            self.counts["unknown"] += 1
            self._listener.on_status(order.client_order_id, OrderStatus.UNKNOWN, why)

    def _close_unsent(self, order: Order) -> None:
        """An order the venue never took, after a halt or stop began: closed locally."""
        self.counts["halted_unsent"] += 1
        self._listener.on_status(order.client_order_id, _REJECTED, HALTED)

    async def _settle(self, order: Order) -> None:
        """Learn the outcome of an order whose request got no clear answer.

        Reads the order back by its client order id with capped exponential
        back-off and jitter until the venue answers with it (applied) or
        says it does not hold it. Not held means the venue has not seen the
        order: it is sent again under the same id (the idempotency key),
        with the breaker's permission (while it is open the order is read
        again later instead). After a halt or stop nothing is sent again:
        two "not found" reads at least ``timeout_s`` after the last send
        close it locally (``halted``): the request may still have been in
        flight at the first.
        """
        cid = order.client_order_id
        dialect = self.dialect
        backoff = self._backoff()
        quiet_404s = 0
        # Past this, a 404 is not answered with a re-send: the order would leave late.
        resend_until_ns = self._clock() + round(self.config.order_retry_deadline_s * 1e9)
        while order.is_open:
            await asyncio.sleep(backoff.next_s())
            read = await self._read(
                lambda: dialect.read_order(cid, order.symbol), Priority.SETTLE, "order"
            )
            if read is None:
                continue
            kind, reply = read
            if kind is _OK:
                if self._apply(order, reply):
                    self.counts["settled"] += 1
                    return
                continue
            # Not found: the venue has not seen it.
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
            request = self._new_request(order)
            resent = None if request is None else await self._send(request, timed=True)
            self._record_placement(started, resent)
            verdict = self._verdict(resent)
            kind = verdict.kind
            if kind is AnswerKind.UNKNOWN:
                continue
            assert resent is not None
            if kind is _OK:
                if self._apply(order, resent):
                    return
                continue
            if kind is AnswerKind.RATE_LIMITED:
                self._venue_paused(resent)
                continue
            if kind is AnswerKind.CLOCK_SKEW:
                # Not taken: measure the clock again; the next read decides again.
                self.counts["clock_skew"] += 1
                await self.sync_clock(resync=True)
                continue
            self._refusal(cid, verdict, resent)
            return

    async def _read(
        self, build: Callable[[], OrderRequest], priority: Priority, what: str
    ) -> tuple[AnswerKind, Reply] | None:
        """A read with its slot: the answer when it is the thing read or "not found", else None.

        ``build`` makes the request once the slot is granted (a signed
        request carries the time it leaves). Anything else (no answer,
        429, a refusal, 5xx) says nothing about what was read and is
        counted; a 429 also pauses the venue, a ban halts trading, a
        refused key halts trading, a timestamp outside the venue's window
        measures the clock again. Raises :class:`Dropped` for a poll
        dropped by a halt or stop.
        """
        await self.scheduler.acquire(priority)
        reply = await self._send(build())
        verdict = self._verdict(reply)
        kind = verdict.kind
        if kind is _OK or kind is _NOT_FOUND:
            assert reply is not None
            self.reached = True
            return kind, reply
        self.counts["read_failed"] += 1
        self.read_failures[what] += 1
        if reply is not None:
            self._read_refused(verdict, reply)
        return None

    def _read_refused(self, verdict: Verdict, reply: Reply) -> None:
        """What a refused read (or cancel) does besides failing."""
        kind = verdict.kind
        if kind is AnswerKind.RATE_LIMITED:
            self._venue_paused(reply)
        elif kind is AnswerKind.BANNED:
            self._banned(verdict, reply)
        elif kind is AnswerKind.AUTH_FAILED:
            self._auth_failed(verdict)
        elif kind is AnswerKind.CLOCK_SKEW:
            self.counts["clock_skew"] += 1
            self._clock_wanted = True

    # -- cancelling ---------------------------------------------------------------------

    async def _cancel(self, order: Order) -> None:
        """Cancel until the venue answers with the order's final state (one at a time)."""
        try:
            await self._cancel_until_final(order)
        finally:
            self._canceling.discard(order.client_order_id)

    async def _cancel_until_final(self, order: Order) -> None:
        """Cancel until the venue answers with the order's final state.

        "Not found" while the order's placement is still being settled: the
        venue has not taken it yet, and the placement cancels it once it
        has an answer (see :meth:`_place`). "Not found" otherwise: the order
        is read back; a second "not found" means the venue does not hold
        it, and it is closed locally (``canceled``, reason ``not_found``); a
        read that says nothing closes nothing (the cancel is tried again).
        A refusal is counted and the order read back once; it stays open,
        and a halt or stop cancels it again.
        """
        cid = order.client_order_id
        dialect = self.dialect
        backoff = self._backoff()
        while order.is_open:
            await self.scheduler.acquire(Priority.CANCEL)
            reply = await self._send(dialect.cancel_order(cid, order.symbol), timed=True)
            if not order.is_open:
                return  # settled meanwhile (its placement's answer, a read)
            verdict = self._verdict(reply)
            kind = verdict.kind
            if kind is _OK:
                assert reply is not None
                if self._apply(order, reply):
                    return  # the venue's word on the cancel (a final state, or why not)
                await self._read_back(order)
                if not order.is_open:
                    return
            elif kind is _NOT_FOUND:
                if cid in self._placing:
                    return  # the placement cancels it when it is settled
                back = await self._read(
                    lambda: dialect.read_order(cid, order.symbol), Priority.CANCEL, "order"
                )
                if not order.is_open:
                    return
                if back is not None and back[0] is _NOT_FOUND:
                    self.counts["not_found"] += 1
                    self._listener.on_order_fault(cid, "not_found")
                    self._listener.on_status(cid, _CANCELED, NOT_FOUND)
                    return
                if back is not None:
                    self._apply(order, back[1])
            elif kind is AnswerKind.RATE_LIMITED:
                assert reply is not None
                self._venue_paused(reply)
                continue
            elif kind is AnswerKind.REFUSED or kind is AnswerKind.AUTH_FAILED:
                assert reply is not None
                self._read_refused(verdict, reply)
                self.counts["cancel_refused"] += 1
                log.error("cancel of %s refused: %s", cid, verdict.reason)
                self._listener.on_order_fault(cid, "cancel_refused")
                await self._read_back(order)
                return
            else:
                if reply is not None:
                    self._read_refused(verdict, reply)  # a ban, a clock outside the window
                self.counts["cancel_failed"] += 1
            await asyncio.sleep(backoff.next_s())

    async def _read_back(self, order: Order, attempts: int = 8) -> None:
        """Read an order back until one readable answer (at most ``attempts`` reads)."""
        cid = order.client_order_id
        dialect = self.dialect
        backoff = self._backoff()
        for _ in range(attempts):
            read = await self._read(
                lambda: dialect.read_order(cid, order.symbol), Priority.SETTLE, "order"
            )
            if read is not None and read[0] is _OK and self._apply(order, read[1]):
                return
            if read is not None and read[0] is _NOT_FOUND:
                return
            await asyncio.sleep(backoff.next_s())

    # -- answers ------------------------------------------------------------------------

    def _verdict(self, reply: Reply | None) -> Verdict:
        """What an answer means (:class:`~.order_api.AnswerKind`); no answer is unknown.

        Every answer's rate-limit headers are read first (:meth:`_observe`).
        """
        if reply is None:
            return _NO_ANSWER
        headers = reply.headers
        self._observe(headers)
        verdict = self.dialect.classify(reply.status_code, headers, reply.content)
        if verdict.kind is _OK and self._auth_logged:
            self._auth_logged = False  # the key works again: a new refusal is logged again
        return verdict

    def _apply(self, order: Order, reply: Reply) -> bool:
        """Report an order answer to the listener; False (counted) if it is not taken."""
        cid = order.client_order_id
        try:
            parsed = self.dialect.parse_order(reply.content, cid, order.symbol)
        except UnreadableAnswer as exc:
            log.error("unreadable order answer for %s (%s): %r", cid, exc, reply.content[:200])
            self.counts["unreadable_answer"] += 1
            self._listener.on_order_fault(cid, "unreadable_answer")
            return False
        if not self._listener.on_report(parsed.report):
            self.counts["unreadable_answer"] += 1
            return False
        for fill in parsed.fills:
            # The venue listed the order's fills in its answer: the ledger counts each once.
            self._listener.on_fill(fill)
        if order.reported > order.feed_filled:
            self._fills_wanted.set()
        return True

    def _banned(self, verdict: Verdict, reply: Reply) -> None:
        """The venue banned this client: pause every request until the ban ends; halt."""
        now = self._wall_clock()
        until = verdict.banned_until_s
        if until is None:
            delay = retry_after_s(
                reply.headers.get("retry-after"),
                now,
                default_s=60.0,
                cap_s=MAX_BAN_S,
                date=reply.headers.get("date"),
            )
            until = now + delay
        self.venue_banned(until, verdict.reason)

    def venue_banned(self, until: float, reason: str) -> None:
        """The venue banned this client until ``until`` (wall-clock s), whichever request
        path heard it (an answer, its user data stream): every request waits; trading halts."""
        now = self._wall_clock()
        until = min(until, now + MAX_BAN_S)
        self.counts["venue_banned"] += 1
        first = self.banned_until is None or until > self.banned_until + 1
        self.banned_until = until if self.banned_until is None else max(until, self.banned_until)
        self.scheduler.pause(max(0.0, until - now))
        self._tell_pause(now, until, banned=True)
        if first:
            log.error(
                "the venue banned this client until %s (%s): trading halts",
                _utc(until),
                reason,
            )
            self._listener.on_order_fault("*", "venue_banned")

    def _auth_failed(self, verdict: Verdict) -> None:
        """The venue refused the key or signature: one log line naming the variables; halt."""
        self.counts["auth_failed"] += 1
        if self._auth_logged:
            return
        self._auth_logged = True
        log.error(
            "the venue refused the API key or the signature (%s): check %s; trading halts",
            verdict.reason,
            self._key_variables(),
        )
        self._listener.on_order_fault("*", "venue_auth_failed")

    def _key_variables(self) -> str:
        """The environment variables the key and its secret come from, named."""
        config = self.config
        return ", ".join(
            name
            for name in (config.api_key_env, config.api_secret_env, config.private_key_env)
            if name
        )

    def _observe(self, headers: Mapping[str, str]) -> None:
        """The venue's rate-limit headers (counted ``weight_tight``, ``order_count_tight``).

        From :data:`WEIGHT_TIGHT_SHARE` of the venue's per-minute weight used,
        polls and audits wait for its next minute; from
        :data:`ORDER_COUNT_TIGHT_SHARE` of its 10-second order count, new
        orders are refused ``rate_limited`` until its next 10 s (a 429 would
        pause every request class).
        """
        self._observe_orders(headers)
        share = self.dialect.used_weight_share(headers)
        if share is None:
            return
        self.used_weight_share = share
        if share >= WEIGHT_TIGHT_SHARE:
            # The venue's weight windows are wall-clock minutes: the next one starts afresh.
            now = self._wall_clock()
            self._polls_wait_until = now - now % 60 + 60
            self.counts["weight_tight"] += 1

    def _observe_orders(self, headers: Mapping[str, str]) -> None:
        share = self.dialect.order_count_share(headers)
        if share is not None and share >= ORDER_COUNT_TIGHT_SHARE:
            now = self._wall_clock()
            self._orders_wait_until = now - now % 10 + 10
            self.counts["order_count_tight"] += 1

    def _weight_tight(self) -> bool:
        return self._wall_clock() < self._polls_wait_until

    # -- clock ------------------------------------------------------------------------

    @property
    def clock_offset_ms(self) -> int | None:
        """The venue's clock minus ours, in ms, as last measured (None: never measured)."""
        clock = self.dialect.clock
        return None if clock is None else clock.offset_ms

    async def _time_slot(self) -> None:
        """The next time request's slot in the venue's budget (settle class), taken
        before the clock starts timing its round trip. Raises ``ConnectionError``
        when a halt or stop drops it."""
        try:
            await self.scheduler.acquire(Priority.SETTLE)
        except Dropped:
            raise ConnectionError("the venue's time: dropped by a halt or stop") from None
        self._time_slot_held = True

    async def venue_time(self) -> bytes:
        """``GET`` the venue's time through its budget (settle class): the body of a 200.

        The signing clock's transport. Raises ``ConnectionError`` when the
        request is dropped (a halt or stop) or unanswered, and
        :class:`UnreadableAnswer` for another status; a 429 pauses the
        venue and a 418 is its ban (every request class waits, trading
        halts), as on any other request.
        """
        request = self.dialect.time_request()
        if request is None:
            raise ConnectionError("the venue signs no timestamp: it has no time to read")
        if not self._time_slot_held:
            await self._time_slot()
        self._time_slot_held = False
        reply = await self._send(request)
        if reply is None:
            raise ConnectionError("the venue's time: no answer")
        if reply.status_code != 200:
            verdict = self._verdict(reply)
            if verdict.kind in (AnswerKind.RATE_LIMITED, AnswerKind.BANNED):
                # A 418 here is the ban of every request (a start-up under a ban
                # reads the time first): the clock's next samples must wait too.
                self._read_refused(verdict, reply)
            raise UnreadableAnswer(f"the venue's time: HTTP {reply.status_code}")
        return reply.content

    async def sync_clock(self, *, resync: bool = False) -> int | None:
        """Measure the venue's clock offset (ms); None if it could not be read.

        ``resync``: an answer said a timestamp fell outside the venue's
        window (the clock counts it). A dialect that signs no timestamp has
        no clock to measure (None).
        """
        clock = self.dialect.clock
        if clock is None:
            return None
        self._clock_wanted = False
        try:
            await (clock.resync() if resync else clock.measure())
        except EngineError as exc:
            self.counts["clock_failed"] += 1
            self._clock_wanted = True
            log.error("%s", exc)
            return None
        self.counts["clock_synced"] += 1
        return clock.offset_ms

    async def check_clock(self) -> None:
        """Start-up: measure the venue's clock; refuse when it is off by more than the window.

        Raises ``ConnectionError`` (start-up retries) when the time cannot
        be read, and :class:`ConfigError` naming ``gateway.recv_window_ms``
        with the measured offset when the host's clock is further from the
        venue's than the receive window (or known too loosely for it):
        retrying would not move the host's clock.
        """
        window = self.dialect.recv_window_ms
        clock = self.dialect.clock
        if window is None or clock is None:
            self._clock_checked = True
            return
        offset = await self.sync_clock()
        if offset is None:
            raise ConnectionError(f"the venue's time could not be read from {self.config.base_url}")
        problem = clock.problem(window)
        if problem is not None:
            self.counts["clock_refused"] += 1
            message = f"gateway.recv_window_ms: {problem}"
            raise ConfigError(message, [message])
        self._clock_checked = True

    # -- trading rules ----------------------------------------------------------------

    async def load_rules(self) -> None:
        """Start-up: read the venue's trading rules, which orders are checked against.

        Raises ``ConnectionError`` (start-up retries) when they cannot be
        read or are unreadable; ``ConfigError`` (start-up stops, exit 2) when
        the venue refuses the request for the configured symbols (400) or
        its rules contradict the configuration (the dialect's ``load_rules``);
        no order leaves before they are loaded (each would be refused
        ``venue_rule: venue_rules_unknown``).
        """
        request = self.dialect.rules_request()
        if request is None:
            self._rules_loaded = True
            return
        self._rules_loaded = True  # the read below goes through _read_content
        try:
            # A symbol the venue does not list (-1121) is refused 400: the
            # configuration's, not the venue's passing state.
            content = await self._read_content(request, refused_key="instruments")
            assert content is not None
            self.dialect.load_rules(content)
        except UnreadableAnswer as exc:
            self._rules_loaded = False
            self.counts["unreadable_answer"] += 1
            raise ConnectionError(f"the venue's trading rules are unreadable: {exc}") from None
        except BaseException:
            self._rules_loaded = False
            raise
        self.counts["rules_loaded"] += 1

    # -- fills ------------------------------------------------------------------------

    async def poll_fills(self) -> int:
        """Read new fills once, every stream; how many were handed on, -1 if a read failed.

        Every fill above its stream's cursor of a symbol this process
        trades goes to the listener (the ledger keeps what is this engine's
        and counts each id once); the cursor then moves past it. An entry
        that cannot be read is counted and, when its order is this
        engine's, the order is read back (its answer carries the cumulative
        fill). Raises :class:`Dropped` when a halt or stop drops the queued
        poll.
        """
        applied = 0
        failed = False
        for stream in self.dialect.fill_streams:
            done = await self._poll_stream(stream)
            if done < 0:
                failed = True
            else:
                applied += done
        return -1 if failed else applied

    async def _poll_stream(self, stream: str) -> int:
        cursor = self._fills_cursors.get(stream, 0)
        entries = await self._read_fills(stream, cursor, resolve=True)
        if entries is None:
            return -1
        applied = 0
        listener = self._listener
        streamed = self._streamed_fills.get(stream)
        # In fill-id order, whatever order the venue listed them in: the
        # cursor must not pass a fill that is still to come in this answer.
        entries.sort(key=_fill_order)
        for entry in entries:
            fill_id = entry.fill_id
            if fill_id is None:
                self.counts["unreadable_fills"] += 1
                log.error("%s", entry.problem)
                continue
            if fill_id <= cursor:
                continue  # redelivered: counted once, when it was new
            cursor = self._fills_cursors[stream] = fill_id
            if streamed and fill_id in streamed:
                # The stream handed it on; the ledger may have let its order go
                # since, and would take this copy as an overfill.
                streamed.discard(fill_id)
                self.counts["poll_fill_streamed"] += 1
                continue
            if entry.problem is not None:
                cid = entry.client_order_id
                order = listener.order(cid) if cid is not None else None
                if order is None:
                    continue  # not this engine's
                self.counts["unreadable_fill"] += 1
                log.error("unreadable fill %d: %s", fill_id, entry.problem)
                listener.on_order_fault(order.client_order_id, "unreadable_fill")
                self._spawn(self._read_back(order), f"read-back:{order.client_order_id}")
                continue
            if entry.fill is None:
                continue  # a symbol or an order this process does not trade
            # Every fill of its symbols goes to the ledger, which tells the
            # deployment's orders (tracked, or closed and gone) from others'.
            listener.on_fill(entry.fill)
            self._completed_by_fills(entry.fill.client_order_id)
            applied += 1
        if streamed:
            # Ids the cursor has passed are dropped by it from now on (stream_update).
            streamed.difference_update([i for i in streamed if i <= cursor])
        return applied

    async def _read_fills(
        self, stream: str, after: int, *, resolve: bool = False
    ) -> list[FillEntry] | None:
        """One fills read of ``stream`` (poll class): its entries, None when there are none.

        ``resolve``: first read the orders the answer names that the
        dialect cannot name yet (a venue naming orders by its own ids in
        fills); if one of those reads says nothing, the fills are left for
        the next poll. A failed read counts ``read_failed``, an answer that
        is not a list ``unreadable_fills``; both count a fills read
        failure. Raises :class:`Dropped` when a halt or stop drops the read.
        """
        dialect = self.dialect
        read = await self._read(lambda: dialect.read_fills(stream, after), Priority.POLL, "fills")
        if read is None or read[0] is not _OK:
            if read is not None:
                self.counts["read_failed"] += 1
                self.read_failures["fills"] += 1
            return None
        reply = read[1]
        if resolve:
            for venue_id, request in dialect.unresolved_orders(stream, reply.content):
                named = await self._read(partial(_fresh, request), Priority.POLL, "order")
                if named is None:
                    return None
                try:
                    dialect.learn_order(venue_id, named[1].content if named[0] is _OK else None)
                except UnreadableAnswer as exc:
                    log.error("unreadable order answer naming a fill's order: %s", exc)
                    return None
        try:
            return dialect.parse_fills(stream, reply.content)
        except UnreadableAnswer:
            self.counts["unreadable_fills"] += 1
            self.read_failures["fills"] += 1
            log.error("unreadable fills answer: %r", reply.content[:200])
            return None

    @property
    def fills_cursor(self) -> int:
        """The highest fill id read from the venue's fills log (the first stream's)."""
        return self._fills_cursors.get(self.dialect.fill_streams[0], 0)

    @property
    def fills_cursors(self) -> dict[str, int]:
        """The highest fill id read, by fills stream (a copy)."""
        return dict(self._fills_cursors)

    async def _poll_fills_forever(self) -> None:
        """Poll the fills every ``fills_poll_s`` (at once when an answer reports fills).

        The interval is at least the dialect's floor (a venue whose fills
        reads are heavy in its request weight); polls wait while the venue's
        used weight is near its limit. Failed reads back off
        (:class:`Backoff`) up to ``read_backoff_max_s``.
        """
        config = self.config
        floor = self.dialect.fills_poll_floor_s
        every = max(self.fills_poll_s, floor)
        backoff = Backoff(every, max(every, config.read_backoff_max_s))
        interval = every
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
            # cancellation that races its timeout, and the poller never stops.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._fills_wanted.wait()
            self._fills_wanted.clear()
            # The rate a venue stream set (slow while it pushes fills, fast while down).
            every = max(self.fills_poll_s, floor)
            if self._weight_tight():
                self.counts["poll_deferred"] += 1
                interval = every
                continue
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
                interval = every

    # -- resting orders ---------------------------------------------------------------

    async def audit_resting(self) -> int:
        """Find resting orders the venue no longer lists as open, and read each back.

        Lists the venue's open orders (poll-class requests, per the
        dialect: all at once, or per symbol of a resting order) and reads
        back every order the ledger had as resting when the list was asked
        for that the list lacks and no request of this gateway is settling:
        a venue-initiated cancel or expiry, or a fill the fills feed has not
        shown yet. Returns how many were read back; -1 if the list could not
        be read. Raises :class:`Dropped` when a halt or stop drops it.
        """
        resting = self._listener.resting_orders()
        if not resting:
            return 0
        dialect = self.dialect
        listed: set[str] = set()
        for request in dialect.open_orders(sorted({order.symbol for order in resting})):
            read = await self._read(partial(_fresh, request), Priority.POLL, "open_orders")
            if read is None or read[0] is not _OK:
                return -1
            self.counts["resting_checks"] += 1
            try:
                listed |= dialect.open_order_ids(read[1].content)
            except UnreadableAnswer:
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
        """Is each of the venue's fills logs still the one its cursor counts in?

        Fill ids increase and fills are never deleted, so the same log
        answers a read of the fills after ``<cursor - 1>`` with at least the
        fill at the cursor. A log that lists no fill at or above the cursor
        was reset while the engine ran (a venue restarted with an empty
        log): its new fills carry ids at or below the cursor, which the
        poller skips as read, so positions would silently stop following
        the venue. That is the halting order fault ``fills_log_reset``
        (reported once until the log is whole again; a restart then stops
        at the venue check, see docs/operations.md), and
        :attr:`fills_log_reset_seen` says so for the rest of the process:
        the engine refuses ``/resume`` and ``/reduce`` until it restarts. Returns True when every
        log holds its cursor, False when one was reset, None when there is
        nothing to check (no fill read yet) or a log could not be read.
        Raises :class:`Dropped` when a halt or stop drops the read.
        """
        result: bool | None = None
        for stream, cursor in list(self._fills_cursors.items()):
            if cursor <= 0:
                continue
            entries = await self._read_fills(stream, cursor - 1)
            if entries is None:
                return None
            self.counts["fills_log_checks"] += 1
            if any(entry.fill_id is not None and entry.fill_id >= cursor for entry in entries):
                result = True if result is None else result
                continue
            result = False
            if not self._fills_log_reset:
                self._fills_log_reset = True
                self.fills_log_reset_seen = (
                    f"the venue's fills log{'' if stream == ALL_SYMBOLS else f' of {stream}'} "
                    f"was reset (no fill at or above {cursor}, the last fill id read)"
                )
                log.error(
                    "the venue's fills log%s lists no fill at or above %d, the last fill id "
                    "read: it was reset; fills from now on cannot be told from fills already "
                    "read",
                    "" if stream == ALL_SYMBOLS else f" of {stream}",
                    cursor,
                )
                self._listener.on_order_fault("*", "fills_log_reset")
            return False
        if result:
            self._fills_log_reset = False
        return result

    async def _audit_forever(self) -> None:
        """Every half of ``resting_order_check_s`` (with jitter): audit resting
        orders (:meth:`audit_resting`), check the fills log (:meth:`check_fills_log`)
        and, for a venue that signs timestamps, measure its clock again when
        ``clock_check_s`` passed or an answer said the clock was off."""
        half = self.config.resting_order_check_s / 2
        last_clock = self._clock()
        while True:
            await asyncio.sleep(half * (0.5 + 0.5 * self._rng.random()))
            now = self._clock()
            if self.dialect.recv_window_ms is not None and (
                self._clock_wanted or now - last_clock >= self.config.clock_check_s * 1e9
            ):
                last_clock = now
                with contextlib.suppress(Dropped):
                    await self.sync_clock()
            if self._weight_tight():
                self.counts["poll_deferred"] += 1
                continue
            for check in (self.audit_resting, self.check_fills_log):
                try:
                    await check()
                except Dropped:
                    continue
                except Exception:
                    log.exception("%s failed", check.__name__)

    async def _send(
        self, request: OrderRequest, written: Order | None = None, *, timed: bool = False
    ) -> Reply | None:
        """One request over httpx with the dialect's headers (its slot already granted).

        ``timed``: an order request (a placement, a re-send, a cancel), whose
        answer's latency goes in :attr:`roundtrip`; reads and polls do not.
        """
        return await self._http(
            request.method, request.target, request.body, written, request.headers, timed
        )

    async def _http(
        self,
        method: str,
        url: str,
        content: bytes | None = None,
        written: Order | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        timed: bool = False,
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
                method, url, content=content, extensions=extensions, headers=headers or None
            )
        except httpx.TimeoutException:
            self.counts["timeout"] += 1
            return None
        except httpx.TransportError as exc:
            self.counts["connection_error"] += 1
            if not self._unreachable_logged:
                # Once per outage: each later failure is counted, not logged, until an answer.
                self._unreachable_logged = True
                log.warning(
                    "%s %s%s: %s (connection errors are counted, not logged, until the "
                    "venue answers again)",
                    method,
                    self.config.base_url.rstrip("/"),
                    url.partition("?")[0],
                    type(exc).__name__,
                )
            return None
        if self._unreachable_logged:
            self._unreachable_logged = False
            log.warning("the venue at %s answers again", self.config.base_url)
        if timed:
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
        target = self.dialect.fast_target
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
            log.error("fast path POST %s: unparsed answer: %s", target, exc)
            self.breaker.release()
            return None
        except FastPathError as exc:
            self.counts["connection_error"] += 1
            log.warning("fast path POST %s: %s", target, exc)
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
        self._pause(delay)
        return delay

    def venue_rate_limited(self, delay_s: float) -> None:
        """Another request path of this client (its user data stream) was answered 429:
        every request class pauses ``delay_s`` (at most ``max_retry_after_s``), as
        for a 429 to a request of the gateway's own."""
        self._pause(min(max(0.0, delay_s), self.config.max_retry_after_s))

    def _pause(self, delay: float) -> None:
        self.counts["venue_rate_limited"] += 1
        self.scheduler.pause(delay)
        now = self._wall_clock()
        self._tell_pause(now, now + delay, banned=False)

    def _tell_pause(self, heard: float, until: float, *, banned: bool) -> None:
        """Tell ``on_pause`` of a pause, unless one told earlier runs longer: the
        journal keeps the pause every request waits for, as the scheduler does."""
        _, told_until = self._told[banned]
        if told_until >= until and told_until > heard:
            return
        self._told[banned] = (heard, until)
        if self.on_pause is not None:
            self.on_pause(heard, until, banned=banned)

    def keep_pauses(self, journal: PauseJournal) -> tuple[str, float] | None:
        """Start-up: journal the venue's pauses from now on; honour one that still runs.

        Every pause the venue asks for is told to ``journal.venue_paused``
        from now on. The last 429 pause and the last ban an earlier run
        journaled (``journal.venue_pauses()``) are honoured while they run:
        every request class waits (counted ``pause_restored``), and a ban
        also halts trading and shows in ``/status`` (``venue.ban_until``),
        as the ban's own answer does. What is left of each is never more
        than it was when heard, nor than ``max_retry_after_s`` (a 429) or
        :data:`MAX_BAN_S` (a ban): a host clock set back or forward between
        the two runs cannot stretch it. Call before the first request.

        Returns ``(what start-up waits for, in one line; seconds to wait)``,
        or None when nothing runs any more.
        """
        self.on_pause = journal.venue_paused
        (paused_heard, paused_until), (banned_heard, banned_until) = journal.venue_pauses()
        now = self._wall_clock()
        pause_s = _left(now, paused_heard, paused_until, self.config.max_retry_after_s)
        ban_s = _left(now, banned_heard, banned_until, MAX_BAN_S)
        # A shorter pause heard later does not shorten these in the journal.
        self._told = {False: (now, now + pause_s), True: (now, now + ban_s)}
        wait_s = max(pause_s, ban_s)
        if wait_s <= 0:
            return None
        self.counts["pause_restored"] += 1
        self.scheduler.pause(wait_s)
        waits: list[str] = []
        if ban_s > 0:
            self.banned_until = now + ban_s
            waits.append(f"the venue's ban of this client ends at {_utc(now + ban_s)}")
        if pause_s > 0:
            waits.append(f"the venue's rate-limit pause (429) ends at {_utc(now + pause_s)}")
        what = "; ".join(waits) + " (journaled by an earlier run)"
        if ban_s > 0:
            log.error("%s: no request before %s; trading halts", what, _utc(now + wait_s))
            self._listener.on_order_fault("*", "venue_banned")
        else:
            log.warning("%s: no request before then", what)
        return what, wait_s

    # -- reconciliation reads (engine.reconcile.VenueReader) ----------------------------
    #
    # Reconciliation reads the own API's documents; a venue dialect writes its
    # answers in that shape (OrderApiDialect.order_document and friends).

    async def open_orders(self) -> list[dict[str, Any]]:
        """The exchange's open orders (for reconciliation). Raises ``ConnectionError``."""
        dialect = self.dialect
        result: list[dict[str, Any]] = []
        for request in dialect.open_orders(sorted(self._instruments)):
            content = await self._read_content(request)
            assert content is not None
            try:
                result.extend(dialect.open_order_documents(content))
            except UnreadableAnswer as exc:
                raise ConnectionError(f"{_where(request)}: {exc}") from None
        return result

    @property
    def fill_streams(self) -> tuple[str, ...]:
        """The venue's fills streams (``("*",)``: one log; else one per symbol)."""
        return tuple(self.dialect.fill_streams)

    async def fills(self, since: int | Mapping[str, int]) -> list[dict[str, Any]]:
        """The fills after ``since`` (for reconciliation), as the own API's documents.

        ``since``: one fill id for every stream, or a fill id per stream
        (only the streams it names are read). Each document of a venue with
        one stream per symbol carries its ``stream``.
        """
        dialect = self.dialect
        result: list[dict[str, Any]] = []
        wanted = (
            dict.fromkeys(dialect.fill_streams, since) if isinstance(since, int) else dict(since)
        )
        per_symbol = tuple(dialect.fill_streams) != (ALL_SYMBOLS,)
        for stream, after in wanted.items():
            request = dialect.read_fills(stream, after)
            content = await self._read_content(request)
            assert content is not None
            for venue_id, named in dialect.unresolved_orders(stream, content):
                answer = await self._read_content(named, missing_ok=True)
                try:
                    dialect.learn_order(venue_id, answer)
                except UnreadableAnswer as exc:
                    raise ConnectionError(f"{_where(named)}: {exc}") from None
            try:
                documents = dialect.fill_documents(stream, content)
            except UnreadableAnswer as exc:
                raise ConnectionError(f"{_where(request)}: {exc}") from None
            if per_symbol:
                for document in documents:
                    document["stream"] = stream
            result.extend(documents)
        return result

    def _symbols_of(self, client_order_id: str) -> list[str]:
        """Where an order may be: its symbol when the ledger knows it, else every one."""
        order = self._listener.order(client_order_id)
        return [order.symbol] if order is not None else sorted(self._instruments)

    async def read_order(self, client_order_id: str) -> dict[str, Any] | None:
        """The order's body read back, None when the exchange never saw it."""
        return await self._order_document(client_order_id, self.dialect.read_order)

    async def cancel_order(self, client_order_id: str) -> dict[str, Any] | None:
        """Cancel the order: its body after the cancel, None when unknown."""
        return await self._order_document(client_order_id, self.dialect.cancel_order)

    async def _order_document(
        self, client_order_id: str, build: Callable[[str, str], OrderRequest]
    ) -> dict[str, Any] | None:
        for symbol in self._symbols_of(client_order_id):
            request = build(client_order_id, symbol)
            content = await self._read_content(request, missing_ok=True)
            if content is None:
                continue
            try:
                document = self.dialect.order_document(content, client_order_id, symbol)
            except UnreadableAnswer as exc:
                raise ConnectionError(f"{_where(request)}: unreadable answer: {exc}") from None
            return document  # type: ignore[return-value]
        return None

    def resume(self, fills_cursor: int | Mapping[str, int], orders: Iterable[Order] = ()) -> None:
        """Read fills after ``fills_cursor`` from now on (the ledger tracks ``orders``).

        ``fills_cursor``: one fill id for every stream, or a fill id per
        stream (streams it does not name keep theirs). A cursor never goes
        back. ``orders`` teach the dialect the venue's ids of the orders
        (Binance's trades name orders by them).
        """
        for stream, cursor in self._fills_cursors.items():
            wanted = fills_cursor if isinstance(fills_cursor, int) else fills_cursor.get(stream, 0)
            self._fills_cursors[stream] = max(cursor, wanted)
        self.dialect.learn_orders(orders)

    async def _read_content(
        self, request: OrderRequest, *, missing_ok: bool = False, refused_key: str | None = None
    ) -> bytes | None:
        """One reconciliation request through the venue's budget: the answer's body.

        A 429 pauses the venue (the next slot waits for ``Retry-After``)
        and the request is tried again, up to 5 times; a timestamp outside
        the venue's window measures the clock and tries again. The first
        read of a venue that signs timestamps measures its clock first
        (:meth:`check_clock`). Returns None for "not found" with
        ``missing_ok``. Raises ``ConnectionError`` when unanswered,
        refused, unreadable or dropped; ``ConfigError`` naming the key's
        variables when the venue refuses the API key or the signature
        (no retry changes them: start-up stops, exit 2); with
        ``refused_key``, a 400 the venue refused deliberately (its
        parameters, which come from the configuration) raises
        ``ConfigError`` naming that key.
        """
        if not self._clock_checked:
            await self.check_clock()
        if not self._rules_loaded:
            await self.load_rules()
        where = _where(request)
        priority = Priority.CANCEL if request.method == "DELETE" else Priority.POLL
        for _ in range(5):
            try:
                await self.scheduler.acquire(priority)
            except Dropped:
                raise ConnectionError(f"{where}: dropped by a halt or stop") from None
            reply = await self._send(_fresh(request))
            verdict = self._verdict(reply)
            kind = verdict.kind
            if kind is AnswerKind.RATE_LIMITED:
                assert reply is not None
                self._venue_paused(reply)
                continue
            if kind is AnswerKind.CLOCK_SKEW:
                self.counts["clock_skew"] += 1
                await self.sync_clock(resync=True)
                continue
            if kind is _NOT_FOUND and missing_ok:
                self.reached = True
                return None
            if kind is not _OK:
                code = "no answer" if reply is None else str(reply.status_code)
                if kind is AnswerKind.AUTH_FAILED:
                    # No retry fixes a key or a secret this process read at its start
                    # (each dialect classifies its 401; Binance's 403 is its WAF: retried).
                    self.counts["auth_failed"] += 1
                    # One line, whatever the venue's message holds (newlines, tabs).
                    reason = " ".join((verdict.reason or f"HTTP {code}").split())
                    message = (
                        f"gateway.api_key_env: the venue refuses {where} ({reason}): "
                        f"check {self._key_variables()}"
                    )
                    raise ConfigError(message, [message])
                if reply is not None:
                    self._read_refused(verdict, reply)
                if verdict.reason and not verdict.reason.startswith(code):
                    code += f" ({verdict.reason})"  # the venue's own code and message
                if refused_key is not None and kind is AnswerKind.REFUSED and code[:3] == "400":
                    message = f"{refused_key}: the venue refuses {where}: {code}"
                    raise ConfigError(message, [message])
                raise ConnectionError(f"{where}: {code}")
            assert reply is not None
            self.reached = True
            return reply.content
        raise ConnectionError(f"{where}: still rate limited")


def _fresh(request: OrderRequest) -> OrderRequest:
    """``request`` built again as it leaves (a signed one carries the time of sending)."""
    return request.rebuild() if request.rebuild is not None else request


def _where(request: OrderRequest) -> str:
    """A request named in an error: its method and target, never a signed query."""
    target = request.target
    if "signature=" in target:
        target = target.partition("?")[0]
    # Percent-decoded for reading: exchangeInfo?symbols=["BTCUSDT","DOGEUSDT"].
    return f"{request.method} {unquote(target)}"


def _fill_order(entry: FillEntry) -> int:
    """Sort key of a fills entry: its id, or -1 when it has none readable (read first)."""
    return -1 if entry.fill_id is None else entry.fill_id
