"""The feed handler runtime: a venue's public market data in, the engine's feed protocol out.

One :class:`FeedHandler` owns one venue WebSocket connection (aiohttp's
client) for one :class:`~trading_engine.core.feeds.FeedDialect` and its
symbols, the REST snapshot fetches (httpx), and one TCP connection to
each engine feed port it publishes to. The dialect decides what every
venue message means; this module does the I/O, the numbering and the
counting:

* **Routing.** Each venue symbol has an engine symbol (the same name
  unless mapped) and goes to the engine that owns its shard: engine
  ``crc32(engine symbol) % len(engines)`` of the ``--to`` list, the rule
  of :func:`trading_engine.core.sharding.shard_of`. Frames of one symbol
  leave in order on one connection.
* **Sequence numbers.** The handler numbers each engine symbol's frames
  itself (``snapshot``, ``update``, ``trade`` share one sequence). A
  :class:`~trading_engine.core.feeds.Resync` makes the engine's book stale
  at once: the handler sends an empty ``update`` one number past the next
  (a gap, by the protocol's rule) and counts the reason; the dialect's
  next snapshot makes the book live again.
* **The engine's copy.** The handler keeps the levels it published for
  each live symbol (a dict per side, keyed by the price written one way:
  a venue may spell one price two ways). When an engine connection is
  made again, each of its live symbols gets a snapshot from that copy at
  once, without asking the venue. A snapshot larger than
  ``max_frame_bytes`` is sent as a ``snapshot`` of the best levels
  followed by ``update`` frames with the rest, and so is an update too
  large for one frame: the engine never answers, so a frame it refused
  would leave its book stale with no snapshot coming. A side past
  ``max_book_levels`` drops the book and reconnects (``book_too_deep``).
* **The venue connection.** Connecting and reconnecting wait with capped
  exponential back-off and jitter, reset only after a connection that
  stayed open ``stable_connection_s``. Messages are read by a task of
  their own, with no timer per message; the idle, ``on_timer``, age and
  stop checks run once per ``timer_s`` beside it. WebSocket pings are answered with the
  ping's payload (Binance requires it). A connection is closed and made
  again after ``idle_timeout_s`` without any frame, after
  ``max_connection_s`` (Binance closes connections at 24 hours, so the
  handler goes first), when the venue closes it, or when the dialect asks
  (:class:`~trading_engine.core.feeds.Reconnect`). Every symbol's engine
  book goes stale at the disconnect and live again with its next snapshot:
  a reconnect costs at most a re-snapshot.
* **Snapshots.** Each :class:`~trading_engine.core.feeds.FetchSnapshot`
  runs as its own task with a timeout and a body limit
  (``max_snapshot_bytes``); a failure is counted, told to the dialect and
  retried with back-off until the connection ends. A symbol has one
  back-off until its book goes live, whichever part asks for a snapshot
  again (a failure, the dialect finding the snapshot older than the
  stream, on its answer or on a later event): the first fetch and one
  retry go at once, later ones wait, so a stream that refutes every
  snapshot costs no request per event. A 429 or 418 holds every fetch
  for its ``Retry-After``.
* **Engines.** A refused or closed engine connection is retried with
  back-off (reset after a connection open ``engine_backoff_max_s``);
  frames for its symbols meanwhile are dropped and counted, and the
  connection resumes with snapshots. An engine that does not read
  (its socket buffer past ``max_engine_buffer_bytes``) is disconnected and
  counted ``engine_slow``: the handler never buffers without bound. A
  ``heartbeat`` frame every ``heartbeat_s`` keeps the engine's idle timer
  quiet for symbols the venue leaves unchanged.

Metrics (``trading_engine_feed_handler_*``, on an injected
``CollectorRegistry``): messages and bytes in, frames out by type, frames
dropped, resyncs by reason, venue reconnects by reason, engine connection
failures by reason, dialect errors by reason, snapshot fetch latency and
failures, oversized updates, the snapshot pause left, connection states,
and two latency histograms: venue event time
to receive, and receive to the engine frame written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import aiohttp
import httpx
import orjson
from aiohttp import web
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from ..core.feeds import (
    Action,
    BookFrame,
    FeedDialect,
    FetchSnapshot,
    Reconnect,
    Resync,
    SendText,
    TradeFrame,
)
from ..core.sharding import shard_of
from ..lowlevel.backoff import Backoff
from ..lowlevel.metrics import LatencyHistogram, add_histogram, histogram_family
from .venue_capture import VenueCaptureWriter
from .webserver import serve

__all__ = ["EngineAddress", "FeedHandler", "FeedHandlerSettings", "serve_metrics"]

log = logging.getLogger("trading_engine.feedhandler")

P: Final = "trading_engine_feed_handler_"
HEARTBEAT: Final = b'{"type":"heartbeat"}\n'
#: The longest ``Retry-After`` obeyed (Binance's IP bans last up to 3 days).
MAX_RETRY_AFTER_S: Final = 3 * 24 * 3600.0
_NEWLINE: Final = orjson.OPT_APPEND_NEWLINE


@dataclass(frozen=True, slots=True)
class EngineAddress:
    """An engine feed port (``HOST:PORT``)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class FeedHandlerSettings:
    """Timeouts and limits of a :class:`FeedHandler` (seconds, bytes)."""

    connect_timeout_s: float = 10.0
    #: No frame at all from the venue (data or ping) for this long: reconnect.
    idle_timeout_s: float = 60.0
    #: Reconnect before the venue's own cut (Binance: 24 h).
    max_connection_s: float = 23.5 * 3600
    snapshot_timeout_s: float = 10.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    engine_backoff_initial_s: float = 0.1
    engine_backoff_max_s: float = 5.0
    heartbeat_s: float = 1.0
    #: How often the dialect's ``on_timer`` runs.
    timer_s: float = 1.0
    #: The engines' ``feed.max_frame_bytes``: no frame sent is longer.
    max_frame_bytes: int = 65536
    max_engine_buffer_bytes: int = 8 * 1024 * 1024
    max_message_bytes: int = 16 * 1024 * 1024
    #: A REST snapshot body longer than this is given up (``too_large``); a
    #: Binance snapshot of 5,000 levels a side is about 300 kB.
    max_snapshot_bytes: int = 16 * 1024 * 1024
    #: Levels a side of one symbol's book, at most (Binance's snapshots hold
    #: 5,000, OKX's 400, Kraken's up to 1,000). A venue that goes past it is
    #: connected again (``book_too_deep``): every book restarts from a snapshot.
    max_book_levels: int = 50_000
    #: A venue connection that stayed open this long was a success: the next
    #: reconnect waits ``backoff_initial_s`` again. A shorter one (a venue that
    #: greets and closes) doubles the wait.
    stable_connection_s: float = 30.0


