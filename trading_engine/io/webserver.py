"""Serving an aiohttp.web application on a port (the admin API, the simulator)."""

from __future__ import annotations

import ssl

import orjson
from aiohttp import web

__all__ = ["json_response", "serve"]


def json_response(body: object, status: int, headers: dict[str, str] | None = None) -> web.Response:
    """``body`` as a JSON response (orjson)."""
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


async def serve(
    app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    """Start ``app`` on ``host:port``; returns the runner and the bound port.

    Port 0 binds a free port; the port returned is the one bound. With
    ``ssl_context`` the app is served over TLS (https).
    """
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True, ssl_context=ssl_context)
    await site.start()
    sockets = getattr(site._server, "sockets", None)
    bound: int = sockets[0].getsockname()[1] if sockets else port
    return runner, bound
