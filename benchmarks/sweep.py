"""Parameter sweep speed-up: ``trading-engine backtest --sweep`` over 8 sets, serial vs 2 processes.

The input is ``benchmarks/backtest.py``'s: a seeded random walk of two
symbols written as a Tardis.dev book CSV and trades CSV (gzip), run with
its four strategies, the ``prob`` queue model and its latencies (so each
set is run twice: with latency, and without for the comparison). The
sweep is 4 ``half_spread_ticks`` x 2 ``quantity`` of the market maker.
Each configuration runs the real command in a fresh process, timed from
start to exit (interpreter start-up, data reading, the pool's or the
cluster client's start-up and the report table included):

* ``--workers 1``: the 8 backtests one after the other in the command's process;
* ``--workers 2``: a pool of 2 spawned processes;
* ``--dask``: also ``--cluster`` on a Dask LocalCluster of 2 worker
  processes (one thread each) started by this script before the timing.

Two figures per configuration, each the ratio of its median to the serial
one: the command's wall time, and the sweep's own (``sweep.json``
``wall_s``: the backtests, the pool's or the client's start-up and the
gathering, without the command's start-up and the table's plot, which
are the same in every configuration).

Run: ``python -m benchmarks.sweep [--messages 25000] [--runs 3] [--dask]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import machine, summarize
    from backtest import SYMBOLS, write_data
else:
    from ._common import machine, summarize
    from .backtest import SYMBOLS, write_data

SWEEP = ["maker.half_spread_ticks=1,2,3,4", "maker.quantity=0.05,0.1"]

# benchmarks/backtest.py's configuration, as the command reads it.
CONFIG = (
    "".join(
        f'[[instruments]]\nsymbol = "{s}"\ntick_size = "0.01"\nlot_size = "0.001"\n'
        f'maker_fee = "0.0001"\ntaker_fee = "0.0005"\n\n'
        for s in SYMBOLS
    )
    + """[[strategies]]
name = "taker"
class = "threshold"
symbols = ["BTC-USD"]
params = { side = "buy", trigger_price = "99.00", quantity = "0.01", cooldown_s = 0.5 }

[[strategies]]
name = "maker"
class = "market_maker"
symbols = ["BTC-USD", "ETH-USD"]
params = { quantity = "0.05", max_inventory = "1", requote_interval_s = 0.05 }

[[strategies]]
name = "momentum"
class = "imbalance"
symbols = ["BTC-USD", "ETH-USD"]
params = { quantity = "0.01", max_position = "0.2", threshold = 0.5, cooldown_s = 0.5 }

[[strategies]]
name = "template"
class = "template"
symbols = ["ETH-USD"]
params = { quantity = "0.001", max_spread_ticks = 1 }

[risk]
max_orders_per_s = 1000
max_position = "1000"

[journal]
path = ":memory:"

[backtest]
queue_model = "prob"
feed_latency_us = 50
order_latency_us = 200
response_latency_us = 200
"""
)


def sweep_once(directory: Path, data: list[Path], extra: list[str]) -> tuple[float, dict[str, Any]]:
    """Run the command once; returns (wall seconds, its sweep.json)."""
    report = directory / "report"
    command = [
        sys.executable, "-m", "trading_engine", "backtest", "--config",
        str(directory / "engine.toml"), *map(str, data), "--report", str(report),
    ]  # fmt: skip
    for spec in SWEEP:
        command += ["--sweep", spec]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_ENGINE__")}
    started = time.perf_counter()
    done = subprocess.run(command + extra, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(extra)}: exit {done.returncode}: {done.stdout}{done.stderr}")
    table: dict[str, Any] = json.loads((report / "sweep.json").read_text())
    return wall, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=25_000, help="messages in the input")
    parser.add_argument("--runs", type=int, default=3, help="sweeps per configuration")
    parser.add_argument("--dask", action="store_true", help="also on a Dask LocalCluster")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        data = write_data(directory, args.messages)
        (directory / "engine.toml").write_text(CONFIG)
        configs: list[tuple[str, list[str]]] = [
            ("serial", ["--workers", "1"]),
            ("processes:2", ["--workers", "2"]),
        ]
        cluster = None
        if args.dask:
            from distributed import LocalCluster

            cluster = LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                scheduler_port=0, dashboard_address="127.0.0.1:0",
            )  # fmt: skip
            configs.append(("dask:2 processes", ["--cluster", cluster.scheduler_address]))
        figures: dict[str, Any] = {
            "machine": machine(),
            "messages": args.messages,
            "sweep": SWEEP,
            "load_before": os.getloadavg(),
        }
        try:
            for _ in range(args.runs):
                # Interleaved, so that a change of load on the machine hits every configuration.
                for name, extra in configs:
                    wall, table = sweep_once(directory, data, extra)
                    entry = figures.setdefault(name, {"walls": [], "sweeps": [], "set_s": []})
                    entry["walls"].append(round(wall, 3))
                    entry["sweeps"].append(round(table["wall_s"], 3))
                    entry["set_s"] += [row["wall_s"] for row in table["rows"]]
                    entry["fills"] = [row["fills"] for row in table["rows"]]
        finally:
            if cluster is not None:
                cluster.close()
        figures["load_after"] = os.getloadavg()
    serial = summarize(figures["serial"]["walls"])["median"]
    serial_sweep = summarize(figures["serial"]["sweeps"])["median"]
    for name, _ in configs:
        entry = figures[name]
        entry["wall_s"] = summarize(entry.pop("walls"))
        entry["sweep_s"] = summarize(entry.pop("sweeps"))
        sets = sorted(entry.pop("set_s"))
        entry["set_s_median"] = round(sets[len(sets) // 2], 3)
        entry["ratio_to_serial"] = round(entry["wall_s"]["median"] / serial, 3)
        entry["sweep_ratio_to_serial"] = round(entry["sweep_s"]["median"] / serial_sweep, 3)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
