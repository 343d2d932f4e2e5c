"""The backtest report: JSON equal to the analytics, HTML with every figure, deterministic."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from trading_engine.backtest.analytics import analyze, decimal_text
from trading_engine.backtest.report import CHARTS, duration_text, write_report
from trading_engine.backtest.result import BacktestResult, FillRecord, MarkSample
from trading_engine.core.instruments import Instrument
from trading_engine.core.protocol import Side

from .test_analytics import BTC, S, _hand_result, _meta


def _two_symbols() -> BacktestResult:
    base = _hand_result()
    eth = Instrument("ETH-USD", "0.1", "0.01")
    fills = [*base.fills, FillRecord(S, "tk", "ETH-USD", "e1", Side.SELL, 30_000, 5, "taker", 2)]
    marks = [*base.marks, MarkSample(S, "ETH-USD", 29_990, 30_000)]
    return BacktestResult(
        base.meta, {**base.instruments, "ETH-USD": eth}, ("mm", "tk"), fills, base.orders,
        marks, {("mm", BTC): 6, ("tk", "ETH-USD"): -5},
    )  # fmt: skip


def _load(paths: list[Path]) -> tuple[dict[str, Any], str]:
    doc = orjson.loads(paths[1].read_bytes())
    return doc, paths[0].read_text(encoding="utf-8")


def test_json_numbers_are_the_analytics(tmp_path: Path) -> None:
    result = _two_symbols()
    a = analyze(result)
    doc, _ = _load(write_report(result, tmp_path))
    (usd,) = doc["summary"]
    s = a.currencies["USD"]
    assert usd["pnl_net"] == decimal_text(s.pnl.total)
    assert usd["fees"] == decimal_text(s.pnl.fees)
    assert usd["turnover"] == decimal_text(s.pnl.turnover)
    assert usd["max_drawdown"] == decimal_text(s.drawdown.max)
    assert (usd["sharpe"], usd["sortino"]) == (s.ratios.sharpe, s.ratios.sortino)
    assert usd["sharpe_annualised"] == s.ratios.sharpe_annualised
    assert doc["definitions"]["interval_ns"] == S
    assert doc["definitions"]["interval"] == "1 s"
    rows = doc["pnl"]
    assert len(rows) == len(a.pnl)
    for row, want in zip(rows, a.pnl, strict=True):
        assert (row["strategy"], row["symbol"]) == (want.strategy, want.symbol)
        assert row["pnl_net"] == decimal_text(want.total)
        assert row["realized_net"] == decimal_text(want.realized)
        assert row["unrealized"] == decimal_text(want.unrealized)
    markouts = doc["markouts"]
    for row, m in zip(markouts, a.markouts, strict=True):
        assert row["money"] == decimal_text(m.money)
        assert row["horizon_ns"] == m.horizon_ns
    assert doc["series"]["equity"]["USD"] == [decimal_text(v) for v in s.equity]
    # By hand (test_analytics): BTC-USD 43 units of 0.00001.
    btc = next(r for r in rows if r["symbol"] == BTC and r["strategy"] is None)
    assert btc["pnl_net"] == "0.00043"


def test_html_has_every_figure(tmp_path: Path) -> None:
    doc, page = _load(write_report(_two_symbols(), tmp_path))
    figures: list[str] = []
    for s in doc["summary"]:
        figures += [s[k] for k in ("pnl_net", "realized_net", "unrealized", "fees", "turnover",
                                   "max_drawdown")]  # fmt: skip
        figures += [f"{s[k]:.4f}" for k in ("sharpe", "sortino", "sharpe_annualised")]
    for r in doc["pnl"]:
        figures += [r[k] for k in ("pnl_net", "realized_gross", "fees", "unrealized", "turnover")]
    for f in doc["fill_ratios"]:
        figures.append(f"{f['lots_ratio']:.4f}")
    for m in doc["markouts"]:
        figures.append(m["money"])
        if m["mean_ticks"] is not None:
            figures.append(m["mean_ticks"])
    for figure in figures:
        assert f">{html.escape(figure)}</td>" in page, figure
    assert page.count("data:image/png;base64,") == len(CHARTS)
    for text in ("Sharpe", "Sortino", "1 s", "365 days", "Drawdown", "markouts", "queue:front"):
        assert text in page, text
    assert "http" not in page.replace("http-equiv", "")  # self-contained: nothing fetched


def test_same_result_same_bytes(tmp_path: Path) -> None:
    first = write_report(_two_symbols(), tmp_path / "a")
    second = write_report(_two_symbols(), tmp_path / "b")
    assert [p.name for p in first] == ["report.html", "report.json"] + [
        f"{stem}.png" for stem, _ in CHARTS
    ]
    for one, two in zip(first, second, strict=True):
        assert one.read_bytes() == two.read_bytes(), one.name
    png = first[2].read_bytes()
    assert png.startswith(b"\x89PNG")
    assert b"Software" not in png
    assert b"matplotlib" not in png.lower()


def test_a_result_without_fills_still_reports(tmp_path: Path) -> None:
    base = _hand_result()
    empty = BacktestResult(base.meta, base.instruments, ("mm",), [], [], base.marks, {})
    doc, page = _load(write_report(empty, tmp_path))
    assert doc["summary"][0]["pnl_net"] == "0"
    assert doc["summary"][0]["fills"] == 0
    assert doc["markouts"] == []
    assert "no data" not in page  # the text sits in the PNGs, not the page
    assert page.count("data:image/png;base64,") == len(CHARTS)


def test_a_result_with_no_data_at_all_still_reports(tmp_path: Path) -> None:
    nothing = BacktestResult(
        _meta(None, None), {BTC: Instrument(BTC, "0.01", "0.001")}, ("mm",), [], [], [], {}
    )
    doc, page = _load(write_report(nothing, tmp_path))
    assert doc["series"]["times_ns"] == []
    assert doc["summary"][0]["sharpe"] is None
    # The sampling interval's periods (1 s: a year's seconds), and no Python None on the page.
    assert doc["definitions"]["periods_per_year"] == 365 * 86_400
    assert "None" not in page
    assert "none (no event in the range)" in page


def test_one_symbol_reports(tmp_path: Path) -> None:
    doc, page = _load(write_report(_hand_result(), tmp_path))
    assert [r["symbol"] for r in doc["pnl"] if r["strategy"] == "mm"] == [BTC, None]
    assert ">0.00043</td>" in page


def test_positions_that_do_not_add_up_write_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="end_positions"):
        write_report(_hand_result(end_position=7), tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("ns", "text"),
    [(0, "0"), (100_000_000, "100 ms"), (S, "1 s"), (60 * S, "1 min"), (90 * S, "90 s"),
     (3_600 * S, "1 h"), (1_500_000_000, "1.5 s"), (5, "5 ns")],
)  # fmt: skip
def test_duration_text(ns: int, text: str) -> None:
    assert duration_text(ns) == text


@dataclass(frozen=True)
class _WithLatency(BacktestResult):
    """A result as the runner makes it when the run had latency (the field it adds)."""

    latency_effect: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


def test_the_difference_latency_made_is_reported(tmp_path: Path) -> None:
    base = _hand_result()
    # With latency: the hand result (cash -100020 + 40000, fees 3, 6 lots at the last mid
    # 10011: 43 units). At zero latency: the buy filled at 10001, 10 lots, fee 4, no sell.
    effect = {
        f"mm {BTC}": {
            "fills": 2, "fills_zero_latency": 1, "filled_lots": 14,
            "filled_lots_zero_latency": 10, "fees": 3, "fees_zero_latency": 4,
            "cash": -60_020, "cash_zero_latency": -100_010, "position": 6,
            "position_zero_latency": 10,
        }
    }  # fmt: skip
    result = _WithLatency(
        base.meta, base.instruments, base.strategies, base.fills, base.orders, base.marks,
        base.end_positions, effect,
    )  # fmt: skip
    doc, page = _load(write_report(result, tmp_path))
    (row,) = doc["latency_effect"]
    # Zero latency: -100010 - 4 + 10 * 10011 = 96 units.
    assert (row["pnl_net"], row["pnl_net_zero_latency"]) == ("0.00043", "0.00096")
    assert row["pnl_net_difference"] == "-0.00053"
    assert (row["fills"], row["fills_zero_latency"], row["fees_zero_latency"]) == (2, 1, "0.00004")
    assert row["pnl_net"] == doc["summary"][0]["pnl_net"]  # the same equity, FIFO or not
    for text in ("0.00096", "-0.00053", "Latency: this run against"):
        assert text in page


def test_without_latency_the_report_says_so(tmp_path: Path) -> None:
    doc, page = _load(write_report(_hand_result(), tmp_path))
    assert doc["latency_effect"] == []
    assert "No comparison with a zero-latency run" in page
