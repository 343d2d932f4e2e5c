"""A scripted venue on 127.0.0.1: a WebSocket stream and REST answers, for feed handler tests.

The test drives it: :meth:`FakeVenue.send` pushes a text message on the
open connection, :meth:`ping` sends a WebSocket ping (the pong is
recorded), :meth:`close` closes the connection from the venue's side.
REST answers come from ``rest``: a path maps to a list of ``(status,
body)`` answers served in order, the last one repeated; ``rest_delay_s``
holds every answer that long (a slow snapshot).
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import WSMsgType, web

from tests.helpers import wait_until


class FakeVenue:
    def __init__(self) -> None:
        self.rest: dict[str, list[tuple[int, bytes]]] = {}
        self.rest_delay_s = 0.0
        self.requests: list[str] = []
        self.connects: list[str] = []
        self.pongs: list[bytes] = []
        self.received: list[str] = []
        self._ws: web.WebSocketResponse | None = None
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

    async def close(self) -> None:
        assert self._ws is not None, "no connection"
        ws, self._ws = self._ws, None
        await ws.close()

    async def _stream(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        self.connects.append(str(request.rel_url))
        self._ws = ws
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            async for msg in ws:
                if msg.type == WSMsgType.PONG:
                    self.pongs.append(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    self.received.append(msg.data)
        return ws

    async def _answer(self, request: web.Request) -> web.Response:
        self.requests.append(str(request.rel_url))
        answers = self.rest.get(request.path)
        if not answers:
            return web.Response(status=404)
        status, body = answers.pop(0) if len(answers) > 1 else answers[0]
        if self.rest_delay_s:
            await asyncio.sleep(self.rest_delay_s)
        return web.Response(status=status, body=body, content_type="application/json")
