"""What the order journal costs on the order path, and how long its transactions take.

Three measurements, each repeated ``--rounds`` times (medians, with the
runs' spread):

* ``record``: one ``Journal.order_submitted`` call, the only journal work
  between a strategy's ``submit`` and its return (a tuple appended to a
  list), timed over a batch of 10,000 calls;
* ``submit``: ``Engine.submit`` of one IOC order through the in-process
  venue, which answers synchronously (accepted, fill, status): every
  listener method and its journal call runs inside the timed call; with
  and without a journal, interleaved in the same process;
* ``transaction``: writing one batch as the journal's thread does (10
  orders: each submitted, accepted, filled, closed: 60 rows) to a file in a
  temporary folder, ``synchronous = NORMAL``, WAL.

    python benchmarks/journal.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import machine, percentile, summarize

from trading_engine.config import parse_config
from trading_engine.core.clock import ManualClock
from trading_engine.core.orders import Order, OrderStatus, OrderType, TimeInForce
from trading_engine.core.protocol import Side
from trading_engine.engine.engine import Engine
from trading_engine.io.journal import Journal
from trading_engine.sim.venue import simulated_venue

BATCH = 10_000


def make_engine(journal: Journal | None) -> Engine:
    config = parse_config(
        {
            "gateway": {"mode": "simulated"},
            "risk": {"max_position": "1000000", "max_orders_per_s": 10**9,
                     "max_order_notional": "1000000000"},
            "instruments": [{"symbol": "BTC-USD", "tick_size": "0.01", "lot_size": "0.001"}],
            "strategies": [{"name": "s", "class": "tests.fakes:Probe", "symbols": ["BTC-USD"]}],
        },
        environ={},
    )  # fmt: skip
    engine = Engine(config, clock=ManualClock(start_ns=1), sink_factory=simulated_venue)
    if journal is not None:
        engine.attach_journal(journal)
    engine.builder.handle(
        b'{"type":"snapshot","symbol":"BTC-USD","seq":1,"bids":[["99.99","1000"]],'
        b'"asks":[["100.01","1000"]]}'
    )
    return engine


def time_submit(engine: Engine, count: int) -> list[int]:
    runner = engine.runners["s"]
    samples = []
    clock = time.perf_counter_ns
    for _ in range(count):
        started = clock()
        engine.submit(runner, "BTC-USD", Side.BUY, 1, 10_001, OrderType.LIMIT, TimeInForce.IOC)
        samples.append(clock() - started)
    return samples


def record_ns(journal: Journal) -> float:
    orders = [
        Order(f"s-r-{n}", "s", "BTC-USD", Side.BUY, OrderType.LIMIT, 1, 10_000, TimeInForce.IOC)
        for n in range(BATCH)
    ]
    started = time.perf_counter_ns()
    for order in orders:
        journal.order_submitted(order)
    elapsed = time.perf_counter_ns() - started
    journal._take()  # not written: only the recording is timed
    return elapsed / BATCH


def transaction_us(journal: Journal, ids: itertools.count[int]) -> float:
    for _ in range(10):
        order = Order(
            f"s-r-{next(ids)}", "s", "BTC-USD", Side.BUY, OrderType.LIMIT, 2, 10_000,
            TimeInForce.IOC,
        )  # fmt: skip
        journal.order_submitted(order)
        order.exchange_order_id = "X"
        journal.order_accepted(order)
        order.add_fill(10_000, 2)
        journal.fill(order.client_order_id, "s", "BTC-USD", "buy", 10_000, 2, next(ids))
        order.transition(OrderStatus.FILLED)
        journal.order_status(order)
    batch = journal._take()
    started = time.perf_counter_ns()
    error = journal._write(batch)
    assert error is None, error
    return (time.perf_counter_ns() - started) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--orders", type=int, default=20_000, help="submits per case per round")
    args = parser.parse_args()
    results: dict[str, list[float]] = {
        "record_ns": [], "submit_p50_us_off": [], "submit_p50_us_on": [],
        "submit_p99_us_off": [], "submit_p99_us_on": [], "transaction_p50_us": [],
        "transaction_p99_us": [],
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        for round_number in range(args.rounds):
            journal = Journal.open(str(Path(folder) / f"j{round_number}.db"))
            results["record_ns"].append(record_ns(journal))
            for case in ("off", "on"):
                engine = make_engine(journal if case == "on" else None)
                samples = sorted(time_submit(engine, args.orders))
                results[f"submit_p50_us_{case}"].append(percentile(samples, 0.5) / 1000)
                results[f"submit_p99_us_{case}"].append(percentile(samples, 0.99) / 1000)
                journal._take()
            ids = itertools.count(1)
            transactions = sorted(transaction_us(journal, ids) for _ in range(300))
            results["transaction_p50_us"].append(percentile(transactions, 0.5))
            results["transaction_p99_us"].append(percentile(transactions, 0.99))
            journal.close()
    report: dict[str, Any] = {
        "machine": machine(),
        "rounds": args.rounds,
        **{name: summarize(values) for name, values in results.items()},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
