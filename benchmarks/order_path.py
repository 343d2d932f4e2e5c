"""Order bookkeeping benchmark: the engine's own work per order, no I/O.

Through ``Engine`` with a sink that sends nothing, each order is:

* ``submit``: ``Engine.submit`` (risk check, the Order, exposure, the
  sink's ``submit``);
* ``answer``: an order answer as the gateway delivers it: its average
  read at the edge (``Instrument.average_to_ticks``) into an
  ``OrderReport``, then ``on_report`` (the ledger credits the position
  from the cumulative fill and average, and ``filled`` closes the order);
* ``feed fill``: the same fill listed later by the fills feed
  (``on_fill`` with a ``FillReport`` carrying its id: counted once,
  nothing credited twice).

Orders alternate buy and sell so the position stays flat; closed orders
are evicted as they age (retention 0.1 s on a clock advanced 1 ms per
order). Figures are nanoseconds per order for each step, p50 and p99 of
per-order timings over all runs, and the median of per-run means.

Run: ``python -m benchmarks.order_path [--orders 20000] [--runs 5] [--fees]``
(``--fees``: with maker and taker rates on the instrument, so that every
credit computes its fee; without, the default rates of zero).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
from pathlib import Path
from time import perf_counter_ns

from benchmarks._common import machine, percentile
from trading_engine import parse_config
from trading_engine.core.clock import ManualClock
from trading_engine.core.orders import Order, OrderStatus, OrderType, TimeInForce
from trading_engine.core.protocol import Side
from trading_engine.core.reports import FillReport, OrderReport
from trading_engine.engine.engine import Engine

SNAPSHOT = (
    b'{"type":"snapshot","symbol":"BTC-USD","seq":1,'
    b'"bids":[["100.00","5"]],"asks":[["100.10","5"]]}'
)


class _Sink:
    """An order sink that sends nothing (only the calls the order path makes)."""

    def allow(self) -> bool:
        return True

    def submit(self, order: Order) -> str | None:
        return None

    def cancel(self, order: Order) -> None:
        pass

    def forget(self, client_order_id: str) -> None:
        pass


#: ``--fees``: maker and taker rates on the instrument (every credit computes a fee).
FEES = {"maker_fee": "-0.0001", "taker_fee": "0.0005"}


def _engine(fees: bool = False) -> tuple[Engine, ManualClock]:
    instrument = {"symbol": "BTC-USD", "tick_size": "0.01", "lot_size": "0.001"}
    config = parse_config(
        {
            "instruments": [{**instrument, **FEES} if fees else instrument],
            "strategies": [
                {
                    "name": "probe",
                    "class": "strategies.template:TemplateStrategy",
                    "symbols": ["BTC-USD"],
                }
            ],
            "risk": {"max_order_quantity": "1", "max_position": "1000", "max_orders_per_s": 5000},
            "engine": {"closed_order_retention_s": 0.1},
        },
        environ={},
    )
    clock = ManualClock(start_ns=10**12)
    engine = Engine(config, clock=clock, run_id="bench", sink=_Sink())  # type: ignore[arg-type]
    engine.builder.handle(SNAPSHOT)
    return engine, clock


def run_once(orders: int, fees: bool = False) -> dict[str, list[int]]:
    engine, clock = _engine(fees)
    runner = engine.runners["probe"]
    instrument = engine.instruments["BTC-USD"]
    timings: dict[str, list[int]] = {"submit": [], "answer": [], "feed fill": []}
    submit_t, answer_t, fill_t = timings["submit"], timings["answer"], timings["feed fill"]
    filled = OrderStatus.FILLED
    limit, gtc = OrderType.LIMIT, TimeInForce.GTC
    gc.collect()
    for i in range(orders):
        side = Side.BUY if i % 2 else Side.SELL
        t0 = perf_counter_ns()
        order, _ = engine.submit(runner, "BTC-USD", side, 10, 10005, limit, gtc)
        t1 = perf_counter_ns()
        assert order is not None
        cid = order.client_order_id
        average = instrument.average_to_ticks("100.05")
        engine.on_report(OrderReport(cid, filled, 10, average))
        t2 = perf_counter_ns()
        engine.on_fill(FillReport(cid, 10005, 10, i + 1))
        t3 = perf_counter_ns()
        submit_t.append(t1 - t0)
        answer_t.append(t2 - t1)
        fill_t.append(t3 - t2)
        clock.advance(0.001)
    assert engine.positions.quantity("BTC-USD") == 0
    assert engine.exposure["BTC-USD"] == [0, 0]
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--fees", action="store_true", help="maker/taker fee rates configured")
    args = parser.parse_args()
    run_once(2_000, args.fees)  # warm-up
    merged: dict[str, list[int]] = {}
    means: dict[str, list[float]] = {}
    for _ in range(args.runs):
        for step, values in run_once(args.orders, args.fees).items():
            merged.setdefault(step, []).extend(values)
            means.setdefault(step, []).append(statistics.fmean(values))
    result = {
        "machine": machine(),
        "orders": args.orders,
        "runs": args.runs,
        "ns_per_order": {
            step: {
                "p50": percentile(sorted(values), 0.5),
                "p99": percentile(sorted(values), 0.99),
                "mean_median_of_runs": statistics.median(means[step]),
            }
            for step, values in merged.items()
        },
    }
    print(f"{'step':<10} {'p50 ns':>8} {'p99 ns':>8} {'mean ns (median of runs)':>26}")
    for step, figures in result["ns_per_order"].items():  # type: ignore[union-attr]
        print(
            f"{step:<10} {figures['p50']:>8.0f} {figures['p99']:>8.0f} "
            f"{figures['mean_median_of_runs']:>26.0f}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
