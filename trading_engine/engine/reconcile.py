"""Start-up reconciliation: the journal and the venue agree before trading starts.

:func:`reconcile` runs before ``/readyz`` says ready and before any
strategy's ``on_start``:

1. load the journal (orders still open or of unknown outcome, every fill,
   the fills cursor, the last trading state, the run ids of this engine);
2. rebuild positions per symbol and per strategy from the journaled fills;
3. read the venue's open orders (``GET /orders?status=open``) and its
   fills since the journal's cursor (``GET /fills?since=N``, 0 with no
   journal); fills of this engine's orders (a client order id the journal
   knows, or one of its runs' ids) are credited and journaled;
4. every journaled order open or of unknown outcome is settled: still
   open on the venue -> tracked again (its remainder counts as open
   exposure); otherwise read back (``GET /orders/{id}``) and its final
   state journaled; a 404 means it never reached the venue (``rejected``);
5. open orders on the venue that are not this engine's are handled by
   ``[journal] unknown_orders``: ``cancel`` them, ``adopt`` them (tracked
   under the strategy name ``adopted``; needs the venue's order body to
   carry ``symbol``, ``side`` and ``quantity``), or ``refuse`` (the engine
   stays not ready and says why). An order whose ``symbol`` is not one of
   this process's instruments belongs to another shard and is left alone;
6. the trading state is the strictest (halted > reducing > active) of
   the journal's last, ``[engine] initial_trading_state`` (which the
   supervisor sets for the workers it starts) and any state set while
   start-up ran (``/halt`` during reconciliation is never undone).

With the in-process venue (``gateway.mode = "simulated"``) there is no
venue to read: journaled open orders are settled ``canceled`` (that venue
does not survive a restart) and positions come from the journal alone.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..core.errors import InvalidValue
from ..core.orders import Order, OrderStatus, OrderType, TimeInForce
from ..core.protocol import Side
from ..core.risk import TradingState
from ..io.journal import JournaledOrder, JournalState

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["ADOPTED", "ReconciliationRefused", "VenueReader", "reconcile"]

log = logging.getLogger("trading_engine.reconcile")

#: The strategy name adopted venue orders are tracked under.
ADOPTED = "adopted"

_STATUSES = {status.value: status for status in OrderStatus}
_OPEN = frozenset({"new", "partially_filled"})


@runtime_checkable
class VenueReader(Protocol):
    """The venue reads reconciliation needs (the gateway implements them).

    Each raises ``ConnectionError`` when the venue gives no usable answer.
    """

    async def open_orders(self) -> list[dict[str, Any]]:
        """``GET /orders?status=open``: the venue's open order bodies."""

    async def fills(self, since: int) -> list[dict[str, Any]]:
        """``GET /fills?since=N``: fills with a ``fill_id`` above ``since``."""

    async def read_order(self, client_order_id: str) -> dict[str, Any] | None:
        """``GET /orders/{id}``: the order body, or None when the venue never saw it."""

    async def cancel_order(self, client_order_id: str) -> dict[str, Any] | None:
        """``DELETE /orders/{id}``: the order body after the cancel, or None (404)."""

    def resume(self, fills_cursor: int, orders: Iterable[Order]) -> None:
        """Continue the fills feed after ``fills_cursor`` and track ``orders``."""


class ReconciliationRefused(Exception):
    """``unknown_orders = "refuse"`` met orders the journal does not know."""


def _run_of(client_order_id: str) -> str | None:
    parts = client_order_id.rsplit("-", 2)
    return parts[1] if len(parts) == 3 else None


def _order_from_row(row: JournaledOrder) -> Order:
    order = Order(
        row.client_order_id,
        row.strategy,
        row.symbol,
        Side(row.side),
        OrderType(row.type),
        row.quantity,
        row.price,
        TimeInForce(row.time_in_force),
    )
    order.exchange_order_id = row.exchange_order_id
    return order


