"""A real ``trading-engine run`` killed with SIGKILL mid-trading, then started again.

The exchange simulator runs in the test (its order book is the truth); the
engine is a real process journaling to a file. The strategy keeps one deep
GTC bid resting and buys with IOC orders at the ask until pre-trade risk's
``max_position`` stops it; a quarter of the order answers are 500s after
the order was taken (the simulator's ``fail_after``), and settling them
waits about a second, so orders of unknown outcome are in flight when the
process is killed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import free_port_ranges
from trading_engine import BookView, Instrument, Order, Strategy, TimeInForce
from trading_engine.sim.exchange_sim import ExchangeSimulator, Faults

ROOT = Path(__file__).resolve().parents[2]
KEY = "crash-key"
BTC = Instrument("BTC-USD", "0.01", "0.001")
MAX_POSITION_LOTS = 20
DEEP_TICKS = 300  # 3% under the bid: inside the price band, never reached in the test


class Accumulator(Strategy):
    """One deep resting bid of 4 lots; IOC buys of 2 lots at the ask, 0.3 s apart."""

    def on_start(self) -> None:
        self.deep = [o for o in self.ctx.open_orders("BTC-USD") if o.quantity == 4]
        self.closed_ns = 0

    def on_book(self, book: BookView) -> None:
        bid, ask = book.best_bid, book.best_ask
        if bid is None or ask is None:
            return
        if not self.deep:
            order = self.ctx.buy("BTC-USD", 4, bid - DEEP_TICKS, TimeInForce.GTC)
            if order is not None:
                self.deep.append(order)
            return
        takers = [o for o in self.ctx.open_orders("BTC-USD") if o.quantity == 2]
        if takers or self.ctx.now_ns() - self.closed_ns < 300_000_000:
            return
        self.ctx.buy("BTC-USD", 2, ask, TimeInForce.IOC)

    def on_order_update(self, order: Order) -> None:
        if not order.is_open:
            self.closed_ns = self.ctx.now_ns()


def write_config(tmp_path: Path, sim_port: int, feed: int, admin: int) -> Path:
    path = tmp_path / "engine.toml"
    path.write_text(
        f"""
[engine]
log_level = "warning"
shutdown_s = 1.0

[feed]
port = {feed}

[admin]
port = {admin}

[gateway]
base_url = "http://127.0.0.1:{sim_port}"
timeout_s = 0.3
fills_poll_s = 0.05
settle_backoff_s = 1.0
max_requests_per_s = 200

[risk]
max_position = "{BTC.format_size(MAX_POSITION_LOTS)}"
max_orders_per_s = 50

[journal]
path = "{tmp_path / "journal.db"}"
flush_ms = 5.0

[[instruments]]
symbol = "BTC-USD"
tick_size = "0.01"
lot_size = "0.001"

[[strategies]]
name = "acc"
class = "tests.integration.test_crash:Accumulator"
symbols = ["BTC-USD"]
"""
    )
    return path


async def start_engine(config: Path, log: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "EXCHANGE_API_KEY": KEY}
    with log.open("ab") as stderr:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "trading_engine", "run", "--config", str(config),
            cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip


async def wait_for(predicate: Any, within_s: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        if await predicate():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {within_s} s waiting for {what}")
        await asyncio.sleep(0.05)


def exchange_position(sim: ExchangeSimulator) -> tuple[int, int]:
    """(position now, the largest position ever) in lots, from the venue's fills log."""
    position = peak = 0
    for fill in sorted(sim.fills, key=lambda f: f["fill_id"]):
        lots = BTC.size_to_lots(fill["quantity"])
        position += lots if fill["side"] == "buy" else -lots
        peak = max(peak, abs(position))
    return position, peak


def journal_statuses(path: Path) -> list[str]:
    if not path.exists():
        return []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return [row[0] for row in db.execute("SELECT status FROM orders")]
        finally:
            db.close()
    except sqlite3.Error:
        return []


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_sigkill_mid_trading_then_restart_matches_the_exchange(tmp_path: Path) -> None:
    sim = ExchangeSimulator(
        [BTC], api_key=KEY, port=0, rate=300, seed=11, faults=Faults(fail_after=0.25)
    )
    await sim.start()
    feed, admin = free_port_ranges(1, 1)
    config = write_config(tmp_path, sim.port, feed, admin)
    log = tmp_path / "engine.log"
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin}", timeout=2.0)
    engine = await start_engine(config, log)
    try:
        sim.publish_to("127.0.0.1", feed)

        async def unknown_in_flight() -> bool:
            statuses = journal_statuses(tmp_path / "journal.db")
            position, _ = exchange_position(sim)
            resting = any(o.is_open and o.quantity == 4 for o in sim.orders.values())
            return "unknown" in statuses and position > 0 and resting

        await wait_for(unknown_in_flight, 60, "an order of unknown outcome, a fill, a resting bid")
        engine.send_signal(signal.SIGKILL)
        assert await engine.wait() == -signal.SIGKILL
        killed_at, _ = exchange_position(sim)
        assert killed_at > 0

        engine = await start_engine(config, log)

        async def ready() -> bool:
            try:
                return (await client.get("/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_for(ready, 30, "the restarted engine to be ready")
        report = (await client.get("/status")).json()["reconciliation"]
        assert report["journal_open_orders"] >= 2  # the deep bid and the unknown order(s)

        # The engine trades on until risk stops it; then it and the venue agree.
        async def agrees() -> bool:
            status = (await client.get("/status")).json()
            position, _ = exchange_position(sim)
            venue_open = [o for o in sim.orders.values() if o.is_open]
            quantity = status["positions"].get("BTC-USD", {}).get("quantity")
            return (
                position == MAX_POSITION_LOTS - 4
                and quantity == BTC.format_size(position)
                and status["open_orders"] == len(venue_open) == 1
            )

        await wait_for(agrees, 60, "the engine and the venue to agree at the position limit")
        _, peak = exchange_position(sim)
        assert peak <= MAX_POSITION_LOTS
        # The strategy started with its resting bid in its context: it never placed a second.
        assert sum(1 for o in sim.orders.values() if o.quantity == 4) == 1
        deep = next(o for o in sim.orders.values() if o.quantity == 4)
        assert deep.client_order_id in report["open_orders"]
        assert sim.counts.get("fail_after", 0) >= 1

        # SIGTERM with the venue hung: the engine cannot cancel, says which order, exits 1.
        sim.faults = Faults(latency_s=3.0)
        engine.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(engine.wait(), 30) == 1
        text = log.read_text()
        assert "still open" in text
        assert deep.client_order_id in text.split("still open")[-1]
    finally:
        await client.aclose()
        if engine.returncode is None:
            engine.kill()
            await engine.wait()
        await sim.stop()