def _is_zero(size: str) -> bool:
    return not size.strip("0.")


def _price_key(price: str) -> str:
    """A plain decimal price written one way (``00.0057300`` and ``0.005730`` are ``0.00573``).

    The handler's copy is keyed by it: a venue may write one price two ways
    (Kraken's numbers drop trailing zeros or not), and the engine, which
    keys by ticks, must never be sent a snapshot listing a price twice or
    a level that a removal spelt otherwise already removed.
    """
    if "." in price:
        price = price.rstrip("0").rstrip(".")
    price = price.lstrip("0")
    return price if price[:1].isdigit() else "0" + price


@dataclass(slots=True)
class _Route:
    """One venue symbol's way to its engine."""

    engine_symbol: str
    link: _EngineLink
    seq: int = 0
    #: Book and trade frames written for this symbol.
    frames: int = 0
    live: bool = False
    bids: dict[str, str] = field(default_factory=dict)
    asks: dict[str, str] = field(default_factory=dict)


@dataclass(eq=False, slots=True)
class _EngineLink:
    address: EngineAddress
    writer: asyncio.StreamWriter | None = None
    routes: list[_Route] = field(default_factory=list)


@dataclass(slots=True)
class _Counts:
    """Plain counters on the hot path, exported when scraped."""

    messages: int = 0
    message_bytes: int = 0
    frames: dict[str, int] = field(
        default_factory=lambda: {"snapshot": 0, "update": 0, "trade": 0, "heartbeat": 0}
    )
    # The common reasons start at 0, so their series exist before the first one.
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("engine_down",), 0))
    resyncs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("gap", "reconnect"), 0))
    reconnects: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("venue_closed", "idle", "connect_failed"), 0)
    )
    engine_failures: dict[tuple[str, str], int] = field(default_factory=dict)
    snapshot_failures: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("timeout", "transport", "http_429", "http_5xx"), 0)
    )
    pings: int = 0
    #: Updates too large for one engine frame, sent as a snapshot of the copy.
    oversized_updates: int = 0


class _SnapshotPacing:
    """How a symbol's snapshot requests are spaced until its book goes live.

    One back-off per symbol, whichever part asks again (a failure, the
    dialect finding a snapshot older than the stream, on its answer or on a
    later event), so a stream that refutes every snapshot gets a growing
    wait, not a request per event. The first request and one retry go at
    once: a snapshot older than the stream is common at a connection's start.
    """

    __slots__ = ("backoff", "requests")

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.requests = 0

    def next_s(self) -> float:
        """The wait before the next request, in seconds (0 for the first two)."""
        self.requests += 1
        return self.backoff.next_s() if self.requests > 2 else 0.0


def _bump(counts: dict[str, int], key: str, by: int = 1) -> None:
    counts[key] = counts.get(key, 0) + by


