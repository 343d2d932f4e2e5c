"""Replay is deterministic: the same capture and config give the same orders and PnL."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes import config
from trading_engine import Instrument
from trading_engine.commands.cli import main
from trading_engine.io.capture import CaptureWriter
from trading_engine.sim.publisher import random_walk_stream
from trading_engine.sim.replay import replay_file

ROOT = Path(__file__).resolve().parents[2]
STRATEGIES = [
    {"name": "taker", "class": "threshold", "symbols": ["BTC-USD"],
     "params": {"side": "buy", "trigger_price": "100.00", "quantity": "0.01", "cooldown_s": 0.01}},
    {"name": "maker", "class": "market_maker", "symbols": ["ETH-USD"],
     "params": {"quantity": "0.05", "max_inventory": "1"}},
    {"name": "momentum", "class": "imbalance", "symbols": ["BTC-USD", "ETH-USD"],
     "params": {"quantity": "0.01", "max_position": "0.2", "threshold": 0.3}},
]  # fmt: skip


def write_capture(path: Path, frames: int = 5000) -> None:
    instruments = [Instrument("BTC-USD", "0.01", "0.001"), Instrument("ETH-USD", "0.01", "0.001")]
    writer = CaptureWriter(path)
    stream = random_walk_stream(instruments, seed=11, snapshot_every=997)
    for i, frame in enumerate(itertools.islice(stream, frames)):
        writer.write(1_000_000_000 + i * 1_000_000, frame[:-1])  # 1 ms apart
    writer.write(1_000_000_000 + frames * 1_000_000, b"not json")
    writer.close()


def test_the_same_capture_gives_the_same_orders_and_pnl(tmp_path: Path) -> None:
    path = tmp_path / "feed.capture"
    write_capture(path)
    cfg = config(STRATEGIES, risk={"max_orders_per_s": 1000})
    first = replay_file(cfg, str(path))
    second = replay_file(cfg, str(path))
    assert first.frames == 5001
    assert len(first.order_log) > 50
    assert first.fills > 10
    assert first.order_log == second.order_log
    assert first.positions == second.positions
    assert first.orders == second.orders
    assert first.rejected == {"malformed_json": 1}
    assert all("-replay-" in entry[0] for entry in first.order_log)  # fixed run id


def test_the_order_log_lists_orders_the_engine_no_longer_keeps(tmp_path: Path) -> None:
    path = tmp_path / "feed.capture"
    write_capture(path, frames=2000)
    kept = replay_file(config(STRATEGIES, risk={"max_orders_per_s": 1000}), str(path))
    evicting = replay_file(
        config(
            STRATEGIES,
            risk={"max_orders_per_s": 1000},
            engine={"closed_order_retention_s": 0.0},
        ),
        str(path),
    )
    assert len(evicting.order_log) == evicting.orders["submitted"] > 20
    assert evicting.order_log == kept.order_log


def test_replay_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "feed.capture"
    write_capture(path, 2000)
    cfg_path = tmp_path / "engine.toml"
    cfg_path.write_text((ROOT / "config" / "engine.toml").read_text())
    assert main(["replay", str(path), "--config", str(cfg_path), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    done = subprocess.run(
        [sys.executable, "-m", "trading_engine", "replay", str(path), "--config", str(cfg_path),
         "--json"], capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    second = json.loads(done.stdout)
    assert first["order_log"] == second["order_log"]
    assert first["positions"] == second["positions"]
    assert first["frames"] == 2001


def test_replay_of_a_missing_or_bad_file_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["replay", str(tmp_path / "nope")]) == 2
    bad = tmp_path / "bad.capture"
    bad.write_bytes(b"no tab here\n")
    assert main(["replay", str(bad)]) == 2
