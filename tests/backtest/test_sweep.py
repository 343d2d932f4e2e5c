"""Parameter sweeps: the grid, the local pool, a Dask cluster, failures kept as rows."""

from __future__ import annotations

import argparse
import csv
from collections.abc import Iterator, Mapping
from pathlib import Path

import orjson
import pytest

from trading_engine.backtest.analytics import analyze, decimal_text
from trading_engine.backtest.result import BacktestResult, FillRecord, MarkSample
from trading_engine.backtest.sweep import (
    MAX_COMBINATIONS,
    SweepError,
    SweepResult,
    SweepRow,
    SweepSpecError,
    add_sweep_arguments,
    combinations,
    nested_parameters,
    parse_sweep,
    run_sweep,
    sweep_command,
)
from trading_engine.core.instruments import Instrument
from trading_engine.core.protocol import Side

from ..helpers import free_port
from .test_analytics import BTC, S, _meta

GRID = {"mm.spread": ["1", "2", "3"], "mm.size": ["1", "4"]}


def fake_backtest(params: Mapping[str, str]) -> BacktestResult:
    """A deterministic result: buy ``size`` at mid - spread, then sell it at mid + spread.

    ``mm.spread=boom`` raises, as a failing backtest would.
    """
    spread = int(params.get("mm.spread", "1"))
    size = int(params.get("mm.size", "1"))
    fills = [
        FillRecord(0, "mm", BTC, "b", Side.BUY, 10_000 - spread, size, "maker", 1),
        FillRecord(S, "mm", BTC, "s", Side.SELL, 10_000 + spread, size, "maker", 1),
    ]
    marks = [MarkSample(t * S, BTC, 9_999, 10_001) for t in range(3)]
    return BacktestResult(
        _meta(0, 2 * S), {BTC: Instrument(BTC, "0.01", "0.001")}, ("mm",), fills, [], marks,
        {("mm", BTC): 0},
    )  # fmt: skip


def _expected_pnl(spread: int, size: int) -> str:
    # 2 * spread ticks on `size` lots, less two fees of 1 unit, in units of 0.00001.
    return decimal_text(analyze(fake_backtest({"mm.spread": str(spread), "mm.size": str(size)}))
                        .currencies["USD"].pnl.total)  # fmt: skip


def test_parse_and_combine() -> None:
    grid = parse_sweep(["mm.spread=1,2,3", " mm.size = 1, 4 "])
    assert grid == GRID
    combos = combinations(grid)
    assert len(combos) == 6
    assert combos[0] == {"mm.spread": "1", "mm.size": "1"}
    assert combos[1] == {"mm.spread": "1", "mm.size": "4"}
    assert combinations({}) == [{}]
    assert nested_parameters({"mm.spread": "2", "mm.size": "4", "tk.edge": "1"}) == {
        "mm": {"spread": "2", "size": "4"},
        "tk": {"edge": "1"},
    }


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["mm.spread"], "expected STRATEGY.PARAM=V1,V2"),
        (["spread=1,2"], "is not STRATEGY.PARAM"),
        (["mm.spread="], "needs non-empty values"),
        (["mm.spread=1,,2"], "needs non-empty values"),
        (["mm.spread=1,2,1"], "repeats 1"),
        (["mm.spread=1", "mm.spread=2"], "swept twice"),
        ([f"a.b={','.join(map(str, range(101)))}", f"a.c={','.join(map(str, range(100)))}"],
         f"more than {MAX_COMBINATIONS}"),
    ],
)  # fmt: skip
def test_bad_specs_are_one_line(specs: list[str], message: str) -> None:
    with pytest.raises(SweepSpecError, match=message) as info:
        parse_sweep(specs)
    assert "\n" not in str(info.value)


def _check_rows(rows: tuple[object, ...]) -> None:
    for row, combo in zip(rows, combinations(GRID), strict=True):
        assert row.parameters == combo  # type: ignore[attr-defined]
        want = _expected_pnl(int(combo["mm.spread"]), int(combo["mm.size"]))
        assert row.figures["USD"].pnl_net == want  # type: ignore[attr-defined]


def test_serial_sweep() -> None:
    result = run_sweep(GRID, fake_backtest, workers=1)
    assert result.executor == "serial"
    assert result.failed == 0
    _check_rows(result.rows)
    # Spread 3, size 4: 6 ticks on 4 lots = 24 units, less 2 of fees.
    assert result.rows[5].figures["USD"].pnl_net == "0.00022"


