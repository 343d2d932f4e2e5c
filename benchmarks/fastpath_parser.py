"""Fast-path answer parsing: the hand-written parser against h11.

Both parse the same ``POST /orders`` answer (an aiohttp.web 200 with a JSON
order body, as the exchange simulator sends it) into a status code,
headers and body, as the fast path needs them. h11 also has to be fed the
request it answers (its state machine checks the exchange); that part is
not timed. Each answer is timed alone (``perf_counter_ns`` around the
parse) after a warm-up; figures are the median over runs of each run's
p50 and p99, in microseconds. The same answer with a chunked body (two
chunks, as aiohttp streams one) is timed too, for the fast path's slower
branch.

``--against REV`` also times the hand-written parser as it was at git
revision ``REV`` (its ``fastpath.py`` loaded from ``git show``), each run
of it interleaved with a run of today's, so a change to the parser is
measured before and after on the same machine at the same time.

Run: ``python -m benchmarks.fastpath_parser [--answers 20000] [--runs 5] [--against REV]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from time import perf_counter_ns

import h11

from benchmarks._common import machine, percentile
from trading_engine.io import fastpath

BODY = (
    b'{"order_id":"X-17","client_order_id":"taker-tpbc1234-42","status":"filled",'
    b'"filled_quantity":"0.010","avg_price":"100.01","reason":null}'
)
ANSWER = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json; charset=utf-8\r\n"
    b"Content-Length: %d\r\n"
    b"Date: Mon, 30 Nov 2026 11:00:00 GMT\r\n"
    b"Server: Python/3.11 aiohttp/3.9\r\n\r\n%s" % (len(BODY), BODY)
)


CHUNKED = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json; charset=utf-8\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"Date: Mon, 30 Nov 2026 11:00:00 GMT\r\n"
    b"Server: Python/3.11 aiohttp/3.9\r\n\r\n"
    b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (64, BODY[:64], len(BODY) - 64, BODY[64:])
)


def load_revision(revision: str) -> types.ModuleType:
    """``trading_engine/io/fastpath.py`` as of git ``revision``, as a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{revision}:trading_engine/io/fastpath.py"],
        capture_output=True,
        check=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout
    name = "trading_engine.io._fastpath_at_revision"
    module = types.ModuleType(name)
    module.__package__ = "trading_engine.io"  # its relative imports resolve as today's
    sys.modules[name] = module
    exec(compile(source, f"{revision}:trading_engine/io/fastpath.py", "exec"), module.__dict__)
    return module


def hand_written(count: int, module: types.ModuleType = fastpath, raw: bytes = ANSWER) -> list[int]:
    channel = module.FastOrderChannel("http://127.0.0.1:1", "k")
    connection = module._Connection(channel)
    times = []
    for _ in range(count):
        start = perf_counter_ns()
        connection._buffer += raw
        answer = connection._parse()
        times.append(perf_counter_ns() - start)
        assert answer is not None
        assert answer.content == BODY
    return times


def with_h11(count: int) -> list[int]:
    connection = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="POST", target="/orders", headers=[("Host", "x"), ("Content-Length", "2")]
    )
    times = []
    for _ in range(count):
        connection.send(request)
        connection.send(h11.Data(data=b"{}"))
        connection.send(h11.EndOfMessage())
        start = perf_counter_ns()
        connection.receive_data(ANSWER)
        head = connection.next_event()
        assert isinstance(head, h11.Response)
        body = b""
        while True:
            event = connection.next_event()
            if isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in head.headers}
        times.append(perf_counter_ns() - start)
        assert head.status_code == 200
        assert body == BODY
        assert headers["content-length"] == str(len(BODY))
        connection.start_next_cycle()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--against", metavar="REV", help="also time the parser at git REV")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    report: dict[str, object] = {"benchmark": "fastpath_parser", "answers": args.answers}
    runs: list[tuple[str, Callable[[int], list[int]]]] = [("hand-written", hand_written)]
    if args.against:
        before = load_revision(args.against)
        runs.insert(0, (f"at {args.against}", lambda n: hand_written(n, before)))
    runs.append(("chunked", lambda n: hand_written(n, raw=CHUNKED)))
    runs.append(("h11", with_h11))
    for _, run in runs:
        run(2_000)  # warm-up
    p50s: dict[str, list[float]] = {name: [] for name, _ in runs}
    p99s: dict[str, list[float]] = {name: [] for name, _ in runs}
    for _ in range(args.runs):
        for name, run in runs:  # interleaved: each run of each under the same conditions
            times = sorted(run(args.answers))
            p50s[name].append(percentile(times, 0.5) / 1000)
            p99s[name].append(percentile(times, 0.99) / 1000)
    for name, _ in runs:
        p50, p99 = statistics.median(p50s[name]), statistics.median(p99s[name])
        report[name] = {"p50_us": p50, "p99_us": p99}
        print(f"{name:16} p50 {p50:7.2f} us   p99 {p99:7.2f} us")
    report["machine"] = machine()
    print(json.dumps(report["machine"]))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
