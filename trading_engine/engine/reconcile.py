"""Start-up reconciliation: the journal and the venue agree before trading starts.

:func:`reconcile` runs before ``/readyz`` says ready and before any
strategy's ``on_start``:

1. load the journal (orders still open or of unknown outcome, every fill,
   the fills cursor, the last trading state, the run ids of this engine);
2. track every journaled order open or of unknown outcome again in the
   ledger (``unknown`` until the venue says), then replay the journaled
   fills through the ledger's own crediting path (``Ledger.apply_fill``
   for those orders, so a partially filled order's fill accounting is
   whole again; straight to the position for closed orders);
3. read the venue's open orders (``GET /orders?status=open``) and its
   fills since the journal's cursor (``GET /fills?since=N``, 0 with no
   journal); fills of this deployment's orders (a client order id that
   starts with ``<[engine] deployment>-``, one the journal knows, or one
   of its runs' ids) on this process's symbols are credited the same way
   and journaled;
4. every tracked order is settled with the venue's answer (its body in
   the open list, else ``GET /orders/{id}``), applied as an order report
   whose filled lots stay held until the fills log prices them: still
   open -> tracked (its remainder counts as open exposure), an order that
   opened while reconciliation ran included; final -> closed and
   journaled; a 404 means it never reached the venue (``rejected``);
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

Positions belong to the deployment, not to a journal file or a worker:
each reconciliation journals its layout (deployment, shard, shard count).
When the journal's last layout is not this process's (``run --workers N``
became M, so symbols moved between workers' journals; a new or moved
``journal.path``; another deployment name), the journal's fills of the
venue's current log are not trusted to be complete for this process's
symbols: positions are rebuilt from the venue's whole fills log
(``GET /fills?since=0``), taking every fill of this deployment's orders
on its symbols (fills of an earlier venue log, which the venue can no
longer list, still come from the journal). The venue's open orders of
this deployment on its symbols are tracked whichever worker sent them.
The report says which source the positions came from and why.

With the in-process venue (``gateway.mode = "simulated"``) there is no
venue to read: journaled open orders are settled ``canceled`` (that venue
does not survive a restart) and positions come from the journal alone.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from ..core.errors import InvalidValue, UnreadableAnswer
from ..core.fees import fee_to_units
from ..core.orders import Order, OrderStatus, OrderType, TimeInForce
from ..core.protocol import Side
from ..core.reports import FillReport, parse_order_body
from ..core.risk import TradingState
from ..io.journal import Journal, JournaledOrder, JournalError, JournalState
from ..io.order_api import ALL_SYMBOLS

if TYPE_CHECKING:
    from .engine import Engine

__all__ = [
    "ADOPTED",
    "ReconciliationRefused",
    "VenueChanged",
    "VenueReader",
    "check_venue",
    "halt_on_missing_fills",
    "reconcile",
]

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

    async def fills(self, since: int | Mapping[str, int]) -> list[dict[str, Any]]:
        """``GET /fills?since=N``: fills with a ``fill_id`` above ``since``.

        A reader of a venue with one fills stream per symbol (a
        ``fill_streams`` attribute other than ``("*",)``) also takes a fill
        id per stream, and each document says its ``stream``.
        """

    async def read_order(self, client_order_id: str) -> dict[str, Any] | None:
        """``GET /orders/{id}``: the order body, or None when the venue never saw it."""

    async def cancel_order(self, client_order_id: str) -> dict[str, Any] | None:
        """``DELETE /orders/{id}``: the order body after the cancel, or None (404)."""

    def resume(self, fills_cursor: int | Mapping[str, int], orders: Iterable[Order] = ()) -> None:
        """Continue the fills feed after ``fills_cursor`` (per stream), tracking ``orders``."""


def fill_streams(reader: VenueReader | None) -> tuple[str, ...]:
    """The reader's fills streams: ``("*",)`` unless it says it has one per symbol."""
    streams = getattr(reader, "fill_streams", None)
    return (ALL_SYMBOLS,) if not streams else tuple(streams)


async def _read_fills(reader: VenueReader, since: Mapping[str, int]) -> list[dict[str, Any]]:
    """The venue's fills after ``since`` (per stream); the own API's one log by its one id."""
    if tuple(since) == (ALL_SYMBOLS,):
        return await reader.fills(since[ALL_SYMBOLS])
    return await reader.fills(dict(since))


