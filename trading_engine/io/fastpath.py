"""The order fast path: pre-warmed keep-alive HTTP/1.1 connections for POST /orders.

httpx's client layer costs about 200 us per request before anything is
written (URL parsing, request and response models), far above the
engine's tick-to-trade budget. Order placement therefore has its own
channel: a few connections opened at start-up and kept alive, a request
encoder that only appends the body to pre-built bytes, and a strict
response parser. ``try_send`` writes the request synchronously, inside
the strategy's call to ``submit``, so the bytes are on the socket before
the hot path returns.

Everything else (reads, cancels, fills, settlement, retries) stays on
httpx. The parser reads any HTTP/1.1 answer (RFC 9112): the common one, a
status line, headers and a ``Content-Length`` body, takes one pass over
the head; the rest takes a slower branch that never costs the common one
anything:

* interim answers (``100 Continue``, ``103 Early Hints``, any 1xx but
  ``101``) before the final one are read and dropped;
* a ``Transfer-Encoding: chunked`` body, with chunk extensions (ignored)
  and trailer fields (checked, dropped);
* a body delimited by the connection's close (no length, not chunked),
  ended by the peer's orderly close; 204 and 304 answers without a length
  have none;
* repeated header fields (values joined with ``", "``), a
  ``Content-Length`` list of identical values, obsolete line folding.

It refuses, with :class:`UnparsedAnswer`: another HTTP version, a
malformed line, ``Transfer-Encoding`` beside ``Content-Length`` (RFC 9112,
6.3: the framing is ambiguous, the request-smuggling vector), a transfer
coding other than ``chunked``, ``101``, an oversized head or body, and
bytes beyond the answer. A refusal closes the connection and makes that
request's outcome unknown, which the gateway settles by reading the order
back; it is the client's refusal, not a failure of the venue, and the
gateway's breaker does not count it. A common answer costs 3 us at p50
where h11 costs 24 us (``benchmarks/fastpath_parser.py``,
docs/benchmarks.md): a tenth of the whole loopback round trip, spent on
the loop's one thread.

``https://`` URLs are spoken over TLS with the context the caller gives
(the gateway's ``ssl.create_default_context()`` plus ``ca_file``).

A connection that closes before it served an answer (refused, reset,
accepted then closed) or that sends an answer the parser refuses is a
failed attempt (one closed because its answer was late is not: the peer is
there, only slow): connections are re-opened
with capped exponential back-off and jitter (``backoff_s`` doubling up to
``backoff_max_s``), never in a tight loop; attempts and failures are
counted (:attr:`FastOrderChannel.connect_attempts`,
:attr:`FastOrderChannel.connect_failures`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
from collections.abc import Callable, Iterable
from typing import Final
from urllib.parse import urlsplit

from ..lowlevel.loop import mark_critical, unmark_critical
from ..lowlevel.tasks import TaskCrashes

__all__ = ["Answer", "FastOrderChannel", "FastPathError", "UnparsedAnswer"]

log = logging.getLogger("trading_engine.fastpath")

_MAX_HEAD: Final = 16 * 1024
_MAX_BODY: Final = 1024 * 1024
#: A chunk-size line with its extensions.
_MAX_CHUNK_LINE: Final = 1024
_HEX: Final = b"0123456789abcdefABCDEF"


class FastPathError(ConnectionError):
    """The connection failed before the answer, or the answer was not one we read."""


class UnparsedAnswer(FastPathError):
    """The peer answered, but not in a form this client reads: a refusal of ours.

    It says nothing about the venue's health (the gateway does not count it
    as a failure of the venue) and nothing about the order (its outcome is
    unknown); the connection is dropped.
    """


class Answer:
    """A parsed HTTP answer: status code, headers (lower-case names), body."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: dict[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content

    def __repr__(self) -> str:
        return f"Answer({self.status_code}, {self.content[:60]!r})"


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self, channel: FastOrderChannel) -> None:
        self._channel = channel
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Answer] | None = None
        self._buffer = bytearray()
        self.closed = False
        #: Answers served on this connection.
        self.served = 0
        #: Closed as a failed attempt: by the peer before any answer, or on a bad answer.
        self.failed = False
        #: The answer in the buffer ends when the peer closes (no length, not chunked);
        #: its status, headers and where its body starts.
        self._until_close = False
        self._close_head: tuple[int, dict[str, str], int] = (0, {}, 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Order acknowledgements are read ahead of background work.
        mark_critical(transport)

    def send(self, data: bytes, waiter: asyncio.Future[Answer]) -> None:
        assert self.transport is not None
        self.waiter = waiter
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:
            self._fail(FastPathError("bytes arrived with no request in flight"))
            return
        self._buffer += data
        try:
            answer = self._parse()
        except FastPathError as exc:
            self._fail(exc)
            return
        except ValueError as exc:
            # int() of a number the checks let through (over 4300 digits).
            self._fail(UnparsedAnswer(f"unreadable number: {str(exc)[:60]}"))
            return
        if answer is not None:
            self._answered(answer)

    def _answered(self, answer: Answer) -> None:
        waiter, self.waiter = self.waiter, None
        self.served += 1
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)
        if self._until_close or answer.headers.get("connection", "").lower() == "close":
            self.close()
        else:
            self._channel._idle(self)

    def eof_received(self) -> bool:
        # The peer finished sending: that ends an answer delimited by the close.
        if self._until_close and self.waiter is not None:
            self._answered(self._answer_at_close())
        return False

    def _parse(self) -> Answer | None:
        """The final answer once the buffer holds all of it; None while it is incomplete.

        Interim (1xx) answers before it are read and dropped. Raises
        :class:`UnparsedAnswer` for anything that is not a valid HTTP/1.1
        answer this parser reads (see the module's docstring).
        """
        buffer = self._buffer
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    raise UnparsedAnswer("answer head too long")
                return None
            lines = bytes(buffer[:end]).split(b"\r\n")
            status = lines[0].split(b" ", 2)
            code_text = status[1] if len(status) > 1 else b""
            if status[0] != b"HTTP/1.1" or len(code_text) != 3 or not code_text.isdigit():
                raise UnparsedAnswer(f"bad status line {lines[0][:60]!r}")
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(b":")
                if not sep or not name or name != name.strip():
                    return self._parse_rare_head(lines, end)
                headers[name.decode("latin-1").lower()] = value.strip().decode("latin-1")
            if len(headers) != len(lines) - 1:
                # A repeated field: its values are joined, as RFC 9110 (5.3) reads them.
                return self._parse_rare_head(lines, end)
            code = int(code_text)
            if code < 200:
                self._interim(code, end)
                continue
            length_text = headers.get("content-length")
            if length_text is None or "transfer-encoding" in headers or not length_text.isdecimal():
                return self._body(code, headers, end + 4)
            # The common answer, inline: a Content-Length body.
            length = int(length_text)
            if length > _MAX_BODY:
                raise UnparsedAnswer("answer body too large")
            total = end + 4 + length
            if len(buffer) < total:
                return None
            if len(buffer) > total:
                raise UnparsedAnswer("bytes beyond the answer")
            content = bytes(buffer[end + 4 : total])
            buffer.clear()
            return Answer(code, headers, content)

    def _parse_rare_head(self, lines: list[bytes], end: int) -> Answer | None:
        """The head again, with repeated fields joined and obsolete line folding read."""
        headers: dict[str, str] = {}
        last = ""
        for line in lines[1:]:
            if line[:1] in (b" ", b"\t") and last:
                # obs-fold (RFC 9112, 5.2): the line continues the previous field's value.
                headers[last] += " " + line.strip().decode("latin-1")
                continue
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise UnparsedAnswer(f"bad header line {line[:60]!r}")
            last = name.decode("latin-1").lower()
            text = value.strip().decode("latin-1")
            headers[last] = f"{headers[last]}, {text}" if last in headers else text
        code = int(lines[0].split(b" ", 2)[1])
        if code < 200:
            self._interim(code, end)
            return self._parse()
        return self._body(code, headers, end + 4)

    def _interim(self, code: int, end: int) -> None:
        """Drop a 1xx answer (100 Continue, 103 Early Hints): the final one follows."""
        if code == 101:
            raise UnparsedAnswer("101 Switching Protocols was not asked for")
        del self._buffer[: end + 4]

    def _body(self, code: int, headers: dict[str, str], start: int) -> Answer | None:
        """The answer once its body is complete, for every framing (``start``: where it begins).

        The common one (a plain ``Content-Length``) is also read inline in
        :meth:`_parse`, which calls this for the others.
        """
        buffer = self._buffer
        length_text = headers.get("content-length")
        if "transfer-encoding" in headers:
            if length_text is not None:
                # RFC 9112, 6.3: both framings at once is how requests are smuggled.
                raise UnparsedAnswer("Transfer-Encoding beside a Content-Length")
            if headers["transfer-encoding"].lower() != "chunked":
                raise UnparsedAnswer(f"transfer coding {headers['transfer-encoding'][:40]!r}")
            return self._chunked(code, headers, start)
        if length_text is None:
            if code == 204 or code == 304:
                length = 0
            else:
                # Delimited by the connection's close (RFC 9112, 6.3, rule 8).
                self._until_close = True
                self._close_head = (code, headers, start)
                if len(buffer) - start > _MAX_BODY:
                    raise UnparsedAnswer("answer body too large")
                return None
        elif len(length_text) < 16 and length_text.isdecimal():
            length = int(length_text)
        else:
            length = _list_length(length_text)
        if length > _MAX_BODY:
            raise UnparsedAnswer("answer body too large")
        total = start + length
        if len(buffer) < total:
            return None
        if len(buffer) > total:
            raise UnparsedAnswer("bytes beyond the answer")
        content = bytes(buffer[start:total])
        buffer.clear()
        return Answer(code, headers, content)

    def _chunked(self, code: int, headers: dict[str, str], start: int) -> Answer | None:
        """A chunked body (RFC 9112, 7.1): extensions ignored, trailer fields checked, dropped."""
        buffer = self._buffer
        size_total = 0
        chunks: list[bytes] = []
        position = start
        while True:
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                if len(buffer) - position > _MAX_CHUNK_LINE:
                    raise UnparsedAnswer("chunk size line too long")
                return None
            size_text = bytes(buffer[position:line_end]).split(b";", 1)[0].rstrip(b" \t")
            if not 0 < len(size_text) <= 16 or size_text.strip(_HEX):
                raise UnparsedAnswer(f"bad chunk size {size_text[:20]!r}")
            size = int(size_text, 16)
            size_total += size
            if size_total > _MAX_BODY:
                raise UnparsedAnswer("answer body too large")
            data_start = line_end + 2
            if size == 0:
                return self._trailer(code, headers, data_start, b"".join(chunks))
            data_end = data_start + size
            if len(buffer) < data_end + 2:
                return None
            if buffer[data_end : data_end + 2] != b"\r\n":
                raise UnparsedAnswer("chunk data not followed by CRLF")
            chunks.append(bytes(buffer[data_start:data_end]))
            position = data_end + 2

    def _trailer(
        self, code: int, headers: dict[str, str], start: int, content: bytes
    ) -> Answer | None:
        buffer = self._buffer
        if buffer[start : start + 2] == b"\r\n":
            end = start + 2
        else:
            blank = buffer.find(b"\r\n\r\n", start)
            if blank < 0:
                if len(buffer) - start > _MAX_HEAD:
                    raise UnparsedAnswer("trailer section too long")
                return None
            for line in bytes(buffer[start:blank]).split(b"\r\n"):
                name, sep, _ = line.partition(b":")
                if not sep or not name or name != name.strip():
                    raise UnparsedAnswer(f"bad trailer line {line[:60]!r}")
            end = blank + 4
        if len(buffer) > end:
            raise UnparsedAnswer("bytes beyond the answer")
        buffer.clear()
        return Answer(code, headers, content)

    def _answer_at_close(self) -> Answer:
        """The answer delimited by the connection's close, from what was read."""
        code, headers, start = self._close_head
        content = bytes(self._buffer[start:])
        self._buffer.clear()
        return Answer(code, headers, content)

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close(failed=True)

    def close(self, failed: bool = False) -> None:
        """Close it ourselves. ``failed``: the peer broke the protocol.

        Closing a connection whose answer is late (the request timed out)
        is not a failed attempt: the peer is there, only slow.
        """
        if not self.closed:
            self.closed = True
            self.failed = failed
            if self.transport is not None:
                self.transport.abort()
            self._channel._gone(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            unmark_critical(self.transport)
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(FastPathError(f"connection lost before the answer: {exc}"))
        if not self.closed:
            # Closed by the peer (or reset): a failed attempt if it never answered.
            self.closed = True
            self.failed = not self.served
            self._channel._gone(self)


def _list_length(text: str) -> int:
    """A Content-Length that is a list: read when all its values agree (RFC 9110, 8.6)."""
    values = {part.strip() for part in text.split(",")}
    value = values.pop() if len(values) == 1 else ""
    if not 0 < len(value) < 16 or not value.isdecimal():
        raise UnparsedAnswer(f"bad Content-Length {text[:40]!r}")
    return int(value)


class FastOrderChannel:
    """A small pool of warm connections to the exchange for new orders.

    The request head is built once: ``POST <target>`` with ``headers``
    (the order-API dialect's: the own API's ``POST /orders`` with
    ``X-API-Key`` and a JSON body by default; Binance's
    ``POST /api/v3/order`` with ``X-MBX-APIKEY`` and a form body); each
    order appends only its ``Content-Length`` and body.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        connections: int = 2,
        *,
        ssl_context: ssl.SSLContext | None = None,
        backoff_s: float = 0.05,
        backoff_max_s: float = 5.0,
        rng: random.Random | None = None,
        crashes: TaskCrashes | None = None,
        target: str = "/orders",
        headers: Iterable[tuple[str, str]] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        #: Counts a crash of a connecting task (orders then use the httpx path).
        self.crashes = crashes if crashes is not None else TaskCrashes()
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the fast path needs an http:// or https:// URL, got {base_url!r}")
        self.host = parts.hostname
        self.tls: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self.tls = ssl_context if ssl_context is not None else ssl.create_default_context()
        self.port = parts.port or (443 if self.tls is not None else 80)
        self.size = connections
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self._rng = rng or random.Random()
        #: Consecutive failed attempts (reset by a connection that served an answer).
        self._failures = 0
        #: Connections tried, and those that failed before serving an answer.
        self.connect_attempts = 0
        self.connect_failures = 0
        prefix = parts.path.rstrip("/")
        if headers is None:
            headers = (("X-API-Key", api_key), ("Content-Type", "application/json"))
        fields = "".join(f"{name}: {value}\r\n" for name, value in headers)
        self._head = (
            f"POST {prefix}{target} HTTP/1.1\r\nHost: {parts.netloc}\r\n{fields}Content-Length: "
        ).encode("latin-1")
        self._idle_connections: list[_Connection] = []
        self._all: set[_Connection] = set()
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0
        self.fallbacks = 0

    def request_bytes(self, body: bytes) -> bytes:
        """The whole request for an order body (the encoder)."""
        return b"%s%d\r\n\r\n%s" % (self._head, len(body), body)

    async def start(self, within_s: float = 5.0) -> None:
        """Open the pool's connections; failures keep retrying in the background."""
        self._refill()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=within_s)

    def try_send(
        self, body: bytes, before_write: Callable[[], None] | None = None
    ) -> asyncio.Future[Answer] | None:
        """Write a POST /orders now on an idle connection; None if none is idle.

        ``before_write`` runs just before the bytes are handed to the kernel:
        the moment an order leaves. (After the write returns is too late on
        loopback: the send system call can run the receiver, which then
        stamps the bytes' arrival before the sender's clock is read again.)
        """
        idle = self._idle_connections
        while idle:
            connection = idle.pop()
            if connection.closed:
                continue
            waiter: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
            request = self.request_bytes(body)
            if before_write is not None:
                before_write()
            connection.send(request, waiter)
            self.sent += 1
            return waiter
        self.fallbacks += 1
        self._refill()
        return None

    def abandon(self, waiter: asyncio.Future[Answer]) -> None:
        """Give up on a request (timeout): its connection cannot be trusted."""
        for connection in list(self._all):
            if connection.waiter is waiter:
                connection.close()

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for connection in list(self._all):
            connection.close()
        await asyncio.sleep(0)

    # -- pool -----------------------------------------------------------------------

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        self.connect_attempts += 1
        _, connection = await loop.create_connection(
            lambda: _Connection(self),
            self.host,
            self.port,
            ssl=self.tls,
            server_hostname=self.host if self.tls is not None else None,
        )
        if self._closed:
            connection.close()
            return
        self._all.add(connection)
        self._idle_connections.append(connection)

    def _idle(self, connection: _Connection) -> None:
        if not connection.closed and not self._closed:
            self._idle_connections.append(connection)

    def _gone(self, connection: _Connection) -> None:
        if connection not in self._all:
            return
        self._all.discard(connection)
        with contextlib.suppress(ValueError):
            self._idle_connections.remove(connection)
        if connection.failed:
            # Accepted and closed (or reset) before any answer, or a bad answer.
            self._failures += 1
            self.connect_failures += 1
        elif connection.served:
            self._failures = 0
        self._refill()

    def _refill(self) -> None:
        """Start one connecting task per missing connection (each retries until it connects)."""
        if self._closed:
            return
        missing = self.size - len(self._all) - len(self._tasks)
        loop = asyncio.get_running_loop()
        for _ in range(max(0, missing)):
            task = self.crashes.spawn(
                self._keep_connecting(),
                name="fast-path-connect",
                kind="fast-path-connect",
                loop=loop,
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def backoff_delay_s(self) -> float:
        """The wait before the next attempt: 0 after a success, then capped doubling, jittered.

        ``backoff_s * 2**(failures - 1)`` capped at ``backoff_max_s``, times a
        uniform factor in [0.5, 1) ("equal jitter": never 0, never in step
        with other clients).
        """
        failures = self._failures
        if not failures:
            return 0.0
        delay: float = min(self.backoff_max_s, self.backoff_s * 2.0 ** min(failures - 1, 30))
        return delay * (0.5 + 0.5 * self._rng.random())

    async def _keep_connecting(self) -> None:
        while not self._closed:
            delay = self.backoff_delay_s()
            if delay:
                await asyncio.sleep(delay)
            if self._closed:
                return
            try:
                await self._connect()
                return
            except (OSError, ssl.SSLError) as exc:
                self._failures += 1
                self.connect_failures += 1
                log.warning("fast path connection to %s:%d failed: %s", self.host, self.port, exc)

    def connections(self) -> Iterable[_Connection]:
        return tuple(self._all)
