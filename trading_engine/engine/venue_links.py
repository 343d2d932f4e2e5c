"""The venue's own connections wired to the order gateway: Binance's user data stream.

With ``[gateway] venue = "binance"`` and ``user_stream = true`` the gateway
gets a :class:`UserStreamLink`: one
:class:`~trading_engine.venues.binance.user_stream.UserDataStream` on the
venue's WebSocket API, subscribed with the gateway's own key and signer
and timestamped by the same :class:`~trading_engine.venues.binance.clock.VenueClock`
that signs its REST requests. The link is the stream's owner:

* each execution report goes to :meth:`~trading_engine.io.gateway.HttpGateway.stream_update`
  (the order's cumulative state to the ledger, its fill counted once by
  trade id, whether the stream or the poll brings it first);
* each change of the stream's ``live`` reads the fills at once from each
  cursor (what happened while no subscription was open, the venue never
  sends again) and sets the fills poll's rate: ``user_stream_fills_poll_s``
  while live (a safety net), ``fills_poll_s`` while down;
* the venue refusing the key or signature ends the stream and halts
  trading, with one log line naming the variables, as on the REST path;
* while the gateway knows of a ban of this client (a 418), the stream
  makes no connection: each would be one more request of the banned IP.

The gateway starts the link after start-up reconciliation and closes it
first when it closes. :func:`venue_collectors` gives the registry the
stream's and the clock's metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from prometheus_client.registry import Collector

from ..config import GatewayConfig
from ..io.gateway import HttpGateway, ssl_context
from ..lowlevel.tasks import TaskCrashes, cancel_and_wait
from ..venues.binance.clock import VenueClockCollector
from ..venues.binance.order_api import BinanceOrderDialect
from ..venues.binance.orders import ExecutionUpdate
from ..venues.binance.user_stream import (
    DEFAULT_WS_API_URL,
    TESTNET_WS_API_URL,
    UserDataStream,
    UserStreamCollector,
    UserStreamSettings,
)

__all__ = ["UserStreamLink", "attach_venue_links", "venue_collectors", "ws_api_url"]

log = logging.getLogger("trading_engine.venue_links")

#: The REST hosts whose WebSocket API lives on another host.
_WS_API_BY_REST_HOST = {
    "api.binance.com": DEFAULT_WS_API_URL,
    "testnet.binance.vision": TESTNET_WS_API_URL,
}
#: How long a stopped stream may take to close its connection.
_CLOSE_S = 3.0


def ws_api_url(settings: GatewayConfig) -> str:
    """The WebSocket API the user data stream subscribes on (``[gateway] ws_api_url``).

    Unset: Binance's own for its production REST host, the Spot Testnet's
    for the testnet's, else ``/ws-api/v3`` on ``base_url``'s host and port
    (``ws://`` for ``http://``, ``wss://`` for ``https://``), where the
    simulator serves it.
    """
    if settings.ws_api_url is not None:
        return settings.ws_api_url
    parts = urlsplit(settings.base_url)
    known = _WS_API_BY_REST_HOST.get(parts.hostname or "")
    if known is not None:
        return known
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}/ws-api/v3"


def stream_settings(settings: GatewayConfig) -> UserStreamSettings:
    """The stream's timeouts from ``[gateway]`` (its checks run 4 times a ping interval)."""
    return UserStreamSettings(
        ping_interval_s=settings.user_stream_ping_s,
        silence_timeout_s=settings.user_stream_silence_s,
        timer_s=min(1.0, settings.user_stream_ping_s / 4),
    )


class UserStreamLink:
    """A user data stream feeding ``gateway`` (see the module docstring).

    ``crashes`` accounts for the stream's task (a crash is counted and
    logged; fills then come by the poll, at the fast rate); ``wall_clock``
    (seconds) dates the changes of ``live`` in ``/status``.
    """

    def __init__(
        self,
        gateway: HttpGateway,
        dialect: BinanceOrderDialect,
        crashes: TaskCrashes,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        settings = gateway.config
        self.gateway = gateway
        self.crashes = crashes
        self.url = ws_api_url(settings)
        self._fast_poll_s = settings.fills_poll_s
        self._slow_poll_s = settings.user_stream_fills_poll_s
        self._ca_file = settings.ca_file
        self._wall_clock = wall_clock
        #: Wall-clock seconds of the last change of ``live`` (None: never live).
        self.since: float | None = None
        self.stream = UserDataStream(
            dialect.codec,
            self.url,
            self._on_update,
            on_live_change=self._on_live_change,
            on_auth_failed=gateway.refuse_key,
            clock=dialect.clock,
            settings=stream_settings(settings),
            hold_s=self._ban_left_s,
            on_banned=gateway.venue_banned,
            on_rate_limited=gateway.venue_rate_limited,
        )
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"UserStreamLink({self.url!r}, live={self.stream.live})"

    def _ban_left_s(self) -> float:
        """Seconds left of the venue's ban of this client (the gateway's 418), else 0."""
        until = self.gateway.banned_until
        return 0.0 if until is None else max(0.0, until - self._wall_clock())

    def _on_update(self, update: ExecutionUpdate) -> None:
        fill = update.fill
        self.gateway.stream_update(
            update.report,
            None if fill is None else fill.report,
            update.order_id,
            symbol=update.symbol or None,
        )

    def _on_live_change(self, live: bool, reason: str) -> None:
        self.since = self._wall_clock()
        gateway = self.gateway
        gateway.set_fills_poll_s(self._slow_poll_s if live else self._fast_poll_s)
        # Whatever the venue sent while no subscription was open comes by one read.
        gateway.poll_fills_soon()
        if live:
            log.info("binance user stream live on %s: fills polled every %.1f s",
                     self.url, self._slow_poll_s)  # fmt: skip
        elif reason != "stopped":
            log.warning("binance user stream down (%s): fills polled every %.2f s",
                        reason, self._fast_poll_s)  # fmt: skip

    def start(self) -> None:
        """Start the stream's task (connect, subscribe, again after every end)."""
        if self._task is None:
            self._task = self.crashes.spawn(self._run(), name="user-stream", kind="user-stream")

    async def _run(self) -> None:
        if self._ca_file is None or not self.url.startswith("wss://"):
            await self.stream.run()
            return
        connector = aiohttp.TCPConnector(ssl=ssl_context(self._ca_file))
        async with aiohttp.ClientSession(connector=connector) as session:
            await self.stream.run(session)

    async def close(self) -> None:
        """Stop the stream and wait for its connection to close (cancelled past a bound)."""
        task, self._task = self._task, None
        if task is None:
            return
        self.stream.stop()
        done, _ = await asyncio.wait({task}, timeout=_CLOSE_S)
        if not done:
            await cancel_and_wait(task)

    def status(self) -> dict[str, Any]:
        """``user_stream``: ``live``, ``since`` (UTC, ISO 8601, the last change of
        ``live``; None before the first), ``url`` and ``drops`` (ends counted)."""
        since = self.since
        stream = self.stream
        return {
            "user_stream": {
                "live": stream.live,
                "since": None
                if since is None
                else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since)),
                "url": self.url,
                "drops": stream.counts["dropped"],
            }
        }


def attach_venue_links(gateway: HttpGateway, crashes: TaskCrashes) -> None:
    """Give ``gateway`` the links its venue needs (Binance: the user data stream, if on)."""
    dialect = gateway.dialect
    if isinstance(dialect, BinanceOrderDialect) and gateway.config.user_stream:
        gateway.links.append(UserStreamLink(gateway, dialect, crashes))


def venue_collectors(sink: object) -> list[Collector]:
    """The metrics of ``sink``'s venue connections: the venue clock's, the user stream's."""
    if not isinstance(sink, HttpGateway):
        return []
    collectors: list[Collector] = []
    dialect = sink.dialect
    if isinstance(dialect, BinanceOrderDialect):
        collectors.append(VenueClockCollector(dialect.clock))
    collectors.extend(
        UserStreamCollector(link.stream) for link in sink.links if isinstance(link, UserStreamLink)
    )
    return collectors
