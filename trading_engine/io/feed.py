"""The market-data TCP server: the engine's front door.

Each publisher connection is a :class:`FeedSession`, an
:class:`asyncio.BufferedProtocol` reading straight into one preallocated
buffer. Frames are cut at newlines and handed to the
:class:`~trading_engine.builder.BookBuilder` as ``memoryview`` slices of
that buffer: no per-frame copy. Only the unfinished tail of a read is
moved to the front of the buffer.

Processing happens inside ``buffer_updated``, in the read path, so the
engine never reads faster than it applies: when it falls behind, the
kernel's socket buffers fill and TCP flow control slows the publisher.
Memory per connection is the fixed buffer, whatever the publisher does.

Session lifecycle (see ``docs/design.md``)::

    connected ──frames──► streaming ──idle_timeout_s silent──► idle
        │                     │   ▲                              │
        │                     │   └──────── any frame ───────────┘
        │      bad_frame_limit consecutive bad frames
        │                     ▼
        └──── peer closes ──► closed (books it fed: stale)

An oversized frame (longer than ``max_frame_bytes`` before its newline)
is counted once and skipped to the next newline without being buffered.
A frame cut short by the connection closing (FIN or reset) is dropped and
counted as ``truncated``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from time import perf_counter_ns
from typing import Final, cast

from ..config import FeedConfig
from ..core.builder import BookBuilder, BookEntry
from ..core.protocol import BAD_INPUT, Reason
from ..lowlevel.loop import mark_critical, unmark_critical
from ..lowlevel.metrics import LatencyHistogram
from ..lowlevel.tasks import TaskCrashes, cancel_and_wait
from .capture import CaptureWriter

__all__ = ["FeedServer", "FeedSession", "FeedStats"]

log = logging.getLogger("trading_engine.feed")

_NEWLINE: Final = 10
_SAMPLE_MASK: Final = 15  # time one frame in 16
_OVERSIZED: Final = Reason.OVERSIZED
_TRUNCATED: Final = Reason.TRUNCATED


class FeedStats:
    """Connection-level counters of the feed server (plain ints, hot-path cheap)."""

    __slots__ = (
        "bad_peer_closed",
        "bytes_received",
        "connections_closed",
        "connections_opened",
        "idle_timeouts",
        "reads",
    )

    def __init__(self) -> None:
        self.connections_opened = 0
        self.connections_closed = 0
        self.bad_peer_closed = 0
        self.idle_timeouts = 0
        self.bytes_received = 0
        self.reads = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class FeedSession(asyncio.BufferedProtocol):
    """One publisher connection. Created by :class:`FeedServer`."""

    def __init__(self, server: FeedServer) -> None:
        config = server.config
        self._server = server
        self._handle = server.builder.handle
        self._capture = server.capture
        self._clock = server.clock
        self._max_frame = config.max_frame_bytes
        self._bad_limit = config.bad_frame_limit
        # Room for the longest allowed frame plus its newline, at least.
        size = max(config.recv_buffer_bytes, config.max_frame_bytes + 1)
        self._buffer = bytearray(size)
        self._view = memoryview(self._buffer)
        self._end = 0  # bytes of an unfinished frame at the buffer's front
        self._discarding = False  # inside an oversized frame
        self._bad_streak = 0
        self.transport: asyncio.Transport | None = None
        self.peer: str = "?"
        #: Symbols whose books this connection applied a message to.
        self.fed: set[str] = set()
        self.last_rx_ns = 0
        self.idle = False
        self.frames = 0
        self.closed = False

    # -- asyncio callbacks ----------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.last_rx_ns = self._clock()
        # On the priority loop, this connection's reads run ahead of background work.
        mark_critical(transport)
        self._server._opened(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        recv_ns = self._clock()
        self.last_rx_ns = recv_ns
        if self.idle:
            self.idle = False
        stats = self._server.stats
        stats.reads += 1
        stats.bytes_received += nbytes
        buffer = self._buffer
        view = self._view
        end = self._end + nbytes
        start = 0
        find = buffer.find
        handle = self._handle
        capture = self._capture
        stage = self._server.handle_latency
        while True:
            newline = find(_NEWLINE, start, end)
            if newline < 0:
                break
            if self._discarding:
                # The tail of an oversized frame, already counted.
                self._discarding = False
            elif newline - start > self._max_frame:
                self._bad_frame(self._server.builder.reject(_OVERSIZED))
            else:
                frame = view[start:newline]
                if capture is not None:
                    capture.write(recv_ns, frame)
                self.frames += 1
                if self.frames & _SAMPLE_MASK:
                    result = handle(frame, recv_ns)
                else:
                    # One frame in 16 is timed: the stage histogram costs two
                    # clock reads per 16 frames instead of per frame.
                    started = perf_counter_ns()
                    result = handle(frame, recv_ns)
                    stage.observe_ns(perf_counter_ns() - started)
                if type(result) is BookEntry:
                    self._bad_streak = 0
                    fed = self.fed
                    if result.symbol not in fed:
                        fed.add(result.symbol)
                elif result is None:
                    self._bad_streak = 0
                elif result in BAD_INPUT:
                    self._bad_frame(result)
                else:
                    self._bad_streak = 0
                if self.closed:
                    return
            start = newline + 1
        rest = end - start
        if self._discarding:
            self._end = 0  # still inside an oversized frame: drop what came
        elif rest > self._max_frame:
            # An unfinished frame already longer than allowed: count it
            # once, drop it, and skip everything up to the next newline.
            self._discarding = True
            self._end = 0
            self._bad_frame(self._server.builder.reject(_OVERSIZED))
        else:
            if rest and start:
                # memoryview assignment is a memmove: safe when overlapping.
                view[0:rest] = view[start:end]
            self._end = rest

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self._end and not self._discarding:
            # The peer closed (FIN) or reset mid-frame: those bytes are no
            # frame; count the loss (an oversized tail was counted already).
            self._end = 0
            self._server.builder.reject(_TRUNCATED)
        self.closed = True
        if self.transport is not None:
            unmark_critical(self.transport)
        self._server._closed(self, exc)

    # -- internals ------------------------------------------------------

    def _bad_frame(self, reason: Reason) -> None:
        self._bad_streak += 1
        if self._bad_streak >= self._bad_limit and not self.closed:
            self._server.stats.bad_peer_closed += 1
            log.warning(
                "closing feed connection %s after %d consecutive bad frames (last: %s)",
                self.peer,
                self._bad_streak,
                reason.value,
            )
            self.closed = True
            if self.transport is not None:
                self.transport.abort()


class FeedServer:
    """The market-data TCP server, bound to ``[feed] host``/``port``.

    ``builder`` applies frames; ``clock`` returns monotonic nanoseconds
    (injected for tests); ``capture`` records every complete frame;
    ``crashes`` counts a crash of the idle sweeper (the engine's).
    """

    def __init__(
        self,
        config: FeedConfig,
        builder: BookBuilder,
        *,
        clock: Callable[[], int] = time.monotonic_ns,
        capture: CaptureWriter | None = None,
        crashes: TaskCrashes | None = None,
    ) -> None:
        self.config = config
        self.crashes = crashes if crashes is not None else TaskCrashes()
        self.builder = builder
        self.clock = clock
        self.capture = capture
        self.stats = FeedStats()
        #: Decode + validate + apply of one frame, sampled one frame in 16.
        self.handle_latency = LatencyHistogram()
        self.sessions: set[FeedSession] = set()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the feed server is not listening")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def start(self) -> None:
        """Bind and listen; start the idle sweeper."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: FeedSession(self),
            self.config.host,
            self.config.port,
            backlog=1024,
            reuse_address=True,
        )
        self._sweeper = self.crashes.spawn(
            self._sweep_idle(), name="feed-idle-sweeper", kind="feed-idle-sweeper", loop=loop
        )
        log.info("feed server listening on %s:%d", self.config.host, self.port)

    async def stop(self) -> None:
        """Stop listening, close every connection, flush the capture."""
        await cancel_and_wait(self._sweeper)
        self._sweeper = None
        if self._server is not None:
            self._server.close()
            for session in list(self.sessions):
                if session.transport is not None:
                    session.transport.abort()
            await self._server.wait_closed()
            self._server = None
        if self.capture is not None:
            self.capture.flush()

    async def __aenter__(self) -> FeedServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- session bookkeeping ----------------------------------------------

    def _opened(self, session: FeedSession) -> None:
        self.sessions.add(session)
        self.stats.connections_opened += 1
        log.debug("feed connection from %s", session.peer)

    def _closed(self, session: FeedSession, exc: Exception | None) -> None:
        self.sessions.discard(session)
        self.stats.connections_closed += 1
        if session.fed:
            self.builder.mark_stale(session.fed)
        log.info(
            "feed connection %s closed after %d frames%s",
            session.peer,
            session.frames,
            f" ({exc})" if exc else "",
        )

    def check_idle(self) -> None:
        """Mark the books of connections silent past ``idle_timeout_s`` stale."""
        limit = round(self.config.idle_timeout_s * 1e9)
        now = self.clock()
        for session in self.sessions:
            if not session.idle and now - session.last_rx_ns >= limit:
                session.idle = True
                self.stats.idle_timeouts += 1
                if session.fed:
                    self.builder.mark_stale(session.fed)
                    log.warning(
                        "feed connection %s silent for %.1f s: its books are stale",
                        session.peer,
                        (now - session.last_rx_ns) / 1e9,
                    )

    async def _sweep_idle(self) -> None:
        interval = min(self.config.idle_timeout_s / 4, 0.5)
        while True:
            await asyncio.sleep(interval)
            self.check_idle()
