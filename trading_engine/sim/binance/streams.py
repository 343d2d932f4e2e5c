"""The user data stream: execution reports pushed over WebSocket.

Two ways in, as the venue has them:

* **The WebSocket API** (``GET /ws-api/v3``, the current way): JSON
  requests ``{"id", "method", "params"}`` answered ``{"id", "status",
  "result" | "error", "rateLimits"}``. ``userDataStream.subscribe.signature``
  (any key type: ``apiKey``, ``timestamp``, ``recvWindow``, ``signature``
  over the sorted parameters) or ``session.logon`` (Ed25519 keys only) then
  ``userDataStream.subscribe`` start a subscription; its events arrive as
  ``{"subscriptionId": n, "event": {...}}``. Also ``ping``, ``time``,
  ``session.status``, ``session.logout``, ``session.subscriptions`` and
  ``userDataStream.unsubscribe``. Trading over the WebSocket API
  (``order.place`` and the like) is not served.
* **Listen keys** (the older way, which the venue has retired for spot but
  its testnet still documents): ``POST /api/v3/userDataStream`` (API key
  only) gives a key valid ``listen_key_ttl_s`` (60 minutes), ``PUT`` extends
  it, ``DELETE`` closes it; ``GET /ws/<listenKey>`` streams the bare events.
  A key that lapses sends ``listenKeyExpired`` and closes its connections.

Each connection has a queue and one writer, so answers and events leave in
the order they were made. The ``stream_drop`` fault closes a connection
after an event with that probability.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import orjson
from aiohttp import WSMsgType, web

from ..exchange_sim import Faults
from .auth import ApiKeys, check_timing, websocket_payload
from .errors import VenueError
from .limits import RateLimiter

__all__ = ["UserDataStreams"]

log = logging.getLogger("trading_engine.exchange_sim.binance")

#: Weight of each WebSocket API method (connecting costs 2 more).
_WS_WEIGHTS: Final = {"ping": 1, "time": 1}
_WS_DEFAULT_WEIGHT: Final = 2
#: A connection whose client reads nothing is dropped past this many queued frames.
_QUEUE_LIMIT: Final = 10_000
_CHECK: Final = object()


class Venue(Protocol):
    """What the streams need of the simulator."""

    keys: ApiKeys
    limiter: RateLimiter
    faults: Faults
    listen_key_ttl_s: float

    def now_ms(self) -> int: ...

    def roll(self, probability: float) -> bool: ...

    def count(self, name: str) -> None: ...


@dataclass(eq=False)
class _Connection:
    ws: web.WebSocketResponse
    connected_ms: int
    queue: asyncio.Queue[object] = field(default_factory=lambda: asyncio.Queue(_QUEUE_LIMIT))
    #: WebSocket API: subscription id -> how it was made ("logon" or "signature").
    subscriptions: dict[int, str] = field(default_factory=dict)
    next_subscription: int = 0
    logged_on_key: str | None = None
    authorized_ms: int | None = None
    #: Listen-key connections: the key.
    listen_key: str | None = None
    transport: asyncio.Transport | None = None
    #: Events a request made, sent after its answer.
    after_answer: list[tuple[str, bool]] = field(default_factory=list)

    def put(self, item: object) -> bool:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            return False
        return True


def _transport(request: web.Request) -> asyncio.Transport | None:
    transport = request.transport
    return transport if isinstance(transport, asyncio.Transport) else None


def _random_key(length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


_Method = Callable[["UserDataStreams", _Connection, dict[str, Any], int], object]


class UserDataStreams:
    """The account's user data stream connections (both kinds) and its listen keys."""

    def __init__(self, venue: Venue) -> None:
        self.venue = venue
        self.connections: set[_Connection] = set()
        #: listen key -> when it lapses (wall milliseconds).
        self.listen_keys: dict[str, int] = {}
        #: Events published (to at least one connection or none).
        self.published = 0
        #: The server's WebSocket ping period (Binance: 20 s; a client that does
        #: not answer within half of it is disconnected, as aiohttp does).
        self.heartbeat_s = 20.0
        #: Set while frames flow; cleared by :meth:`hold`.
        self._flowing = asyncio.Event()
        self._flowing.set()

    # -- events ------------------------------------------------------------

    def publish(self, event: dict[str, Any]) -> None:
        """Send ``event`` to every subscription and listen-key connection. O(connections)."""
        self.published += 1
        now = self.venue.now_ms()
        for conn in list(self.connections):
            if conn.listen_key is not None:
                if self.listen_keys.get(conn.listen_key, 0) > now:
                    self._put(conn, (orjson.dumps(event).decode(), True))
                continue
            for subscription in conn.subscriptions:
                wrapped = {"subscriptionId": subscription, "event": event}
                self._put(conn, (orjson.dumps(wrapped).decode(), True))

    def _put(self, conn: _Connection, item: tuple[str, bool]) -> None:
        if not conn.put(item):
            self.venue.count("stream_overflow")
            # A client that reads nothing is cut off.
            self.connections.discard(conn)
            if conn.transport is not None:
                conn.transport.abort()

    async def drop_all(self) -> None:
        """Close every user data stream connection (as a venue restart would)."""
        for conn in list(self.connections):
            self.connections.discard(conn)
            await conn.ws.close()

    def hold(self) -> None:
        """Stop sending on every connection, which stays open (a stalled stream).

        Requests are still read and answered into the queue, and events
        queued; nothing leaves until :meth:`release`.
        """
        self._flowing.clear()

    def release(self) -> None:
        """Send again what :meth:`hold` kept, in order."""
        self._flowing.set()

    def expire_listen_keys(self) -> None:
        """Let every listen key lapse now (``listenKeyExpired`` on its connections)."""
        now = self.venue.now_ms()
        for key in self.listen_keys:
            self.listen_keys[key] = now
        for conn in self.connections:
            if conn.listen_key is not None:
                conn.put(_CHECK)

    # -- listen keys (REST) ----------------------------------------------------

    def create_listen_key(self) -> str:
        """``POST /api/v3/userDataStream``: the account's live key (extended), or a new one."""
        now = self.venue.now_ms()
        ttl_ms = int(self.venue.listen_key_ttl_s * 1000)
        for key, until in self.listen_keys.items():
            if until > now:
                self.listen_keys[key] = now + ttl_ms
                return key
        key = _random_key(64)
        self.listen_keys[key] = now + ttl_ms
        return key

    def keepalive(self, key: str) -> None:
        """``PUT``: extend a live key; raises ``-1125`` for a key that does not exist or lapsed."""
        now = self.venue.now_ms()
        if self.listen_keys.get(key, 0) <= now:
            raise VenueError(400, -1125, "This listenKey does not exist.")
        self.listen_keys[key] = now + int(self.venue.listen_key_ttl_s * 1000)
        for conn in self.connections:
            if conn.listen_key == key:
                conn.put(_CHECK)

    async def close_listen_key(self, key: str) -> None:
        """``DELETE``: close a key and its connections (no ``listenKeyExpired``)."""
        if self.listen_keys.pop(key, None) is None:
            raise VenueError(400, -1125, "This listenKey does not exist.")
        for conn in list(self.connections):
            if conn.listen_key == key:
                self.connections.discard(conn)
                await conn.ws.close()

    async def serve_listen_key(self, request: web.Request) -> web.StreamResponse:
        """``GET /ws/<listenKey>``: the bare events of a live key."""
        key = request.match_info["listen_key"]
        if self.listen_keys.get(key, 0) <= self.venue.now_ms():
            self.venue.count("listen_key_refused")
            return web.json_response(
                {"code": -1125, "msg": "This listenKey does not exist."}, status=400
            )
        ws = web.WebSocketResponse(heartbeat=self.heartbeat_s)
        await ws.prepare(request)
        conn = _Connection(ws, self.venue.now_ms(), listen_key=key, transport=_transport(request))
        await self._run(conn, reader=self._read_nothing(conn))
        return ws

    # -- the WebSocket API -----------------------------------------------------

    async def serve_api(self, request: web.Request) -> web.StreamResponse:
        """``GET /ws-api/v3``: the WebSocket API's user data stream methods."""
        try:
            self.venue.limiter.admit(2, self.venue.now_ms())
        except VenueError as exc:
            return web.json_response(exc.body(), status=exc.status, headers=exc.headers)
        ws = web.WebSocketResponse(heartbeat=self.heartbeat_s)
        await ws.prepare(request)
        conn = _Connection(ws, self.venue.now_ms(), transport=_transport(request))
        await self._run(conn, reader=self._read_requests(conn))
        return ws

    async def _run(self, conn: _Connection, reader: Any) -> None:
        self.connections.add(conn)
        self.venue.count("stream_connections")
        writer = asyncio.get_running_loop().create_task(self._write(conn))
        try:
            await reader
        finally:
            self.connections.discard(conn)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await writer
            if not conn.ws.closed:
                await conn.ws.close()

    async def _read_nothing(self, conn: _Connection) -> None:
        async for _ in conn.ws:
            pass

    async def _read_requests(self, conn: _Connection) -> None:
        async for message in conn.ws:
            if message.type != WSMsgType.TEXT:
                continue
            answer = self._answer(conn, message.data)
            conn.put((orjson.dumps(answer).decode(), False))
            for item in conn.after_answer:
                conn.put(item)
            conn.after_answer.clear()

    async def _write(self, conn: _Connection) -> None:
        """Send what is queued, in order; lapse listen keys; drop on the ``stream_drop`` fault."""
        venue = self.venue
        while not conn.ws.closed:
            timeout: float | None = None
            if conn.listen_key is not None:
                until = self.listen_keys.get(conn.listen_key, 0)
                timeout = max(0.0, (until - venue.now_ms()) / 1000)
            try:
                item = await asyncio.wait_for(conn.queue.get(), timeout)
            except TimeoutError:
                item = _CHECK
            if item is _CHECK:
                if conn.listen_key is not None and self._lapsed(conn.listen_key):
                    event = {"e": "listenKeyExpired", "E": str(venue.now_ms()),
                             "listenKey": conn.listen_key}  # fmt: skip
                    await conn.ws.send_str(orjson.dumps(event).decode())
                    venue.count("listen_key_expired")
                    await conn.ws.close()
                    return
                continue
            assert isinstance(item, tuple)
            text, is_event = item
            await self._flowing.wait()
            await conn.ws.send_str(text)
            if is_event and venue.roll(venue.faults.stream_drop):
                venue.count("stream_drop")
                self.connections.discard(conn)
                if conn.transport is not None:
                    conn.transport.abort()
                return

    def _lapsed(self, key: str) -> bool:
        return self.listen_keys.get(key, 0) <= self.venue.now_ms()

    def _answer(self, conn: _Connection, text: str) -> dict[str, Any]:
        venue = self.venue
        request_id: object = None
        try:
            request = orjson.loads(text)
            if not isinstance(request, dict) or not isinstance(request.get("method"), str):
                raise ValueError("not a request")
            request_id = request.get("id")
            params = request.get("params") or {}
            if not isinstance(params, dict):
                raise ValueError("params is not an object")
        except (orjson.JSONDecodeError, ValueError):
            venue.count("ws_api_bad_request")
            return {"id": request_id, "status": 400,
                    "error": {"code": -1135, "msg": "Invalid JSON Request"}}  # fmt: skip
        method: str = request["method"].removeprefix("v3/")
        now = venue.now_ms()
        try:
            venue.limiter.admit(_WS_WEIGHTS.get(method, _WS_DEFAULT_WEIGHT), now)
            result = self._call(conn, method, params, now)
        except VenueError as exc:
            venue.count(f"error_{exc.code}")
            error: dict[str, Any] = exc.body()
            if exc.status in (418, 429):
                retry = exc.headers.get("Retry-After", "1")
                error["data"] = {"serverTime": now, "retryAfter": now + int(retry) * 1000}
            answer: dict[str, Any] = {"id": request_id, "status": exc.status, "error": error}
        else:
            answer = {"id": request_id, "status": 200, "result": result}
        if params.get("returnRateLimits", True) is not False:
            answer["rateLimits"] = [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": venue.limiter.settings.weight_per_minute,
                 "count": venue.limiter.used_weight(now)},
            ]  # fmt: skip
        return answer

    def _call(self, conn: _Connection, method: str, params: dict[str, Any], now: int) -> object:
        handler = self._methods.get(method)
        if handler is None:
            raise VenueError(400, -1020, "This operation is not supported.")
        return handler(self, conn, params, now)

    def _status(self, conn: _Connection, now: int) -> dict[str, Any]:
        return {
            "apiKey": conn.logged_on_key,
            "authorizedSince": conn.authorized_ms,
            "connectedSince": conn.connected_ms,
            "returnRateLimits": True,
            "serverTime": now,
            "userDataStream": bool(conn.subscriptions),
        }

    def _signed(self, params: dict[str, Any], now: int) -> str:
        """Check a signed request's key, signature and timing; returns the key."""
        keys = self.venue.keys
        key = keys.check_key(
            params.get("apiKey") if isinstance(params.get("apiKey"), str) else None
        )
        signature = params.get("signature")
        if not isinstance(signature, str) or not signature:
            raise VenueError(
                400,
                -1102,
                "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
            )
        if not keys.verify(key, websocket_payload(params), signature):
            raise VenueError(400, -1022, "Signature for this request is not valid.")
        window = params.get("recvWindow")
        check_timing(
            None if params.get("timestamp") is None else str(params["timestamp"]),
            None if window is None else str(window),
            now,
        )
        return key

    def _subscribe(self, conn: _Connection, how: str) -> dict[str, Any]:
        if conn.subscriptions:
            raise VenueError(400, -2035, "User Data Stream subscription already active.")
        subscription = conn.next_subscription
        conn.next_subscription += 1
        conn.subscriptions[subscription] = how
        self.venue.count("stream_subscriptions")
        return {"subscriptionId": subscription}

    def _m_ping(self, conn: _Connection, params: dict[str, Any], now: int) -> object:
        return {}

    def _m_time(self, conn: _Connection, params: dict[str, Any], now: int) -> object:
        return {"serverTime": now}

    def _m_logon(self, conn: _Connection, params: dict[str, Any], now: int) -> object:
        key = self._signed(params, now)
        if not self.venue.keys.is_ed25519(key):
            # The venue logs on Ed25519 keys only.
            raise VenueError(401, -1002, "You are not authorized to execute this request.")
        conn.logged_on_key, conn.authorized_ms = key, now
        return self._status(conn, now)

    def _m_status(self, conn: _Connection, params: dict[str, Any], now: int) -> object:
        return self._status(conn, now)

    def _m_logout(self, conn: _Connection, params: dict[str, Any], now: int) -> object:
        for subscription, how in list(conn.subscriptions.items()):
            if how == "logon":
                del conn.subscriptions[subscription]
                wrapped = {"subscriptionId": subscription,
                           "event": {"e": "eventStreamTerminated", "E": now}}  # fmt: skip
                conn.after_answer.append((orjson.dumps(wrapped).decode(), True))
        conn.logged_on_key = conn.authorized_ms = None
        return self._status(conn, now)

    def _m_subscribe(self, conn: _Connection, params: dict[str, Any], now: int) -> object:
        if conn.logged_on_key is None:
            raise VenueError(401, -1002, "You are not authorized to execute this request.")
        return self._subscribe(conn, "logon")

    def _m_subscribe_signature(self, conn: _Connection, params: dict[str, Any], now: int) -> object:
        self._signed(params, now)
        return self._subscribe(conn, "signature")

    def _m_unsubscribe(self, conn: _Connection, params: dict[str, Any], now: int) -> object:
        wanted = params.get("subscriptionId")
        if wanted is None:
            conn.subscriptions.clear()
        elif type(wanted) is not int:
            raise VenueError(
                400,
                -1102,
                "Mandatory parameter 'subscriptionId' was not sent, was empty/null, or malformed.",
            )
        else:
            conn.subscriptions.pop(wanted, None)
        return {}

    def _m_subscriptions(self, conn: _Connection, params: dict[str, Any], now: int) -> object:
        return [{"subscriptionId": subscription} for subscription in conn.subscriptions]

    _methods: Final[
        dict[str, Callable[[UserDataStreams, _Connection, dict[str, Any], int], object]]
    ] = {
        "ping": _m_ping,
        "time": _m_time,
        "session.logon": _m_logon,
        "session.status": _m_status,
        "session.logout": _m_logout,
        "userDataStream.subscribe": _m_subscribe,
        "userDataStream.subscribe.signature": _m_subscribe_signature,
        "userDataStream.unsubscribe": _m_unsubscribe,
        "session.subscriptions": _m_subscriptions,
    }
