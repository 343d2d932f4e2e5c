"""``trading-engine journal`` over a deployment's worker journals: one view, each venue
fill once."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from tests.commands.test_journal_command import BTC, T0, run
from trading_engine import Instrument
from trading_engine.commands.journal_workers import worker_journal_path
from trading_engine.config import parse_config
from trading_engine.core.orders import Order, OrderStatus, OrderType, TimeInForce
from trading_engine.core.protocol import Side
from trading_engine.engine.supervisor import worker_environment
from trading_engine.io.journal import Journal, VenueIdentity

ETH = Instrument("ETH-USD", "0.01", "0.001")
VENUE = VenueIdentity.of("http://venue.example", "key")
OTHER = VenueIdentity.of("http://other.example", "key")

#: (strategy, symbol, side, price ticks, lots, venue fill id, minutes after T0)
Fill = tuple[str, str, str, int, int, int | None, int]


def write_journal(path: Path, venue: VenueIdentity | None, fills: list[Fill]) -> None:
    journal = Journal.open(str(path), clock_ns=lambda: T0)
    journal.begin_run(f"run-{path.stem}", [BTC, ETH])
    if venue is not None:
        journal.record_venue(venue, "first start against it", new_fills_log=False)
    for strategy, symbol, side, price, lots, fill_id, minute in fills:
        cid = f"{strategy}-{symbol}-{fill_id if fill_id is not None else minute}"
        order = Order(
            cid, strategy, symbol, Side(side), OrderType.LIMIT, lots, price, TimeInForce.IOC
        )
        journal.order_submitted(order)
        order.add_fill(price, lots)
        order.transition(OrderStatus.FILLED)
        journal.order_status(order)
        journal.fill(cid, strategy, symbol, side, price, lots, fill_id, T0 + minute * 60 * 10**9)
    journal.close()


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "engine.toml"
    path.write_text(
        f'[journal]\npath = "{tmp_path / "journal.db"}"\n\n'
        '[[instruments]]\nsymbol = "BTC-USD"\ntick_size = "0.01"\nlot_size = "0.001"\n\n'
        '[[instruments]]\nsymbol = "ETH-USD"\ntick_size = "0.01"\nlot_size = "0.001"\n'
    )
    return path


def resharded(tmp_path: Path) -> None:
    """``--workers 3`` traded (journal.0-2), then ``--workers 2`` rebuilt from the venue.

    BTC: fills 1 (buy 2 @ 100.00) and 3 (sell 2 @ 101.00) traded by worker 2
    of 3; worker 0 of 2 owns BTC now and copied both in. ETH: fill 2 (buy 1
    @ 50.00) by worker 1 throughout, and fill 4 (sell 1 @ 52.00) after.
    """
    btc = [
        ("taker", "BTC-USD", "buy", 10_000, 2, 1, 1),
        ("taker", "BTC-USD", "sell", 10_100, 2, 3, 3),
    ]
    eth = [
        ("taker", "ETH-USD", "buy", 5_000, 1, 2, 2),
        ("taker", "ETH-USD", "sell", 5_200, 1, 4, 4),
    ]
    write_journal(tmp_path / "journal.0.db", VENUE, btc)  # copied in by the rebuild
    write_journal(tmp_path / "journal.1.db", VENUE, eth)
    write_journal(tmp_path / "journal.2.db", VENUE, btc)  # left from the 3-worker layout


PNL = [
    ["strategy", "symbol", "orders", "fills", "bought", "sold", "position", "avg_price",
     "realized_pnl", "fees"],
    ["taker", "BTC-USD", "2", "2", "0.002", "0.002", "0.000", "", "0.00200", "0.00000"],
    ["taker", "ETH-USD", "2", "2", "0.001", "0.001", "0.000", "", "0.00200", "0.00000"],
    ["taker", "*", "4", "4", "", "", "", "", "0.00400", "0.00000"],
]  # fmt: skip


def test_pnl_across_worker_journals_counts_each_venue_fill_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    resharded(tmp_path)
    cfg = str(config_file(tmp_path))
    code, out, err = run(capsys, "--config", cfg, "--workers", "3", "pnl", "--csv")
    assert code == 0, err
    assert list(csv.reader(io.StringIO(out))) == PNL
    # The flag after the view reads the same.
    code, out, _ = run(capsys, "--config", cfg, "pnl", "--workers", "3", "--csv")
    assert list(csv.reader(io.StringIO(out))) == PNL


def test_without_workers_the_worker_journals_beside_the_path_are_read_and_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    resharded(tmp_path)
    cfg = str(config_file(tmp_path))
    code, out, err = run(capsys, "--config", cfg, "pnl", "--csv")
    assert code == 0, err
    assert list(csv.reader(io.StringIO(out))) == PNL
    assert err.startswith(f"journal: 3 worker journal(s) beside {tmp_path / 'journal.db'}")
    assert str(tmp_path / "journal.2.db") in err
    code, out, err = run(capsys, "--config", cfg, "fills", "--csv")
    rows = list(csv.reader(io.StringIO(out)))[1:]
    assert [row[1] for row in rows] == ["1", "2", "3", "4"]  # oldest first, each once
    code, out, err = run(capsys, "--config", cfg, "orders", "--csv")
    assert len(list(csv.reader(io.StringIO(out)))) == 1 + 4


def test_workers_one_reads_the_journal_path_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    resharded(tmp_path)
    write_journal(tmp_path / "journal.db", VENUE, [("solo", "BTC-USD", "buy", 9_000, 1, 9, 9)])
    cfg = str(config_file(tmp_path))
    code, out, err = run(capsys, "--config", cfg, "--workers", "1", "pnl", "--csv")
    assert code == 0, err
    assert [row[:2] for row in csv.reader(io.StringIO(out))][1:] == [["solo", "BTC-USD"]]
    assert err == ""
    # Without the flag: journal.path and the worker journals, as one.
    code, out, err = run(capsys, "--config", cfg, "pnl", "--csv")
    assert [row[:2] for row in csv.reader(io.StringIO(out))][1:] == [
        ["solo", "BTC-USD"], ["taker", "BTC-USD"], ["taker", "ETH-USD"], ["taker", "*"]
    ]  # fmt: skip


def test_a_missing_worker_journal_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    resharded(tmp_path)
    cfg = str(config_file(tmp_path))
    code, _, err = run(capsys, "--config", cfg, "--workers", "4", "pnl")
    assert code == 2
    assert f"no worker journal {tmp_path / 'journal.3.db'}" in err
    assert len(err.strip().splitlines()) == 1


def test_the_same_fill_id_of_another_venue_or_order_is_another_fill(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Fill id 1 on two venues, and fill id 1 of two in-process venues (one per worker).
    write_journal(tmp_path / "journal.0.db", VENUE, [("a", "BTC-USD", "buy", 10_000, 1, 1, 1)])
    write_journal(tmp_path / "journal.1.db", OTHER, [("a", "BTC-USD", "buy", 10_000, 1, 1, 2)])
    write_journal(tmp_path / "journal.2.db", None, [("b", "ETH-USD", "buy", 5_000, 1, 1, 3)])
    write_journal(tmp_path / "journal.3.db", None, [("c", "ETH-USD", "buy", 5_000, 1, 1, 4)])
    cfg = str(config_file(tmp_path))
    code, out, err = run(capsys, "--config", cfg, "--workers", "4", "fills", "--csv")
    assert code == 0, err
    assert len(list(csv.reader(io.StringIO(out)))) == 1 + 4


def test_worker_journal_paths_are_the_ones_workers_write() -> None:
    cfg = parse_config(
        {"journal": {"path": "state/journal.db"}, "feed": {"port": 7001},
         "admin": {"port": 9100}},
        environ={},
    )  # fmt: skip
    for index in range(3):
        env = worker_environment(cfg, index, 3)
        assert env["TRADING_ENGINE__JOURNAL__PATH"] == worker_journal_path(
            "state/journal.db", index
        )
