"""A raw HTTP/1.1 server on 127.0.0.1 that answers each request from a script.

It stands in for the exchange in the gateway's outcome tests, so that both
client paths (the fast path and httpx) read real bytes from a real socket.
A script maps ``(method, path)`` (the query string dropped) to the answers
to give in turn; the last one repeats. An answer is raw bytes, or one of
:data:`HANG` (never answer), :data:`RESET` (abort the connection with a
TCP reset) and :data:`CLOSE` (close it without answering).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from typing import Final

import orjson

HANG: Final = "hang"
RESET: Final = "reset"
CLOSE: Final = "close"

Action = bytes | str | Callable[[bytes], bytes]


def reply(code: int, body: bytes | object = b"", headers: dict[str, str] | None = None) -> bytes:
    """A ``Content-Length`` answer; ``body`` is bytes or a JSON value."""
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    head = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    return b"HTTP/1.1 %d X\r\n%sContent-Length: %d\r\n\r\n%s" % (
        code,
        head.encode(),
        len(content),
        content,
    )


def chunked(code: int, body: bytes | object, interim: bytes = b"") -> bytes:
    """The same answer with a chunked body in two chunks, after ``interim`` 1xx answers."""
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    half = len(content) // 2
    return interim + (
        b"HTTP/1.1 %d X\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"%x;ext=1\r\n%s\r\n%x\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n"
        % (code, half, content[:half], len(content) - half, content[half:])
    )


def order(status: str, filled: str = "0.000", cid: str = "s-r-1") -> dict[str, object]:
    return {
        "order_id": "X-1",
        "client_order_id": cid,
        "status": status,
        "filled_quantity": filled,
        "avg_price": None,
        "reason": None,
    }


class ScriptedExchange:
    """The server; :attr:`requests` holds ``(method, path, body)`` in arrival order."""

    def __init__(self) -> None:
        self.script: dict[tuple[str, str], list[Action]] = {("GET", "/fills"): [reply(200, [])]}
        self.requests: list[tuple[str, str, bytes]] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._stopping = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    def on(self, method: str, path: str, *answers: Action) -> None:
        self.script[(method, path)] = list(answers)

    def calls(self, method: str, path: str) -> list[bytes]:
        """The bodies of the requests to ``method path`` so far."""
        return [body for m, p, body in self.requests if (m, p) == (method, path)]

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def close(self) -> None:
        self._stopping.set()
        for writer in list(self._writers):
            writer.close()
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=5)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _next(self, method: str, path: str) -> Action:
        answers = self.script.get((method, path))
        if not answers:
            return reply(500, b'{"error": "unscripted"}')
        return answers.pop(0) if len(answers) > 1 else answers[0]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                path = target.split("?", 1)[0]
                self.requests.append((method, path, body))
                action = self._next(method, path)
                if callable(action):
                    action = action(body)
                if action == HANG:
                    await self._stopping.wait()
                    return
                if action == RESET:
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                if action == CLOSE:
                    return
                assert isinstance(action, bytes)
                writer.write(action)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            self._handlers.discard(handler)
            with contextlib.suppress(ConnectionError):
                writer.close()
