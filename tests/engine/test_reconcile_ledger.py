"""Start-up reconciliation through the ledger, against a scripted venue reader.

The venue answers exactly what each test scripts: an order that opened
while reconciliation ran, fills the venue lists again below the cursor.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import NullSink, config
from trading_engine.core.orders import Order, OrderType, TimeInForce
from trading_engine.core.protocol import Side
from trading_engine.engine.engine import Engine
from trading_engine.io.journal import Journal


class ScriptedVenue(NullSink):
    """An order sink and venue reader answering from scripted bodies."""

    def __init__(
        self,
        open_orders: list[dict[str, Any]],
        fills: list[dict[str, Any]],
        orders: dict[str, dict[str, Any]],
    ) -> None:
        self._open = open_orders
        self._fills = fills
        self._orders = orders
        self.cursor = -1

    # -- VenueReader
    async def open_orders(self) -> list[dict[str, Any]]:
        return list(self._open)

    async def fills(self, since: int) -> list[dict[str, Any]]:
        return list(self._fills)  # ignores ``since``: lists its whole log

    async def read_order(self, client_order_id: str) -> dict[str, Any] | None:
        return self._orders.get(client_order_id)

    async def cancel_order(self, client_order_id: str) -> dict[str, Any] | None:
        return None

    def resume(self, fills_cursor: int, orders: Iterable[Order] = ()) -> None:
        self.cursor = fills_cursor


def body(cid: str, status: str, filled: str = "0.000") -> dict[str, Any]:
    return {
        "order_id": "X",
        "client_order_id": cid,
        "symbol": "BTC-USD",
        "side": "buy",
        "type": "limit",
        "quantity": "0.010",
        "price": "100.00",
        "status": status,
        "filled_quantity": filled,
        "avg_price": None,
        "reason": None,
    }


def fill(fill_id: int, cid: str, quantity: str) -> dict[str, Any]:
    return {
        "fill_id": fill_id,
        "client_order_id": cid,
        "symbol": "BTC-USD",
        "side": "buy",
        "price": "100.00",
        "quantity": quantity,
        "ts": 0,
    }


def previous_run(path: Path, cursor: int, fills: Iterable[tuple[int, str, int]] = ()) -> None:
    """A journal as an earlier run left it: order probe-runA-1 (10 lots) and its fills."""
    journal = Journal.open(str(path))
    from trading_engine import Instrument

    journal.begin_run("runA", [Instrument("BTC-USD", "0.01", "0.001")])
    order = Order(
        "probe-runA-1", "probe", "BTC-USD", Side.BUY, OrderType.LIMIT, 10, 10000, TimeInForce.GTC
    )
    journal.order_submitted(order)
    for fill_id, cid, lots in fills:
        journal.fill(cid, "probe", "BTC-USD", "buy", 10000, lots, fill_id)
    if cursor:
        journal.fills_cursor(cursor)
    journal.flush(raise_errors=True)
    journal.close()


async def start(path: Path, venue: ScriptedVenue) -> Engine:
    engine = Engine(
        config(journal={"path": str(path)}, feed={"port": 0}), run_id="runB", sink=venue
    )
    engine.attach_journal(Journal.open(str(path)))
    await engine.start(serve_feed=False)
    return engine


@pytest.mark.asyncio
async def test_an_order_that_opened_while_reconciliation_ran_is_tracked(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    previous_run(path, cursor=0)
    # Not in the open list when it was read; open by the time it is read back.
    venue = ScriptedVenue([], [], {"probe-runA-1": body("probe-runA-1", "new")})
    engine = await start(path, venue)
    try:
        order = engine.orders["probe-runA-1"]
        assert order.is_open
        assert engine.exposure["BTC-USD"] == [10, 0]
        assert engine.reconciliation is not None
        assert engine.reconciliation["found"].get("restored_open") == 1
    finally:
        await engine.stop(0.2)


@pytest.mark.asyncio
async def test_fills_the_venue_lists_again_below_the_cursor_are_not_credited_twice(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    previous_run(path, cursor=1, fills=[(1, "probe-runA-1", 4)])
    venue = ScriptedVenue(
        [body("probe-runA-1", "partially_filled", "0.006")],
        [fill(1, "probe-runA-1", "0.004"), fill(2, "probe-runA-1", "0.002")],
        {},
    )
    engine = await start(path, venue)
    try:
        assert engine.positions.quantity("BTC-USD") == 6  # 4 journaled + 2 new, not 10
        order = engine.orders["probe-runA-1"]
        assert (order.filled, order.feed_filled) == (6, 6)
        assert engine.exposure["BTC-USD"] == [4, 0]
        assert venue.cursor == 2
    finally:
        await engine.stop(0.2)


@pytest.mark.asyncio
async def test_fills_of_a_closed_order_listed_again_below_the_cursor_are_not_credited_twice(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    previous_run(path, cursor=1, fills=[(1, "probe-runA-1", 10)])
    journal = Journal.open(str(path))
    order = Order(
        "probe-runA-1", "probe", "BTC-USD", Side.BUY, OrderType.LIMIT, 10, 10000, TimeInForce.GTC
    )
    order.filled = order.reported = 10
    order.status = order.status.FILLED
    journal.order_status(order)
    journal.flush(raise_errors=True)
    journal.close()
    venue = ScriptedVenue([], [fill(1, "probe-runA-1", "0.010")], {})
    engine = await start(path, venue)
    try:
        assert "probe-runA-1" not in engine.orders  # closed: its fills go to the position
        assert engine.positions.quantity("BTC-USD") == 10  # not 20
    finally:
        await engine.stop(0.2)


@pytest.mark.asyncio
async def test_fees_the_venue_reports_on_fills_found_at_start_up_are_charged(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    previous_run(path, cursor=0)
    # probe-runA-1 is journaled and open; probe-runA-2 (of the same run) never was
    # journaled and is closed: its fill goes straight to the position.
    venue = ScriptedVenue(
        [body("probe-runA-1", "partially_filled", "0.004")],
        [
            {**fill(1, "probe-runA-1", "0.004"), "fee": "0.00007"},
            {**fill(2, "probe-runA-2", "0.002"), "fee": "-0.00002"},
        ],
        {},
    )
    engine = await start(path, venue)
    try:
        assert "probe-runA-2" not in engine.orders
        assert engine.positions.quantity("BTC-USD") == 6
        assert engine.orders["probe-runA-1"].fee == 7
        assert engine.positions.of_strategy("probe", "BTC-USD").fees == 7 - 2
        journal = engine.journal
        assert journal is not None
        await journal.write_pending(raise_errors=True)
        assert {f.client_order_id: f.fee for f in journal.fills()} == {
            "probe-runA-1": 7,
            "probe-runA-2": -2,
        }
    finally:
        await engine.stop(0.2)
