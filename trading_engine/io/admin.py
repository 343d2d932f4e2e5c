"""The admin HTTP API: metrics, health, status and the trading-state switches.

Served with aiohttp.web on the engine's own event loop (a few handlers,
each short and synchronous inside), bound to ``[admin] host``/``port``:

================  =====  ================================================
``GET /metrics``  none   Prometheus text exposition, rendered a step at a
                         time (about 0.1 ms of the loop and one unit of work
                         at once, :class:`ExpositionRenderer`)
``GET /healthz``  none   200 ``ok`` while the event loop turns
``GET /readyz``   none   200 when the feed listens and the gateway has had
                         a 200 from the exchange; 503 with the reason before
``GET /status``   none   the engine's state as JSON
``POST /halt``    token  trading state -> halted (cancels open orders if
                         ``[risk] cancel_on_halt``)
``POST /reduce``  token  trading state -> reducing
``POST /resume``  token  trading state -> active
================  =====  ================================================

"token": ``Authorization: Bearer <token>`` must equal the environment
variable named by ``[admin] token_env``; a wrong or missing token gets
401, and with no token configured the mutating endpoints answer 403. The
token is compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from ..config import AdminConfig
from ..core.risk import TradingState
from ..lowlevel.metrics import ExpositionRenderer, add_histogram, histogram_family
from .webserver import json_response, serve

__all__ = ["AdminServer", "AdminTarget", "admin_app", "authorize"]

log = logging.getLogger("trading_engine.admin")


class AdminTarget(Protocol):
    """What the admin API serves and switches: the engine, seen from the edge."""

    def status(self) -> dict[str, Any]:
        """The state for ``GET /status``: JSON-ready, money as decimal strings."""

    def not_ready(self) -> str | None:
        """Why the engine cannot trade yet (``GET /readyz`` answers 503), or None."""

    def set_trading_state(self, state: TradingState) -> None:
        """Switch the trading state (``POST /halt``, ``/reduce``, ``/resume``)."""

    def switch_refusal(self, state: TradingState) -> str | None:
        """Why the switch to ``state`` is refused now (``409``), or None."""


class AdminServer:
    """The admin API of one engine.

    ``registry`` is what ``GET /metrics`` exposes (the server adds the
    renderer's own ``trading_engine_metrics_step_seconds`` to it); ``heartbeat`` returns
    the ``time.monotonic()`` of the event loop's last turn (``/healthz``
    answers 503 when it is more than 5 s old); ``environ`` holds the
    token variable named by ``[admin] token_env``.
    """

    def __init__(
        self,
        target: AdminTarget,
        settings: AdminConfig,
        registry: CollectorRegistry,
        heartbeat: Callable[[], float] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.target = target
        self.heartbeat = heartbeat
        self.host = settings.host
        self.port = settings.port
        env = os.environ if environ is None else environ
        self._token = env.get(settings.token_env) or None
        self.registry = registry
        self.renderer = ExpositionRenderer(registry)
        #: Switches refused (``409``), by the state asked for.
        self.refused: Counter[str] = Counter()
        registry.register(_RendererCollector(self.renderer, self.refused))
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        return admin_app(
            self._metrics,
            self._healthz,
            self._readyz,
            self._status,
            {"/halt": self._halt, "/reduce": self._reduce, "/resume": self._resume},
        )

    async def start(self) -> None:
        self._runner, self.port = await serve(self.app(), self.host, self.port)
        log.info("admin API on http://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers ------------------------------------------------------------------------

    async def _metrics(self, request: web.Request) -> web.Response:
        body = await self.renderer.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        heartbeat = self.heartbeat
        if heartbeat is not None and time.monotonic() - heartbeat() > 5.0:
            return web.Response(status=503, text="event loop lagging\n")
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        reason = self.target.not_ready()
        if reason is not None:
            return json_response({"ready": False, "reason": reason}, 503)
        return json_response({"ready": True}, 200)

    async def _status(self, request: web.Request) -> web.Response:
        return json_response(self.target.status(), 200)

    async def _switch(self, request: web.Request, state: TradingState) -> web.Response:
        refused = authorize(request, self._token)
        if refused is not None:
            return refused
        refusal = self.target.switch_refusal(state)
        if refusal is not None:
            self.refused[state.value] += 1
            log.error("the admin API refused the switch to %s: %s", state.value, refusal)
            current = self.target.status()["trading_state"]
            return json_response({"trading_state": current, "refused": refusal}, 409)
        self.target.set_trading_state(state)
        log.warning("trading state set to %s through the admin API", state.value)
        return json_response({"trading_state": state.value}, 200)

    async def _halt(self, request: web.Request) -> web.Response:
        return await self._switch(request, TradingState.HALTED)

    async def _reduce(self, request: web.Request) -> web.Response:
        return await self._switch(request, TradingState.REDUCING)

    async def _resume(self, request: web.Request) -> web.Response:
        return await self._switch(request, TradingState.ACTIVE)


class _RendererCollector(Collector):
    """How long the steps of rendering ``/metrics`` held the event loop."""

    def __init__(self, renderer: ExpositionRenderer, refused: Counter[str]) -> None:
        self.renderer = renderer
        self.refused = refused

    def collect(self) -> list[Metric]:
        steps = histogram_family(
            "trading_engine_metrics_step_seconds",
            "Event-loop time of one step of rendering /metrics (the longest the loop "
            "waited on a scrape).",
        )
        add_histogram(steps, self.renderer.steps)
        longest = GaugeMetricFamily(
            "trading_engine_metrics_longest_step_seconds",
            "The longest step of the last /metrics render.",
            value=self.renderer.longest_step_ns / 1e9,
        )
        refused = CounterMetricFamily(
            "trading_engine_admin_switches_refused",
            "Trading-state switches the admin API refused (409), by the state asked for.",
            labels=["to"],
        )
        for state in TradingState:
            refused.add_metric([state.value], self.refused[state.value])
        return [steps, longest, refused]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def admin_app(
    metrics: Handler,
    healthz: Handler,
    readyz: Handler,
    status: Handler,
    switches: Mapping[str, Handler],
) -> web.Application:
    """The admin API's route table, shared by an engine and the workers' supervisor."""
    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/status", status)
    for path in ("/halt", "/reduce", "/resume"):
        app.router.add_post(path, switches[path])
    return app


def authorize(request: web.Request, token: str | None) -> web.Response | None:
    """The refusal for a mutating request without the right bearer token, else None."""
    if token is None:
        return json_response({"error": "no admin token is configured"}, 403)
    header = request.headers.get("Authorization", "")
    # The scheme is case-insensitive (RFC 9110, section 11.1).
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
        return json_response({"error": "missing or wrong bearer token"}, 401)
    return None
