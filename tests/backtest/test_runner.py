"""run_backtest: fills computed by hand, latency, fees, determinism, recorded venue data."""

from __future__ import annotations

import gc
import gzip
import sys
from pathlib import Path

import orjson
import pytest

from tests.backtest.helpers import MS, T0, book, once, trade, write_capture
from tests.backtest.strategies import Watch
from tests.fakes import config
from tests.sim.test_replay import STRATEGIES
from tests.sim.test_replay import write_capture as write_random_capture
from trading_engine.backtest.result import BacktestResult
from trading_engine.backtest.runner import BacktestOptions, run_backtest
from trading_engine.config import parse_config
from trading_engine.sim.replay import replay_file

ROOT = Path(__file__).resolve().parents[2]
BINANCE = ROOT / "tests" / "data" / "venues" / "binance" / "xmrbtc_session.capture"
TARDIS = ROOT / "tests" / "data" / "tardis" / "binance_incremental_book_L2_2021-08-14_XMRBTC.csv.gz"


def fills_of(result: BacktestResult) -> list[tuple[int, int, int, str, int]]:
    return [(f.ts_ns - T0, f.price, f.quantity, f.liquidity, f.fee) for f in result.fills]


def aggressive_market(tmp_path: Path) -> Path:
    return write_capture(
        tmp_path / "aggressive.capture",
        [
            (T0, book("snapshot", 1, [["100.00", "1.000"]], [["100.10", "2.000"]])),
            # Half a millisecond later the ask at 100.10 is down to 0.5.
            (T0 + MS // 2, book("update", 2, [], [["100.10", "0.500"]])),
            (T0 + 2 * MS, book("update", 3, [["99.99", "1.000"]], [])),
        ],
    )


def test_an_aggressive_order_meets_the_book_of_its_arrival(tmp_path: Path) -> None:
    data = [aggressive_market(tmp_path)]
    # IOC buy of 1.5 (1500 lots) at 100.10 (10010 ticks), decided on the snapshot at T0.
    now = run_backtest(once("100.10", 1500, tif="IOC"), data)
    # No latency: it meets the ask of 2.0: 1500 lots taker, fee 1500 * 10010 * 0.001 = 15015.
    assert fills_of(now) == [(0, 10010, 1500, "taker", 15015)]
    assert now.end_positions == {("once", "BTC-USD"): 1500}
    assert now.latency_effect == {}
    # 1 ms to the venue: it arrives after the ask fell to 0.5: 500 lots, fee 5005; the rest
    # is canceled.
    late = run_backtest(once("100.10", 1500, tif="IOC", order_latency_us=1000), data)
    assert fills_of(late) == [(MS, 10010, 500, "taker", 5005)]
    [order] = late.orders
    assert (order.decided_ns, order.arrived_ns) == (T0, T0 + MS)
    assert (order.filled, order.status) == (500, "canceled")
    # The difference from no latency is in the result, not hidden.
    effect = late.latency_effect["once BTC-USD"]
    assert (effect["filled_lots"], effect["filled_lots_zero_latency"]) == (500, 1500)
    assert (effect["fees"], effect["fees_zero_latency"]) == (5005, 15015)
    assert (effect["position"], effect["position_zero_latency"]) == (500, 1500)
    assert BacktestResult.from_json(late.to_json()).latency_effect == late.latency_effect


def test_strategy_timers_fire_on_the_datas_clock(tmp_path: Path) -> None:
    # Every 1 ms of data time from the start, the data's first event (T0): the
    # clock moves to T0 + 0.5 ms (not due) and T0 + 2 ms (due at T0 + 1 ms: it
    # fires once, however far behind it fell). Never at the epoch.
    data = [aggressive_market(tmp_path)]
    cfg = config(
        [{"name": "timed", "class": "tests.backtest.strategies:OnTimer", "symbols": ["BTC-USD"],
          "timer_s": 0.001}],
        instruments=[{"symbol": "BTC-USD", "tick_size": "0.01", "lot_size": "0.001"}],
    )  # fmt: skip
    result = run_backtest(cfg, data)
    assert [order.decided_ns - T0 for order in result.orders] == [2 * MS]
    assert result.meta.denied == {}
    assert 0 < result.meta.wall_s < 60  # the run's own time, not the process's
    # From --from: the first timer is due one interval after it.
    later = run_backtest(cfg, data, BacktestOptions(from_ns=T0 + MS // 4))
    assert [order.decided_ns - T0 for order in later.orders] == [2 * MS]
    sooner = run_backtest(
        cfg.model_copy(update={"strategies": [
            cfg.strategies[0].model_copy(update={"timer_s": 0.0002})
        ]}),
        data,
        BacktestOptions(from_ns=T0 + MS // 4),
    )  # fmt: skip
    # Due at T0 + 0.45 ms: fires at T0 + 0.5 ms, then at T0 + 2 ms.
    assert [order.decided_ns - T0 for order in sooner.orders] == [MS // 2, 2 * MS]


def test_a_run_keeps_the_configured_collector_threshold_and_leaves_hooks_untimed(
    tmp_path: Path,
) -> None:
    # The run collects under [engine] gc_threshold, as a live engine does, and
    # puts the process's thresholds back; in data time a hook takes no time,
    # so no hook is timed on the wall clock.
    Watch.thresholds.clear()
    Watch.timed_evaluations.clear()
    cfg = config(
        [{"name": "watch", "class": "tests.backtest.strategies:Watch", "symbols": ["BTC-USD"]}],
        engine={"gc_threshold": 12_345},
    )
    before = gc.get_threshold()
    assert before[0] != 12_345
    run_backtest(cfg, [aggressive_market(tmp_path)])
    assert gc.get_threshold() == before
    assert [threshold[0] for threshold in Watch.thresholds] == [12_345] * 3
    assert Watch.timed_evaluations == [0]


def queue_market(tmp_path: Path) -> Path:
    return write_capture(
        tmp_path / "queue.capture",
        [
            (T0, book("snapshot", 1, [["100.00", "1.000"]], [["100.10", "2.000"]])),
            (T0 + 1 * MS, trade(2, "100.00", "0.990", "sell")),
            # The venue's book shows the traded lots leaving: 1.000 -> 0.010.
            (T0 + 2 * MS, book("update", 3, [["100.00", "0.010"]], [])),
            (T0 + 3 * MS, trade(4, "100.00", "0.012", "sell")),
            (T0 + 4 * MS, trade(5, "100.00", "0.004", "sell")),
        ],
    )


@pytest.mark.parametrize("model", ["front", "prob"])
def test_a_resting_order_fills_when_the_trades_reach_it(tmp_path: Path, model: str) -> None:
    # A buy of 5 lots at 100.00 joins 1000 lots. Sells of 990 leave 10 ahead (the update
    # that shows them moves nothing), 12 fill 2 of ours, 4 more fill the other 3.
    # Maker rebate 0.0001: ceil(-10000 * 2 * 0.0001) = -2, ceil(-10000 * 3 * 0.0001) = -3.
    result = run_backtest(once("100.00", 5, queue_model=model), [queue_market(tmp_path)])
    assert fills_of(result) == [
        (3 * MS, 10000, 2, "maker", -2),
        (4 * MS, 10000, 3, "maker", -3),
    ]
    assert result.orders[0].status == "filled"
    assert result.end_positions == {("once", "BTC-USD"): 5}
    assert result.meta.fill_model == model if model == "front" else "prob(n=3)"


def test_without_a_queue_model_a_resting_order_waits_for_the_touch(tmp_path: Path) -> None:
    # The replay's rule: a bid fills only when an ask reaches it; these sells never do.
    result = run_backtest(once("100.00", 5, queue_model="none"), [queue_market(tmp_path)])
    assert result.fills == []
    assert result.orders[0].status == "new"


def test_the_ledger_charges_the_fees_the_fills_report(tmp_path: Path) -> None:
    cfg = config(
        STRATEGIES,
        risk={"max_orders_per_s": 1000},
        instruments=[
            {"symbol": s, "tick_size": "0.01", "lot_size": "0.001", "maker_fee": "0.0002",
             "taker_fee": "0.0007"} for s in ("BTC-USD", "ETH-USD")
        ],
    )  # fmt: skip  # type: ignore[arg-type]
    path = tmp_path / "feed.capture"
    write_random_capture(path, frames=3000)
    result = run_backtest(cfg, [path])
    assert {f.liquidity for f in result.fills} == {"maker", "taker"}
    fees: dict[tuple[str, str], int] = {}
    lots: dict[tuple[str, str], int] = {}
    for fill in result.fills:
        key = (fill.strategy, fill.symbol)
        fees[key] = fees.get(key, 0) + fill.fee
        lots[key] = lots.get(key, 0) + (fill.quantity if fill.side == "buy" else -fill.quantity)
    assert all(fee > 0 for fee in fees.values())
    assert lots == {key: value for key, value in result.end_positions.items() if key in lots}


def without_wall_time(result: BacktestResult) -> dict[str, object]:
    data = orjson.loads(result.to_json())
    data["meta"]["wall_s"] = 0
    return data  # type: ignore[no-any-return]


def test_the_same_inputs_give_the_same_result(tmp_path: Path) -> None:
    path = tmp_path / "feed.capture"
    write_random_capture(path, frames=3000)
    samples = tmp_path / "latency.txt"
    samples.write_text("\n".join(str(50 + 37 * i % 900) for i in range(200)))
    cfg = config(
        STRATEGIES,
        risk={"max_orders_per_s": 1000},
        backtest={"order_latency_file": str(samples), "feed_latency_us": 150, "seed": 3},
    )
    first = run_backtest(cfg, [path])
    second = run_backtest(cfg, [path])
    assert len(first.fills) > 10
    assert len(first.orders) > 50
    assert without_wall_time(first) == without_wall_time(second)
    assert "sampled" in first.meta.order_latency
    other_seed = run_backtest(cfg, [path], BacktestOptions(seed=4))
    assert without_wall_time(other_seed) != without_wall_time(first)


def test_from_and_to_bound_the_trading(tmp_path: Path) -> None:
    data = [queue_market(tmp_path)]
    # Trading from T0 + 2 ms: the order is decided on the update at 2 ms, behind 10 lots
    # (the snapshot and the first trade built the book unseen): 12 fill 2, 4 fill 3.
    result = run_backtest(once("100.00", 5), data, BacktestOptions(from_ns=T0 + 2 * MS))
    assert result.orders[0].decided_ns == T0 + 2 * MS
    assert fills_of(result) == [(3 * MS, 10000, 2, "maker", -2), (4 * MS, 10000, 3, "maker", -3)]
    cut = run_backtest(once("100.00", 5), data, BacktestOptions(to_ns=T0 + 3 * MS))
    assert fills_of(cut) == [(3 * MS, 10000, 2, "maker", -2)]
    assert cut.meta.last_ns == T0 + 3 * MS
    assert cut.meta.frames == 4


def test_strategy_parameters_can_be_set_per_run(tmp_path: Path) -> None:
    data = [aggressive_market(tmp_path)]
    result = run_backtest(
        once("100.10", 1500, tif="IOC"), data, BacktestOptions(parameters={"once": {"lots": "700"}})
    )
    assert fills_of(result) == [(0, 10010, 700, "taker", 7007)]
    assert result.meta.parameters == {"once.lots": "700"}
    with pytest.raises(ValueError, match="not configured"):
        run_backtest(once("100.10", 1), data, BacktestOptions(parameters={"nobody": {"a": "1"}}))


XMRBTC = {
    "instruments": [{"symbol": "XMRBTC", "tick_size": "0.000001", "lot_size": "0.001",
                     "maker_fee": "0.001", "taker_fee": "0.001"}],
    "strategies": [{"name": "mm", "class": "market_maker", "symbols": ["XMRBTC"],
                    "params": {"quantity": "0.5", "max_inventory": "5", "half_spread_ticks": 1}}],
    "journal": {"path": ":memory:"},
}  # fmt: skip


def test_a_recorded_binance_session_runs_through_the_live_decoder() -> None:
    result = run_backtest(parse_config(XMRBTC, environ={}), [BINANCE])
    meta = result.meta
    # 17 venue lines: the snapshot and 9 XMRBTC depth events reach the books (the one
    # before the snapshot is buffered by the dialect and applied with it).
    assert meta.frames == 10
    assert meta.skipped == {"venue_unknown_symbol": 2, "venue_unsubscribed_stream": 4}
    assert len(result.orders) >= 2
    assert {o.strategy for o in result.orders} == {"mm"}
    assert all(o.arrived_ns == o.decided_ns for o in result.orders)


def book_states(result: BacktestResult) -> list[tuple[int | None, int | None]]:
    states: list[tuple[int | None, int | None]] = []
    for mark in result.marks:
        if not states or states[-1] != (mark.bid, mark.ask):
            states.append((mark.bid, mark.ask))
    return states


def test_the_tardis_file_gives_the_same_book_as_the_venue_messages() -> None:
    cfg = parse_config(XMRBTC, environ={})
    every = BacktestOptions(sample_interval_ns=1)
    venue = run_backtest(cfg, [BINANCE], every)
    tardis = run_backtest(cfg, [TARDIS], every)
    assert tardis.meta.skipped == {"before_snapshot": 2}
    assert len(book_states(venue)) >= 2
    assert book_states(tardis) == book_states(venue)


def market_maker_config(tmp_path: Path, name: str = "mm", taker_fee: str = "0") -> Path:
    """bt.toml in ``tmp_path``: XMRBTC and one market maker ``name``, no journal file."""
    cfg = tmp_path / "bt.toml"
    cfg.write_text(
        '[[instruments]]\nsymbol = "XMRBTC"\ntick_size = "0.000001"\nlot_size = "0.001"\n'
        f'taker_fee = "{taker_fee}"\n'
        f'[[strategies]]\nname = "{name}"\nclass = "market_maker"\nsymbols = ["XMRBTC"]\n'
        'params = { quantity = "0.5", max_inventory = "5" }\n'
        '[journal]\npath = ":memory:"\n'
    )
    return cfg


def test_the_command_writes_the_result_and_refuses_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trading_engine.commands.cli import main

    cfg = market_maker_config(tmp_path, taker_fee="0.001")
    out = tmp_path / "result.json"
    code = main(["backtest", "--config", str(cfg), str(BINANCE), str(TARDIS), "--json", str(out),
                 "--from", "2021-08-14T14:46:36Z", "--to", "1628952398000000000"])  # fmt: skip
    assert code == 0
    result = BacktestResult.from_json(out.read_bytes())
    assert result.meta.from_ns == 1628952396_000_000_000
    assert result.meta.to_ns == 1628952398_000_000_000
    assert result.meta.last_ns is not None
    assert result.meta.last_ns <= 1628952398_000_000_000
    assert "backtest:" in capsys.readouterr().out
    bad = tmp_path / "bad.dat"
    bad.write_text("nothing\n")
    assert main(["backtest", "--config", str(cfg), str(bad)]) == 2
    assert "unknown format" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["backtest", "--config", str(cfg), str(BINANCE), "--from", "yesterday"])
    assert exited.value.code == 2
    assert "neither ns since the epoch nor an RFC 3339 time" in capsys.readouterr().err
    assert (
        main(
            [
                "backtest",
                "--config",
                str(cfg),
                str(BINANCE),
                "--from",
                "300000000000000000",
                "--to",
                "200000000000000000",
            ]
        )
        == 2
    )


def test_bad_report_and_config_paths_are_one_line_errors_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--report naming a file or a path that cannot be made, and --config naming
    a directory: exit 2 with one line naming it, before any backtest runs."""
    from trading_engine.commands.cli import main

    cfg = market_maker_config(tmp_path)
    for report, expected in (
        (str(cfg), f"--report: {cfg} exists and is not a directory"),
        (str(cfg / "sub"), f"--report: cannot create {cfg / 'sub'}: "),
    ):
        for extra in ([], ["--sweep", "mm.quantity=0.5,1"]):
            code = main(["backtest", "--config", str(cfg), str(TARDIS), "--report", report, *extra])
            err = capsys.readouterr().err
            assert code == 2, err
            assert expected in err
            assert "Traceback" not in err
            assert err.count("\n") == 1
    code = main(["backtest", "--config", str(tmp_path), str(TARDIS)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{tmp_path}: cannot read: Is a directory" in err
    assert err.count("\n") == 1


def test_with_no_latency_and_no_queue_a_backtest_is_the_replay(tmp_path: Path) -> None:
    # replay reruns a live session (tests/integration/test_replay_fidelity.py); a backtest
    # with no latency and the replay's fill rule gives the same orders, fills and positions.
    path = tmp_path / "feed.capture"
    write_random_capture(path, frames=3000)
    cfg = config(STRATEGIES, risk={"max_orders_per_s": 1000}, backtest={"queue_model": "none"})
    replayed = replay_file(cfg, str(path))
    result = run_backtest(cfg, [path])
    assert len(result.orders) > 100
    mine = []
    for o in result.orders:
        # replay cancels what still rests when the data ends; a backtest reports it as it is.
        status = "canceled" if o.status in ("new", "partially_filled") else o.status
        cid = o.client_order_id.replace("-backtest-", "-replay-")
        mine.append((cid, o.symbol, o.side.value, o.quantity, o.price, status, o.filled))
    assert mine == replayed.order_log
    assert len(result.fills) == replayed.fills
    lots: dict[str, int] = {}
    for (_, symbol), position in result.end_positions.items():
        lots[symbol] = lots.get(symbol, 0) + position
    assert {
        symbol: result.instruments[symbol].format_size(q) for symbol, q in lots.items() if q
    } == {symbol: p["quantity"] for symbol, p in replayed.positions.items()}


def test_the_command_sweeps_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import csv

    from trading_engine.commands.cli import main

    cfg = market_maker_config(tmp_path)
    report = tmp_path / "report"
    code = main(["backtest", "--config", str(cfg), str(TARDIS), "--report", str(report)])
    assert code == 0
    assert {"report.html", "report.json"} <= {p.name for p in report.iterdir()}
    sweep = tmp_path / "sweep"
    code = main(["backtest", "--config", str(cfg), str(TARDIS), "--report", str(sweep),
                 "--workers", "1", "--sweep", "mm.half_spread_ticks=1,2",
                 "--sweep", "mm.quantity=0.5,1"])  # fmt: skip
    assert code == 0
    with (sweep / "sweep.csv").open() as table:
        rows = list(csv.DictReader(table))
    assert [(r["mm.half_spread_ticks"], r["mm.quantity"], r["status"]) for r in rows] == [
        ("1", "0.5", "ok"), ("1", "1", "ok"), ("2", "0.5", "ok"), ("2", "1", "ok")
    ]  # fmt: skip
    capsys.readouterr()
    bad = ["backtest", "--config", str(cfg), str(TARDIS), "--sweep", "no-equals-sign"]
    assert main(bad) == 2


@pytest.mark.parametrize(
    ("bounds", "says"),
    [
        (["--from", "2030-01-01T00:00:00Z"], "the data ends at 2021-08-14T14:46:38"),
        (["--to", "2000-01-01T00:00:00Z"], "the data starts after --to"),
        # The file runs to 14:46:38: an empty range inside it is not its end.
        (
            ["--from", "2021-08-14T14:46:36.5Z", "--to", "2021-08-14T14:46:37Z"],
            "the last event up to --to is at 2021-08-14T14:46:36",
        ),
    ],
)
def test_a_range_outside_the_data_is_said_not_silent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bounds: list[str], says: str
) -> None:
    from trading_engine.commands.cli import main

    cfg = tmp_path / "bt.toml"
    cfg.write_text(
        '[[instruments]]\nsymbol = "XMRBTC"\ntick_size = "0.000001"\nlot_size = "0.001"\n'
        '[journal]\npath = ":memory:"\n'
    )
    assert main(["backtest", "--config", str(cfg), str(TARDIS), *bounds]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "no data in the range" in err[0]
    assert says in err[0]
    # Inside the data, nothing is said.
    assert main(["backtest", "--config", str(cfg), str(TARDIS)]) == 0
    assert capsys.readouterr().err == ""


def test_a_time_in_seconds_is_not_taken_for_nanoseconds(tmp_path: Path) -> None:
    from trading_engine.commands.cli import main

    cfg = tmp_path / "bt.toml"
    cfg.write_text(
        '[[instruments]]\nsymbol = "XMRBTC"\ntick_size = "0.000001"\nlot_size = "0.001"\n'
        '[journal]\npath = ":memory:"\n'
    )
    try:
        code = main(["backtest", "--config", str(cfg), str(TARDIS), "--from", "1628952397"])
    except SystemExit as exited:
        code = exited.code
    assert code == 2


def test_a_backtest_without_a_configuration_file_says_it_uses_the_built_in_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from trading_engine.commands.cli import main

    monkeypatch.chdir(tmp_path)  # no config/engine.toml here
    assert main(["backtest", str(TARDIS)]) == 0
    err = capsys.readouterr().err
    assert "backtest: the built-in default configuration (no --config and no " in err


def test_the_summary_names_every_strategy_and_a_range_past_the_data_in_utc(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trading_engine.commands.cli import main

    cfg = market_maker_config(tmp_path, "idle")
    code = main(["backtest", "--config", str(cfg), str(TARDIS), "--from", "2030-01-01T00:00:00Z"])
    captured = capsys.readouterr()
    assert code == 0
    assert "  idle: no orders" in captured.out
    assert "the data ends at 2021-08-14T" in captured.err
    assert "Z (1628" in captured.err


def write_gzip(path: Path, *lines: str) -> Path:
    """``lines`` (a CSV's header and rows) gzip-compressed into ``path``."""
    path.write_bytes(gzip.compress("".join(line + "\n" for line in lines).encode()))
    return path


def test_a_data_file_given_twice_is_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Merged with itself, every event of the file would count twice."""
    from trading_engine.commands.cli import main

    cfg = market_maker_config(tmp_path)
    link = tmp_path / "same.csv.gz"
    link.symlink_to(TARDIS)
    for data, says in (
        ([TARDIS, TARDIS], f"DATA: {TARDIS} is given twice"),
        ([TARDIS, link], f"DATA: {link} is given twice ({TARDIS} and {link} are one file)"),
    ):
        code = main(["backtest", "--config", str(cfg), *map(str, data), "--json", "-"])
        captured = capsys.readouterr()
        assert code == 2
        assert captured.err == f"trading-engine: {says}\n"
        assert captured.out == ""


def test_workers_and_cluster_without_a_sweep_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trading_engine.commands.cli import main

    cfg = market_maker_config(tmp_path)
    for flag, value in (("--workers", "2"), ("--cluster", "tcp://127.0.0.1:1")):
        code = main(["backtest", "--config", str(cfg), str(TARDIS), flag, value])
        captured = capsys.readouterr()
        assert code == 2
        assert captured.err == f"trading-engine: {flag}: only for a sweep (add --sweep)\n"
        assert captured.out == ""
    both = ["--sweep", "mm.quantity=0.5,1", "--workers", "2", "--cluster", "tcp://127.0.0.1:1"]
    assert main(["backtest", "--config", str(cfg), str(TARDIS), *both]) == 2
    err = capsys.readouterr().err
    assert err == "trading-engine: --workers: local processes or --cluster, not both\n"


def test_a_sweep_refuses_an_unreadable_data_file_before_any_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trading_engine.commands.cli import main

    cfg = market_maker_config(tmp_path)
    missing = tmp_path / "missing.csv.gz"
    sweep = ["--sweep", "mm.quantity=0.5,1", "--workers", "1", "--report", str(tmp_path / "r")]
    assert main(["backtest", "--config", str(cfg), str(TARDIS), str(missing), *sweep]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert str(missing) in captured.err
    assert not (tmp_path / "r" / "sweep.csv").exists()


def test_a_directory_named_twice_gets_the_readers_error_not_given_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trading_engine.commands.cli import main

    cfg = market_maker_config(tmp_path)
    folder = tmp_path / "data"
    folder.mkdir()
    assert main(["backtest", "--config", str(cfg), str(folder), str(folder)]) == 2
    err = capsys.readouterr().err
    assert "given twice" not in err
    assert str(folder) in err


def test_an_engine_captures_gap_and_the_stale_frames_after_it_are_counted(tmp_path: Path) -> None:
    capture = write_capture(
        tmp_path / "gap.capture",
        [
            (T0, book("snapshot", 1, [["100.00", "1.000"]], [["100.10", "2.000"]])),
            (T0 + MS, book("update", 2, [["100.00", "0.900"]], [])),
            # seq 3 is lost: 4 is a gap, 5 arrives on a stale book.
            (T0 + 2 * MS, book("update", 4, [["100.00", "0.800"]], [])),
            (T0 + 3 * MS, book("update", 5, [["100.00", "0.700"]], [])),
            (T0 + 4 * MS, book("snapshot", 6, [["100.00", "0.600"]], [["100.10", "2.000"]])),
        ],
    )
    result = run_backtest(config(), [capture], BacktestOptions(compare_zero_latency=False))
    assert result.meta.skipped == {"gap": 1, "stale": 1}
    assert result.meta.frames == 5
    # Applied: the snapshots' 2 + 2 levels and the one update's 1.
    assert result.meta.events == 5


def test_a_strategy_that_raises_is_named_in_the_result_and_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from trading_engine.commands.cli import main

    monkeypatch.chdir(tmp_path)  # the command imports strategies from here
    monkeypatch.setattr("sys.path", list(sys.path))
    cfg = tmp_path / "bt.toml"
    module = tmp_path / "raising_strategy.py"
    module.write_text(
        "from trading_engine import Strategy\n\n\n"
        "class Raising(Strategy):\n"
        "    def on_book(self, book):\n"
        "        raise RuntimeError('boom')\n"
    )
    cfg.write_text(
        '[[instruments]]\nsymbol = "XMRBTC"\ntick_size = "0.000001"\nlot_size = "0.001"\n'
        '[[strategies]]\nname = "bad"\nclass = "raising_strategy:Raising"\nsymbols = ["XMRBTC"]\n'
        '[journal]\npath = ":memory:"\n'
    )
    out = tmp_path / "result.json"
    assert main(["backtest", "--config", str(cfg), str(TARDIS), "--json", str(out)]) == 0
    errors = BacktestResult.from_json(out.read_bytes()).meta.strategy_errors
    assert set(errors) == {"bad"}
    assert errors["bad"]["errors"] == 5
    assert errors["bad"]["last"] == "RuntimeError: boom"
    assert errors["bad"]["disabled"] == "5 consecutive errors, the last RuntimeError: boom"
    summary = capsys.readouterr().out
    assert (
        "  bad: 5 hook errors, the last RuntimeError: boom; disabled: 5 consecutive errors, "
        "the last RuntimeError: boom"
    ) in summary


def test_a_mistyped_strategy_parameter_gets_a_suggestion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trading_engine.commands.cli import main

    cfg = market_maker_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("max_inventory", "max_inventry"))
    assert main(["backtest", "--config", str(cfg), str(TARDIS)]) == 2
    err = capsys.readouterr().err
    assert "strategies[0].params.max_inventry: Extra inputs are not permitted" in err
    assert "did you mean `strategies[0].params.max_inventory`?" in err


#: A Tardis book file whose times are in ms where the format has us: they read as 1970.
_MS_BOOK = (
    "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount",
    "binance,XMRBTC,1628952397000,1628952397001,true,bid,0.005,1",
    "binance,XMRBTC,1628952397000,1628952397001,true,ask,0.006,1",
)
_MS_UPDATE = "binance,XMRBTC,1628952398000,1628952398001,false,bid,0.005,2"
_BEFORE_2000 = (
    "the data starts at 1970-01-19T20:29:12.397001000Z, before 2000: are its times in the "
    "unit its format has (Tardis CSV: us since the epoch; captures: ns)?"
)


def test_times_in_milliseconds_are_run_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Tardis file in ms reads as January 1970: said once, on standard error."""
    from trading_engine.commands.cli import main

    cfg = market_maker_config(tmp_path)
    book_csv = write_gzip(tmp_path / "ms.csv.gz", *_MS_BOOK, _MS_UPDATE)
    assert main(["backtest", "--config", str(cfg), str(book_csv)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [f"backtest: {_BEFORE_2000}"]


def test_a_sweep_says_what_a_single_run_would_warn_of_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Times before 2000 and lines left out are the data's: one note each, not one per row."""
    import csv

    from trading_engine.commands.cli import main

    cfg = market_maker_config(tmp_path)
    cut = _MS_UPDATE.rsplit(",", 1)[0]  # a row without its amount: left out, counted
    book_csv = write_gzip(tmp_path / "ms.csv.gz", *_MS_BOOK, cut, _MS_UPDATE)
    sweep = tmp_path / "sweep"
    argv = ["backtest", "--config", str(cfg), str(book_csv), "--report", str(sweep),
            "--workers", "1", "--sweep", "mm.half_spread_ticks=1,2"]  # fmt: skip
    assert main(argv) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note: ")]
    assert notes == [f"note: {_BEFORE_2000}", "note: left out: bad_line 1"]
    with (sweep / "sweep.csv").open() as table:
        rows = list(csv.DictReader(table))
    assert [row["notes"] for row in rows] == [notes[0][6:] + "; " + notes[1][6:]] * 2


def test_left_out_input_is_counted_file_by_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trading_engine.commands.cli import main

    cfg = market_maker_config(tmp_path)
    trades = write_gzip(
        tmp_path / "trades.csv.gz",
        "exchange,symbol,timestamp,local_timestamp,id,side,price,amount",
        "binance,XMRBTC,1628952397000000,1628952397000001,1,buy,0.005,1",
        "binance,ETHBTC,1628952397000000,1628952397000002,2,buy,0.07,1",
        "binance,XMRBTC,1628952397000000,x,3,buy,0.005,1",
    )
    out = tmp_path / "result.json"
    code = main(["backtest", "--config", str(cfg), str(TARDIS), str(trades), "--json", str(out)])
    assert code == 0
    meta = BacktestResult.from_json(out.read_bytes()).meta
    # The recorded book file starts with two updates before its snapshot.
    assert meta.skipped_by_file == {
        str(TARDIS): {"before_snapshot": 2},
        str(trades): {"bad_line": 1, "unknown_symbol": 1},
    }
    assert meta.skipped == {"bad_line": 1, "before_snapshot": 2, "unknown_symbol": 1}
    lines = capsys.readouterr().out.splitlines()
    at = lines.index("left out: bad_line 1, before_snapshot 2, unknown_symbol 1")
    assert lines[at + 1 : at + 3] == [
        f"  {TARDIS}: before_snapshot 2",
        f"  {trades}: bad_line 1, unknown_symbol 1",
    ]
