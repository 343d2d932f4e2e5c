"""A backtest's report: ``report.html`` for a reader, ``report.json`` for a program.

Both carry the same figures, from :func:`~.analytics.analyze`: money as
exact decimal strings of its quote currency, ratios as numbers, times as
integer nanoseconds of the data's clock. The HTML is one self-contained
file (the charts are PNGs embedded as base64); the charts are also
written beside it as ``equity.png``, ``drawdown.png``, ``position.png``
and ``markouts.png``.

The output is deterministic: the same result gives the same JSON bytes
and the same PNG bytes (no date or software version in the PNG
metadata). The charts need matplotlib (the ``backtest`` extra).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, Final

import orjson

from .analytics import (
    NS_PER_YEAR,
    Analytics,
    LatencyEffect,
    Markout,
    PnLRow,
    analyze,
    decimal_text,
    latency_effects,
)
from .result import BacktestResult, meta_dict

__all__ = ["CHARTS", "report_document", "write_report"]

#: The charts, in the order the HTML shows them: (file stem, title).
CHARTS: Final = (
    ("equity", "Equity (realized + unrealized, net of fees)"),
    ("drawdown", "Drawdown"),
    ("position", "Position"),
    ("markouts", "Mid markouts after fills (lot-weighted mean, ticks)"),
)


def _money(value: Fraction | None) -> str | None:
    return None if value is None else decimal_text(value)


def duration_text(ns: int) -> str:
    """A duration in ns as a short text: ``0``, ``100 ms``, ``1 s``, ``1.5 min``."""
    for unit, size in (("h", 3_600 * 10**9), ("min", 60 * 10**9), ("s", 10**9), ("ms", 10**6)):
        if ns >= size and (unit != "min" or ns % size == 0):
            return f"{decimal_text(Fraction(ns, size))} {unit}"
    return "0" if ns == 0 else f"{ns} ns"


def _pnl(row: PnLRow) -> dict[str, Any]:
    return {
        "strategy": row.strategy,
        "symbol": row.symbol,
        "currency": row.currency,
        "position_lots": row.position,
        "pnl_net": decimal_text(row.total),
        "realized_gross": decimal_text(row.realized_gross),
        "fees": decimal_text(row.fees),
        "realized_net": decimal_text(row.realized),
        "unrealized": decimal_text(row.unrealized),
        "turnover": decimal_text(row.turnover),
        "fills": row.fills,
    }


def _markout(m: Markout) -> dict[str, Any]:
    return {
        "strategy": m.strategy,
        "symbol": m.symbol,
        "side": m.side,
        "horizon_ns": m.horizon_ns,
        "currency": m.currency,
        "fills": m.fills,
        "beyond_data": m.beyond,
        "lots": m.lots,
        "mean_ticks": _money(m.mean_ticks),
        "money": decimal_text(m.money),
    }


def _latency(e: LatencyEffect) -> dict[str, Any]:
    difference = (
        None
        if e.pnl_net is None or e.pnl_net_zero_latency is None
        else e.pnl_net - e.pnl_net_zero_latency
    )
    return {
        "strategy": e.strategy,
        "symbol": e.symbol,
        "currency": e.currency,
        "fills": e.fills,
        "fills_zero_latency": e.fills_zero_latency,
        "filled_lots": e.filled_lots,
        "filled_lots_zero_latency": e.filled_lots_zero_latency,
        "fees": decimal_text(e.fees),
        "fees_zero_latency": decimal_text(e.fees_zero_latency),
        "position_lots": e.position,
        "position_lots_zero_latency": e.position_zero_latency,
        "pnl_net": _money(e.pnl_net),
        "pnl_net_zero_latency": _money(e.pnl_net_zero_latency),
        "pnl_net_difference": _money(difference),
    }


def report_document(result: BacktestResult, analytics: Analytics) -> dict[str, Any]:
    """The report's figures as a JSON-ready dict (what ``report.json`` holds).

    Money is a decimal string of the quote currency named beside it;
    ``sharpe``/``sortino`` are per ``interval_ns``, the ``_annualised``
    ones times ``sqrt(periods_per_year)``.
    """
    a = analytics
    meta = result.meta
    summary = []
    for currency, s in sorted(a.currencies.items()):
        r, d = s.ratios, s.drawdown
        summary.append(
            {
                "currency": currency,
                "pnl_net": decimal_text(s.pnl.total),
                "realized_net": decimal_text(s.pnl.realized),
                "unrealized": decimal_text(s.pnl.unrealized),
                "fees": decimal_text(s.pnl.fees),
                "turnover": decimal_text(s.pnl.turnover),
                "fills": s.pnl.fills,
                "max_drawdown": decimal_text(d.max),
                "drawdown_peak_ns": d.peak_ns,
                "drawdown_trough_ns": d.trough_ns,
                "drawdown_duration_ns": d.duration_ns,
                "drawdown_recovered_ns": d.recovered_ns,
                "intervals": r.intervals,
                "mean_return": _money(r.mean),
                "sharpe": r.sharpe,
                "sortino": r.sortino,
                "sharpe_annualised": r.sharpe_annualised,
                "sortino_annualised": r.sortino_annualised,
            }
        )
    return {
        "meta": {
            **meta_dict(meta),
            "strategies": list(result.strategies),
            "fills": a.fills,
            "orders": a.orders,
        },
        "definitions": {
            "interval_ns": a.interval_ns,
            "interval": duration_text(a.interval_ns),
            "periods_per_year": _periods(a),
            "returns": "equity differences per interval, in the quote currency",
            "sharpe": "mean(returns) / sample stdev(returns); risk-free rate 0",
            "sortino": "mean(returns) / sqrt(mean(min(returns, 0)^2)); target 0",
            "annualisation": "ratio * sqrt(periods_per_year); a year is 365 days of 24 hours",
            "equity": "realized PnL (FIFO, net of fees) + open position marked at the mid",
            "markout": "mid(fill time + horizon) - price for a buy, price - mid for a sell",
            "unmarked_points": a.unmarked,
        },
        "summary": summary,
        "pnl": [_pnl(row) for row in a.pnl],
        "fill_ratios": [
            {
                "strategy": f.strategy,
                "symbol": f.symbol,
                "orders": f.orders,
                "orders_refused": f.orders_refused,
                "orders_filled": f.orders_filled,
                "orders_with_fills": f.orders_with_fills,
                "lots_ordered": f.lots_ordered,
                "lots_filled": f.lots_filled,
                "lots_ratio": f.lots_ratio,
                "orders_ratio": f.orders_ratio,
            }
            for f in a.fill_ratios
        ],
        "markouts": [_markout(m) for m in a.markouts],
        "latency_effect": [_latency(e) for e in latency_effects(result, a.symbol_currency)],
        "series": {
            "times_ns": list(a.times),
            "equity": {c: _texts(s.equity) for c, s in sorted(a.currencies.items())},
            "drawdown": {c: _texts(s.drawdown.series) for c, s in sorted(a.currencies.items())},
            "equity_by_strategy": {
                f"{strategy} {currency}": _texts(v)
                for (strategy, currency), v in sorted(a.equity_by_strategy.items())
            },
            "equity_by_symbol": {s: _texts(v) for s, v in sorted(a.equity_by_symbol.items())},
            "positions": {
                f"{strategy} {symbol}": [list(step) for step in steps]
                for (strategy, symbol), steps in sorted(a.positions.items())
            },
        },
    }


def _periods(a: Analytics) -> float:
    # The sampling interval's, even with no currency to report (an empty range).
    return NS_PER_YEAR / a.interval_ns


def _texts(values: Sequence[Fraction]) -> list[str]:
    return [decimal_text(v) for v in values]


# -- charts -------------------------------------------------------------


def _png(figure: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    # No Software key: the PNG holds nothing that differs between runs or versions.
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def _charts(result: BacktestResult, a: Analytics) -> dict[str, bytes]:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - the backtest extra installs it
        raise RuntimeError(
            "the backtest report's charts need matplotlib: pip install 'trading-engine[backtest]'"
        ) from exc
    start = a.times[0] if a.times else 0
    seconds = [(t - start) / 1e9 for t in a.times]
    xlabel = f"data time, s from {start} ns"
    pngs: dict[str, bytes] = {}

    figure = Figure(figsize=(9, 4))
    axes = figure.add_subplot()
    for currency, summary in sorted(a.currencies.items()):
        axes.plot(seconds, [float(v) for v in summary.equity], label=f"total {currency}", lw=2)
    for (strategy, currency), values in sorted(a.equity_by_strategy.items()):
        if len(a.equity_by_strategy) > 1:
            axes.plot(seconds, [float(v) for v in values], label=f"{strategy} {currency}", lw=1)
    _finish(axes, xlabel, "quote currency", bool(a.times))
    pngs["equity"] = _png(figure)

    figure = Figure(figsize=(9, 3))
    axes = figure.add_subplot()
    for currency, summary in sorted(a.currencies.items()):
        axes.fill_between(
            seconds, [-float(v) for v in summary.drawdown.series], 0, alpha=0.4, label=currency
        )
    _finish(axes, xlabel, "drawdown, quote currency", bool(a.times))
    pngs["drawdown"] = _png(figure)

    figure = Figure(figsize=(9, 3))
    axes = figure.add_subplot()
    end = a.times[-1] if a.times else 0
    for symbol, steps in sorted(a.symbol_positions.items()):
        lot = float(result.instruments[symbol].lot_size)
        xs = [(t - start) / 1e9 for t, _ in steps] + [(end - start) / 1e9]
        ys = [lots * lot for _, lots in steps] + [steps[-1][1] * lot]
        axes.step(xs, ys, where="post", label=symbol)
    _finish(axes, xlabel, "position, base units", bool(a.symbol_positions))
    pngs["position"] = _png(figure)

    figure = Figure(figsize=(9, 3.5))
    axes = figure.add_subplot()
    horizons = list(a.horizons_ns)
    series: dict[tuple[str, str], dict[int, float]] = {}
    for m in a.markouts:
        if m.strategy is None and m.mean_ticks is not None:
            series.setdefault((m.symbol, m.side), {})[m.horizon_ns] = float(m.mean_ticks)
    for (symbol, side), points in sorted(series.items()):
        at = [i for i, h in enumerate(horizons) if h in points]
        axes.plot(at, [points[horizons[i]] for i in at], marker="o", label=f"{symbol} {side}")
    axes.set_xticks(range(len(horizons)), [duration_text(h) for h in horizons])
    axes.axhline(0, color="grey", lw=0.5)
    _finish(axes, "horizon after the fill", "ticks (> 0: in the fill's favour)", bool(series))
    pngs["markouts"] = _png(figure)
    return pngs


def _finish(axes: Any, xlabel: str, ylabel: str, has_data: bool) -> None:
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    if has_data:
        axes.legend(loc="best", fontsize="small")
    else:
        axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
    axes.figure.tight_layout()


# -- HTML ---------------------------------------------------------------


def _cell(value: object) -> str:
    if value is None:
        return "<td>-</td>"
    if isinstance(value, float):
        return f'<td class="n">{value:.4f}</td>'
    text = html.escape(str(value))
    numeric = isinstance(value, int) or (text[:1].isdigit() or text[:2].lstrip("-")[:1].isdigit())
    return f'<td class="n">{text}</td>' if numeric else f"<td>{text}</td>"


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _all(value: str | None) -> str:
    return "all" if value is None else value


def _html(doc: Mapping[str, Any], pngs: Mapping[str, bytes]) -> str:
    meta, definitions = doc["meta"], doc["definitions"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>Backtest report</title>',
        "<style>body{font-family:sans-serif;margin:2em;max-width:70em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:.2em .6em}td.n{text-align:right;font-family:monospace}"
        "th{background:#eee}img{max-width:100%}</style></head><body>",
        "<h1>Backtest report</h1>",
        "<h2>Run</h2>",
        _table(
            ["what", "value"],
            [
                ["data", ", ".join(meta["data"])],
                ["strategies", ", ".join(meta["strategies"])],
                [
                    "first / last event (ns)",
                    f"{_or_none(meta['first_ns'])} / {_or_none(meta['last_ns'])}",
                ],
                ["events / frames", f"{meta['events']} / {meta['frames']}"],
                ["fill model", meta["fill_model"]],
                ["feed latency", meta["feed_latency"]],
                ["order latency", meta["order_latency"]],
                ["skipped input", _pairs(meta["skipped"]) or "none"],
                ["parameters", _pairs(meta["parameters"]) or "as configured"],
                ["orders / fills", f"{meta['orders']} / {meta['fills']}"],
            ],
        ),
        "<h2>Summary</h2>",
        f"<p>Sampling interval {html.escape(definitions['interval'])} "
        f"({definitions['interval_ns']} ns); returns are {definitions['returns']}. "
        f"Sharpe = {html.escape(definitions['sharpe'])}; Sortino = "
        f"{html.escape(definitions['sortino'])}. Annualised: "
        f"{html.escape(definitions['annualisation'])}, "
        f"{definitions['periods_per_year']:.0f} periods per year. "
        f"Equity: {html.escape(definitions['equity'])}. Money is in the quote currency named "
        f"in each row and never summed across currencies.</p>",
        _table(
            [
                "currency",
                "PnL net",
                "realized net",
                "unrealized",
                "fees",
                "turnover",
                "fills",
                "max drawdown",
                "drawdown peak (ns)",
                "trough (ns)",
                "duration",
                "recovered (ns)",
                "intervals",
                "Sharpe",
                "Sortino",
                "Sharpe (annualised)",
                "Sortino (annualised)",
            ],
            [
                [
                    s["currency"],
                    s["pnl_net"],
                    s["realized_net"],
                    s["unrealized"],
                    s["fees"],
                    s["turnover"],
                    s["fills"],
                    s["max_drawdown"],
                    s["drawdown_peak_ns"],
                    s["drawdown_trough_ns"],
                    duration_text(s["drawdown_duration_ns"]),
                    s["drawdown_recovered_ns"],
                    s["intervals"],
                    s["sharpe"],
                    s["sortino"],
                    s["sharpe_annualised"],
                    s["sortino_annualised"],
                ]
                for s in doc["summary"]
            ],
        ),
        "<h2>PnL by strategy and symbol</h2>",
        _table(
            [
                "strategy",
                "symbol",
                "currency",
                "position (lots)",
                "PnL net",
                "realized gross",
                "fees",
                "realized net",
                "unrealized",
                "turnover",
                "fills",
            ],
            [
                [
                    _all(r["strategy"]),
                    _all(r["symbol"]),
                    r["currency"],
                    r["position_lots"],
                    r["pnl_net"],
                    r["realized_gross"],
                    r["fees"],
                    r["realized_net"],
                    r["unrealized"],
                    r["turnover"],
                    r["fills"],
                ]
                for r in doc["pnl"]
            ],
        ),
        "<h2>Fill ratio</h2>",
        _table(
            [
                "strategy",
                "symbol",
                "orders",
                "refused",
                "filled",
                "with fills",
                "lots ordered",
                "lots filled",
                "lots filled / ordered",
                "orders with fills / orders",
            ],
            [
                [
                    _all(f["strategy"]),
                    f["symbol"],
                    f["orders"],
                    f["orders_refused"],
                    f["orders_filled"],
                    f["orders_with_fills"],
                    f["lots_ordered"],
                    f["lots_filled"],
                    f["lots_ratio"],
                    f["orders_ratio"],
                ]
                for f in doc["fill_ratios"]
            ],
        ),
        "<h2>Adverse selection: mid markouts after fills</h2>",
        f"<p>{html.escape(definitions['markout'])}, in ticks (lot-weighted mean) and in money "
        "(sum of ticks times size); positive means the market moved in the fill's favour. "
        "Fills whose horizon passes the data's end are counted as beyond the data.</p>",
        _table(
            [
                "strategy",
                "symbol",
                "side",
                "horizon",
                "fills",
                "beyond data",
                "lots",
                "mean ticks",
                "money",
                "currency",
            ],
            [
                [
                    _all(m["strategy"]),
                    m["symbol"],
                    m["side"],
                    duration_text(m["horizon_ns"]),
                    m["fills"],
                    m["beyond_data"],
                    m["lots"],
                    m["mean_ticks"],
                    m["money"],
                    m["currency"],
                ]
                for m in doc["markouts"]
            ],
        ),
        "<h2>Latency: this run against the same run with none</h2>",
        _latency_table(doc["latency_effect"]),
        "<h2>Charts</h2>",
    ]
    for stem, title in CHARTS:
        encoded = base64.b64encode(pngs[stem]).decode("ascii")
        parts.append(
            f"<h3>{html.escape(title)}</h3>"
            f'<img alt="{html.escape(title)}" src="data:image/png;base64,{encoded}">'
        )
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _latency_table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return (
            "<p>No comparison with a zero-latency run: the run had no latency, "
            "or the comparison was turned off.</p>"
        )
    return (
        "<p>The same data and strategies run again with no feed or order latency; PnL net "
        "marks each end position at the last mid. Difference = this run - zero latency.</p>"
        + _table(
            [
                "strategy",
                "symbol",
                "fills",
                "fills at zero latency",
                "lots filled",
                "lots at zero latency",
                "fees",
                "fees at zero latency",
                "position (lots)",
                "position at zero latency",
                "PnL net",
                "PnL net at zero latency",
                "difference",
                "currency",
            ],
            [
                [
                    r["strategy"],
                    r["symbol"],
                    r["fills"],
                    r["fills_zero_latency"],
                    r["filled_lots"],
                    r["filled_lots_zero_latency"],
                    r["fees"],
                    r["fees_zero_latency"],
                    r["position_lots"],
                    r["position_lots_zero_latency"],
                    r["pnl_net"],
                    r["pnl_net_zero_latency"],
                    r["pnl_net_difference"],
                    r["currency"],
                ]
                for r in rows
            ],
        )
    )


def _pairs(mapping: Mapping[str, object]) -> str:
    return ", ".join(f"{key}={value}" for key, value in mapping.items())


def write_report(
    result: BacktestResult,
    directory: Path,
    *,
    interval_ns: int | None = None,
    horizons_ns: Sequence[int] | None = None,
) -> list[Path]:
    """Write ``report.html``, ``report.json`` and the charts' PNGs into ``directory``.

    ``directory`` is created when missing; files of the same names are
    replaced. ``interval_ns`` and ``horizons_ns`` go to
    :func:`~.analytics.analyze`. Returns the paths written, the HTML
    first. Raises ``ValueError`` from the analytics (positions that do
    not add up, a symbol without an instrument), ``OSError`` from the
    file system, ``RuntimeError`` when matplotlib is missing.
    """
    if horizons_ns is None:
        analytics = analyze(result, interval_ns=interval_ns)
    else:
        analytics = analyze(result, interval_ns=interval_ns, horizons_ns=horizons_ns)
    doc = report_document(result, analytics)
    pngs = _charts(result, analytics)
    directory.mkdir(parents=True, exist_ok=True)
    html_path = directory / "report.html"
    json_path = directory / "report.json"
    html_path.write_text(_html(doc, pngs), encoding="utf-8")
    json_path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    written = [html_path, json_path]
    for stem, _title in CHARTS:
        path = directory / f"{stem}.png"
        path.write_bytes(pngs[stem])
        written.append(path)
    return written


def _or_none(value: object) -> str:
    return "none (no event in the range)" if value is None else str(value)