def test_local_process_pool_sweep_with_a_failure(tmp_path: Path) -> None:
    grid = {"mm.spread": ["1", "boom", "3"], "mm.size": ["2"]}
    result = run_sweep(grid, fake_backtest, workers=2)
    assert result.executor == "processes:2"
    assert result.failed == 1
    assert [row.index for row in result.rows] == [0, 1, 2]
    failed = result.rows[1]
    assert failed.error is not None
    assert failed.error.startswith("ValueError: invalid literal")
    assert failed.figures == {}
    assert result.rows[2].figures["USD"].pnl_net == _expected_pnl(3, 2)
    paths = result.write(tmp_path)
    assert [p.name for p in paths] == ["sweep.csv", "sweep.json", "sweep.png"]
    with paths[0].open(encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert [r["status"] for r in table] == ["ok", "error", "ok"]
    assert table[1]["error"] == failed.error
    assert table[1]["pnl_net_USD"] == ""
    assert table[2]["mm.spread"] == "3"
    assert table[2]["pnl_net_USD"] == _expected_pnl(3, 2)
    assert table[2]["max_drawdown_USD"] == result.rows[2].figures["USD"].max_drawdown
    doc = orjson.loads(paths[1].read_bytes())
    assert (doc["combinations"], doc["failed"]) == (3, 1)
    assert doc["rows"][0]["pnl_net_USD"] == _expected_pnl(1, 2)
    assert doc["interval_ns"] == S
    assert paths[2].read_bytes().startswith(b"\x89PNG")


@pytest.fixture
def dask_cluster() -> Iterator[str]:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, protocol="tcp://",
        host="127.0.0.1", scheduler_port=0, dashboard_address="127.0.0.1:0",
    ) as cluster:  # fmt: skip
        yield str(cluster.scheduler_address)


@pytest.mark.timeout(120)
def test_dask_cluster_sweep(dask_cluster: str) -> None:
    assert dask_cluster.startswith("tcp://127.0.0.1:")
    result = run_sweep(
        GRID | {"mm.spread": ["1", "2", "boom"]}, fake_backtest, cluster=dask_cluster
    )
    assert result.executor == f"dask:{dask_cluster}"
    assert len(result.rows) == 6
    assert result.failed == 2
    assert [r.index for r in result.rows] == list(range(6))
    assert [r.error is None for r in result.rows] == [True, True, True, True, False, False]
    assert result.rows[3].figures["USD"].pnl_net == _expected_pnl(2, 4)


def test_unreachable_cluster_is_an_error() -> None:
    pytest.importorskip("distributed")
    with pytest.raises(SweepError, match="cannot reach the Dask scheduler"):
        run_sweep(GRID, fake_backtest, cluster=f"tcp://127.0.0.1:{free_port()}",
                  connect_timeout_s=1.0)  # fmt: skip


@pytest.mark.parametrize("address", ["127.0.0.1:8786", "http://h:1", "tcp://", "tcp://h:1/x"])
def test_bad_cluster_address(address: str) -> None:
    with pytest.raises(SweepSpecError, match="--cluster"):
        run_sweep(GRID, fake_backtest, cluster=address)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_sweep_arguments(parser)
    return parser.parse_args(argv)


def test_command_writes_the_table(tmp_path: Path) -> None:
    lines: list[str] = []
    args = _args("--sweep", "mm.spread=1,2", "--sweep", "mm.size=3", "--workers", "1")
    assert sweep_command(args, fake_backtest, tmp_path, out=lines.append) == 0
    assert lines[0].startswith("sweep: 2 combinations on serial")
    assert (tmp_path / "sweep.csv").read_text(encoding="utf-8").count("\n") == 3


