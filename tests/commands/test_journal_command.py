"""``trading-engine journal``: orders, fills and PnL from a known journal."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from trading_engine import Instrument
from trading_engine.commands.cli import main
from trading_engine.commands.journal import parse_since
from trading_engine.core.orders import Order, OrderStatus, OrderType, TimeInForce
from trading_engine.core.protocol import Side
from trading_engine.io.journal import Journal

BTC = Instrument("BTC-USD", "0.01", "0.001")
T0 = 1_780_000_000 * 10**9  # 2026-05-28T20:26:40Z


def known_journal(path: Path) -> Journal:
    """Two strategies; ``taker``: buy 2 @ 100.00, buy 1 @ 101.00, sell 2 @ 102.00,
    sell 2 @ 99.00 (FIFO realized: +0.004, then -0.002); ``other``: one buy."""
    journal = Journal.open(str(path), clock_ns=lambda: T0)
    journal.begin_run("r1", [BTC])
    fills = [
        ("taker", "buy", 10_000, 2),
        ("taker", "buy", 10_100, 1),
        ("taker", "sell", 10_200, 2),
        ("taker", "sell", 9_900, 2),
        ("other", "buy", 10_000, 3),
    ]
    for n, (strategy, side, price, lots) in enumerate(fills, start=1):
        order = Order(
            f"{strategy}-r1-{n}", strategy, "BTC-USD", Side(side), OrderType.LIMIT, lots, price,
            TimeInForce.IOC,
        )  # fmt: skip
        journal.order_submitted(order)
        order.add_fill(price, lots)
        order.transition(OrderStatus.FILLED)
        journal.order_status(order)
        journal.fill(
            order.client_order_id, strategy, "BTC-USD", side, price, lots, n, T0 + n * 60 * 10**9
        )
    journal.flush()
    return journal


def config_file(tmp_path: Path, journal: Path) -> Path:
    path = tmp_path / "engine.toml"
    path.write_text(
        f'[journal]\npath = "{journal}"\n\n'
        '[[instruments]]\nsymbol = "BTC-USD"\ntick_size = "0.01"\nlot_size = "0.001"\n'
    )
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["journal", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_pnl_by_strategy_and_symbol_as_csv_while_the_writer_is_open(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    writer = known_journal(tmp_path / "j.db")  # still open: WAL readers do not wait for it
    cfg = str(config_file(tmp_path, tmp_path / "j.db"))
    code, out, _ = run(capsys, "--config", cfg, "pnl", "--csv")
    assert code == 0
    assert list(csv.reader(io.StringIO(out))) == [
        ["strategy", "symbol", "orders", "fills", "bought", "sold", "position", "avg_price",
         "realized_pnl", "fees"],
        ["other", "BTC-USD", "1", "1", "0.003", "0.000", "0.003", "100.00", "0.00000", "0.00000"],
        ["taker", "BTC-USD", "4", "4", "0.003", "0.004", "-0.001", "99.00", "0.00200", "0.00000"],
    ]  # fmt: skip
    writer.close()


def test_since_counts_only_later_fills_but_keeps_the_earlier_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    known_journal(tmp_path / "j.db").close()
    cfg = str(config_file(tmp_path, tmp_path / "j.db"))
    since = datetime.fromtimestamp(T0 / 1e9 + 4 * 60, UTC).isoformat()
    code, out, _ = run(
        capsys, "--config", cfg, "pnl", "--csv", "--since", since, "--strategy", "taker"
    )
    assert code == 0
    # Only the last sell counts: it closes the 101.00 lot at 99.00 (-0.002) and opens a short.
    assert list(csv.reader(io.StringIO(out)))[1:] == [
        # (the orders were all journaled at T0, before --since: none counted)
        ["taker", "BTC-USD", "0", "1", "0.000", "0.002", "-0.001", "99.00", "-0.00200", "0.00000"]
    ]


def test_pnl_per_strategy_counts_unfilled_orders_and_totals_several_symbols(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = known_journal(tmp_path / "j.db")
    eth = Instrument("ETH-USD", "0.01", "0.001")
    journal.begin_run("r2", [BTC, eth])
    # ``taker`` also trades ETH-USD: buys 0.005 at 50.00, sells them at 50.10 (+0.0005);
    # ``quiet`` sends an order that never fills.
    for n, (strategy, side, price, lots) in enumerate(
        [("taker", "buy", 5_000, 5), ("taker", "sell", 5_010, 5), ("quiet", "buy", 4_000, 1)],
        start=10,
    ):
        order = Order(
            f"{strategy}-r2-{n}", strategy, "ETH-USD", Side(side), OrderType.LIMIT, lots, price,
            TimeInForce.GTC,
        )  # fmt: skip
        journal.order_submitted(order)
        if strategy == "taker":
            journal.fill(
                order.client_order_id, strategy, "ETH-USD", side, price, lots, n,
                T0 + n * 60 * 10**9,
            )  # fmt: skip
    journal.flush()
    journal.close()
    cfg = str(config_file(tmp_path, tmp_path / "j.db"))
    code, out, _ = run(capsys, "--config", cfg, "pnl", "--csv")
    assert code == 0
    assert list(csv.reader(io.StringIO(out)))[1:] == [
        ["other", "BTC-USD", "1", "1", "0.003", "0.000", "0.003", "100.00", "0.00000", "0.00000"],
        ["quiet", "ETH-USD", "1", "0", "0.000", "0.000", "0.000", "", "0.00000", "0.00000"],
        ["taker", "BTC-USD", "4", "4", "0.003", "0.004", "-0.001", "99.00", "0.00200", "0.00000"],
        ["taker", "ETH-USD", "2", "2", "0.005", "0.005", "0.000", "", "0.00050", "0.00000"],
        ["taker", "*", "6", "6", "", "", "", "", "0.00250", "0.00000"],
    ]


def test_orders_and_fills_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    known_journal(tmp_path / "j.db").close()
    cfg = str(config_file(tmp_path, tmp_path / "j.db"))
    code, out, _ = run(capsys, "--config", cfg, "orders", "--strategy", "other")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["created", "client_order_id", "strategy", "symbol", "side",
                                "type", "price", "quantity", "tif", "status", "filled",
                                "reason", "tag"]  # fmt: skip
    assert lines[1].split() == ["2026-05-28T20:26:40.000000Z", "other-r1-5", "other",
                                "BTC-USD", "buy", "limit", "100.00", "0.003", "IOC", "filled",
                                "0.003"]  # fmt: skip
    assert len(lines) == 2
    code, out, _ = run(capsys, "--config", cfg, "fills", "--csv")
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["time", "fill_id", "client_order_id", "strategy", "symbol", "side",
                       "price", "quantity", "fee"]  # fmt: skip
    assert rows[3] == ["2026-05-28T20:29:40.000000Z", "3", "taker-r1-3", "taker", "BTC-USD",
                       "sell", "102.00", "0.002", ""]  # fmt: skip
    assert len(rows) == 6


def test_pnl_plot_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    known_journal(tmp_path / "j.db").close()
    cfg = str(config_file(tmp_path, tmp_path / "j.db"))
    plot = tmp_path / "pnl.png"
    code, _, _ = run(capsys, "--config", cfg, "pnl", "--plot", str(plot))
    assert code == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_since_and_missing_journal_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    known_journal(tmp_path / "j.db").close()
    cfg = str(config_file(tmp_path, tmp_path / "j.db"))
    code, _, err = run(capsys, "--config", cfg, "fills", "--since", "yesterday")
    assert code == 2
    assert "--since" in err
    cfg = str(config_file(tmp_path, tmp_path / "missing.db"))
    code, _, err = run(capsys, "--config", cfg, "orders")
    assert code == 2
    assert "no such file" in err


def test_parse_since_ages_and_times() -> None:
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    assert (
        parse_since("2h", now) == int(datetime(2026, 5, 1, 10, 0, tzinfo=UTC).timestamp()) * 10**9
    )
    assert parse_since("2026-05-01T09:30:00Z") == parse_since("2026-05-01T09:30:00")
    assert parse_since("2026-05-01T11:30:00+02:00") == parse_since("2026-05-01T09:30:00Z")


def test_a_reader_that_goes_away_is_no_traceback(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    known_journal(tmp_path / "j.db").close()
    cfg = str(config_file(tmp_path, tmp_path / "j.db"))
    script = shutil.which("trading-engine") or f"{sys.executable} -m trading_engine"
    # `true` exits at once: every write of the command meets a closed pipe.
    done = subprocess.run(
        f"{script} journal --config {cfg} fills | true; exit ${{PIPESTATUS[0]}}",
        shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "Traceback" not in done.stderr
    assert "BrokenPipeError" not in done.stderr


def test_pnl_is_net_of_the_journaled_fees(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "fees.db"
    journal = Journal.open(str(path))
    journal.begin_run("r1", [Instrument("BTC-USD", "0.01", "0.001")])
    for n, (side, price, fee) in enumerate([("buy", 10_000, 5), ("sell", 10_100, -2)], start=1):
        journal.fill(f"m-r1-{n}", "m", "BTC-USD", side, price, 1, n, T0 + n, fee=fee)
    journal.close()
    cfg = str(config_file(tmp_path, path))
    code, out, _ = run(capsys, "--config", cfg, "pnl", "--csv")
    assert code == 0
    # 1 lot bought at 100.00 and sold at 101.00: 0.00100 gross, 3 units of fees.
    assert list(csv.reader(io.StringIO(out)))[1] == [
        "m", "BTC-USD", "0", "2", "0.001", "0.001", "0.000", "", "0.00097", "0.00003"
    ]  # fmt: skip
    code, out, _ = run(capsys, "--config", cfg, "fills", "--csv")
    assert [row[-1] for row in csv.reader(io.StringIO(out))] == ["fee", "0.00005", "-0.00002"]
