"""The per-strategy view of ``/status`` (and of the demo's screen and summary).

Built when asked, from counters the hot path already keeps
(:class:`~trading_engine.engine.dispatch.StrategyRunner`: O(1) increments
and stores) and the ledger's per-strategy positions, so reporting adds
nothing to the order path.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

from ..core.positions import Position

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["strategies_status"]


def strategies_status(engine: Engine) -> dict[str, Any]:
    """The per-strategy section of ``/status``: one entry per configured strategy.

    Each entry: ``enabled``, ``state`` (``running`` | ``disabled``),
    ``disabled_reason`` and ``last_error`` (text or null), ``errors``,
    ``orders`` (sent), ``fills`` (credited to its position by this
    process), ``denied`` (total) and ``denials`` (by reason, nonzero
    only), ``positions`` by symbol (quantity, avg_price, realized_pnl,
    unrealized_pnl at mid: decimal strings at the instrument's
    precision), ``realized_pnl`` and ``unrealized_pnl`` summed over its
    symbols (exact decimal strings; these three are null while
    :attr:`~.engine.Engine.positions_known` is False), and ``last_decision_at`` (its last
    hook evaluation) and ``last_order_at`` (its last order request),
    ISO 8601 UTC or null. ``O(strategies * symbols)``.
    """
    # Runner times are perf_counter ns: shift them onto the wall clock once.
    offset = time.time_ns() - perf_counter_ns()
    by_strategy = engine.positions.by_strategy
    known = engine.positions_known
    strategies: dict[str, Any] = {}
    for name, runner in engine.runners.items():
        symbols = dict.fromkeys(runner.strategy.symbols)
        for strategy, symbol in by_strategy:
            if strategy == name:
                symbols[symbol] = None
        positions: dict[str, Any] = {}
        realized_total = Decimal(0)
        unrealized_total = Decimal(0)
        for symbol in symbols:
            inst = engine.instruments.get(symbol)
            entry = engine.builder.books.get(symbol)
            if inst is None or entry is None:
                continue
            position = by_strategy.get((name, symbol))
            if position is None:
                position = Position(symbol)
            avg = position.avg_price
            realized = inst.format_money(position.realized)
            unrealized = inst.format_money(position.unrealized(entry.book.mid()))
            realized_total += Decimal(realized)
            unrealized_total += Decimal(unrealized)
            positions[symbol] = {
                "quantity": inst.format_size(position.quantity),
                "avg_price": None if avg is None else inst.format_price_fraction(avg),
                "realized_pnl": realized,
                "unrealized_pnl": unrealized,
            }
        denials = {str(reason): count for reason, count in runner.denials.items() if count}
        strategies[name] = {
            "enabled": runner.enabled,
            "state": runner.state,
            "disabled_reason": runner.disabled_reason,
            "last_error": runner.last_error,
            "errors": runner.errors,
            "orders": runner.orders,
            "fills": runner.fills,
            "denied": sum(denials.values()),
            "denials": dict(sorted(denials.items())),
            # Unknown while start-up reconciliation has not settled them (not flat).
            "positions": positions if known else None,
            # "f": a plain decimal (str() writes a zero of 7 decimals as 0E-7).
            "realized_pnl": f"{realized_total:f}" if known else None,
            "unrealized_pnl": f"{unrealized_total:f}" if known else None,
            "last_decision_at": _wall(runner.last_evaluation_ns, offset),
            "last_order_at": _wall(runner.last_order_ns, offset),
        }
    return strategies


def _wall(perf_ns: int, offset_ns: int) -> str | None:
    """A perf_counter time (0: never) as ISO 8601 UTC with milliseconds, or None."""
    if not perf_ns:
        return None
    moment = datetime.fromtimestamp((perf_ns + offset_ns) / 1e9, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
