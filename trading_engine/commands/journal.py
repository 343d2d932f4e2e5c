"""``trading-engine journal``: the order journal for operators.

``orders`` and ``fills`` list the journal's rows, ``pnl`` each strategy's
orders, fills, position and realized PnL by symbol (FIFO, exactly as the
engine counts it; a strategy trading several symbols also gets a total row
with the symbol ``*``), as an aligned table or, with ``--csv``, as CSV.
``--since`` keeps rows from a time on; ``--strategy`` keeps one
strategy's; ``pnl --plot FILE`` draws the cumulative realized PnL over
time (matplotlib, the ``plot`` extra).

The journal is opened read-only, so it can be read while the engine
writes it (SQLite WAL: readers see the last committed transaction).
Prices and sizes are exact decimal strings at each instrument's
precision, realized PnL at the precision of tick size times lot size (so
nothing is rounded); times are UTC.
"""

from __future__ import annotations

import csv
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TextIO

from ..core.instruments import Instrument
from ..core.positions import Position
from ..core.protocol import Side
from ..io.journal import JournaledFill, JournaledOrder
from .journal_workers import open_journals

__all__ = ["PnlRow", "parse_since", "pnl_rows", "run_journal_command"]

_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class JournalUsageError(ValueError):
    """A command-line value the journal command cannot take (exit 2)."""


