"""A scripted venue on 127.0.0.1: a WebSocket stream and REST answers, for feed handler tests.

The test drives it: :meth:`FakeVenue.send` pushes a text message on the
open connection, :meth:`ping` sends a WebSocket ping (the pong is
recorded), :meth:`close` closes the connection from the venue's side,
:meth:`send_raw` writes bytes on the connection as they are (a frame the
venue built by hand: binary, compressed, oversized...). ``on_connect``, if
set, runs on each new connection before anything else (a venue that
closes at once, or greets first). REST answers come from ``rest``: a path
maps to a list of answers served in order, the last one repeated; an
answer is ``(status, body)``, ``(status, body, headers)`` or a coroutine
function of the request returning the response (a streamed body);
``rest_delay_s`` holds every answer that long (a slow snapshot).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Awaitable, Callable
from typing import TypeAlias

from aiohttp import WSMsgType, web

from tests.helpers import wait_until

Answer: TypeAlias = (
    tuple[int, bytes]
    | tuple[int, bytes, dict[str, str]]
    | Callable[[web.Request], Awaitable[web.StreamResponse]]
)


def ws_frame(payload: bytes, opcode: int = 0x1, *, rsv1: bool = False, fin: bool = True) -> bytes:
    """One unmasked WebSocket frame as a server writes it (RFC 6455, section 5.2)."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    size = len(payload)
    if size < 126:
        return struct.pack("!BB", first, size) + payload
    if size < 65536:
        return struct.pack("!BBH", first, 126, size) + payload
    return struct.pack("!BBQ", first, 127, size) + payload


class FakeVenue:
    def __init__(self) -> None:
        self.rest: dict[str, list[Answer]] = {}
        self.on_connect: Callable[[web.WebSocketResponse], Awaitable[None]] | None = None
        self.rest_delay_s = 0.0
        self.requests: list[str] = []
        self.connects: list[str] = []
        self.pongs: list[bytes] = []
        self.received: list[str] = []
        self._ws: web.WebSocketResponse | None = None
        self._request: web.Request | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0
        app = web.Application()
        app.router.add_get("/stream", self._stream)
        app.router.add_get("/{path:.*}", self._answer)
        self._app = app

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def connected(self, count: int = 1, within_s: float = 10.0) -> None:
        """Wait until the ``count``-th connection is open."""
        await wait_until(
            lambda: len(self.connects) >= count and self._ws is not None and not self._ws.closed,
            within_s,
            f"connection {count}",
        )

    async def send(self, *texts: str) -> None:
        assert self._ws is not None, "no connection"
        for text in texts:
            await self._ws.send_str(text)

    async def ping(self, payload: bytes) -> None:
        assert self._ws is not None, "no connection"
        await self._ws.ping(payload)

    def send_raw(self, data: bytes) -> None:
        """Write ``data`` on the open connection as it is (hand-made frames)."""
        request = self._request
        assert request is not None, "no connection"
        assert request.transport is not None, "no connection"
        request.transport.write(data)

    async def close(self) -> None:
        assert self._ws is not None, "no connection"
        ws, self._ws = self._ws, None
        await ws.close()

    async def _stream(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        self.connects.append(str(request.rel_url))
        self._ws = ws
        self._request = request
        if self.on_connect is not None:
            await self.on_connect(ws)
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            async for msg in ws:
                if msg.type == WSMsgType.PONG:
                    self.pongs.append(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    self.received.append(msg.data)
        return ws

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(str(request.rel_url))
        answers = self.rest.get(request.path)
        if not answers:
            return web.Response(status=404)
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if self.rest_delay_s:
            await asyncio.sleep(self.rest_delay_s)
        if callable(answer):
            return await answer(request)
        status, body, *rest = answer
        headers = rest[0] if rest else None
        return web.Response(
            status=status, body=body, content_type="application/json", headers=headers
        )