def _stream_of(document: Mapping[str, Any], streams: tuple[str, ...]) -> str:
    """The fills stream of a venue fill document."""
    if streams == (ALL_SYMBOLS,):
        return ALL_SYMBOLS
    return str(document.get("stream", document.get("symbol")))


def _journal_streams(journal: Journal, reader: VenueReader | None) -> tuple[str, ...]:
    streams = fill_streams(reader)
    journal.use_fill_streams(streams)
    return streams


class ReconciliationRefused(Exception):
    """``unknown_orders = "refuse"`` met orders the journal does not know."""


class VenueChanged(JournalError):
    """The journal was written against another venue, or the venue was reset (exit 2)."""


_WHAT_TO_DO = (
    "use a new journal (journal.path) for this venue, or, if it is to be taken as a new "
    "venue, start once with `trading-engine run --accept-new-venue` (config key "
    "journal.accept_new_venue): the fills cursor restarts, this venue is recorded, the "
    "journaled fills and the positions they make are kept"
)


async def check_venue(engine: Engine, reader: VenueReader | None) -> None:
    """Is the venue the one the journal's positions and fills cursor belong to?

    Two checks, before anything is read from the journal or the venue:

    * identity: the journal records the gateway's base URL and a
      fingerprint of its API key; another one is another venue or account;
    * the fills log: fill ids increase and fills are never deleted, so the
      same venue answers ``GET /fills?since=<cursor - 1>`` with at least the
      fill ``cursor`` (and, when that fill is this engine's, the same one
      the journal holds). No fill id at or above the cursor means the
      venue's log restarted (a venue reset): fills after it would carry ids
      the journal believes read, and never reach it.

    Either finding raises :class:`VenueChanged` (the engine exits 2) with
    what to do, unless ``[journal] accept_new_venue``: then the venue is
    recorded as the journal's (the fills cursor restarts at 0 when the log
    is another) and start-up goes on. A journal that never recorded a
    venue records this one once reconciliation has read its open orders
    and fills with the configured key. Skipped without a venue to read (the
    in-process venue) or without a journal. Raises ``ConnectionError``
    when the venue cannot be read (start-up retries).
    """
    journal = engine.journal
    if journal is None or reader is None:
        return
    streams = _journal_streams(journal, reader)
    cursors = journal.fills_cursors(streams)
    recorded = journal.recorded_venue()
    current = journal.venue
    problems: list[str] = []
    if current is not None and recorded is not None and recorded != current:
        problems.append(
            f"the journal was written against {recorded}, the configuration trades on {current}"
        )
    new_log = False
    for stream, cursor in cursors.items():
        if cursor <= 0:
            continue
        of = "" if stream == ALL_SYMBOLS else f" of {stream}"
        fills = await _read_fills(reader, {stream: cursor - 1})
        fills = [fill for fill in fills if _stream_of(fill, streams) == stream]
        at_cursor = [fill for fill in fills if int(fill.get("fill_id", 0)) == cursor]
        newest = max((int(fill.get("fill_id", 0)) for fill in fills), default=None)
        if newest is None or newest < cursor:
            new_log = True
            problems.append(
                f"the venue's newest fill id{of} is "
                f"{'below ' + str(cursor) if newest is None else newest}, the journal has read "
                f"its fills up to {cursor}: the venue was reset or is another one"
            )
        elif at_cursor and (mine := journal.journaled_fill(cursor, stream)) is not None:
            venue_fill = at_cursor[0]
            if str(venue_fill.get("client_order_id")) != mine.client_order_id:
                new_log = True
                problems.append(
                    f"the venue's fill {cursor}{of} is for "
                    f"{venue_fill.get('client_order_id')}, the journal has it for "
                    f"{mine.client_order_id}: the venue was reset or is another one"
                )
    if not problems:
        return  # a journal without a venue records this one once it answered (_reconcile)
    engine.order_faults["venue_changed"] += 1
    summary = "; ".join(problems)
    if not engine.config.journal.accept_new_venue:
        raise VenueChanged(f"journal {journal.path}: {summary}; {_WHAT_TO_DO}")
    log.warning("journal %s: %s; accepted as a new venue (--accept-new-venue or "
                "journal.accept_new_venue)",
                journal.path, summary)  # fmt: skip
    accepted = current if current is not None else recorded
    journal.record_venue(accepted, f"accepted: {summary}", new_fills_log=new_log)
    await journal.write_pending(raise_errors=True)


