"""``bench`` on a loaded machine says so: on stderr, in the report and in its JSON."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import pytest

import trading_engine.commands.bench as bench
from trading_engine.commands.bench.report import build_report, load, load_note
from trading_engine.commands.cli import main


def test_load_per_core_above_the_threshold_is_loaded() -> None:
    busy = load(0.5, lambda: (3.0, 2.0, 1.0), cores=2)
    assert busy == {"load_1m": 3.0, "cores": 2, "per_core": 1.5, "threshold": 0.5, "loaded": True}
    note = load_note(busy)
    assert note is not None
    assert "load average 3.00 over 2 core(s) (1.50 per core, above 0.5)" in note
    assert "not comparable" in note
    idle = load(0.5, lambda: (0.8, 0.5, 0.2), cores=2)
    assert idle["loaded"] is False
    assert load_note(idle) is None


def test_no_load_average_is_not_loaded() -> None:
    def missing() -> tuple[float, float, float]:
        raise OSError("no load average here")

    found = load(0.5, missing, cores=4)
    assert found["loaded"] is False
    assert found["load_1m"] is None


def _fake_run(args: argparse.Namespace) -> dict[str, Any]:
    samples = [10.0 + i for i in range(100)]
    engine = {
        "wire_to_wire_us": samples,
        "stages_us": {"tick_to_trade": samples},
        "throughput_msg_per_s": 1000.0,
        "orders": 100,
    }
    return build_report(args, [{"engine": engine}])


@pytest.mark.parametrize(("load_1m", "loaded"), [(5.0, True), (0.1, False)])
def test_bench_says_the_machine_was_loaded(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    load_1m: float,
    loaded: bool,
) -> None:
    monkeypatch.setattr(bench, "run_bench", _fake_run)
    monkeypatch.setattr(os, "getloadavg", lambda: (load_1m, 0.0, 0.0))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    report_path = tmp_path / "bench.json"
    assert main(["bench", "--json", str(report_path)]) == 0
    out, err = capsys.readouterr()
    report = json.loads(report_path.read_text())
    assert report["load"]["loaded"] is loaded
    assert report["load"]["load_1m"] == load_1m
    assert report["load"]["cores"] == 2
    if loaded:
        assert "trading-engine bench: warning: load average 5.00 over 2 core(s)" in err
        assert out.startswith("WARNING: load average 5.00")
        assert "not comparable" in out
    else:
        assert "load average" not in err + out


def test_a_negative_max_load_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--max-load", "-1"]) == 2
    assert "--max-load" in capsys.readouterr().err
