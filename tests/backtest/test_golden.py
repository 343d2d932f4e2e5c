"""A backtest's orders, fills, marks and PnL stay exactly what they were.

Each case runs the shipped strategies over a fixed input and compares a
digest of everything the run decided (every order record, fill record,
mark, end position and the zero-latency comparison) with the one recorded
in ``golden.json``. Speeding up the data path, the books, the dispatcher or
a strategy must leave these unchanged: a strategy that computes a quote
one tick differently, a book update applied in another order or a message
split in two changes the digest.

``golden.json`` was computed by the code before the throughput work on
the backtest; to record it again after a change that is meant to change
results (and say why in the commit), run
``python -m tests.backtest.test_golden``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from benchmarks.backtest import config as benchmark_config
from benchmarks.backtest import write_data
from tests.sim.test_replay import write_capture as write_random_capture
from trading_engine.backtest.result import BacktestResult
from trading_engine.backtest.runner import BacktestOptions, run_backtest
from trading_engine.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("golden.json")
BINANCE = ROOT / "tests" / "data" / "venues" / "binance" / "xmrbtc_session.capture"
TARDIS = ROOT / "tests" / "data" / "tardis" / "binance_incremental_book_L2_2021-08-14_XMRBTC.csv.gz"

#: The four shipped strategies on the recorded XMRBTC session (tick 0.000001).
XMRBTC = {
    "instruments": [{"symbol": "XMRBTC", "tick_size": "0.000001", "lot_size": "0.001",
                     "maker_fee": "0.001", "taker_fee": "0.001"}],
    "strategies": [
        {"name": "mm", "class": "market_maker", "symbols": ["XMRBTC"],
         "params": {"quantity": "0.5", "max_inventory": "5", "half_spread_ticks": 1,
                    "skew_ticks": 3}},
        {"name": "taker", "class": "threshold", "symbols": ["XMRBTC"],
         "params": {"side": "sell", "trigger_price": "0.005770", "quantity": "0.2"}},
        {"name": "momentum", "class": "imbalance", "symbols": ["XMRBTC"],
         "params": {"quantity": "0.1", "max_position": "1", "threshold": 0.2, "levels": 5}},
        {"name": "template", "class": "template", "symbols": ["XMRBTC"],
         "params": {"quantity": "0.01", "max_spread_ticks": 10}},
    ],
    "journal": {"path": ":memory:"},
    "backtest": {"queue_model": "front", "order_latency_us": 20},
}  # fmt: skip


def digest(result: BacktestResult) -> dict[str, Any]:
    """Counts, end positions and a SHA-256 over every order, fill and mark of ``result``."""
    document = orjson.loads(result.to_json())
    document["meta"].pop("wall_s")
    document["meta"].pop("data")  # the input's paths: a temporary directory
    document["meta"].pop("skipped_by_file")  # by path too; their sum is `skipped`
    if not document["meta"]["strategy_errors"]:
        # Recorded before the field existed; a run with errors keeps it.
        document["meta"].pop("strategy_errors")
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return {
        "orders": len(result.orders),
        "fills": len(result.fills),
        "marks": len(result.marks),
        "events": result.meta.events,
        "frames": result.meta.frames,
        "end_positions": {f"{s} {y}": q for (s, y), q in sorted(result.end_positions.items())},
        "fees": sum(f.fee for f in result.fills),
        "sha256": hashlib.sha256(canonical).hexdigest(),
    }


def _benchmark(directory: Path) -> BacktestResult:
    # The benchmark's input and configuration, smaller; the zero-latency run too.
    return run_backtest(benchmark_config(), write_data(directory, 12_000), BacktestOptions())


def _engine_capture(directory: Path) -> BacktestResult:
    path = directory / "feed.capture"
    write_random_capture(path, frames=4000)
    return run_backtest(benchmark_config(), [path], BacktestOptions(compare_zero_latency=False))


def _xmrbtc_venue(directory: Path) -> BacktestResult:
    options = BacktestOptions(sample_interval_ns=1)
    return run_backtest(parse_config(XMRBTC, environ={}), [BINANCE], options)


def _xmrbtc_tardis(directory: Path) -> BacktestResult:
    options = BacktestOptions(sample_interval_ns=1)
    return run_backtest(parse_config(XMRBTC, environ={}), [TARDIS], options)


CASES: dict[str, Callable[[Path], BacktestResult]] = {
    "benchmark_tardis_12000": _benchmark,
    "engine_capture_4000": _engine_capture,
    "xmrbtc_venue_capture": _xmrbtc_venue,
    "xmrbtc_tardis": _xmrbtc_tardis,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_run_decides_what_it_decided_before(case: str, tmp_path: Path) -> None:
    expected = json.loads(GOLDEN.read_text())[case]
    assert digest(CASES[case](tmp_path)) == expected


def test_the_golden_runs_trade() -> None:
    # A digest of runs that send nothing would guard nothing.
    golden = json.loads(GOLDEN.read_text())
    assert golden["benchmark_tardis_12000"]["fills"] > 20
    assert golden["engine_capture_4000"]["fills"] > 20
    assert golden["xmrbtc_venue_capture"]["orders"] > 2
    assert golden["xmrbtc_tardis"]["orders"] > 2


def _record() -> None:
    import tempfile

    golden: dict[str, Any] = {}
    for name, case in sorted(CASES.items()):
        with tempfile.TemporaryDirectory() as tmp:
            golden[name] = digest(case(Path(tmp)))
    GOLDEN.write_text(json.dumps(golden, indent=2, sort_keys=True) + "\n")
    json.dump(golden, sys.stdout, indent=2, sort_keys=True)


if __name__ == "__main__":
    _record()