def halt_on_missing_fills(engine: Engine, report: dict[str, Any]) -> None:
    """After the venue's fills are read: orders whose journaled fills fall short.

    An order journaled with filled lots (``filled``, or any status with a
    filled quantity) whose journaled fills add up to fewer lots has fills
    the journal never got, and positions rebuilt from the fills are wrong.
    Each is counted (``order_faults{kind="fills_missing"}``), listed in the
    report, and trading starts halted (who ``journal``, naming the first
    order) whatever the journal's last state was.
    """
    journal = engine.journal
    if journal is None:
        return
    missing = journal.fills_missing()
    if not missing:
        return
    engine.order_faults["fills_missing"] += len(missing)
    client_order_id, status, filled, lots = missing[0]
    reason = (
        f"order {client_order_id} is journaled {status} with {filled} lots filled, its "
        f"journaled fills add up to {lots}"
        + (f" (and {len(missing) - 1} more order(s))" if len(missing) > 1 else "")
        + ": positions from the journal are wrong; check them with the venue"
    )
    report["fills_missing"] = [row[0] for row in missing][:50]
    log.error("start-up reconciliation: %s", reason)
    engine.risk.set_state(TradingState.HALTED)
    engine.state_by = ("journal", reason)
    journal.trading_state(TradingState.HALTED.value, "journal", reason)
    report["trading_state"] = engine.risk.state.value


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
    order.tag = row.tag
    order.post_only = bool(row.post_only)
    # Open or of unknown outcome until the venue's answer settles it.
    order.status = OrderStatus.UNKNOWN
    return order


async def reconcile(engine: Engine, reader: VenueReader | None) -> dict[str, Any]:
    """Reconcile ``engine`` with its journal and the venue; returns the report.

    The report (also in ``/status`` and the journal) says when it ran, how
    long it took and what it found. Raises ``ConnectionError`` when the
    venue cannot be read and :class:`ReconciliationRefused` under
    ``unknown_orders = "refuse"`` when the venue has orders the journal
    does not know (the engine then stays not ready). Strategies are told
    nothing of what it replays.
    """
    engine._replaying = True
    try:
        return await _reconcile(engine, reader)
    finally:
        engine._replaying = False


