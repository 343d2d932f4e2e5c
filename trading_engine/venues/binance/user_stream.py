"""The Binance user data stream consumer: execution reports over the WebSocket API.

One :class:`UserDataStream` owns one connection to Binance's WebSocket API
(aiohttp's client, as the feed handlers use) and one subscription on it
(``userDataStream.subscribe.signature``). It reads each frame with the
codec (:meth:`~.orders.BinanceSpotCodec.parse_user_stream`) and gives each
execution report, as an :class:`~.orders.ExecutionUpdate`, to the owner's
callback, synchronously, on the loop, in the order the venue sent them.

**Live or not.** :attr:`UserDataStream.live` is true from the venue's
answer to the subscription until the connection or the subscription
ends; every change is told to ``on_live_change(live, reason)``. The stream
is the fast way fills arrive; the owner's poll (``myTrades`` from its
cursor, orders read back) is the way that never stops: fast while the
stream is down, slow while it is live. The venue does not replay events
sent while no subscription was open, so **on every change to live the
owner reads trades since its cursor once**: whatever happened between the
drop and the new subscription arrives by that read, and the same fill
arriving twice (stream and poll) is one fill by its trade id.

**Ends and how each is noticed** (each counted, reason in
``user_stream_drops_total{reason}``):

* the venue closes the connection or it fails (``closed``, ``ws_error``);
* the subscription ends: ``eventStreamTerminated`` (``stream_terminated``)
  or ``serverShutdown`` (``server_shutdown``): a new connection and
  subscription, at once;
* the stream goes **silent**: after ``ping_interval_s`` without any frame
  the consumer sends a WebSocket API ``ping`` request (weight 1 of the
  IP's request budget, which REST shares), whose answer travels behind any
  pending event; nothing at all for ``silence_timeout_s`` ends the
  connection (``silent``). The venue's own WebSocket pings (every 20 s at
  Binance, which closes a connection without a pong within a minute) are
  answered with their payload at once, and prove nothing of the stream;
* the subscription is refused (``subscribe_refused``) or not answered in
  ``subscribe_timeout_s`` (``subscribe_timeout``); a refusal for a bad key
  or signature (``auth_failed``) ends :meth:`UserDataStream.run`: retrying a
  wrong secret is a storm, not a fix, and the owner halts;
  ``-1021`` re-measures the venue clock before the next try;
* the connection reaches ``max_connection_s`` (Binance closes every
  connection at 24 hours; the consumer goes first, ``connection_age``).

After each end the consumer connects and subscribes again, waiting with
the project's capped back-off (:class:`~trading_engine.lowlevel.backoff.Backoff`,
reset after a connection that stayed live ``stable_connection_s``; a
rate-limit or ban answer's ``retryAfter`` is honoured when longer).

**Bad input.** A frame the codec cannot read (``UnreadableAnswer``: a
missing field, a number off the grid, garbage) is counted ``unreadable``
and dropped, never guessed at: the poll settles the order it was about.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

import aiohttp
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ...core.errors import UnreadableAnswer
from ...io.scheduler import retry_after_s
from ...lowlevel.backoff import Backoff
from ...lowlevel.metrics import counter_family
from ...lowlevel.tasks import wait_or_stop
from .clock import ClockUnavailable, VenueClock
from .orders import (
    BinanceSpotCodec,
    ErrorKind,
    ExecutionUpdate,
    OtherEvent,
    RequestAnswered,
    RequestFailed,
    StreamEnded,
    Subscribed,
    VenueError,
)

__all__ = [
    "DEFAULT_WS_API_URL",
    "DROP_REASONS",
    "STREAM_EVENTS",
    "TESTNET_WS_API_URL",
    "UserDataStream",
    "UserStreamCollector",
    "UserStreamSettings",
]

log = logging.getLogger("trading_engine.venues.binance.user_stream")

#: Binance's WebSocket API (production).
DEFAULT_WS_API_URL: Final = "wss://ws-api.binance.com:443/ws-api/v3"
#: The Spot Testnet's WebSocket API.
TESTNET_WS_API_URL: Final = "wss://ws-api.testnet.binance.vision/ws-api/v3"

_CLOSE_TIMEOUT_S: Final = 1.0

#: Reasons of ``trading_engine_user_stream_drops_total{reason}``, all exported from the start
#: (a dashboard's ``increase()`` then sees the first drop).
DROP_REASONS: Final = (
    "connect_timeout",
    "connect_refused",
    "connect_failed",
    "silent",
    "subscribe_timeout",
    "connection_age",
    "ws_error",
    "closed",
    "server_shutdown",
    "stream_terminated",
    "auth_failed",
    "clock_skew",
    "subscribe_refused",
    "rate_limited",
    "banned",
)

#: Counters of ``trading_engine_user_stream_events_total{event}``, all exported from the start.
STREAM_EVENTS: Final = (
    "connected",
    "connect_failed",
    "subscribed",
    "resubscribed",
    "subscribe_failed",
    "dropped",
    "silent",
    "execution_report",
    "other_event",
    "unreadable",
    "ping_sent",
    "ping_answered",
    "server_ping",
    "request_failed",
    "callback_failed",
    "ban_wait",
)


@dataclass(frozen=True, slots=True)
class UserStreamSettings:
    """Timeouts and limits of a :class:`UserDataStream` (seconds, bytes)."""

    connect_timeout_s: float = 10.0
    #: The subscription's answer must come this soon after connecting.
    subscribe_timeout_s: float = 10.0
    #: No frame for this long: send a WebSocket API ``ping`` request.
    ping_interval_s: float = 10.0
    #: No frame for this long (the ping's answer included): the stream is silent.
    silence_timeout_s: float = 30.0
    #: Connect again before the venue's own cut at 24 hours.
    max_connection_s: float = 23.5 * 3600
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    #: A subscription live this long was a success: the next wait is ``backoff_initial_s``.
    stable_connection_s: float = 30.0
    #: How often the silence, subscription and age checks run.
    timer_s: float = 1.0
    max_message_bytes: int = 4 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in (
            "connect_timeout_s", "subscribe_timeout_s", "ping_interval_s", "silence_timeout_s",
            "max_connection_s", "backoff_initial_s", "backoff_max_s", "stable_connection_s",
            "timer_s",
        ):  # fmt: skip
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.silence_timeout_s <= self.ping_interval_s:
            raise ValueError(
                f"silence_timeout_s ({self.silence_timeout_s}) must exceed ping_interval_s "
                f"({self.ping_interval_s}): a ping needs time to be answered"
            )
        if self.backoff_initial_s > self.backoff_max_s:
            raise ValueError("backoff_initial_s must not exceed backoff_max_s")


class _Session:
    """What one connection knows: its socket, its subscription, its clocks."""

    __slots__ = ("opened", "ping_id", "request_id", "subscription", "ws")

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, opened: float, request_id: str) -> None:
        self.ws = ws
        self.opened = opened
        self.request_id = request_id
        self.subscription: int | None = None
        self.ping_id: str | None = None


class UserDataStream:
    """The account's execution reports from Binance's WebSocket API (module docstring).

    ``codec`` builds the signed subscription and reads the frames; ``url``
    is the WebSocket API (:data:`DEFAULT_WS_API_URL`, the testnet's, or a
    simulator's ``ws://127.0.0.1:PORT/ws-api/v3``); ``on_update`` receives
    each :class:`~.orders.ExecutionUpdate` (sync, on the loop; an exception
    it raises is logged and counted ``callback_failed``, and the stream
    goes on); ``on_live_change(live, reason)`` is told each change of
    :attr:`live` (``reason``: ``subscribed`` or why the stream ended).
    ``clock`` gives the subscription's ``timestamp`` and is re-measured on a
    ``-1021`` answer (without one the host's wall clock signs).
    ``on_auth_failed(reason)`` is told the refusal of the key or signature
    that ends :meth:`run` (it then logs and halts; without one the stream
    logs the refusal itself).
    ``monotonic`` (seconds) is injected for the age and silence checks.
    ``hold_s()`` gives the seconds the owner wants no connection made for
    (the venue's ban of this client, learned on another request path: a
    WebSocket API connection counts against the same IP); each wait is
    counted ``ban_wait``. ``on_banned(until_s, reason)`` is told a ban
    (a 418, or ``-1003`` "banned until") answered to the subscription, with
    its end in wall-clock seconds, so every other request path waits too;
    ``on_rate_limited(delay_s)`` is told a 429 (to the connection or the
    subscription) and its ``Retry-After``, for the same reason.

    :attr:`counts` holds :data:`STREAM_EVENTS`; :attr:`drops` each end by
    reason; :attr:`failure` the refusal that ended :meth:`run`, if one did.
    """

    def __init__(
        self,
        codec: BinanceSpotCodec,
        url: str,
        on_update: Callable[[ExecutionUpdate], None],
        *,
        on_live_change: Callable[[bool, str], None] | None = None,
        on_auth_failed: Callable[[str], None] | None = None,
        clock: VenueClock | None = None,
        settings: UserStreamSettings | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        hold_s: Callable[[], float] | None = None,
        on_banned: Callable[[float, str], None] | None = None,
        on_rate_limited: Callable[[float], None] | None = None,
    ) -> None:
        self.codec = codec
        self.on_banned = on_banned
        self.on_rate_limited = on_rate_limited
        self._hold_s = hold_s
        self.url = url
        self.on_update = on_update
        self.on_live_change = on_live_change
        self.on_auth_failed = on_auth_failed
        self.clock = clock
        self.settings = settings or UserStreamSettings()
        self._monotonic = monotonic
        self.counts: dict[str, int] = dict.fromkeys(STREAM_EVENTS, 0)
        self.drops: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        #: The error answer that ended :meth:`run` (a bad key or signature), if any.
        self.failure: str | None = None
        self._live = False
        self._ever_live = False
        self._live_since: float | None = None
        self._requests = 0
        self._retry_after_s = 0.0
        self._resync_clock = False
        self._last_frame = 0.0
        self._stop = asyncio.Event()

    def __repr__(self) -> str:
        return f"UserDataStream({self.url!r}, live={self._live})"

    @property
    def live(self) -> bool:
        """Whether a subscription is open now: the venue pushes this account's events."""
        return self._live

    def stop(self) -> None:
        """Ask :meth:`run` to return (safe from a signal handler)."""
        self._stop.set()

    async def run(self, session: aiohttp.ClientSession | None = None) -> None:
        """Connect, subscribe and read, again after every end, until :meth:`stop`.

        Also returns after a refusal for a bad key or signature
        (:attr:`failure` says which). ``session`` is an aiohttp session to
        use (one of its own otherwise). Never raises for the venue's
        behaviour; cancel it or call :meth:`stop` to end it.
        """
        if session is None:
            async with aiohttp.ClientSession() as own:
                await self._loop(own)
        else:
            await self._loop(session)

    async def _loop(self, http: aiohttp.ClientSession) -> None:
        settings = self.settings
        backoff = Backoff(settings.backoff_initial_s, settings.backoff_max_s)
        try:
            while not self._stop.is_set():
                held = self._hold_s() if self._hold_s is not None else 0.0
                if held > 0:
                    # Every connection during a ban is one more request the venue holds
                    # against this IP: wait it out (looked at again: a ban may grow).
                    self.counts["ban_wait"] += 1
                    log.warning("binance user stream: the venue bans this client for "
                                "%.0f s more; connecting after it", held)  # fmt: skip
                    await wait_or_stop(self._stop, held)
                    continue
                self._live_since = None
                reason = await self._connection(http)
                if self.failure is not None or self._stop.is_set():
                    return
                since = self._live_since
                if since is not None and self._monotonic() - since >= settings.stable_connection_s:
                    backoff.reset()
                delay = max(backoff.next_s(), self._retry_after_s)
                self._retry_after_s = 0.0
                if self._resync_clock and self.clock is not None:
                    self._resync_clock = False
                    try:
                        await self.clock.resync()
                    except ClockUnavailable as exc:
                        log.warning("binance user stream: %s", exc)
                log.warning("binance user stream ended (%s); again in %.1f s", reason, delay)
                await wait_or_stop(self._stop, delay)
        finally:
            self._set_live(False, "stopped")

    def _drop(self, reason: str) -> None:
        if reason != "stopped":
            self.counts["dropped"] += 1
            self.drops[reason] = self.drops.get(reason, 0) + 1
        self._set_live(False, reason)

    def _set_live(self, live: bool, reason: str) -> None:
        if live == self._live:
            return
        self._live = live
        self._tell(self.on_live_change, "live-change", live, reason)

    def _next_id(self, kind: str) -> str:
        self._requests += 1
        return f"{kind}{self._requests}"

    def _timestamp_ms(self) -> int:
        clock = self.clock
        return clock.timestamp_ms() if clock is not None else time.time_ns() // 1_000_000

    async def _connection(self, http: aiohttp.ClientSession) -> str:
        """One connection, from connect to its end; returns why it ended (a metric label)."""
        settings = self.settings
        try:
            async with asyncio.timeout(settings.connect_timeout_s):
                ws = await http.ws_connect(
                    self.url,
                    autoping=False,
                    heartbeat=None,
                    max_msg_size=settings.max_message_bytes,
                )
        except TimeoutError:
            self.counts["connect_failed"] += 1
            self._drop("connect_timeout")
            return "connect_timeout"
        except aiohttp.WSServerHandshakeError as exc:
            self.counts["connect_failed"] += 1
            log.warning("binance user stream: %s refused the connection: %s", self.url, exc)
            if exc.status in (418, 429):
                # The venue's limits answer the handshake too: wait what it says,
                # and a ban (418) holds every request path of this client.
                retry = exc.headers.get("Retry-After") if exc.headers is not None else None
                now = time.time()
                wait_s = retry_after_s(retry, now, default_s=60.0, cap_s=3 * 86_400.0)
                self._retry_after_s = wait_s
                if exc.status == 418:
                    self._tell_banned(now + wait_s, f"HTTP 418 to {self.url}")
                else:
                    self._tell_rate_limited(wait_s)
            self._drop("connect_refused")
            return "connect_refused"
        except (aiohttp.ClientError, OSError) as exc:
            self.counts["connect_failed"] += 1
            log.warning("binance user stream: cannot connect to %s: %s", self.url, exc)
            self._drop("connect_failed")
            return "connect_failed"
        self.counts["connected"] += 1
        state = _Session(ws, self._monotonic(), self._next_id("subscribe"))
        reader: asyncio.Task[str] | None = None
        reason = "stopped"
        try:
            await ws.send_str(
                self.codec.subscribe_user_stream(state.request_id, self._timestamp_ms())
            )
            reader = asyncio.create_task(self._read(state))
            reason = await self._watch(state, reader)
        except (aiohttp.ClientError, ConnectionError) as exc:
            log.warning("binance user stream: connection failed: %s", exc)
            reason = "ws_error"
        except Exception:
            # A bug here must not silence the stream for good: start over, counted.
            log.exception("binance user stream: the consumer failed; connecting again")
            reason = "internal_error"
        finally:
            # Down at once, before the close handshake: the owner's poll starts now.
            self._drop(reason)
            if reader is not None and not reader.done():
                reader.cancel()
                with contextlib.suppress(BaseException):
                    await reader
            # A venue that went silent may never answer the close: do not wait on it.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), _CLOSE_TIMEOUT_S)
        return reason

    async def _watch(self, state: _Session, reader: asyncio.Task[str]) -> str:
        """The clock's side of a connection: silence, subscription deadline, age, stop."""
        settings = self.settings
        monotonic = self._monotonic
        self._last_frame = monotonic()
        while True:
            done, _ = await asyncio.wait((reader,), timeout=settings.timer_s)
            if done:
                return reader.result()
            if self._stop.is_set():
                return "stopped"
            now = monotonic()
            quiet = now - self._last_frame
            if quiet > settings.silence_timeout_s:
                self.counts["silent"] += 1
                log.warning("binance user stream: nothing for %.1f s; connecting again", quiet)
                return "silent"
            if state.subscription is None and now - state.opened > settings.subscribe_timeout_s:
                return "subscribe_timeout"
            if now - state.opened > settings.max_connection_s:
                return "connection_age"
            if self._hold_s is not None and self._hold_s() > 0:
                # The owner heard of a ban on another path: no more pings into it.
                return "banned"
            if quiet > settings.ping_interval_s and state.ping_id is None:
                state.ping_id = self._next_id("ping")
                self.counts["ping_sent"] += 1
                await state.ws.send_str(f'{{"id":"{state.ping_id}","method":"ping"}}')

    async def _read(self, state: _Session) -> str:
        """Read frames until the connection or the subscription ends; returns why."""
        ws = state.ws
        text_type, ping_type = aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.PING
        pong_type = aiohttp.WSMsgType.PONG
        monotonic = self._monotonic
        while True:
            msg = await ws.receive()
            kind = msg.type
            if kind is text_type:
                self._last_frame = monotonic()
                reason = self._frame(state, msg.data)
                if reason is not None:
                    return reason
            elif kind is ping_type:
                # Binance closes a connection whose pings go unanswered for a minute.
                self.counts["server_ping"] += 1
                await ws.pong(msg.data)
            elif kind is pong_type:
                self._last_frame = monotonic()
            elif kind is aiohttp.WSMsgType.BINARY:
                self.counts["unreadable"] += 1
            elif kind is aiohttp.WSMsgType.ERROR:
                return "ws_error"
            else:  # CLOSE, CLOSING, CLOSED
                return "closed"

    def _frame(self, state: _Session, data: str) -> str | None:
        """One text frame; returns a reason when it ends the connection."""
        try:
            message = self.codec.parse_user_stream(data)
        except UnreadableAnswer as exc:
            self.counts["unreadable"] += 1
            log.warning("binance user stream: dropped an unreadable frame: %s", exc)
            return None
        if isinstance(message, ExecutionUpdate):
            if state.subscription is None or message.subscription_id not in (
                None,
                state.subscription,
            ):
                # Not this connection's subscription: the codec read it, but
                # whose events these are is not known; the poll settles them.
                self.counts["unreadable"] += 1
                return None
            self.counts["execution_report"] += 1
            try:
                self.on_update(message)
            except Exception:
                self.counts["callback_failed"] += 1
                log.exception("binance user stream: the update callback failed")
            return None
        if isinstance(message, OtherEvent):
            self.counts["other_event"] += 1
            return None
        if isinstance(message, StreamEnded):
            if message.reason == "serverShutdown":
                return "server_shutdown"
            if message.subscription_id in (None, state.subscription):
                return "stream_terminated"
            return None
        if isinstance(message, Subscribed):
            if message.request_id != state.request_id:
                self.counts["unreadable"] += 1
                return None
            state.subscription = message.subscription_id
            self.counts["resubscribed" if self._ever_live else "subscribed"] += 1
            self._ever_live = True
            self._live_since = self._monotonic()
            self._set_live(True, "subscribed")
            return None
        if isinstance(message, RequestAnswered):
            if message.request_id == state.ping_id:
                self.counts["ping_answered"] += 1
                state.ping_id = None
            return None
        return self._failed(state, message)

    def _tell(self, callback: Callable[..., None] | None, what: str, *args: object) -> None:
        """Call the owner's ``callback`` (if any); its failure is counted and logged."""
        if callback is not None:
            try:
                callback(*args)
            except Exception:
                self.counts["callback_failed"] += 1
                log.exception("binance user stream: the %s callback failed", what)

    def _tell_banned(self, until_s: float, reason: str) -> None:
        self._tell(self.on_banned, "ban", until_s, reason)

    def _tell_rate_limited(self, delay_s: float) -> None:
        self._tell(self.on_rate_limited, "rate-limit", delay_s)

    def _limits(self, error: VenueError) -> str | None:
        """A 418 or 429 answered to any of the stream's requests: the owner is told
        (every request path of this client waits), the connection ends and the
        next one waits what the venue said. Returns the drop reason, or None."""
        if error.until_ms is not None:
            self._retry_after_s = max(0.0, (error.until_ms - self._timestamp_ms()) / 1000)
        elif error.retry_after_s is not None:
            self._retry_after_s = float(error.retry_after_s)
        if error.kind is ErrorKind.BANNED:
            until_ms = error.until_ms
            until_s = (
                until_ms / 1000
                if until_ms is not None
                else time.time() + (self._retry_after_s or 60.0)
            )
            self._tell_banned(until_s, error.reason)
            return "banned"
        if error.kind is ErrorKind.RATE_LIMITED:
            self._tell_rate_limited(self._retry_after_s or 1.0)
            return "rate_limited"
        return None

    def _failed(self, state: _Session, message: RequestFailed) -> str | None:
        error = message.error
        if message.request_id != state.request_id:
            self.counts["request_failed"] += 1
            if message.request_id == state.ping_id:
                state.ping_id = None
            # A ping answered 418 or 429: no more requests on this connection.
            return self._limits(error)
        self.counts["subscribe_failed"] += 1
        limited = self._limits(error)
        if limited is not None:
            log.warning("binance user stream: subscription refused: %s", error.reason)
            return limited
        if error.kind is ErrorKind.AUTH_FAILED:
            self.failure = error.reason
            if self.on_auth_failed is not None:
                self._tell(self.on_auth_failed, "refusal", error.reason)
                return "auth_failed"
            log.error(
                "binance user stream: the venue refused the API key or signature (%s); "
                "not retrying",
                error.reason,
            )
            return "auth_failed"
        if error.kind is ErrorKind.CLOCK_SKEW:
            self._resync_clock = True
            return "clock_skew"
        log.warning("binance user stream: subscription refused: %s", error.reason)
        return "subscribe_refused"


class UserStreamCollector(Collector):
    """A :class:`UserDataStream`'s counters and state, read when scraped.

    ``trading_engine_user_stream_events_total{venue,event}`` (every
    :data:`STREAM_EVENTS` name, from zero), ``trading_engine_user_stream_drops_total{venue,reason}``
    and ``trading_engine_user_stream_live{venue}`` (1 while subscribed).
    """

    def __init__(self, stream: UserDataStream, venue: str = "binance") -> None:
        self.stream = stream
        self.venue = venue

    def collect(self) -> Iterator[Metric]:
        stream, venue = self.stream, self.venue
        yield counter_family(
            "trading_engine_user_stream_events",
            "User data stream connections, subscriptions, reports and failures, by event.",
            {"venue": venue},
            "event",
            stream.counts,
        )
        yield counter_family(
            "trading_engine_user_stream_drops",
            "User data stream connections or subscriptions ended, by reason.",
            {"venue": venue},
            "reason",
            stream.drops,
        )
        live = GaugeMetricFamily(
            "trading_engine_user_stream_live",
            "1 while the user data stream is subscribed (fills then come pushed; else polled).",
            labels=["venue"],
        )
        live.add_metric([venue], 1.0 if stream.live else 0.0)
        yield live
