"""Serving an aiohttp.web application on a port (the admin API, the simulator)."""

from __future__ import annotations

from aiohttp import web

__all__ = ["serve"]


async def serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start ``app`` on ``host:port``; returns the runner and the bound port.

    Port 0 binds a free port; the port returned is the one bound.
    """
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    sockets = getattr(site._server, "sockets", None)
    bound: int = sockets[0].getsockname()[1] if sockets else port
    return runner, bound
