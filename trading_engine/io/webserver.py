"""Serving an aiohttp.web application on a port (the admin API, the simulator)."""

from __future__ import annotations

import errno
import ssl

import orjson
from aiohttp import web

from ..core.errors import ConfigError

__all__ = ["json_response", "listen_error", "serve"]


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
    ``ssl_context`` the app is served over TLS (https). Raises OSError when
    it cannot listen (see :func:`listen_error`).
    """
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True, ssl_context=ssl_context)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    sockets = getattr(site._server, "sockets", None)
    bound: int = sockets[0].getsockname()[1] if sockets else port
    return runner, bound


def listen_error(key: str, host: str, port: int, exc: OSError) -> ConfigError:
    """A server that could not listen, as a configuration error naming its key.

    ``key`` is the configuration section (``feed``, ``admin``) or the flag
    (``--port``): ``feed.port 7001 is already in use``.
    """
    name = f"{key}.port" if not key.startswith("-") else key
    if exc.errno == errno.EADDRINUSE:
        message = f"{name} {port} is already in use (on {host})"
    else:
        message = f"{name} {port}: cannot listen on {host}:{port}: {exc.strerror or exc}"
    return ConfigError(message, [message])