async def reconcile(engine: Engine, reader: VenueReader | None) -> dict[str, Any]:
    """Reconcile ``engine`` with its journal and the venue; returns the report.

    The report (also in ``/status`` and the journal) says when it ran, how
    long it took and what it found. Raises ``ConnectionError`` when the
    venue cannot be read and :class:`ReconciliationRefused` under
    ``unknown_orders = "refuse"`` when the venue has orders the journal
    does not know (the engine then stays not ready).
    """
    started = time.monotonic()
    journal = engine.journal
    state = journal.load() if journal is not None else JournalState()
    runs = state.runs | {engine.ids.run_id}
    instruments = engine.instruments
    counts: Counter[str] = Counter()
    report: dict[str, Any] = {
        "ran_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "journal": None if journal is None else journal.path,
        "journal_open_orders": len(state.open_orders),
        "journal_fills": len(state.fills),
        "fills_cursor": state.fills_cursor,
    }

    def ours(client_order_id: str) -> bool:
        return client_order_id in state.owners or _run_of(client_order_id) in runs

    def owner(client_order_id: str) -> str:
        known = state.owners.get(client_order_id)
        return known if known is not None else client_order_id.rsplit("-", 2)[0]

    # Positions from the journal.
    filled_by_order: Counter[str] = Counter()
    for fill in state.fills:
        if fill.symbol not in instruments:
            continue
        engine.positions.fill(
            fill.strategy, fill.symbol, Side(fill.side), fill.price, fill.quantity
        )
        filled_by_order[fill.client_order_id] += fill.quantity

    restored: list[Order] = []
    if reader is None:
        for row in state.open_orders.values():
            gone = _order_from_row(row)
            gone.filled = filled_by_order[row.client_order_id]
            gone.status = OrderStatus.CANCELED
            gone.reason = "the in-process venue does not survive a restart"
            if journal is not None:
                journal.order_status(gone)
            counts["settled_canceled"] += 1
    else:
        venue_open = await reader.open_orders()
        new_fills = await reader.fills(state.fills_cursor)
        report["venue_open_orders"] = len(venue_open)
        cursor = state.fills_cursor
        adopted: set[str] = set()
        unknown: list[dict[str, Any]] = []
        venue_ids = set()
        for body in venue_open:
            client_order_id = str(body.get("client_order_id"))
            symbol = body.get("symbol")
            if isinstance(symbol, str) and symbol not in instruments:
                if engine.config.engine.shards > 1:
                    counts["other_shard"] += 1
                    continue
                if ours(client_order_id):
                    # This engine's order for an instrument its configuration no
                    # longer has: nothing here can manage it, so it is canceled.
                    counts["canceled_unconfigured"] += 1
                    canceled = await reader.cancel_order(client_order_id)
                    log.warning(
                        "canceled %s, an order of this engine for %s, which the "
                        "configuration no longer has: %s",
                        client_order_id,
                        symbol,
                        None if canceled is None else canceled.get("status"),
                    )
                    continue
            venue_ids.add(client_order_id)
            if not ours(client_order_id):
                unknown.append(body)
        policy = engine.config.journal.unknown_orders
        report["unknown_orders"] = {
            "policy": policy,
            "count": len(unknown),
            "client_order_ids": sorted(str(body.get("client_order_id")) for body in unknown)[:50],
        }
        if unknown and policy == "refuse":
            raise ReconciliationRefused(
                f"the venue has {len(unknown)} open order(s) this journal does not know "
                f"(journal.unknown_orders = 'refuse'): "
                + ", ".join(report["unknown_orders"]["client_order_ids"][:10])
            )
        if policy == "adopt":
            adopted = {str(body.get("client_order_id")) for body in unknown}

        # Fills since the cursor: this engine's (and adopted orders') count.
        for venue_fill in sorted(new_fills, key=lambda item: int(item["fill_id"])):
            fill_id = int(venue_fill["fill_id"])
            cursor = max(cursor, fill_id)
            if fill_id <= state.fills_cursor:
                continue
            client_order_id = str(venue_fill["client_order_id"])
            inst = instruments.get(str(venue_fill.get("symbol")))
            if inst is None or not (ours(client_order_id) or client_order_id in adopted):
                continue
            try:
                price = inst.price_to_ticks(venue_fill["price"])
                lots = inst.size_to_lots(venue_fill["quantity"])
                side = Side(venue_fill["side"])
            except (InvalidValue, ValueError, KeyError):
                log.error("unreadable fill %r", venue_fill)
                counts["unreadable_fills"] += 1
                continue
            strategy = ADOPTED if client_order_id in adopted else owner(client_order_id)
            engine.positions.fill(strategy, inst.symbol, side, price, lots)
            filled_by_order[client_order_id] += lots
            if journal is not None:
                journal.fill(
                    client_order_id, strategy, inst.symbol, side.value, price, lots, fill_id
                )
            counts["new_fills"] += 1

        # The venue's open orders.
        for body in venue_open:
            client_order_id = str(body.get("client_order_id"))
            if client_order_id not in venue_ids:
                continue
            known = state.open_orders.get(client_order_id)
            order: Order | None
            if known is not None:
                order = _order_from_row(known)
            elif ours(client_order_id):
                order = _order_from_body(body, owner(client_order_id), engine)
                if order is None:
                    counts["canceled_unreadable"] += 1
                    await reader.cancel_order(client_order_id)
                    continue
                counts["restored_unjournaled"] += 1
                if journal is not None:
                    journal.order_submitted(order, _run_of(client_order_id))
            elif client_order_id in adopted:
                order = _order_from_body(body, ADOPTED, engine)
                if order is None:
                    raise ReconciliationRefused(
                        f"cannot adopt {client_order_id}: the venue's order body does not "
                        "say its symbol, side and quantity"
                    )
                counts["adopted"] += 1
                if journal is not None:
                    journal.order_submitted(order, ADOPTED)
            else:
                counts["canceled_unknown"] += 1
                canceled = await reader.cancel_order(client_order_id)
                log.warning(
                    "canceled unknown venue order %s (journal.unknown_orders = 'cancel'): %s",
                    client_order_id,
                    None if canceled is None else canceled.get("status"),
                )
                continue
            assert order is not None
            if not _apply_body(order, body, filled_by_order[client_order_id], engine):
                counts["filled_differs_from_fills"] += 1
            if order.is_open:
                restored.append(order)
                engine.restore_order(order)
                counts["restored_open"] += 1
            if journal is not None:
                journal.order_status(order)

        # Journaled orders that are not open on the venue: read each back.
        for client_order_id, row in state.open_orders.items():
            if client_order_id in venue_ids or row.symbol not in instruments:
                continue
            answer = await reader.read_order(client_order_id)
            order = _order_from_row(row)
            if answer is None:
                order.status = OrderStatus.REJECTED
                order.reason = "never reached the venue"
                counts["never_reached"] += 1
            else:
                if not _apply_body(order, answer, filled_by_order[client_order_id], engine):
                    counts["filled_differs_from_fills"] += 1
                if order.is_open:  # opened since the list was read
                    restored.append(order)
                    engine.restore_order(order)
                    counts["restored_open"] += 1
                else:
                    counts[f"settled_{order.status.value}"] += 1
            if journal is not None:
                journal.order_status(order)
        reader.resume(cursor, restored)
        if journal is not None and cursor > state.fills_cursor:
            journal.fills_cursor(cursor)
        report["fills_cursor"] = cursor

    _settle_trading_state(engine, state)
    report["trading_state"] = engine.risk.state.value
    report["found"] = dict(sorted(counts.items()))
    report["positions"] = {
        symbol: instruments[symbol].format_size(position.quantity)
        for symbol, position in engine.positions.by_symbol.items()
    }
    report["open_orders"] = [order.client_order_id for order in restored][:100]
    report["seconds"] = round(time.monotonic() - started, 3)
    if journal is not None:
        journal.reconciliation(json.dumps(report, sort_keys=True))
        journal.flush(raise_errors=True)
    log.info("start-up reconciliation: %s", json.dumps(report, sort_keys=True))
    return report