def parse_since(text: str, now: datetime | None = None) -> int:
    """``--since``: an ISO 8601 time (UTC unless it says otherwise) or an age
    such as ``90s``, ``15m``, ``2h``, ``3d``; returns wall-clock ns.

    Raises :class:`JournalUsageError` for anything else.
    """
    match = _DURATION.fullmatch(text.strip())
    if match is not None:
        current = now if now is not None else datetime.now(UTC)
        moment = current - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    else:
        try:
            moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise JournalUsageError(
                f"--since: expected an ISO 8601 time (2026-05-01T09:30:00Z) or an age "
                f"(90s, 15m, 2h, 3d), got {text!r}"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000


def _time(ns: int) -> str:
    moment = datetime.fromtimestamp(ns // 10**9, UTC).replace(microsecond=(ns // 1000) % 10**6)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class PnlRow:
    """Realized PnL of one strategy in one symbol (money in tick*lot units)."""

    strategy: str
    symbol: str
    #: Orders the strategy sent in the symbol (within ``since``), filled or not.
    orders: int = 0
    fills: int = 0
    bought: int = 0
    sold: int = 0
    realized: int = 0
    #: Fees of the fills counted (tick*lot units); ``realized`` is net of them.
    fees: int = 0
    position: Position = field(default_factory=lambda: Position(""))
    #: (wall ns, cumulative realized) after each fill counted.
    curve: list[tuple[int, int]] = field(default_factory=list)


def pnl_rows(
    fills: Sequence[JournaledFill],
    since_ns: int | None = None,
    orders: Sequence[JournaledOrder] = (),
) -> list[PnlRow]:
    """Realized PnL by (strategy, symbol) over every fill, oldest first.

    Every fill moves the position (a position opened before ``since_ns``
    still counts when it closes), but only fills at or after ``since_ns``
    count in ``fills``, ``bought``, ``sold``, ``fees`` and ``realized``
    (net of the journaled fees). ``orders`` (already limited to
    ``since_ns``) are counted per (strategy, symbol): a strategy whose
    orders never filled still has its row.
    """
    rows: dict[tuple[str, str], PnlRow] = {}
    for order in orders:
        key = (order.strategy, order.symbol)
        row = rows.get(key)
        if row is None:
            row = rows[key] = PnlRow(order.strategy, order.symbol, position=Position(order.symbol))
        row.orders += 1
    for fill in fills:
        key = (fill.strategy, fill.symbol)
        row = rows.get(key)
        if row is None:
            row = rows[key] = PnlRow(fill.strategy, fill.symbol, position=Position(fill.symbol))
        side = Side(fill.side)
        realized = row.position.fill(side, fill.price, fill.quantity)
        # Journaled fills are on the tick grid: PnL is whole tick*lot units.
        assert isinstance(realized, int)
        fee = fill.fee or 0  # NULL: journaled before fees were kept
        realized -= fee
        if since_ns is not None and fill.ts_ns < since_ns:
            continue
        row.fills += 1
        if side is Side.BUY:
            row.bought += fill.quantity
        else:
            row.sold += fill.quantity
        row.realized += realized
        row.fees += fee
        row.curve.append((fill.ts_ns, row.realized))
    return [rows[key] for key in sorted(rows)]


def _write(header: list[str], rows: list[list[str]], as_csv: bool, out: TextIO) -> None:
    if as_csv:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return
    widths = [max([len(header[i])] + [len(row[i]) for row in rows]) for i in range(len(header))]
    for line in [header, *rows]:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
        out.write("\n")


def run_journal_command(
    path: str | Sequence[str],
    what: str,
    *,
    config_instruments: dict[str, Instrument],
    since: str | None = None,
    strategy: str | None = None,
    as_csv: bool = False,
    plot_path: str | None = None,
    out: TextIO | None = None,
) -> None:
    """Print ``orders``, ``fills`` or ``pnl`` from the journal at ``path``.

    Several paths (a deployment's worker journals) are read as one, each
    venue fill counted once (:mod:`~trading_engine.commands.journal_workers`).
    Raises :class:`~trading_engine.io.journal.JournalError` when the
    journal cannot be read, :class:`JournalUsageError` for a bad value.
    """
    paths = [path] if isinstance(path, str) else list(path)
    if ":memory:" in paths:
        raise JournalUsageError("journal.path is ':memory:': there is no journal to read")
    since_ns = None if since is None else parse_since(since)
    journal = open_journals(paths)
    try:
        instruments = {**config_instruments, **journal.instruments()}

        def inst(symbol: str) -> Instrument:
            found = instruments.get(symbol)
            if found is None:
                raise JournalUsageError(
                    f"symbol {symbol!r}: not in the journal or the configuration; "
                    "pass the --config that traded it"
                )
            return found

        if what == "orders":
            header = ["created", "client_order_id", "strategy", "symbol", "side", "type",
                      "price", "quantity", "tif", "status", "filled", "reason",
                      "tag"]  # fmt: skip
            rows = [
                [
                    _time(o.created_ns),
                    o.client_order_id,
                    o.strategy,
                    o.symbol,
                    o.side,
                    o.type,
                    "" if o.price is None else inst(o.symbol).format_price(o.price),
                    inst(o.symbol).format_size(o.quantity),
                    o.time_in_force,
                    o.status,
                    inst(o.symbol).format_size(o.filled),
                    o.reason or "",
                    o.tag or "",
                ]
                for o in journal.orders(since_ns, strategy)
            ]
        elif what == "fills":
            header = ["time", "fill_id", "client_order_id", "strategy", "symbol", "side",
                      "price", "quantity", "fee"]  # fmt: skip
            rows = [
                [
                    _time(f.ts_ns),
                    "" if f.fill_id is None else str(f.fill_id),
                    f.client_order_id,
                    f.strategy,
                    f.symbol,
                    f.side,
                    inst(f.symbol).format_price(f.price),
                    inst(f.symbol).format_size(f.quantity),
                    "" if f.fee is None else _exact_money(inst(f.symbol), f.fee),
                ]
                for f in journal.fills(None, strategy)
                if since_ns is None or f.ts_ns >= since_ns
            ]
        else:
            pnl = pnl_rows(
                journal.fills(None, strategy), since_ns, journal.orders(since_ns, strategy)
            )
            header = ["strategy", "symbol", "orders", "fills", "bought", "sold", "position",
                      "avg_price", "realized_pnl", "fees"]  # fmt: skip
            rows = []
            totals: dict[str, list[Any]] = {}
            for r in pnl:
                avg = r.position.avg_price
                realized = _exact_money(inst(r.symbol), r.realized)
                rows.append(
                    [
                        r.strategy,
                        r.symbol,
                        str(r.orders),
                        str(r.fills),
                        inst(r.symbol).format_size(r.bought),
                        inst(r.symbol).format_size(r.sold),
                        inst(r.symbol).format_size(r.position.quantity),
                        "" if avg is None else inst(r.symbol).format_price_fraction(avg),
                        realized,
                        _exact_money(inst(r.symbol), r.fees),
                    ]
                )
                total = totals.setdefault(r.strategy, [0, 0, 0, Decimal(0), Decimal(0)])
                total[0] += 1
                total[1] += r.orders
                total[2] += r.fills
                total[3] += Decimal(realized)
                total[4] += Decimal(_exact_money(inst(r.symbol), r.fees))
            # A strategy's total over its symbols: positions in different
            # instruments do not add up, money in the quote currency does.
            for name, (symbols, orders_sent, fills_seen, realized_sum, fees_sum) in totals.items():
                if symbols > 1:
                    at = max(i for i, row in enumerate(rows) if row[0] == name) + 1
                    rows.insert(
                        at,
                        [name, "*", str(orders_sent), str(fills_seen), "", "", "", "",
                         str(realized_sum), str(fees_sum)],
                    )  # fmt: skip
            if plot_path is not None:
                _plot(pnl, instruments, plot_path)
        _write(header, rows, as_csv, sys.stdout if out is None else out)
    finally:
        journal.close()


def _exact_money(inst: Instrument, value: int) -> str:
    """Money in tick*lot units, exactly: at the precision of tick size times lot size."""
    return inst.format_money(value, _places(inst.tick_size) + _places(inst.lot_size))


def _places(text: str) -> int:
    return max(0, -Decimal(text).normalize().as_tuple().exponent)  # type: ignore[operator]


def _plot(rows: list[PnlRow], instruments: dict[str, Instrument], path: str) -> None:
    """Cumulative realized PnL over time, one line per strategy and symbol (PNG)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise JournalUsageError(
            "--plot needs matplotlib: pip install 'trading-engine[plot]'"
        ) from None
    figure, axes = plt.subplots(figsize=(9, 5))
    for row in rows:
        if not row.curve:
            continue
        inst = instruments[row.symbol]
        times: Any = [datetime.fromtimestamp(ns / 1e9, UTC) for ns, _ in row.curve]
        # Plotting needs floats; the table keeps the exact amounts.
        values = [float(Decimal(_exact_money(inst, value))) for _, value in row.curve]
        axes.step(times, values, where="post", label=f"{row.strategy} {row.symbol}")
    axes.set_xlabel("time (UTC)")
    axes.set_ylabel("cumulative realized PnL (quote currency)")
    axes.set_title("trading-engine: realized PnL from the journal")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.autofmt_xdate()
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
