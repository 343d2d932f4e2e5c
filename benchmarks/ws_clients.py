"""asyncio WebSocket clients side by side: aiohttp, websockets and picows on one local venue.

``python -m benchmarks.ws_clients [--count N] [--paced N] [--rounds R]``
(from a checkout; a client whose package is not installed is skipped:
``pip install websockets picows``). The venue is a separate process on
127.0.0.1 speaking just enough RFC 6455 to serve pre-built frames, so its
own cost per message is a memory copy and every client reads the same
bytes. Its messages are the recorded Binance XMRBTC diff-depth events of
``tests/data/venues/binance`` (135-308 bytes), cycled, their update ids
renumbered into one unbroken chain (so the feed handler's dialect takes
every one) and nothing else changed.

Per client and round, each on a fresh connection:

* ``raw``: ``--count`` messages written as fast as the socket takes them;
  the client takes each as text and counts it. Messages per second (wall
  clock, first message to the last) and the client process's CPU time per
  message (``time.process_time_ns``), both from the first message to the last.
* ``handler``: the same burst, each message handed to the feed handler's
  own work (the Binance dialect's decode and sequence check, the handler's
  copy of the levels, the engine frame's encoding, a write into a writer
  that counts bytes): the whole cost per message of a handler on that
  client.
* ``latency``: ``--paced`` messages about 0.5 ms apart, each carrying the
  venue's ``CLOCK_MONOTONIC`` time in ns in its ``E`` field; the client
  notes the same clock when the message reaches its code. p50 and p99 of
  the difference (the kernel's loopback and the client's read path).

Clients read as each library is meant to be used: aiohttp
``await ws.receive()``; aiohttp as the feed handler reads
(``receive(timeout=...)``, a timer per message); websockets' asyncio API
``await ws.recv()``; picows' ``WSListener.on_ws_frame`` callback. Rounds
interleave the clients; figures are medians over rounds (with the range).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "venues" / "binance"
MAX_MESSAGE = 16 * 1024 * 1024
FIRST_ID = 1_000
END = "END"
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# -- the messages ----------------------------------------------------------------------------


def recorded_events() -> list[dict[str, Any]]:
    """The recorded XMRBTC diff-depth events (the ``data`` of each combined-stream message)."""
    events = []
    for line in (DATA / "xmrbtc_session.capture").read_text().splitlines():
        _, kind, _, payload = line.split("\t", 3)
        if kind != "ws":
            continue
        message = json.loads(payload)
        data = message["data"]
        if data.get("e") == "depthUpdate" and data["s"] == "XMRBTC":
            events.append(data)
    return events


def message_parts(count: int) -> list[tuple[str, str]]:
    """``count`` messages as (text before the ``E`` value, text after it), ids renumbered.

    The recorded key order and level strings are kept; ``E`` is filled in
    when the message is sent.
    """
    events = recorded_events()
    parts = []
    next_id = FIRST_ID
    for index in range(count):
        event = dict(events[index % len(events)])
        span = event["u"] - event["U"]
        event["U"], event["u"] = next_id, next_id + span
        next_id += span + 1
        event["E"] = 0
        text = json.dumps({"stream": "xmrbtc@depth@100ms", "data": event}, separators=(",", ":"))
        before, after = text.split('"E":0', 1)
        parts.append((before + '"E":', after))
    return parts


def snapshot_body() -> bytes:
    """The recorded REST snapshot, numbered just before the first message."""
    snapshot = json.loads((DATA / "xmrbtc_depth_snapshot.json").read_text())
    snapshot["lastUpdateId"] = FIRST_ID - 1
    return json.dumps(snapshot).encode()


def frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One unmasked server frame (FIN set)."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return header + payload


# -- the venue (its own process) ---------------------------------------------------------------


async def _read_client_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readexactly(2)
    opcode, size = head[0] & 0x0F, head[1] & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", await reader.readexactly(2))
    elif size == 127:
        (size,) = struct.unpack("!Q", await reader.readexactly(8))
    mask = await reader.readexactly(4) if head[1] & 0x80 else b"\0\0\0\0"
    data = await reader.readexactly(size)
    return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


class Venue:
    """The venue process's state: the burst's frames, and whether a snapshot was served."""

    def __init__(self, count: int) -> None:
        self.burst = b"".join(frame(f"{b}0{a}".encode()) for b, a in message_parts(count))
        self.snapshot = snapshot_body()
        self.snapshot_served = asyncio.Event()

    async def serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: REST snapshots (kept alive) or one WebSocket."""
        try:
            while True:
                request = await reader.readuntil(b"\r\n\r\n")
                if b"sec-websocket-key" in request.lower():
                    await self._websocket(request, reader, writer)
                    return
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(self.snapshot)).encode() + b"\r\n\r\n" + self.snapshot
                )  # fmt: skip
                self.snapshot_served.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _websocket(
        self, request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        key = b""
        for line in request.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        if b"streams=" in request.split(b"\r\n", 1)[0]:
            # The feed handler itself: the burst once its snapshot is out, then the end marker.
            await asyncio.wait_for(self.snapshot_served.wait(), 10)
            self.snapshot_served.clear()
            await asyncio.sleep(0.05)
            await self._burst(writer)
        await self._commands(reader, writer)

    async def _burst(self, writer: asyncio.StreamWriter) -> None:
        view = memoryview(self.burst)
        for start in range(0, len(view), 1 << 20):
            writer.write(view[start : start + (1 << 20)])
            await writer.drain()
        writer.write(frame(END.encode()))
        await writer.drain()

    async def _commands(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            opcode, data = await _read_client_frame(reader)
            if opcode == 0x8:
                writer.write(frame(data[:2], 0x8))
                await writer.drain()
                return
            if opcode != 0x1:
                continue
            command = data.decode().split()
            if command[0] == "burst":
                await self._burst(writer)
            elif command[0] == "paced":
                count, gap_s = int(command[1]), float(command[2])
                clock = time.monotonic_ns
                for before, after in message_parts(count):
                    await asyncio.sleep(gap_s)
                    writer.write(frame(f"{before}{clock()}{after}".encode()))
                writer.write(frame(END.encode()))
                await writer.drain()


async def _engine_sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An engine feed port that reads and discards."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(1 << 20):
            pass
    writer.close()


def serve(count: int) -> None:
    """Run the venue: print its port and an engine port, serve until stdin closes."""

    async def main() -> None:
        venue = Venue(count)
        server = await asyncio.start_server(venue.serve_one, "127.0.0.1", 0)
        engine = await asyncio.start_server(_engine_sink, "127.0.0.1", 0)
        ports = (server.sockets[0].getsockname()[1], engine.sockets[0].getsockname()[1])
        print(*ports, flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)
        server.close()
        engine.close()

    asyncio.run(main())


# -- what a client does with each message ------------------------------------------------------


class _Transport:
    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


class _Writer:
    """An engine connection that keeps up: counts bytes."""

    def __init__(self) -> None:
        self.transport = _Transport()
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)


@dataclass
class Sink:
    """Takes each message: counts it, and in ``handler`` mode runs the handler's work on it."""

    mode: str
    count: int = 0
    first_ns: int = 0
    last_ns: int = 0
    first_cpu_ns: int = 0
    last_cpu_ns: int = 0
    stamps: list[tuple[int, str]] = field(default_factory=list)
    take: Callable[[str], None] = field(init=False)
    done: asyncio.Future[None] | None = None

    def __post_init__(self) -> None:
        if self.mode == "handler":
            from trading_engine.io.feedhandler import EngineAddress, FeedHandler
            from trading_engine.venues.binance import BinanceMarketData

            dialect = BinanceMarketData(["XMRBTC"], "http://unused")
            handler = FeedHandler(
                dialect,
                ws_url="ws://unused",
                engines=[EngineAddress("127.0.0.1", 1)],
                symbol_map={"XMRBTC": "XMRBTC"},
            )
            self.writer = _Writer()
            handler.links[0].writer = self.writer  # type: ignore[assignment]
            handler._fetch = lambda symbol, url: None  # type: ignore[method-assign]
            handler._act(dialect.on_open(0))
            handler._act(dialect.on_snapshot("XMRBTC", snapshot_body(), 0), 1)
            self.handler = handler
            act, on_message = handler._act, dialect.on_message

            def take(text: str) -> None:
                act(on_message(text, 1), 1)

            self.take = take
        elif self.mode == "latency":
            stamps = self.stamps
            clock = time.monotonic_ns

            def take(text: str) -> None:
                stamps.append((clock(), text))

            self.take = take
        else:

            def take(text: str) -> None:
                pass

            self.take = take

    def on_text(self, text: str) -> bool:
        """One message; True at the end marker."""
        if text == END:
            self.last_ns = time.perf_counter_ns()
            self.last_cpu_ns = time.process_time_ns()
            return True
        if not self.count:
            self.first_ns = time.perf_counter_ns()
            self.first_cpu_ns = time.process_time_ns()
        self.count += 1
        self.take(text)
        return False

    def check(self, expected: int) -> None:
        assert self.count == expected, (self.count, expected)
        if self.mode == "handler":
            route = self.handler.routes["XMRBTC"]
            assert route.live, self.handler.dialect.errors
            assert self.handler.counts.frames["update"] >= expected - 1, self.handler.counts
            assert self.writer.written > 0


# -- the clients ---------------------------------------------------------------------------------

Client = Callable[[str, str, Sink], Awaitable[None]]


async def aiohttp_client(
    url: str, command: str, sink: Sink, receive_timeout: float | None = None
) -> None:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, autoping=False, max_msg_size=MAX_MESSAGE) as ws,
    ):
        await ws.send_str(command)
        text_type = aiohttp.WSMsgType.TEXT
        on_text = sink.on_text
        while True:
            msg = await (ws.receive() if receive_timeout is None else ws.receive(receive_timeout))
            if msg.type is not text_type:
                raise RuntimeError(f"aiohttp: {msg.type}")
            if on_text(msg.data):
                return