#: Strictness of the trading states: a start takes the strictest one it was given.
_STRICTNESS = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


def _settle_trading_state(engine: Engine, state: JournalState) -> None:
    """Step 6: the strictest of the trading states start-up was given.

    Candidates, in this order of precedence among equals: the state set
    while start-up ran (an operator's ``/halt``, the supervisor's, a
    journal failure), ``[engine] initial_trading_state`` (the supervisor's
    for a worker it starts), and the journal's last. So a halt that arrived
    during reconciliation is never undone by an older journaled state, and
    a worker restarted by a supervisor that says ``active`` still keeps
    its own journaled halt (risk, journal or operator). Only the
    initial state is journaled here: the others already are.
    """
    journal = engine.journal
    candidates: list[tuple[TradingState, str, str | None, bool]] = []
    who, why = engine.state_by
    if who != "start-up":
        candidates.append((engine.risk.state, who, why, False))
    initial = engine.config.engine.initial_trading_state
    if initial is not None:
        candidates.append((TradingState(initial), "supervisor", None, True))
    if state.trading_state is not None:
        value, who, why = state.trading_state
        candidates.append((TradingState(value), who, why, False))
    if not candidates:
        return
    # max() keeps the first of equals: the order above is the precedence.
    chosen, who, why, to_journal = max(candidates, key=lambda c: _STRICTNESS[c[0]])
    if chosen is not engine.risk.state:
        log.warning(
            "start-up: trading state %s (by %s%s), the strictest of %s",
            chosen.value,
            who,
            f": {why}" if why else "",
            ", ".join(f"{c[0].value} by {c[1]}" for c in candidates),
        )
    engine.risk.set_state(chosen)
    engine.state_by = (who, why)
    if to_journal and journal is not None:
        journal.trading_state(chosen.value, who, why)


