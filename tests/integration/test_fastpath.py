"""The fast path's encoder and strict answer parser against a scripted server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from tests.helpers import wait_until
from trading_engine.io.fastpath import FastOrderChannel, FastPathError

Script = Callable[[bytes], bytes | None]


class Server:
    """Answers each request with what ``script`` returns for it (None: hang up)."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.script: Script = lambda _: ok(b'{"status":"new"}')
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                reply = self.script(request)
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


@pytest_asyncio.fixture
async def served() -> AsyncIterator[tuple[Server, FastOrderChannel]]:
    server = Server()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    channel = FastOrderChannel(f"http://127.0.0.1:{port}", "key-1", connections=2)
    await channel.start()
    yield server, channel
    await channel.close()
    listener.close()
    await listener.wait_closed()


@pytest.mark.asyncio
async def test_request_bytes_and_keep_alive(served: tuple[Server, FastOrderChannel]) -> None:
    server, channel = served
    for _ in range(5):
        waiter = channel.try_send(b'{"a":1}')
        assert waiter is not None
        answer = await waiter
        assert answer.status_code == 200
        assert answer.content == b'{"status":"new"}'
    assert server.requests[0] == (
        b"POST /orders HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-API-Key: key-1\r\n"
        b'Content-Type: application/json\r\nContent-Length: 7\r\n\r\n{"a":1}' % channel.port
    )
    assert server.connections == 2  # the warm pool, reused


@pytest.mark.asyncio
async def test_no_idle_connection_means_fallback(served: tuple[Server, FastOrderChannel]) -> None:
    server, channel = served
    server.script = lambda _: None if False else ok(b"{}")
    first = channel.try_send(b"{}")
    second = channel.try_send(b"{}")
    assert first is not None
    assert second is not None
    assert channel.try_send(b"{}") is None  # both busy
    assert channel.fallbacks == 1
    await first
    await second


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n"
        b"2\r\n{}\r\n0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}xx",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}extra",
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n bad header\r\nContent-Length: 0\r\n\r\n",
    ],
)
async def test_anything_unexpected_fails_the_request_and_the_connection(
    served: tuple[Server, FastOrderChannel], reply: bytes
) -> None:
    server, channel = served
    server.script = lambda _: reply
    waiter = channel.try_send(b"{}")
    assert waiter is not None
    with pytest.raises(FastPathError):
        await waiter
    await wait_until(lambda: len(list(channel.connections())) == 2)  # replaced
    server.script = lambda _: ok(b"{}")
    again = channel.try_send(b"{}")
    assert again is not None
    assert (await again).status_code == 200


@pytest.mark.asyncio
async def test_chunked_and_interim_answers_keep_the_connection(
    served: tuple[Server, FastOrderChannel],
) -> None:
    server, channel = served
    server.script = lambda _: (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'3;x=y\r\n{"a\r\n4\r\n":1}\r\n0\r\nX-Trailer: t\r\n\r\n'
    )
    for _ in range(4):
        waiter = channel.try_send(b"{}")
        assert waiter is not None
        answer = await waiter
        assert (answer.status_code, answer.content) == (200, b'{"a":1}')
    assert server.connections == 2  # kept alive: no answer was refused
    assert channel.connect_failures == 0


@pytest.mark.asyncio
async def test_an_answer_delimited_by_the_close() -> None:
    async def answer_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{")
            await writer.drain()
            writer.write(b"}")
        writer.close()

    listener = await asyncio.start_server(answer_then_close, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    channel = FastOrderChannel(f"http://127.0.0.1:{port}", "k", connections=1)
    try:
        await channel.start()
        waiter = channel.try_send(b"{}")
        assert waiter is not None
        async with asyncio.timeout(5):
            answer = await waiter
        assert answer.content == b"{}"
        assert channel.connect_failures == 0  # an answer, not a failed attempt
    finally:
        await channel.close()
        listener.close()
        await listener.wait_closed()


@pytest.mark.asyncio
async def test_hang_up_mid_answer_fails_the_request(
    served: tuple[Server, FastOrderChannel],
) -> None:
    server, channel = served
    server.script = lambda _: None
    waiter = channel.try_send(b"{}")
    assert waiter is not None
    with pytest.raises(FastPathError, match="connection lost"):
        await waiter


@pytest.mark.asyncio
async def test_connection_close_header_is_honoured(served: tuple[Server, FastOrderChannel]) -> None:
    server, channel = served
    server.script = lambda _: ok(b"{}", b"Connection: close\r\n")
    waiter = channel.try_send(b"{}")
    assert waiter is not None
    assert (await waiter).status_code == 200
    await wait_until(lambda: server.connections == 3)  # a replacement was opened


@pytest.mark.parametrize("url", ["ftp://exchange.example", "exchange.example:80", "http://"])
def test_only_http_and_https_base_urls(url: str) -> None:
    with pytest.raises(ValueError, match="https://"):
        FastOrderChannel(url, "k")


def test_https_defaults_to_port_443_and_tls() -> None:
    channel = FastOrderChannel("https://exchange.example", "k")
    assert (channel.port, channel.tls is not None) == (443, True)


@pytest.mark.asyncio
async def test_a_listener_that_closes_every_connection_is_retried_slowly() -> None:
    # Input: base_url at a listener that accepts each connection and closes it
    # at once. Reconnecting in a tight loop makes thousands of connections in 3 s.
    accepted = 0

    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writer.close()

    listener = await asyncio.start_server(close_at_once, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    channel = FastOrderChannel(
        f"http://127.0.0.1:{port}", "k", connections=2, backoff_s=0.05, backoff_max_s=1.0
    )
    await channel.start()
    await asyncio.sleep(3.0)
    attempts = channel.connect_attempts
    await channel.close()
    listener.close()
    await listener.wait_closed()
    # Capped doubling from 50 ms with jitter: a couple of dozen at most, not thousands.
    assert 4 <= attempts <= 30
    assert accepted <= attempts
    assert channel.connect_failures >= attempts - channel.size  # each one died unanswered


@pytest.mark.asyncio
async def test_a_connection_that_served_an_answer_resets_the_back_off(
    served: tuple[Server, FastOrderChannel],
) -> None:
    server, channel = served
    channel._failures = 5
    waiter = channel.try_send(b"{}")
    assert waiter is not None
    server.script = lambda _: ok(b"{}", b"Connection: close\r\n")
    assert (await waiter).status_code == 200
    await wait_until(lambda: server.connections == 3)
    assert channel.backoff_delay_s() == 0.0
    assert channel.connect_failures == 0


def test_back_off_doubles_to_its_cap_with_jitter() -> None:
    import random

    channel = FastOrderChannel(
        "http://127.0.0.1:1", "k", backoff_s=0.1, backoff_max_s=1.0, rng=random.Random(3)
    )
    delays = []
    for failures in range(1, 8):
        channel._failures = failures
        delays.append(channel.backoff_delay_s())
    bounds = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    assert all(bound / 2 <= delay < bound for delay, bound in zip(delays, bounds, strict=True))