async def _reconcile(engine: Engine, reader: VenueReader | None) -> dict[str, Any]:
    started = time.monotonic()
    await check_venue(engine, reader)
    journal = engine.journal
    ledger = engine.ledger
    state = journal.load() if journal is not None else JournalState()
    streams = fill_streams(reader)
    # The cursor of each fills stream (a single-stream journal's, given to its symbol).
    cursors = journal.fills_cursors(streams) if journal is not None else dict.fromkeys(streams, 0)
    if journal is not None:
        journal.use_fill_streams(streams)
        journal.adopt_fill_streams(streams)
    per_symbol = streams != (ALL_SYMBOLS,)
    runs = state.runs | {engine.ids.run_id}
    instruments = engine.instruments
    counts: Counter[str] = Counter()
    report: dict[str, Any] = {
        "ran_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "journal": None if journal is None else journal.path,
        "journal_open_orders": len(state.open_orders),
        "journal_fills": len(state.fills),
        "fills_cursor": max(cursors.values(), default=0),
    }
    if per_symbol:
        report["fills_cursors"] = dict(cursors)

    ids = engine.ids
    layout = {
        "deployment": ids.deployment,
        "shard": engine.config.engine.shard,
        "shards": engine.config.engine.shards,
    }
    report["layout"] = layout
    # Positions come from the venue's whole fills log when the journal's are
    # not known to be complete for this layout (see the module's docstring).
    rebuild = reader is not None and state.layout != layout
    report["positions_from"] = "venue" if rebuild else "journal"
    if rebuild:
        report["rebuild_reason"] = (
            "no layout journaled (a new or moved journal)"
            if state.layout is None
            else f"the journal's positions were kept under {json.dumps(state.layout)}"
        )

    def ours(client_order_id: str) -> bool:
        return (
            ids.owns(client_order_id)
            or client_order_id in state.owners
            or _run_of(client_order_id) in runs
        )

    def owner(client_order_id: str) -> str:
        known = state.owners.get(client_order_id)
        if known is not None:
            return known
        if ids.owns(client_order_id):
            return ids.strategy_of(client_order_id)
        return client_order_id.rsplit("-", 2)[0]

    # The journal's open orders, tracked again; then its fills, replayed.
    for row in state.open_orders.values():
        if row.symbol in instruments:
            ledger.restore(_order_from_row(row))
    # Fees journaled for fills the rebuild reads again from the venue's log
    # (a venue that reports no fee gets the fee charged when it was journaled).
    journaled_fees: dict[tuple[str, int], int] = {}
    for fill in state.fills:
        if fill.symbol not in instruments:
            continue
        if rebuild and fill.fill_id is not None and fill.venue == state.venue_log:
            if fill.fee is not None:
                stream = fill.symbol if per_symbol else ALL_SYMBOLS
                journaled_fees[(stream, fill.fill_id)] = fill.fee
            continue  # the venue's log lists it: read from there below
        side = Side(fill.side)
        if fill.client_order_id in ledger.orders:
            ledger.apply_fill(
                FillReport(
                    fill.client_order_id,
                    fill.price,
                    fill.quantity,
                    fill.fill_id,
                    fill.symbol,
                    side,
                    fill.fee,  # the journaled fee is restored as it was charged
                ),
                journal=False,
            )
        else:
            ledger.credit_unattached(
                fill.strategy,
                fill.symbol,
                side,
                fill.price,
                fill.quantity,
                fill.client_order_id,
                fill.fee,
            )

    if reader is None:
        for gone in ledger.open_order_list():
            ledger.apply_status(
                gone.client_order_id,
                OrderStatus.CANCELED,
                "the in-process venue does not survive a restart",
            )
            counts["settled_canceled"] += 1
    else:
        since = {stream: 0 if rebuild else cursor for stream, cursor in cursors.items()}
        venue_open = await reader.open_orders()
        new_fills = await _read_fills(reader, since)
        if journal is not None and journal.recorded_venue() is None and journal.venue is not None:
            # Recorded once the venue has answered with this key (a key it refuses
            # never becomes the journal's), before anything of this start is written.
            journal.record_venue(journal.venue, "first start against it", new_fills_log=False)
            await journal.write_pending(raise_errors=True)
        report["venue_open_orders"] = len(venue_open)
        read_to = dict(cursors)
        adopted: set[str] = set()
        unknown: list[dict[str, Any]] = []
        venue_bodies: dict[str, dict[str, Any]] = {}
        sharded = engine.config.engine.shards > 1
        # This shard's strategies (the configuration is cut to the shard).
        shard_strategies = {item.name for item in engine.config.strategies}
        for body in venue_open:
            client_order_id = str(body.get("client_order_id"))
            symbol = body.get("symbol")
            if (
                sharded
                and not isinstance(symbol, str)
                and ids.owns(client_order_id)
                and client_order_id not in state.owners
                and ids.strategy_of(client_order_id) not in shard_strategies
            ):
                # The order API's answer need not say the symbol: the id names
                # the strategy, and a strategy lives in one shard. Another
                # worker's order is left alone, never canceled as unreadable.
                counts["other_shard"] += 1
                continue
            if isinstance(symbol, str) and symbol not in instruments:
                if sharded:
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
            venue_bodies[client_order_id] = body
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

        # The venue's open orders that the journal does not list: this engine's
        # (a row lost in a crash) and adopted ones are tracked, others canceled.
        for client_order_id, body in venue_bodies.items():
            if client_order_id in ledger.orders:
                continue
            found: Order | None
            if ours(client_order_id):
                found = _order_from_body(body, owner(client_order_id), engine)
                if found is None:
                    counts["canceled_unreadable"] += 1
                    await reader.cancel_order(client_order_id)
                    continue
                counts["restored_unjournaled"] += 1
                if journal is not None:
                    journal.order_submitted(found, _run_of(client_order_id))
            elif client_order_id in adopted:
                found = _order_from_body(body, ADOPTED, engine)
                if found is None:
                    raise ReconciliationRefused(
                        f"cannot adopt {client_order_id}: the venue's order body does not "
                        "say its symbol, side and quantity"
                    )
                counts["adopted"] += 1
                if journal is not None:
                    journal.order_submitted(found, ADOPTED)
            else:
                counts["canceled_unknown"] += 1
                canceled = await reader.cancel_order(client_order_id)
                log.warning(
                    "canceled unknown venue order %s (journal.unknown_orders = 'cancel'): %s",
                    client_order_id,
                    None if canceled is None else canceled.get("status"),
                )
                continue
            found.status = OrderStatus.UNKNOWN
            ledger.restore(found)

        # Fills since the cursor: this engine's (and adopted orders') count.
        closed_lots: Counter[str] | None = None  # lots of the journal's closed orders
        for venue_fill in sorted(
            new_fills, key=lambda item: (_stream_of(item, streams), int(item["fill_id"]))
        ):
            fill_id = int(venue_fill["fill_id"])
            stream = _stream_of(venue_fill, streams)
            if stream not in since:
                continue  # a stream this process does not read
            read_to[stream] = max(read_to[stream], fill_id)
            if fill_id <= since[stream]:
                continue  # redelivered: the journal has it
            client_order_id = str(venue_fill["client_order_id"])
            inst = instruments.get(str(venue_fill.get("symbol")))
            if inst is None or not (ours(client_order_id) or client_order_id in adopted):
                continue
            try:
                price = inst.price_to_ticks(venue_fill["price"])
                lots = inst.size_to_lots(venue_fill["quantity"])
                side = Side(venue_fill["side"])
                # The venue's fee for the fill, when it reports one (it wins over the rates).
                fee_text = venue_fill.get("fee")
                fee = (
                    journaled_fees.get((stream, fill_id))
                    if fee_text is None
                    else fee_to_units(fee_text, inst.tick_size, inst.lot_size)
                )
                venue_fee = venue_fill.get("venue_fee")
                fee_asset = venue_fill.get("fee_asset")
                unpriced = fee_text is None and isinstance(fee_asset, str)
                if unpriced:
                    fee = 0  # an asset without a price: kept as the venue said, not charged
            except (InvalidValue, ValueError, KeyError):
                log.error("unreadable fill %r", venue_fill)
                counts["unreadable_fills"] += 1
                continue
            counts["new_fills"] += 1
            report_fill = FillReport(client_order_id, price, lots, fill_id, inst.symbol, side, fee)
            if isinstance(fee_asset, str) and isinstance(venue_fee, str):
                report_fill.venue_fee, report_fill.fee_asset = venue_fee, fee_asset
            if client_order_id in ledger.orders:
                if unpriced:
                    report_fill.fee = None  # the ledger charges no rate for it
                ledger.apply_fill(report_fill)
                continue
            if unpriced:
                report_fill.fee = None
                engine._venue_fee(report_fill)
            strategy = ADOPTED if client_order_id in adopted else owner(client_order_id)
            if fee is None:
                fee = ledger.fees[inst.symbol].fee(price, lots, lots)  # maker or taker: unknown
            ledger.credit_unattached(strategy, inst.symbol, side, price, lots, client_order_id, fee)
            if journal is not None and client_order_id in state.owners:
                # A closed order of the journal: its fills past its quantity are an overfill
                # (credited, as the position is the venue's, and halting, as it is at run time).
                if closed_lots is None:
                    closed_lots = Counter()
                    if not rebuild:  # (a rebuild reads this venue's fills again from 0)
                        for journaled in state.fills:
                            closed_lots[journaled.client_order_id] += journaled.quantity
                closed_lots[client_order_id] += lots
                closed = journal.order(client_order_id)
                if closed is not None and closed_lots[client_order_id] > closed.quantity:
                    counts["overfills"] += 1
                    ledger.fault(
                        client_order_id,
                        "overfill",
                        f"fill {fill_id} of {lots} lots brings the closed order's fills to "
                        f"{closed_lots[client_order_id]} lots of {closed.quantity}",
                    )
            if journal is not None:
                journal.fill(
                    client_order_id, strategy, inst.symbol, side.value, price, lots, fill_id,
                    fee=fee, venue_fee=report_fill.venue_fee, fee_asset=report_fill.fee_asset,
                )  # fmt: skip

        # Every tracked order settled with the venue's answer.
        for order in ledger.open_order_list():
            client_order_id = order.client_order_id
            answer = venue_bodies.get(client_order_id)
            if answer is None:
                answer = await reader.read_order(client_order_id)
                if answer is None:
                    ledger.apply_status(
                        client_order_id, OrderStatus.REJECTED, "never reached the venue"
                    )
                    counts["never_reached"] += 1
                    continue
            if not _settle(engine, order, answer):
                counts["unreadable_answer"] += 1
                canceled = await reader.cancel_order(client_order_id)
                if canceled is None or not _settle(engine, order, canceled):
                    continue
            if order.reported != order.feed_filled:
                counts["filled_differs_from_fills"] += 1
                log.error(
                    "order %s: the venue reports %d lots filled, its fills log %d",
                    client_order_id,
                    order.reported,
                    order.feed_filled,
                )
            if order.is_open:
                counts["restored_open"] += 1
            else:
                counts[f"settled_{order.status.value}"] += 1
        # The orders tracked teach the reader their venue ids (Binance's trades name them).
        reader.resume(read_to if per_symbol else read_to[ALL_SYMBOLS], ledger.open_order_list())
        if journal is not None:
            for stream, cursor in read_to.items():
                if cursor > cursors[stream]:
                    journal.fills_cursor(cursor, stream)
        report["fills_cursor"] = max(read_to.values(), default=0)
        if per_symbol:
            report["fills_cursors"] = dict(read_to)
    restored = ledger.open_order_list()

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
        await journal.write_pending(raise_errors=True)
        halt_on_missing_fills(engine, report)
        journal.reconciliation(json.dumps(report, sort_keys=True))
        await journal.write_pending(raise_errors=True)
    log.info("start-up reconciliation: %s", json.dumps(report, sort_keys=True))
    return report