class FeedHandler:
    """One venue connection publishing to one or more engines (see the module docstring).

    ``dialect``: the venue's rules for ``symbol_map``'s keys (venue symbol
    to engine symbol). ``ws_url``: the venue's WebSocket base URL, given to
    :meth:`FeedDialect.connect_url`. ``engines``: the feed ports, shard
    ``i`` at index ``i``. ``registry``: where the metrics go (None: not
    exported). ``capture``: a venue capture file to append to. ``http``:
    the client for snapshots (one is made and closed if None).
    ``clock_ns``: wall-clock nanoseconds, for capture lines and latencies.
    Raises ``ValueError`` without engines or symbols, or when two venue
    symbols map to one engine symbol.
    """

    def __init__(
        self,
        dialect: FeedDialect,
        *,
        ws_url: str,
        engines: Sequence[EngineAddress],
        symbol_map: Mapping[str, str],
        settings: FeedHandlerSettings | None = None,
        registry: CollectorRegistry | None = None,
        capture: VenueCaptureWriter | None = None,
        http: httpx.AsyncClient | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        if not engines:
            raise ValueError("a feed handler needs at least one engine address")
        if not symbol_map:
            raise ValueError("a feed handler needs at least one symbol")
        if len(set(symbol_map.values())) != len(symbol_map):
            # Two venue books in one engine book would interleave their sequences.
            raise ValueError("two venue symbols map to the same engine symbol")
        self.dialect = dialect
        self.venue = dialect.venue
        self.ws_url = ws_url
        self.settings = settings or FeedHandlerSettings()
        self.capture = capture
        self.clock_ns = clock_ns
        self.links = [_EngineLink(address) for address in engines]
        self.routes: dict[str, _Route] = {}
        for venue_symbol, engine_symbol in symbol_map.items():
            link = self.links[shard_of(engine_symbol, len(self.links))]
            route = _Route(engine_symbol, link)
            link.routes.append(route)
            self.routes[venue_symbol] = route
        self.counts = _Counts()
        for link in self.links:
            for reason in ("connect_failed", "closed", "engine_slow"):
                self.counts.engine_failures[(str(link.address), reason)] = 0
        self.venue_to_receive = LatencyHistogram()
        self.receive_to_publish = LatencyHistogram()
        self.snapshot_latency = LatencyHistogram()
        self.connected = False
        self._http = http
        self._own_http = http is None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        #: time.monotonic() of the venue's last frame (of any kind).
        self._last_frame = 0.0
        #: time.monotonic() when the current connection opened (None before it does).
        self._connected_at: float | None = None
        self._outbox: list[str] = []
        self._reconnect_reason: str | None = None
        self._generation = 0
        self._fetches: dict[str, asyncio.Task[None]] = {}
        #: A running fetch whose own answer led the dialect to ask again: symbol -> URL.
        self._fetch_again: dict[str, str] = {}
        #: Per symbol until its book goes live: its snapshot requests' pacing.
        self._snapshot_pacing: dict[str, _SnapshotPacing] = {}
        self._max_levels = self.settings.max_book_levels
        #: Venue price text to the copy's key (see :func:`_price_key`).
        self._price_keys: dict[str, str] = {}
        #: time.monotonic() until which no snapshot is asked for (a venue's Retry-After).
        self._rest_paused_until = 0.0
        self._stop = asyncio.Event()
        self._logged: dict[str, int] = {}
        if registry is not None:
            registry.register(_FeedCollector(self))

    # -- running -----------------------------------------------------------------------------

    async def run(self, duration_s: float | None = None) -> None:
        """Run until :meth:`stop` or after ``duration_s`` seconds."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.settings.snapshot_timeout_s)
        tasks = [asyncio.create_task(self._engine_loop(link)) for link in self.links]
        tasks.append(asyncio.create_task(self._heartbeat_loop()))
        venue = asyncio.create_task(self._venue_loop())
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(duration_s):
                    await self._stop.wait()
        finally:
            self._stop.set()
            # The session notices the stop within timer_s and ends cleanly (its
            # books marked stale, its close captured); past that it is cancelled.
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(venue), self.settings.timer_s + 1.0)
            venue.cancel()
            for task in [*tasks, *self._fetches.values()]:
                task.cancel()
            await asyncio.gather(venue, *tasks, *self._fetches.values(), return_exceptions=True)
            for link in self.links:
                writer, link.writer = link.writer, None
                if writer is not None:
                    writer.close()  # what is written (the stale markers) still goes out
            if self._own_http and self._http is not None:
                await self._http.aclose()
            if self.capture is not None:
                self.capture.flush()

    def stop(self) -> None:
        """Ask :meth:`run` to return (safe from a signal handler)."""
        self._stop.set()

    # -- the venue connection ------------------------------------------------------------------

    async def _venue_loop(self) -> None:
        settings = self.settings
        backoff = Backoff(settings.backoff_initial_s, settings.backoff_max_s)
        async with aiohttp.ClientSession() as session:
            while not self._stop.is_set():
                self._connected_at = None
                try:
                    reason = await self._session(session)
                except Exception:
                    # A dialect must count bad input, never raise; one that does
                    # has a bug: the connection starts over rather than the
                    # handler going silent.
                    log.exception("%s: the dialect failed; reconnecting", self.venue)
                    reason = "dialect_failure"
                _bump(self.counts.reconnects, reason)
                self._end_session(reason)
                if self._stop.is_set():
                    return
                opened = self._connected_at
                if opened is not None and time.monotonic() - opened >= settings.stable_connection_s:
                    # The venue worked: a clean disconnect retries soon. A message or
                    # two before a close says nothing (Kraken greets every connection).
                    backoff.reset()
                delay = backoff.next_s()
                log.warning(
                    "%s: connection ended (%s); reconnecting in %.1f s", self.venue, reason, delay
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stop.wait()

    async def _session(self, session: aiohttp.ClientSession) -> str:
        """One connection, from connect to close; returns why it ended (a metric label)."""
        settings = self.settings
        dialect = self.dialect
        url = dialect.connect_url(self.ws_url)
        try:
            async with asyncio.timeout(settings.connect_timeout_s):
                ws = await session.ws_connect(
                    url, autoping=False, heartbeat=None, max_msg_size=settings.max_message_bytes
                )
        except TimeoutError:
            return "connect_timeout"
        except (aiohttp.ClientError, OSError) as exc:
            log.warning("%s: cannot connect to %s: %s", self.venue, url, exc)
            return "connect_failed"
        self._ws = ws
        self._connected_at = time.monotonic()
        self._generation += 1
        self._reconnect_reason = None
        self.connected = True
        if self.capture is not None:
            self.capture.write(self.clock_ns(), "open", url, b"")
        log.info("%s: connected to %s", self.venue, url)
        monotonic = time.monotonic
        reader: asyncio.Task[str] | None = None
        try:
            self._act(dialect.on_open(self.clock_ns()))
            await self._flush_outbox()
            opened = self._last_frame = monotonic()
            # The messages are read by their own task, with no timer per message
            # (a receive timeout costs more than aiohttp's whole read); the
            # clock's work is done here, once per timer_s.
            reader = asyncio.create_task(self._read(ws))
            while True:
                done, _ = await asyncio.wait((reader,), timeout=settings.timer_s)
                if done:
                    return reader.result()
                now = monotonic()
                if now - self._last_frame > settings.idle_timeout_s:
                    return "idle"
                if self._reconnect_reason is not None:
                    return self._reconnect_reason
                self._log_bursts()
                self._act(dialect.on_timer(self.clock_ns()))
                await self._flush_outbox()
                if self._reconnect_reason is not None:
                    return self._reconnect_reason
                if now - opened > settings.max_connection_s:
                    return "connection_age"
                if self._stop.is_set():
                    return "stopped"
        except (aiohttp.ClientError, ConnectionError) as exc:
            log.warning("%s: connection failed: %s", self.venue, exc)
            return "ws_error"
        finally:
            if reader is not None and not reader.done():
                reader.cancel()
                with contextlib.suppress(BaseException):
                    await reader
            self._ws = None
            self.connected = False
            with contextlib.suppress(Exception):
                await ws.close()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        """Read the venue's messages until the connection ends; returns why (a metric label).

        A dialect that raises is let through (the caller counts it).
        """
        dialect = self.dialect
        counts = self.counts
        capture = self.capture
        clock_ns = self.clock_ns
        text_type, binary_type = aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY
        ping_type = aiohttp.WSMsgType.PING
        monotonic = time.monotonic
        perf_ns = time.perf_counter_ns
        receive = ws.receive
        try:
            while True:
                msg = await receive()
                self._last_frame = monotonic()
                kind = msg.type
                if kind is text_type or kind is binary_type:
                    started = perf_ns()
                    recv_ns = clock_ns()
                    data = msg.data
                    if kind is binary_type:
                        try:
                            data = data.decode()
                        except UnicodeDecodeError:
                            _bump(counts.dropped, "binary_message")
                            continue
                    counts.messages += 1
                    counts.message_bytes += len(data)
                    if capture is not None:
                        capture.write(recv_ns, "ws", "", data)
                    if self._act(dialect.on_message(data, recv_ns), recv_ns):
                        self.receive_to_publish.observe_ns(perf_ns() - started)
                    if self._outbox:
                        await self._flush_outbox()
                elif kind is ping_type:
                    counts.pings += 1
                    await ws.pong(msg.data)
                elif kind is aiohttp.WSMsgType.PONG:
                    pass
                elif kind is aiohttp.WSMsgType.ERROR:
                    return "ws_error"
                else:  # CLOSE, CLOSING, CLOSED
                    return "venue_closed"
                if self._reconnect_reason is not None:
                    return self._reconnect_reason
        except (aiohttp.ClientError, ConnectionError) as exc:
            log.warning("%s: connection failed: %s", self.venue, exc)
            return "ws_error"

    def _log_bursts(self) -> None:
        """One warning per timer tick for what the dialect refused or the handler dropped.

        Every one is counted as it happens; the log says only that a burst
        happened, and what, once a tick however many there were.
        """
        seen = self._logged
        news = []
        for label, counts in (("ignored", self.dialect.errors), ("dropped", self.counts.dropped)):
            for reason, value in counts.items():
                key = f"{label} {reason}"
                new = value - seen.get(key, 0)
                if new:
                    news.append(f"{new} {key}")
                    seen[key] = value
        if news:
            log.warning("%s: %s", self.venue, ", ".join(news))

    def _end_session(self, reason: str) -> None:
        """The connection is gone: no fetch of it may land, every book resyncs."""
        self._generation += 1
        for task in self._fetches.values():
            task.cancel()
        self._fetches.clear()
        self._fetch_again.clear()
        self._snapshot_pacing.clear()
        self._outbox.clear()
        if self.capture is not None:
            self.capture.write(self.clock_ns(), "close", reason, b"")
        for symbol in self.routes:
            self._resync(symbol, "reconnect")

    async def _flush_outbox(self) -> None:
        ws = self._ws
        while self._outbox and ws is not None and not ws.closed:
            await ws.send_str(self._outbox.pop(0))

    # -- actions ----------------------------------------------------------------------------

    def _act(self, actions: Iterable[Action], recv_ns: int = 0) -> bool:
        """Carry out a dialect's actions; True if a frame was written to an engine."""
        wrote = False
        for action in actions:
            if isinstance(action, BookFrame):
                wrote = self._book(action, recv_ns) or wrote
            elif isinstance(action, TradeFrame):
                wrote = self._trade(action) or wrote
            elif isinstance(action, Resync):
                self._resync(action.symbol, action.reason)
            elif isinstance(action, FetchSnapshot):
                self._fetch(action.symbol, action.url)
            elif isinstance(action, SendText):
                self._outbox.append(action.text)
            elif isinstance(action, Reconnect):
                self._reconnect_reason = action.reason
        return wrote

    def _book(self, frame: BookFrame, recv_ns: int) -> bool:
        route = self.routes.get(frame.symbol)
        if route is None:
            _bump(self.counts.dropped, "unknown_symbol")
            return False
        if frame.ts_ns is not None and recv_ns:
            self.venue_to_receive.observe_ns(max(0, recv_ns - frame.ts_ns))
        if frame.snapshot:
            key_of = self._price_key
            route.bids = {key_of(p): size for p, size in frame.bids if not _is_zero(size)}
            route.asks = {key_of(p): size for p, size in frame.asks if not _is_zero(size)}
            if self._too_deep(frame.symbol, route):
                return False
            route.live = True
            self._snapshot_pacing.pop(frame.symbol, None)
            return self._send_snapshot(route)
        if not route.live:
            _bump(self.counts.dropped, "not_live")
            return False
        bids, asks = route.bids, route.asks
        keys = self._price_keys
        for price, size in frame.bids:
            key = keys.get(price) or self._price_key(price)
            if _is_zero(size):
                bids.pop(key, None)
            else:
                bids[key] = size
        for price, size in frame.asks:
            key = keys.get(price) or self._price_key(price)
            if _is_zero(size):
                asks.pop(key, None)
            else:
                asks[key] = size
        if len(bids) > self._max_levels or len(asks) > self._max_levels:
            self._too_deep(frame.symbol, route)
            return False
        seq = route.seq + 1
        data = orjson.dumps(
            {
                "type": "update",
                "symbol": route.engine_symbol,
                "seq": seq,
                "bids": frame.bids,
                "asks": frame.asks,
            },
            option=_NEWLINE,
        )
        if len(data) > self.settings.max_frame_bytes:
            # The engine would refuse the frame and its book would stay stale with
            # no snapshot coming: the copy, just updated, goes out in pieces instead.
            self.counts.oversized_updates += 1
            return self._send_snapshot(route)
        route.seq = seq
        route.frames += 1
        return self._write(route.link, data, "update")

    def _too_deep(self, symbol: str, route: _Route) -> bool:
        """True when a side of ``route``'s copy is past ``max_book_levels``: the book is
        dropped (made stale) and a reconnect asked for. A venue that grows a book
        without end must not grow this process, nor the engine's book, with it."""
        if len(route.bids) <= self._max_levels and len(route.asks) <= self._max_levels:
            return False
        if self._reconnect_reason is None:
            log.warning(
                "%s: %s has more than %d levels a side; connecting again",
                self.venue, route.engine_symbol, self._max_levels,
            )  # fmt: skip
            self._reconnect_reason = "book_too_deep"
        route.bids = {}
        route.asks = {}
        self._resync(symbol, "book_too_deep")
        return True

    def _price_key(self, price: str) -> str:
        """:func:`_price_key`, remembered: a book's prices recur (at most 65,536 kept)."""
        keys = self._price_keys
        key = keys.get(price)
        if key is None:
            if len(keys) >= 65536:
                keys.clear()
            key = keys[price] = _price_key(price)
        return key

    def _trade(self, trade: TradeFrame) -> bool:
        route = self.routes.get(trade.symbol)
        if route is None:
            _bump(self.counts.dropped, "unknown_symbol")
            return False
        if not route.live:
            _bump(self.counts.dropped, "not_live")
            return False
        route.seq += 1
        route.frames += 1
        data = orjson.dumps(
            {
                "type": "trade",
                "symbol": route.engine_symbol,
                "seq": route.seq,
                "price": trade.price,
                "size": trade.size,
                "side": trade.side,
            },
            option=_NEWLINE,
        )
        return self._write(route.link, data, "trade")

    def _resync(self, symbol: str, reason: str) -> None:
        route = self.routes.get(symbol)
        if route is None:
            return
        _bump(self.counts.resyncs, reason)
        if not route.live:
            return
        route.live = False
        route.bids = {}
        route.asks = {}
        # One number skipped: the engine sees a gap and marks the book stale now.
        route.seq += 2
        data = orjson.dumps(
            {
                "type": "update",
                "symbol": route.engine_symbol,
                "seq": route.seq,
                "bids": [],
                "asks": [],
            },
            option=_NEWLINE,
        )
        self._write(route.link, data, "update")

    def _send_snapshot(self, route: _Route) -> bool:
        """The route's levels as a snapshot (plus updates if they do not fit one frame)."""
        link = route.link
        if link.writer is None:
            _bump(self.counts.dropped, "engine_down")
            return False
        wrote = False
        for index, (bids, asks) in enumerate(self._chunks(route)):
            route.seq += 1
            route.frames += 1
            data = orjson.dumps(
                {
                    "type": "snapshot" if index == 0 else "update",
                    "symbol": route.engine_symbol,
                    "seq": route.seq,
                    "bids": bids,
                    "asks": asks,
                },
                option=_NEWLINE,
            )
            wrote = self._write(link, data, "snapshot" if index == 0 else "update") or wrote
        return wrote

    def _chunks(
        self, route: _Route
    ) -> Iterator[tuple[list[tuple[str, str]], list[tuple[str, str]]]]:
        """The route's levels, best first, in pieces whose frames fit ``max_frame_bytes``.

        Each piece takes a bid and an ask at a time while their text fits:
        counted level by level, since one long level (a venue may pad its
        numbers) must not make a frame the engine refuses.
        """
        bids = sorted(route.bids.items(), key=lambda level: float(level[0]), reverse=True)
        asks = sorted(route.asks.items(), key=lambda level: float(level[0]))
        # The frame's fixed part is under 200 bytes plus the symbol; a level costs its
        # two strings plus ["",""] and a comma: 8 bytes.
        budget = self.settings.max_frame_bytes - 200 - 2 * len(route.engine_symbol)
        n_bids, n_asks = len(bids), len(asks)
        i = j = 0
        while True:
            first_bid, first_ask = i, j
            used = 0
            while i < n_bids or j < n_asks:
                if i < n_bids:
                    price, size = bids[i]
                    cost = len(price) + len(size) + 8
                    if used + cost > budget and (i > first_bid or j > first_ask):
                        break
                    used += cost
                    i += 1
                if j < n_asks:
                    price, size = asks[j]
                    cost = len(price) + len(size) + 8
                    if used + cost > budget and (i > first_bid or j > first_ask):
                        break
                    used += cost
                    j += 1
            yield bids[first_bid:i], asks[first_ask:j]
            if i >= n_bids and j >= n_asks:
                return

    def _write(self, link: _EngineLink, frame: bytes, kind: str) -> bool:
        """Write one frame (ending with its newline) to ``link``; False if it is down."""
        writer = link.writer
        if writer is None or writer.transport.is_closing():
            _bump(self.counts.dropped, "engine_down")
            return False
        writer.write(frame)
        self.counts.frames[kind] += 1
        if self.capture is not None:
            self.capture.write(self.clock_ns(), "out", str(link.address), frame[:-1])
        if writer.transport.get_write_buffer_size() > self.settings.max_engine_buffer_bytes:
            self._fail_link(link, "engine_slow")
        return True

    # -- snapshots --------------------------------------------------------------------------

    def _fetch(self, symbol: str, url: str) -> None:
        current = self._fetches.get(symbol)
        if current is not None and not current.done():
            if current is asyncio.current_task():
                # The fetch itself asked again: for its own snapshot (too old for
                # the stream) or after a failure. Either way it goes round again,
                # after its back-off.
                self._fetch_again[symbol] = url
                return
            current.cancel()
        pacing = self._pacing(symbol)
        self._fetches[symbol] = asyncio.create_task(
            self._fetch_loop(symbol, url, self._generation, pacing, pacing.next_s())
        )

    def _pacing(self, symbol: str) -> _SnapshotPacing:
        pacing = self._snapshot_pacing.get(symbol)
        if pacing is None:
            settings = self.settings
            pacing = _SnapshotPacing(Backoff(settings.backoff_initial_s, settings.backoff_max_s))
            self._snapshot_pacing[symbol] = pacing
        return pacing

    async def _fetch_loop(
        self, symbol: str, url: str, generation: int, pacing: _SnapshotPacing, delay_s: float
    ) -> None:
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        settings = self.settings
        backoff = pacing.backoff
        http = self._http
        assert http is not None
        while generation == self._generation:
            # A venue's rate limit is per client, not per symbol: while one of its
            # answers said to wait, no snapshot of this handler is asked for.
            wait_s = self._rest_paused_until - time.monotonic()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
                continue
            started = time.perf_counter_ns()
            body: bytes | None = None
            retry_after: str | None = None
            try:
                async with asyncio.timeout(settings.snapshot_timeout_s):
                    body, reason, retry_after = await self._get(http, url)
            except TimeoutError:
                reason = "timeout"
            except httpx.HTTPError:
                reason = "transport"
            if body is not None:
                self.snapshot_latency.observe_ns(time.perf_counter_ns() - started)
                if generation != self._generation:
                    return
                recv_ns = self.clock_ns()
                if self.capture is not None:
                    self.capture.write(recv_ns, "snapshot", symbol, body)
                try:
                    actions = self.dialect.on_snapshot(symbol, body, recv_ns)
                except Exception:
                    log.exception("%s: the dialect failed on a snapshot", self.venue)
                    self._reconnect_reason = "dialect_failure"
                    return
                self._act(actions, recv_ns)
                await self._flush_outbox()
                again = self._fetch_again.pop(symbol, None)
                if again is None:
                    return
                url = again
                await asyncio.sleep(pacing.next_s())
                continue
            _bump(self.counts.snapshot_failures, reason)
            log.warning("%s: snapshot of %s failed (%s)", self.venue, symbol, reason)
            delay_s = backoff.next_s()
            if reason in ("http_418", "http_429"):
                self._pause_rest(retry_after, delay_s)
            if generation != self._generation:
                return
            now_ns = self.clock_ns()
            if self.capture is not None:
                self.capture.write(now_ns, "snapshot_failed", symbol, reason)
            self._act(self.dialect.on_snapshot_failed(symbol, reason, now_ns))
            url = self._fetch_again.pop(symbol, url)
            await asyncio.sleep(delay_s)

    async def _get(self, http: httpx.AsyncClient, url: str) -> tuple[bytes | None, str, str | None]:
        """GET ``url``: ``(body, "", None)`` for a 200, else ``(None, reason, Retry-After)``.

        The body is read up to ``max_snapshot_bytes`` and given up past it
        (``too_large``): a venue's answer never costs more memory than that.
        """
        limit = self.settings.max_snapshot_bytes
        async with http.stream("GET", url) as response:
            status = response.status_code
            if status != 200:
                reason = f"http_{status}" if status in (418, 429) else f"http_{status // 100}xx"
                return None, reason, response.headers.get("Retry-After")
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > limit:
                return None, "too_large", None
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    return None, "too_large", None
            return bytes(body), "", None

    def _pause_rest(self, retry_after: str | None, default_s: float) -> None:
        """Hold every snapshot fetch for the venue's ``Retry-After`` (seconds), else
        ``default_s``."""
        pause_s = default_s
        if retry_after is not None and retry_after.strip().isdigit():
            pause_s = min(float(retry_after.strip()), MAX_RETRY_AFTER_S)
        until = time.monotonic() + pause_s
        if until > self._rest_paused_until:
            self._rest_paused_until = until
            log.warning(
                "%s: the venue limits requests; no snapshot for %.0f s", self.venue, pause_s
            )

    # -- engines ----------------------------------------------------------------------------

    async def _engine_loop(self, link: _EngineLink) -> None:
        settings = self.settings
        backoff = Backoff(settings.engine_backoff_initial_s, settings.engine_backoff_max_s)
        address = link.address
        while not self._stop.is_set():
            try:
                async with asyncio.timeout(settings.connect_timeout_s):
                    reader, writer = await asyncio.open_connection(address.host, address.port)
            except (OSError, TimeoutError) as exc:
                self._count_engine(link, "connect_failed")
                log.debug("%s: engine %s: cannot connect: %s", self.venue, address, exc)
                await asyncio.sleep(backoff.next_s())
                continue
            link.writer = writer
            opened = time.monotonic()
            log.info("%s: publishing to engine %s", self.venue, address)
            for route in link.routes:
                if route.live:
                    self._send_snapshot(route)
            try:
                # The engine never sends; reading only notices that it went away.
                while await reader.read(65536):
                    pass
            except (ConnectionError, OSError):
                pass
            if link.writer is writer:
                self._count_engine(link, "closed")
            self._close_link(link)
            if time.monotonic() - opened >= settings.engine_backoff_max_s:
                # It worked a while: a restarted engine is fed again at once. One
                # that closes as it accepts waits longer each time (every connection
                # costs a snapshot of each of its live books).
                backoff.reset()
            await asyncio.sleep(backoff.next_s())

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            for link in self.links:
                if link.writer is not None and not link.writer.transport.is_closing():
                    self._write_raw(link, HEARTBEAT)

    def _write_raw(self, link: _EngineLink, data: bytes) -> None:
        assert link.writer is not None
        link.writer.write(data)
        self.counts.frames["heartbeat"] += 1

    def _fail_link(self, link: _EngineLink, reason: str) -> None:
        self._count_engine(link, reason)
        log.warning("%s: engine %s: %s; connecting again", self.venue, link.address, reason)
        self._close_link(link)

    def _close_link(self, link: _EngineLink) -> None:
        writer, link.writer = link.writer, None
        if writer is not None:
            writer.transport.abort()

    def _count_engine(self, link: _EngineLink, reason: str) -> None:
        key = (str(link.address), reason)
        failures = self.counts.engine_failures
        failures[key] = failures.get(key, 0) + 1


class _FeedCollector(Collector):
    """A :class:`FeedHandler`'s counters and histograms, read when scraped."""

    def __init__(self, handler: FeedHandler) -> None:
        self.handler = handler

    def collect(self) -> Iterator[Metric]:
        handler = self.handler
        venue = handler.venue
        counts = handler.counts

        def counter(
            name: str, text: str, labels: list[str], rows: Iterable[tuple[list[str], float]]
        ) -> Metric:
            family = CounterMetricFamily(P + name, text, labels=["venue", *labels])
            for values, value in rows:
                family.add_metric([venue, *values], value)
            return family

        yield counter("messages", "Venue messages received.", [], [([], counts.messages)])
        yield counter(
            "message_bytes", "Bytes of venue messages received.", [], [([], counts.message_bytes)]
        )
        yield counter("pings", "Venue WebSocket pings answered.", [], [([], counts.pings)])
        yield counter(
            "oversized_updates", "Updates too large for one engine frame, sent as a snapshot.",
            [], [([], counts.oversized_updates)],
        )  # fmt: skip
        yield counter(
            "symbol_frames", "Book and trade frames written, by engine symbol.", ["symbol"],
            (([route.engine_symbol], route.frames) for route in handler.routes.values()),
        )  # fmt: skip
        yield counter(
            "frames", "Frames written to engines, by type.", ["type"],
            (([kind], value) for kind, value in counts.frames.items()),
        )  # fmt: skip
        yield counter(
            "frames_dropped", "Frames not sent, by reason.", ["reason"],
            (([reason], value) for reason, value in counts.dropped.items()),
        )  # fmt: skip
        yield counter(
            "resyncs", "Symbols whose engine book was made stale, by reason.", ["reason"],
            (([reason], value) for reason, value in counts.resyncs.items()),
        )  # fmt: skip
        yield counter(
            "reconnects", "Venue connections ended, by reason.", ["reason"],
            (([reason], value) for reason, value in counts.reconnects.items()),
        )  # fmt: skip
        yield counter(
            "engine_failures", "Engine connections refused or lost, by reason.",
            ["engine", "reason"],
            (([engine, why], value) for (engine, why), value in counts.engine_failures.items()),
        )  # fmt: skip
        yield counter(
            "dialect_errors", "Venue messages the dialect ignored or refused, by reason.",
            ["reason"],
            (([reason], value) for reason, value in handler.dialect.errors.items()),
        )  # fmt: skip
        yield counter(
            "snapshot_failures", "REST snapshot fetches that failed, by reason.", ["reason"],
            (([reason], value) for reason, value in counts.snapshot_failures.items()),
        )  # fmt: skip
        connected = GaugeMetricFamily(
            P + "connected", "1 while the venue connection is open.", labels=["venue"]
        )
        connected.add_metric([venue], 1.0 if handler.connected else 0.0)
        yield connected
        engines = GaugeMetricFamily(
            P + "engine_connected", "1 while the engine connection is open.",
            labels=["venue", "engine"],
        )  # fmt: skip
        for link in handler.links:
            engines.add_metric([venue, str(link.address)], 0.0 if link.writer is None else 1.0)
        yield engines
        paused = GaugeMetricFamily(
            P + "snapshot_pause_seconds",
            "Seconds left of the venue's Retry-After: no snapshot is asked for meanwhile.",
            labels=["venue"],
        )
        paused.add_metric([venue], max(0.0, handler._rest_paused_until - time.monotonic()))
        yield paused
        live = GaugeMetricFamily(
            P + "live_symbols",
            "Symbols whose engine book the handler holds live.",
            labels=["venue"],
        )
        live.add_metric([venue], float(sum(route.live for route in handler.routes.values())))
        yield live
        for name, text, histogram in (
            ("venue_to_receive_seconds", "Venue event time to receive (clock skew included).",
             handler.venue_to_receive),
            ("receive_to_publish_seconds", "Venue message received to engine frames written.",
             handler.receive_to_publish),
            ("snapshot_fetch_seconds", "REST snapshot fetch time.", handler.snapshot_latency),
        ):  # fmt: skip
            family = histogram_family(P + name, text, ["venue"])
            add_histogram(family, histogram, [venue])
            yield family


async def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> web.AppRunner:
    """Serve ``GET /metrics`` (Prometheus text) from ``registry`` on ``host:port``.

    Raises ``OSError`` when it cannot listen.
    """

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner, _ = await serve(app, host, port)
    return runner
