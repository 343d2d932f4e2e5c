"""Gateway benchmark: order placement on loopback, per path.

The exchange simulator (aiohttp.web, no faults) runs in a separate
process; this process places IOC orders one at a time through:

* ``httpx``: the gateway's httpx client, one long-lived AsyncClient;
* ``gateway, fast mode``: the production path: ``HttpGateway.submit`` of
  an Order (request budget, JSON encoding, the fast channel's
  synchronous write), timed to ``on_written`` and to the order's status;
* ``gateway, httpx mode``: ``HttpGateway.submit`` with ``mode = "httpx"``,
  timed to ``on_written``, which httpcore's ``trace`` extension reports
  when the request's last byte was written;
* ``fast channel``: the fast channel alone with a pre-encoded body;
* ``aiohttp``: a reused aiohttp ClientSession (reference);
* ``raw``: a bare asyncio Protocol writing pre-built request bytes and
  reading the answer (the floor).

For each it records the time from the decision (the call) to the request
being handed to the socket ("written"; for httpx and aiohttp the moment
the call is made, since they do not expose the write) and the full round
trip to the parsed answer. Paths are interleaved per round; figures are
p50 and p99 in microseconds over all orders of all rounds.

Run: ``python -m benchmarks.gateway [--orders 2000] [--runs 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import aiohttp
import httpx
import orjson

from benchmarks._common import machine, percentile
from trading_engine import Instrument
from trading_engine.config import BreakerConfig, GatewayConfig
from trading_engine.core.breaker import CircuitBreaker
from trading_engine.core.orders import Order, OrderStatus, OrderType, TimeInForce
from trading_engine.core.protocol import Side
from trading_engine.io.fastpath import FastOrderChannel
from trading_engine.io.gateway import HttpGateway

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def body(n: int) -> bytes:
    return orjson.dumps(
        {"client_order_id": f"bench-{os.getpid()}-{n}", "symbol": "BTC-USD", "side": "buy",
         "type": "limit", "price": "90.00", "quantity": "0.001", "time_in_force": "IOC"}
    )  # fmt: skip


Placer = Callable[[bytes], Awaitable[tuple[int, int]]]


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    sim = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "trading_engine", "exchange-sim", "--port", str(port),
        "--duration", "600", cwd=ROOT, env={**os.environ, "EXCHANGE_API_KEY": KEY},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    client = httpx.AsyncClient(base_url=base, headers={"X-API-Key": KEY})
    for _ in range(100):
        try:
            await client.get("/fills?since=0")
            break
        except httpx.TransportError:
            await asyncio.sleep(0.1)
    session = aiohttp.ClientSession(headers={"X-API-Key": KEY})
    fast = FastOrderChannel(base, KEY, connections=1)
    await fast.start()
    clock = time.perf_counter_ns
    loop = asyncio.get_running_loop()

    class Bare(asyncio.Protocol):
        def __init__(self) -> None:
            self.done: asyncio.Future[None] | None = None
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if sep:
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                if len(rest) >= length and self.done is not None:
                    self.buffer = b""
                    self.done.set_result(None)

    transport, bare = await loop.create_connection(Bare, "127.0.0.1", port)
    prefix = fast.request_bytes(b"")[: -len(b"0\r\n\r\n")]

    class Listener:
        def __init__(self) -> None:
            self.written_ns = 0
            self.done: asyncio.Future[None] | None = None

        def on_written(self, order: Order) -> None:
            self.written_ns = clock()

        def on_accepted(self, client_order_id: str, exchange_order_id: str | None) -> None:
            pass

        def on_fill(
            self, client_order_id: str, price: int, lots: int, fill_id: int | None = None
        ) -> None:
            pass

        def on_order_report(
            self, client_order_id: str, filled_lots: int, avg_price: Decimal | None
        ) -> None:
            pass

        def on_status(self, client_order_id: str, status: OrderStatus, reason: str | None) -> None:
            if self.done is not None and not self.done.done():
                self.done.set_result(None)

        def on_order_fault(self, client_order_id: str, kind: str) -> None:
            pass

    listener = Listener()
    instrument = Instrument("BTC-USD", "0.01", "0.001")
    settings = GatewayConfig(base_url=base, mode="fast", max_requests_per_s=10**6)
    gateway_fast = FastOrderChannel(base, KEY, connections=1)
    gateway = HttpGateway(
        settings, listener, {"BTC-USD": instrument},
        CircuitBreaker(BreakerConfig().settings(), clock), api_key=KEY, fast=gateway_fast,
    )  # fmt: skip
    await gateway_fast.start()
    httpx_listener = Listener()
    gateway_httpx = HttpGateway(
        settings.model_copy(update={"mode": "httpx"}), httpx_listener, {"BTC-USD": instrument},
        CircuitBreaker(BreakerConfig().settings(), clock), api_key=KEY,
    )  # fmt: skip

    async def via_httpx(data: bytes) -> tuple[int, int]:
        start = clock()
        written = clock()  # handed to httpx; the write itself is not observable
        response = await client.post("/orders", content=data)
        orjson.loads(response.content)
        return written - start, clock() - start

    async def via_aiohttp(data: bytes) -> tuple[int, int]:
        start = clock()
        written = clock()
        async with session.post(f"{base}/orders", data=data) as response:
            orjson.loads(await response.read())
        return written - start, clock() - start

    async def via_gateway(data: bytes) -> tuple[int, int]:
        order = Order(
            orjson.loads(data)["client_order_id"], "bench", "BTC-USD", Side.BUY,
            OrderType.LIMIT, 1, 9000, TimeInForce.IOC,
        )  # fmt: skip
        listener.done = loop.create_future()
        start = clock()
        gateway.submit(order)
        written = listener.written_ns
        await listener.done
        return written - start, clock() - start

    async def via_gateway_httpx(data: bytes) -> tuple[int, int]:
        order = Order(
            orjson.loads(data)["client_order_id"], "bench", "BTC-USD", Side.BUY,
            OrderType.LIMIT, 1, 9000, TimeInForce.IOC,
        )  # fmt: skip
        httpx_listener.done = loop.create_future()
        start = clock()
        gateway_httpx.submit(order)
        await httpx_listener.done
        return httpx_listener.written_ns - start, clock() - start

    async def via_fast(data: bytes) -> tuple[int, int]:
        start = clock()
        waiter = fast.try_send(data)
        written = clock()
        assert waiter is not None
        answer = await waiter
        orjson.loads(answer.content)
        return written - start, clock() - start

    async def via_raw(data: bytes) -> tuple[int, int]:
        request = b"%s%d\r\n\r\n%s" % (prefix, len(data), data)
        bare.done = loop.create_future()
        start = clock()
        transport.write(request)
        written = clock()
        await bare.done
        return written - start, clock() - start

    paths: dict[str, Placer] = {
        "httpx (AsyncClient)": via_httpx,
        "gateway, fast mode": via_gateway,
        "gateway, httpx mode": via_gateway_httpx,
        "fast channel alone": via_fast,
        "aiohttp (reference)": via_aiohttp,
        "raw protocol (floor)": via_raw,
    }
    results: dict[str, tuple[list[int], list[int]]] = {name: ([], []) for name in paths}
    counter = 0
    for round_number in range(args.runs + 1):
        for name, place in paths.items():
            for _ in range(args.orders):
                counter += 1
                written, total = await place(body(counter))
                if round_number:
                    results[name][0].append(written)
                    results[name][1].append(total)
    await session.close()
    await client.aclose()
    await fast.close()
    await gateway.close()
    await gateway_httpx.close()
    transport.close()
    sim.terminate()
    await sim.wait()
    report: dict[str, object] = {"benchmark": "gateway", "orders": args.orders, "runs": args.runs}
    table = {}
    for name, (written, total) in results.items():
        written.sort()
        total.sort()
        table[name] = {
            "written_p50_us": percentile(written, 0.5) / 1000,
            "written_p99_us": percentile(written, 0.99) / 1000,
            "roundtrip_p50_us": percentile(total, 0.5) / 1000,
            "roundtrip_p99_us": percentile(total, 0.99) / 1000,
        }
    report["paths"] = table
    report["machine"] = machine()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    print(f"{args.orders} orders x {args.runs} runs per path; microseconds")
    print(f"{'path':24} {'written p50':>12} {'p99':>8} {'round trip p50':>15} {'p99':>8}")
    for name, row in report["paths"].items():  # type: ignore[attr-defined]
        print(
            f"{name:24} {row['written_p50_us']:12.1f} {row['written_p99_us']:8.1f} "
            f"{row['roundtrip_p50_us']:15.1f} {row['roundtrip_p99_us']:8.1f}"
        )
    print(json.dumps(report["machine"]))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