def _apply_body(order: Order, body: dict[str, Any], filled_from_fills: int, engine: Engine) -> bool:
    """Set ``order``'s status and filled lots from the venue's body.

    The filled lots are those the fills log credited (the position's
    source of truth). Returns False, and logs both, when the body's
    ``filled_quantity`` says otherwise.
    """
    status = _STATUSES.get(str(body.get("status")))
    order.filled = min(filled_from_fills, order.quantity)
    agrees = True
    try:
        reported = engine.instruments[order.symbol].size_to_lots(body.get("filled_quantity"))
    except (InvalidValue, KeyError):
        reported = None
    if reported is not None and reported != order.filled:
        agrees = False
        log.error(
            "order %s: the venue reports %d lots filled, its fills log %d",
            order.client_order_id,
            reported,
            order.filled,
        )
    order.exchange_order_id = body.get("order_id", order.exchange_order_id)
    if status is None or status in (OrderStatus.PENDING_NEW, OrderStatus.UNKNOWN):
        order.status = OrderStatus.UNKNOWN
        return agrees
    order.status = status
    if body.get("reason") is not None:
        order.reason = str(body["reason"])
    return agrees


def _order_from_body(body: dict[str, Any], strategy: str, engine: Engine) -> Order | None:
    """An order rebuilt from a venue body that says what it is, else None."""
    inst = engine.instruments.get(str(body.get("symbol")))
    if inst is None:
        return None
    try:
        side = Side(body["side"])
        kind = OrderType(body.get("type", "limit"))
        quantity = inst.size_to_lots(body["quantity"])
        price = inst.price_to_ticks(body["price"]) if body.get("price") is not None else None
        tif = TimeInForce(body.get("time_in_force", "GTC"))
    except (KeyError, ValueError, InvalidValue):
        return None
    return Order(
        str(body["client_order_id"]), strategy, inst.symbol, side, kind, quantity, price, tif
    )
