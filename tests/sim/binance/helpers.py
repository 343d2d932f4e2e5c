"""A client for the simulator's Binance dialect, written from the venue's documentation.

Independent of the engine's own Binance codec: it signs as the venue's
documentation shows (HMAC-SHA256 hex of the query string and body; Ed25519
base64, percent-encoded), so a test of the simulator does not take the
engine's word for the venue's rules.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import httpx
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from trading_engine import Instrument
from trading_engine.sim.binance import ApiKeys, BinanceSimulator, LimitSettings
from trading_engine.sim.exchange_sim import Faults

API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
ED_API_KEY = "4yNzx3yWC5bS6YTwEkSRaC0nRmSQIIStAUOh1b6kqaBrTLIhjCpI5lJH8q8R8WNO"
ED_PRIVATE = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
SYMBOL = "BTCUSDT"


def ed_private_pem() -> str:
    return ED_PRIVATE.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


def ed_public_pem() -> bytes:
    return ED_PRIVATE.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def keys() -> ApiKeys:
    return ApiKeys(hmac={API_KEY: SECRET}, ed25519={ED_API_KEY: ED_PRIVATE.public_key()})


class FakeClock:
    """Wall milliseconds that move only when told (30 s into a minute by default)."""

    def __init__(self, now_ms: int = 1_700_000_010_000) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


@asynccontextmanager
async def running(
    faults: Faults | None = None,
    limits: LimitSettings | None = None,
    clock: FakeClock | None = None,
    **settings: Any,
) -> AsyncIterator[BinanceSimulator]:
    sim = BinanceSimulator(
        [Instrument(SYMBOL, "0.01", "0.001")],
        keys=keys(),
        port=0,
        seed=3,
        faults=faults,
        limits=limits,
        clock_ms=clock,
        **settings,
    )
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@asynccontextmanager
async def venue(
    clock: FakeClock | None = None, **settings: Any
) -> AsyncIterator[tuple[BinanceSimulator, Client]]:
    """A running simulator (:func:`running`'s settings) and a client of it, closed after."""
    async with running(clock=clock, **settings) as sim:
        client = Client(sim, clock)
        try:
            yield sim, client
        finally:
            await client.aclose()


def sign_hmac(payload: str, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def sign_ed25519(payload: str) -> str:
    return base64.b64encode(ED_PRIVATE.sign(payload.encode())).decode()


class Client:
    """Signed requests to the simulator, by the book."""

    def __init__(self, sim: BinanceSimulator, clock: FakeClock | None = None) -> None:
        self.base = f"http://127.0.0.1:{sim.port}"
        self.http = httpx.AsyncClient(base_url=self.base, timeout=5.0)
        self.clock = clock

    async def aclose(self) -> None:
        await self.http.aclose()

    def now_ms(self) -> int:
        return self.clock() if self.clock is not None else time.time_ns() // 1_000_000

    async def public(self, path: str, **params: str) -> httpx.Response:
        return await self.http.get(path, params=params)

    async def signed(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        *,
        api_key: str = API_KEY,
        secret: str = SECRET,
        ed25519: bool = False,
        timestamp: int | None = None,
        in_body: bool | None = None,
    ) -> httpx.Response:
        """A SIGNED request; POST sends its parameters as a form body, others as the query."""
        fields = dict(params or {})
        fields["timestamp"] = str(self.now_ms() if timestamp is None else timestamp)
        payload = urlencode(fields)
        if ed25519:
            signature = quote(sign_ed25519(payload), safe="")
        else:
            signature = sign_hmac(payload, secret)
        signed = f"{payload}&signature={signature}"
        headers = {"X-MBX-APIKEY": api_key}
        body_it = method == "POST" if in_body is None else in_body
        if body_it:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            return await self.http.request(method, path, content=signed, headers=headers)
        return await self.http.request(method, f"{path}?{signed}", headers=headers)

    async def order(self, **params: str) -> httpx.Response:
        return await self.signed("POST", "/api/v3/order", {"symbol": SYMBOL, **params})


def book_prices(sim: BinanceSimulator) -> tuple[str, str]:
    """The best bid and ask of the simulator's book, as wire prices."""
    walk, inst = sim.walks[SYMBOL], sim.instruments[SYMBOL]
    return inst.format_price(walk.best_bid), inst.format_price(walk.best_ask)


def signed_params(api_key: str = API_KEY, ed25519: bool = False, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"apiKey": api_key, "timestamp": time.time_ns() // 1_000_000, **extra}
    payload = "&".join(f"{name}={params[name]}" for name in sorted(params))
    params["signature"] = sign_ed25519(payload) if ed25519 else sign_hmac(payload)
    return params


class Socket:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.next_id += 1
        request: dict[str, Any] = {"id": self.next_id, "method": method}
        if params is not None:
            request["params"] = params
        await self.ws.send_str(orjson.dumps(request).decode())
        answer = await self.receive()
        assert answer["id"] == self.next_id, answer
        return answer

    async def receive(self, within_s: float = 5.0) -> dict[str, Any]:
        message = await self.ws.receive(timeout=within_s)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        received: dict[str, Any] = orjson.loads(message.data)
        return received

    async def events(self, count: int) -> list[dict[str, Any]]:
        return [await self.receive() for _ in range(count)]


@asynccontextmanager
async def socket(sim: BinanceSimulator, path: str = "/ws-api/v3") -> AsyncIterator[Socket]:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{sim.port}{path}") as ws,
    ):
        yield Socket(ws)
