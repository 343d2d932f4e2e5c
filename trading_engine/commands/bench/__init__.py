"""``trading-engine bench``: wire-to-wire tick-to-trade on loopback.

Three processes, one clock (CLOCK_MONOTONIC, which every process on a
Linux host shares)::

    publisher process ──ticks──► engine (this process) ──orders──► exchange process
    stamps each tick when        the default pipeline with          (the exchange simulator)
    it is sent                   ThresholdTaker, fast path          stamps each order when
                                                                    its first bytes arrive

Each tick moves the best ask to a price no other tick of the run has
within 4,000 ticks, and ThresholdTaker buys at the best ask on every
tick, so each order names the tick that caused it by its price. The
wire-to-wire latency of an order is its arrival stamp minus its tick's
send stamp. The engine's own stages (feed handling, strategy, risk, tick
to order written, order round trip) are recorded sample by sample.

After the latency ticks the publisher moves the ask above the trigger and
sends a burst of updates as fast as it can: the engine's throughput is
that burst's size over the time the engine took to apply it.

``--dialect`` chooses the order API: the project's own (the default), Binance
spot against the simulator's Binance dialect, or ``both`` in every round
(their order swapped every other round), the second reported beside the
first with the difference.

``--baseline`` runs, in the same rounds, the naive engine in
``benchmarks/naive_engine.py`` (stdlib json, a SortedDict book, an
``asyncio.gather`` of tasks per update, a new ``httpx.AsyncClient`` per
order) against the same publisher and exchange, and reports the ratio.
``--compare-metrics`` also runs the engine with its latency histograms
replaced by no-ops, to show what metrics cost; ``--compare-journal``
also runs it without the order journal (which the engine otherwise
writes to an SQLite file in a temporary folder), to show what the
journal costs in latency and throughput.

The package: ``ticks`` (the publisher process), ``orchestration`` (the
processes of a round), ``stats`` (percentiles), ``report`` and ``plot``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ...core.errors import ConfigError
from .orchestration import DIALECTS, EngineCase, run_bench
from .plot import plot
from .report import LOADED_PER_CORE, load, load_note, machine, print_report
from .stats import percentile, percentiles, wire_to_wire

__all__ = [
    "EngineCase",
    "add_arguments",
    "machine",
    "main",
    "percentile",
    "percentiles",
    "run_bench",
    "wire_to_wire",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ticks", type=int, default=1000, help="latency ticks per round")
    parser.add_argument("--interval-ms", type=float, default=2.0, help="time between ticks")
    parser.add_argument("--burst", type=int, default=50000, help="updates in the throughput burst")
    parser.add_argument(
        "--background-rate",
        type=float,
        default=5000.0,
        help="updates per second of a second, untraded symbol between the ticks (0: none)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of ticks and bursts")
    parser.add_argument(
        "--loop",
        choices=("priority", "asyncio", "uvloop"),
        default="priority",
        help="the engine's event loop",
    )
    parser.add_argument(
        "--gateway", choices=("fast", "httpx"), default="fast", help="the engine's order path"
    )
    parser.add_argument(
        "--dialect",
        choices=tuple(DIALECTS),
        default="own",
        help="the order API: the project's own against exchange-sim, Binance spot (signed, "
        "HMAC-SHA256) against exchange-sim --dialect binance, or both in each round "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--busy-poll-s",
        type=float,
        default=0.0,
        metavar="S",
        help="engine.busy_poll_s for the engine (priority loop; default 0: sleep when idle)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin the engine to the last CPU and the publisher and exchange to the others "
        "(default: off)",
    )
    parser.add_argument(
        "--baseline", action="store_true", help="also run the naive engine (default: off)"
    )
    parser.add_argument(
        "--baseline-ticks", type=int, default=100, help="ticks per round for the baseline"
    )
    parser.add_argument(
        "--baseline-interval-ms",
        type=float,
        default=100.0,
        help="time between the baseline's ticks: it needs tens of ms per order, and a "
        "shorter interval measures its queue instead of its latency",
    )
    parser.add_argument("--baseline-script", metavar="FILE", help=argparse.SUPPRESS)
    parser.add_argument(
        "--compare-metrics",
        action="store_true",
        help="also run with latency metrics off (default: off)",
    )
    parser.add_argument("--json", metavar="FILE", help="write the report as JSON (default: none)")
    parser.add_argument(
        "--max-load",
        type=float,
        default=LOADED_PER_CORE,
        metavar="L",
        help="1-minute load average per core above which the report says the machine was "
        "loaded and its figures are not comparable",
    )
    parser.add_argument(
        "--plot", metavar="FILE", help="write a PNG percentile plot (matplotlib; default: none)"
    )
    parser.add_argument(
        "--compare-journal",
        action="store_true",
        help="also run without the order journal (default: off; the runs write one to a "
        "temporary folder)",
    )


def main(args: argparse.Namespace) -> int:
    from ...lowlevel.logs import configure

    configure("error")
    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        # Checked before the runs (minutes), not when their report is written.
        folder = Path(path).parent if path else None
        if folder is not None and not folder.is_dir():
            message = f"{flag}: no folder {folder} to write {path} in"
            raise ConfigError(message, [message])
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ConfigError(
                "--plot needs matplotlib: pip install 'trading-engine[plot]'", []
            ) from None
    found = load(args.max_load)
    note = load_note(found)
    if note is not None:
        print(f"trading-engine bench: warning: {note}", file=sys.stderr, flush=True)
    report = run_bench(args)
    report["load"] = found
    print_report(report)
    if args.json:
        Path(args.json).write_text(
            json.dumps({k: v for k, v in report.items() if k != "_samples"}, indent=2)
        )
    if args.plot:
        plot(report, args.plot)
    return 0