async def aiohttp_handler_style(url: str, command: str, sink: Sink) -> None:
    await aiohttp_client(url, command, sink, receive_timeout=1.0)


async def websockets_client(url: str, command: str, sink: Sink) -> None:
    from websockets.asyncio.client import connect

    async with connect(url, compression=None, max_size=MAX_MESSAGE, ping_interval=None) as ws:
        await ws.send(command)
        on_text = sink.on_text
        recv = ws.recv
        while True:
            message = await recv()
            if not isinstance(message, str):
                raise RuntimeError("websockets: a binary message")
            if on_text(message):
                return


async def picows_client(url: str, command: str, sink: Sink) -> None:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    on_text = sink.on_text
    text_type = WSMsgType.TEXT

    class Listener(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type is not text_type:
                return
            if on_text(frame.get_payload_as_utf8_text()) and not done.done():
                done.set_result(None)

    transport, _ = await ws_connect(Listener, url, max_frame_size=MAX_MESSAGE)
    try:
        transport.send(WSMsgType.TEXT, command.encode())
        await done
    finally:
        transport.send_close()
        transport.disconnect()
        await transport.wait_disconnected()


def available_clients() -> dict[str, Client]:
    clients: dict[str, Client] = {
        "aiohttp": aiohttp_client,
        "aiohttp, receive(timeout)": aiohttp_handler_style,
    }
    for name, module, client in (
        ("websockets", "websockets.asyncio.client", websockets_client),
        ("picows", "picows", picows_client),
    ):
        try:
            __import__(module)
        except ImportError:
            print(f"{name}: not installed, skipped", file=sys.stderr)
            continue
        clients[name] = client
    return clients


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("aiohttp", "websockets", "picows", "msgspec"):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


# -- measuring --------------------------------------------------------------------------------


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(client: Client, url: str, mode: str, count: int, paced: int) -> dict[str, float]:
    sink = Sink(mode)
    if mode == "latency":
        command, expected = f"paced {paced} 0.0005", paced
    else:
        command, expected = "burst", count
    await client(url, command, sink)
    sink.check(expected)
    if mode == "latency":
        delays = sorted(
            (received - int(text.split('"E":', 1)[1].split(",", 1)[0])) / 1000
            for received, text in sink.stamps
        )
        return {"p50_us": _percentile(delays, 0.5), "p99_us": _percentile(delays, 0.99)}
    # From the first message to the end marker: connecting and set-up are not counted.
    wall_s = (sink.last_ns - sink.first_ns) / 1e9
    cpu_us = (sink.last_cpu_ns - sink.first_cpu_ns) / 1000
    return {"per_s": (expected - 1) / wall_s, "cpu_us": cpu_us / (expected - 1)}


async def measure_runtime(port: int, engine_port: int, count: int) -> dict[str, float]:
    """The feed handler itself (aiohttp, as it reads) from the venue to a real engine socket."""
    from trading_engine.io.feedhandler import EngineAddress, FeedHandler, FeedHandlerSettings
    from trading_engine.venues.binance import BinanceMarketData

    dialect = BinanceMarketData(["XMRBTC"], f"http://127.0.0.1:{port}")
    end: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    marks: dict[str, int] = {}
    on_message = dialect.on_message

    def marked(text: str, now_ns: int) -> list[Any]:
        if text == END:
            marks["last_ns"], marks["last_cpu_ns"] = time.perf_counter_ns(), time.process_time_ns()
            end.set_result(None)
            return []
        if not marks:
            marks["first_ns"] = time.perf_counter_ns()
            marks["first_cpu_ns"] = time.process_time_ns()
        return on_message(text, now_ns)

    dialect.on_message = marked  # type: ignore[method-assign]
    handler = FeedHandler(
        dialect,
        ws_url=f"ws://127.0.0.1:{port}",
        engines=[EngineAddress("127.0.0.1", engine_port)],
        symbol_map={"XMRBTC": "XMRBTC"},
        settings=FeedHandlerSettings(max_message_bytes=MAX_MESSAGE),
    )
    task = asyncio.create_task(handler.run())
    try:
        await asyncio.wait_for(end, 120)
    finally:
        handler.stop()
        await task
    updates = handler.counts.frames["update"]
    assert updates >= count - 1, (updates, dialect.errors, handler.counts)
    assert not set(dialect.errors) - {"unreadable"}, dialect.errors  # the end marker only
    wall_s = (marks["last_ns"] - marks["first_ns"]) / 1e9
    cpu_us = (marks["last_cpu_ns"] - marks["first_cpu_ns"]) / 1000
    return {"per_s": (count - 1) / wall_s, "cpu_us": cpu_us / (count - 1)}


def start_venue(count: int) -> tuple[subprocess.Popen[str], int, int]:
    """The venue process; its WebSocket/REST port and its engine port."""
    venue = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.ws_clients", "--serve", "--count", str(count)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert venue.stdout is not None
    port, engine_port = (int(word) for word in venue.stdout.readline().split())
    return venue, port, engine_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000, help="messages per burst")
    parser.add_argument("--paced", type=int, default=2_000, help="messages per latency round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.count)
        return
    clients = available_clients()
    venue, port, engine_port = start_venue(args.count)
    url = f"ws://127.0.0.1:{port}/stream"
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    try:
        for _ in range(args.rounds):
            for mode in ("raw", "handler", "latency"):
                for name, client in clients.items():
                    figures = asyncio.run(measure(client, url, mode, args.count, args.paced))
                    results.setdefault((name, mode), []).append(figures)
            figures = asyncio.run(measure_runtime(port, engine_port, args.count))
            results.setdefault(("FeedHandler (aiohttp)", "runtime"), []).append(figures)
    finally:
        assert venue.stdin is not None
        venue.stdin.close()
        venue.wait(10)
    print(f"{args.rounds} rounds, median (min-max); {args.count:,} messages a burst, "
          f"{args.paced:,} paced")  # fmt: skip
    for mode, keys in (
        ("raw", ("per_s", "cpu_us")),
        ("handler", ("per_s", "cpu_us")),
        ("runtime", ("per_s", "cpu_us")),
        ("latency", ("p50_us", "p99_us")),
    ):
        print(f"\n{mode}")
        for (name, kind), runs in results.items():
            if kind != mode:
                continue
            cells = []
            for key in keys:
                values = sorted(run[key] for run in runs)
                cells.append(
                    f"{key} {statistics.median(values):10,.2f} ({values[0]:,.2f}-{values[-1]:,.2f})"
                )
            print(f"  {name:26} " + "   ".join(cells))
    from benchmarks._common import machine

    print()
    print(machine())
    print(versions(), f"loop: asyncio ({sys.version.split()[0]})")


if __name__ == "__main__":
    main()