#: Strictness of the trading states: a start takes the strictest one it was given.
_STRICTNESS = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


#: The reason journaled with a start-up state that came from the configuration.
_INITIAL_STATE: Final = "engine.initial_trading_state"


def _settle_trading_state(engine: Engine, state: JournalState) -> None:
    """Step 6: the strictest of the trading states start-up was given.

    Candidates, in this order of precedence among equals: the state set
    while start-up ran (an operator's ``/halt``, the supervisor's, a
    journal failure), the journal's last, and ``[engine]
    initial_trading_state``. So a halt that arrived during reconciliation
    is never undone by an older journaled state; a worker restarted by a
    supervisor that says ``active`` still keeps its own journaled halt
    (risk, journal or operator), and one that says ``halted`` keeps the
    journaled halt's own author and reason. The initial state is the
    operator's (written in the configuration, or the state the operator
    last set through the workers' supervisor, which sets it for the
    workers it starts): it is journaled as set by ``admin`` with the
    reason ``engine.initial_trading_state``, so an alert on halts the
    engine made itself (``who`` other than ``admin``) stays quiet. Only
    the initial state is journaled here: the others already are.
    """
    journal = engine.journal
    candidates: list[tuple[TradingState, str, str | None, bool]] = []
    who, why = engine.state_by
    if who != "start-up":
        candidates.append((engine.risk.state, who, why, False))
    if state.trading_state is not None:
        value, who, why = state.trading_state
        candidates.append((TradingState(value), who, why, False))
    initial = engine.config.engine.initial_trading_state
    if initial is not None:
        candidates.append((TradingState(initial), "admin", _INITIAL_STATE, True))
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


def _settle(engine: Engine, order: Order, body: dict[str, Any]) -> bool:
    """Apply the venue's body for ``order`` as an order report; False if it is unreadable.

    Its filled lots stay held until the fills log prices them: at start-up
    the fills log, not an average, is the source of every lot's price.
    """
    try:
        report = parse_order_body(body, engine.instruments[order.symbol], order.client_order_id)
    except UnreadableAnswer as exc:
        log.error("order %s: unreadable venue answer (%s): %r", order.client_order_id, exc, body)
        return False
    return engine.ledger.apply_report(report, credit_average=False)


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