def test_command_exit_codes(tmp_path: Path) -> None:
    lines: list[str] = []
    assert (
        sweep_command(_args("--sweep", "spread=1"), fake_backtest, tmp_path, out=lines.append) == 2
    )
    assert lines == ["error: --sweep 'spread=1': 'spread' is not STRATEGY.PARAM (a strategy name, "
                     "a dot, a parameter name)"]  # fmt: skip
    lines.clear()
    args = _args("--sweep", "mm.spread=1,boom", "--workers", "1")
    assert sweep_command(args, fake_backtest, tmp_path, out=lines.append) == 1
    assert lines[1].startswith("failed: {'mm.spread': 'boom'}: ValueError")
    # The fake's times are the epoch's: the one row that ran says so once.
    assert lines[2:] == [
        "note: the data starts at 1970-01-01T00:00:00.000000000Z, before 2000: are its times in "
        "the unit its format has (Tardis CSV: us since the epoch; captures: ns)?"
    ]
    with pytest.raises(argparse.ArgumentError, match="positive integer"):
        _args("--workers", "0")
    assert sweep_command(_args("--sweep", "mm.a=1", "--cluster", "x"), fake_backtest, tmp_path,
                         out=lines.append) == 2  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_dask_cluster_of_worker_processes() -> None:
    """Workers in their own processes: run_one and rows cross by pickle, as on a real cluster."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        scheduler_port=0, dashboard_address="127.0.0.1:0",
    ) as cluster:  # fmt: skip
        result = run_sweep(GRID, fake_backtest, cluster=str(cluster.scheduler_address))
    assert result.failed == 0
    _check_rows(result.rows)


def test_backtest_job_loads_the_config_and_sets_the_parameters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The job's contract with the runner: the config loaded in the worker, nested overrides."""
    import pickle
    import sys
    import types

    from trading_engine.backtest.sweep import BacktestJob

    calls: list[tuple[object, list[Path], dict[str, object]]] = []

    class Options:
        def __init__(self, **fields: object) -> None:
            self.fields = fields

    def run_backtest(config: object, data: list[Path], options: Options) -> BacktestResult:
        calls.append((config, data, options.fields))
        return fake_backtest({})

    runner = types.ModuleType("trading_engine.backtest.runner")
    runner.BacktestOptions = Options  # type: ignore[attr-defined]
    runner.run_backtest = run_backtest  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "trading_engine.backtest.runner", runner)
    job = pickle.loads(pickle.dumps(BacktestJob(None, ("a.csv.gz", "b.csv"), {"seed": 7})))
    result = job({"market_maker.spread_ticks": "3", "market_maker.size": "0.002"})
    assert result.fills == fake_backtest({}).fills
    ((config, data, fields),) = calls
    assert type(config).__name__ == "Config"
    assert data == [Path("a.csv.gz"), Path("b.csv")]
    assert fields == {
        "seed": 7,
        "parameters": {"market_maker": {"spread_ticks": "3", "size": "0.002"}},
    }


_MM_CONFIG = (
    '[[instruments]]\nsymbol = "XMRBTC"\ntick_size = "0.000001"\nlot_size = "0.001"\n'
    '[[strategies]]\nname = "mm"\nclass = "market_maker"\nsymbols = ["XMRBTC"]\n'
    'params = { quantity = "0.5", max_inventory = "5" }\n'
    '[journal]\npath = ":memory:"\n'
)


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        # A parameter the strategy does not have.
        ("mm.no_such_param=1,2", "mm.no_such_param=1: strategies[0].params.no_such_param"),
        # A value of the wrong type, and one off the instrument's grid.
        ("mm.half_spread_ticks=1,two", "mm.half_spread_ticks=two: strategies[0].params."),
        ("mm.quantity=0.5,0.0005", "mm.quantity=0.0005: strategies[0].params.quantity"),
        # A strategy that is not configured.
        ("nobody.quantity=1", "--sweep nobody.quantity: no strategy named 'nobody'"),
        # A typo: the closest parameter is named.
        (
            "mm.half_spread_tick=1,2",
            "not permitted (value '1'); did you mean `--sweep mm.half_spread_ticks=...`?",
        ),
    ],
)
def test_a_sweep_value_the_strategy_refuses_is_a_usage_error_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str, names: str
) -> None:
    from trading_engine.commands.cli import main

    from .test_runner import TARDIS

    cfg = tmp_path / "bt.toml"
    cfg.write_text(_MM_CONFIG)
    out = tmp_path / "sweep"
    code = main(["backtest", "--config", str(cfg), str(TARDIS), "--report", str(out),
                 "--workers", "1", "--sweep", spec])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1, err
    assert names in err[0]
    assert not out.exists()  # refused before any combination ran


def test_notes_of_some_rows_name_their_combinations() -> None:
    rows = (
        SweepRow(0, {"a.x": "1"}, notes=("left out: gap 1", "mm: 2 hook errors, the last E")),
        SweepRow(1, {"a.x": "2"}, notes=("left out: gap 1",)),
        SweepRow(2, {"a.x": "3"}, error="ValueError: no"),
        SweepRow(3, {"a.x": "4"}, notes=("left out: gap 1", "mm: 2 hook errors, the last E")),
    )
    result = SweepResult({"a.x": ["1", "2", "3", "4"]}, rows, 1, "serial", 0.0)
    assert result.notes() == [
        "left out: gap 1",
        "mm: 2 hook errors, the last E (combinations 0, 3)",
    ]
    assert [row["notes"] for row in result.table()] == [
        "left out: gap 1; mm: 2 hook errors, the last E", "left out: gap 1", "",
        "left out: gap 1; mm: 2 hook errors, the last E",
    ]  # fmt: skip


def test_a_hook_error_with_line_breaks_is_one_note() -> None:
    import dataclasses

    row = {"errors": 5, "last": "ValueError: a\nnote: fake\r\n b", "disabled": None}
    meta = dataclasses.replace(_meta(first=10**18), strategy_errors={"evil": row})
    assert meta.notes() == ["evil: 5 hook errors, the last ValueError: a note: fake b"]
