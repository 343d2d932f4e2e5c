"""``bench``'s rounds: which engine runs each round makes, and how the report reads them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

import trading_engine.commands.bench.orchestration as orchestration
from trading_engine.commands.bench import add_arguments
from trading_engine.commands.bench.orchestration import (
    BINANCE_SYMBOLS,
    EngineCase,
    bench_config,
    run_bench,
)
from trading_engine.commands.bench.ticks import SYMBOL
from trading_engine.commands.cli import main


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--ticks", "10", "--rounds", "1", *argv])


def _recording(monkeypatch: pytest.MonkeyPatch) -> list[EngineCase]:
    """Replace the engine's run with one that records its case and reports fixed figures.

    The Binance dialect's figures are the own dialect's plus 7 us, so what it
    adds is known exactly.
    """
    cases: list[EngineCase] = []

    def run(case: EngineCase) -> dict[str, Any]:
        cases.append(case)
        extra = 7.0 if case.dialect == "binance" else 0.0
        samples = [10.0 + extra + i for i in range(100)]
        return {
            "wire_to_wire_us": samples,
            "ticks": 100,
            "orders": 100,
            "stages_us": {"tick_to_trade": [s / 2 for s in samples]},
            "throughput_msg_per_s": 1000.0,
        }

    monkeypatch.setattr(orchestration, "_engine_case", run)
    return cases


def test_the_engine_journals_and_is_pinned_only_with_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    cases = _recording(monkeypatch)
    run_bench(_args())
    run_bench(_args("--pin"))
    run_bench(_args("--compare-journal"))
    assert [(c.pin, c.journal) for c in cases] == [
        (False, True),
        (True, True),
        (False, True),
        (False, False),  # --compare-journal's second run, and only it, has no journal
    ]


def test_both_dialects_run_every_round_in_alternating_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cases = _recording(monkeypatch)
    report = run_bench(_args("--dialect", "both", "--rounds", "3"))
    assert [c.dialect for c in cases] == ["own", "binance", "binance", "own", "own", "binance"]
    assert report["settings"]["dialects"] == ["own", "binance"]
    assert report["engine"]["dialect"] == "own"
    assert report["engine"]["wire_to_wire_us"]["p50"] == 59.0
    assert report["binance"]["wire_to_wire_us"]["p50"] == 66.0
    assert report["binance"]["orders_per_round"] == [100, 100, 100]
    assert report["binance"]["added_us"] == {
        "wire_to_wire_p50": 7.0,
        "wire_to_wire_p99": 7.0,
        "tick_to_trade_p50": 3.5,
        "tick_to_trade_p99": 3.5,
    }


def test_one_dialect_alone_is_the_engine_section(monkeypatch: pytest.MonkeyPatch) -> None:
    cases = _recording(monkeypatch)
    report = run_bench(_args("--dialect", "binance"))
    assert [c.dialect for c in cases] == ["binance"]
    assert report["engine"]["dialect"] == "binance"
    assert "binance" not in report


def test_the_command_prints_both_dialects(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _recording(monkeypatch)
    report_path = tmp_path / "bench.json"
    argv = ["bench", "--dialect", "both", "--ticks", "10", "--rounds", "1"]
    assert main([*argv, "--max-load", "1000", "--json", str(report_path)]) == 0
    out = capsys.readouterr().out
    assert "order API own and binance" in out
    assert "binance: wire to wire" in out
    assert "binance over own: wire to wire +7.0 us at p50" in out
    assert json.loads(report_path.read_text())["binance"]["added_us"]["wire_to_wire_p99"] == 7.0


def test_a_dialect_outside_the_choices_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bench", "--dialect", "okx"])
    assert exited.value.code == 2
    assert "--dialect" in capsys.readouterr().err


def test_the_binance_configuration_signs_and_trades_its_symbols() -> None:
    config = bench_config("priority", "fast", 1, dialect="binance")
    assert config.gateway.venue == "binance"
    assert config.gateway.api_secret_env is not None
    assert tuple(item.symbol for item in config.instruments) == BINANCE_SYMBOLS
    assert SYMBOL in BINANCE_SYMBOLS
    own = bench_config("priority", "fast", 1)
    assert own.gateway.venue == "own"
    assert len(own.instruments) == 2
