"""Fast-path answer parsing: the hand-written parser against h11.

Both parse the same ``POST /orders`` answer (an aiohttp.web 200 with a JSON
order body, as the exchange simulator sends it) into a status code,
headers and body, as the fast path needs them. h11 also has to be fed the
request it answers (its state machine checks the exchange); that part is
not timed. Each answer is timed alone (``perf_counter_ns`` around the
parse) after a warm-up; figures are the median over runs of each run's
p50 and p99, in microseconds.

Run: ``python -m benchmarks.fastpath_parser [--answers 20000] [--runs 5]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from time import perf_counter_ns

import h11

from benchmarks._common import machine, percentile
from trading_engine.io.fastpath import FastOrderChannel, _Connection

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


def hand_written(count: int) -> list[int]:
    channel = FastOrderChannel("http://127.0.0.1:1", "k")
    connection = _Connection(channel)
    times = []
    for _ in range(count):
        start = perf_counter_ns()
        connection._buffer += ANSWER
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
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    report: dict[str, object] = {"benchmark": "fastpath_parser", "answers": args.answers}
    for name, run in (("hand-written", hand_written), ("h11", with_h11)):
        run(2_000)  # warm-up
        p50s, p99s = [], []
        for _ in range(args.runs):
            times = sorted(run(args.answers))
            p50s.append(percentile(times, 0.5) / 1000)
            p99s.append(percentile(times, 0.99) / 1000)
        p50, p99 = statistics.median(p50s), statistics.median(p99s)
        report[name] = {"p50_us": p50, "p99_us": p99}
        print(f"{name:13} p50 {p50:7.2f} us   p99 {p99:7.2f} us")
    report["machine"] = machine()
    print(json.dumps(report["machine"]))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
