"""The fast path's answer parser, fed bytes directly (no sockets).

Every valid answer is also fed split at every byte, so no framing depends
on how the kernel happens to cut the stream.
"""

from __future__ import annotations

import asyncio

import pytest

from trading_engine.io.fastpath import (
    Answer,
    FastOrderChannel,
    FastPathError,
    UnparsedAnswer,
    _Connection,
)

BODY = b'{"order_id":"X-1","status":"new"}'


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


def connection() -> tuple[_Connection, asyncio.Future[Answer], _Transport]:
    channel = FastOrderChannel("http://127.0.0.1:1", "k")
    channel._closed = True  # nothing re-opens a connection behind the test
    conn = _Connection(channel)
    transport = _Transport()
    conn.transport = transport
    waiter: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
    conn.waiter = waiter
    return conn, waiter, transport


async def parse(*pieces: bytes, eof: bool = False) -> Answer:
    """The answer the parser makes of ``pieces`` (fed one by one); raises what it raises."""
    conn, waiter, _ = connection()
    for piece in pieces:
        conn.data_received(piece)
    if eof:
        conn.eof_received()
    assert waiter.done(), "the answer is incomplete"
    return waiter.result()


async def every_split(raw: bytes, eof: bool = False) -> Answer:
    """Parse ``raw`` whole and split at every byte; all must agree."""
    whole = await parse(raw, eof=eof)
    for cut in range(1, len(raw)):
        split = await parse(raw[:cut], raw[cut:], eof=eof)
        assert (split.status_code, split.headers, split.content) == (
            whole.status_code,
            whole.headers,
            whole.content,
        ), f"split at {cut}"
    return whole


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
    b"5\r\n" + BODY[:5] + b"\r\n"
    b'1c;name=value;other="q"\r\n' + BODY[5:] + b"\r\n"
    b"0\r\n\r\n"
)


@pytest.mark.asyncio
async def test_a_chunked_body_with_extensions() -> None:
    answer = await every_split(CHUNKED)
    assert (answer.status_code, answer.content) == (200, BODY)
    assert answer.headers["transfer-encoding"] == "chunked"


@pytest.mark.asyncio
async def test_a_chunked_body_with_trailer_fields_and_upper_case_sizes() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n"
        b"A ; ext\r\n0123456789\r\n"
        b"0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n"
    )
    answer = await every_split(raw)
    assert answer.content == b"0123456789"
    assert "x-checksum" not in answer.headers  # trailer fields are read, then dropped


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "interim",
    [
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n",
    ],
)
async def test_interim_answers_before_the_final_one(interim: bytes) -> None:
    final = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
    answer = await every_split(interim + final)
    assert (answer.status_code, answer.content) == (200, BODY)
    assert "link" not in answer.headers


@pytest.mark.asyncio
async def test_an_interim_answer_then_a_chunked_final_one() -> None:
    answer = await every_split(b"HTTP/1.1 100 Continue\r\n\r\n" + CHUNKED)
    assert answer.content == BODY


@pytest.mark.asyncio
async def test_a_body_delimited_by_the_close() -> None:
    conn, waiter, transport = connection()
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + BODY[:9])
    conn.data_received(BODY[9:])
    assert not waiter.done()  # it ends only when the peer closes
    conn.eof_received()
    assert waiter.result().content == BODY
    assert conn.closed
    assert transport.aborted
    assert not conn.failed


@pytest.mark.asyncio
@pytest.mark.parametrize("code", [204, 304])
async def test_204_and_304_have_no_body(code: int) -> None:
    answer = await every_split(b"HTTP/1.1 %d X\r\nServer: x\r\n\r\n" % code)
    assert (answer.status_code, answer.content) == (code, b"")


@pytest.mark.asyncio
async def test_repeated_fields_folding_and_a_list_of_equal_lengths() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nVia: a\r\nVia: b\r\n"
        b"X-Long: one\r\n  two\r\n\r\n{}"
    )
    answer = await every_split(raw)
    assert answer.content == b"{}"
    assert answer.headers["via"] == "a, b"
    assert answer.headers["x-long"] == "one two"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("raw", "why"),
    [
        # Both framings: RFC 9112 6.3 says the message is unreadable (smuggling).
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n"
         b"2\r\n{}\r\n0\r\n\r\n", "beside a Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"2\r\n{}\r\n0\r\n\r\n", "beside a Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVia: a\r\nVia: b\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", "beside a Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "transfer coding"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\n{}\r\n0\r\n\r\n",
         "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n;x\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}xx0\r\n\r\n", "CRLF"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n",
         "trailer"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nHTTP", "beyond"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffff\r\n", "too large"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", "101"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\n{}", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n{}", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n", "unreadable number"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}extra", "beyond"),
        (b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", "status line"),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", "status line"),
        (b"HTTP/1.1 200 OK\r\n bad header\r\nContent-Length: 0\r\n\r\n", "header line"),
        (b"HTTP/1.1 200 OK\r\nName : x\r\nContent-Length: 0\r\n\r\n", "header line"),
    ],
)  # fmt: skip
async def test_what_the_parser_refuses(raw: bytes, why: str) -> None:
    conn, waiter, transport = connection()
    conn.data_received(raw)
    with pytest.raises(UnparsedAnswer, match=why):
        waiter.result()
    assert conn.closed
    assert transport.aborted
    assert conn.failed


@pytest.mark.asyncio
async def test_a_reset_mid_answer_is_no_unparsed_answer() -> None:
    # The peer's failure, not the client's refusal: the gateway counts it against the venue.
    conn, waiter, _ = connection()
    conn.data_received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{")
    conn.connection_lost(ConnectionResetError())
    with pytest.raises(FastPathError) as caught:
        waiter.result()
    assert not isinstance(caught.value, UnparsedAnswer)


@pytest.mark.asyncio
async def test_a_body_delimited_by_the_close_is_lost_on_a_reset() -> None:
    conn, waiter, _ = connection()
    conn.data_received(b"HTTP/1.1 200 OK\r\n\r\n{")
    conn.connection_lost(ConnectionResetError())  # no orderly close: it may be cut short
    with pytest.raises(FastPathError, match="connection lost"):
        waiter.result()
