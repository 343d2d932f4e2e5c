"""A real ``trading-engine run`` on Binance spot's dialect: faults, SIGKILL, restart.

The simulator speaks Binance's spot REST API in the test (its order book is
the truth; signatures, weights and filters checked as the venue checks
them); the engine is a real process with ``[gateway] venue = "binance"``,
an HMAC key from the environment, journaling to a file. The strategy keeps
one deep GTC bid resting and buys with IOC orders at the ask until
pre-trade risk's ``max_position`` stops it, while every order-path fault of
the simulator is on: answers lost before and after the order was taken
(503 ``-1008``, 500 ``-1001``), "execution status unknown" (``-1007``),
429s on orders and reads, hung, late and reset answers, and resting
orders the venue expires. The process is killed with SIGKILL while orders
of unknown outcome are in flight, started again, and trades on until it
and the venue agree.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port_ranges
from tests.integration.test_crash import journal_statuses, wait_for
from tests.sim.binance.helpers import API_KEY, SECRET, keys
from trading_engine import BookView, Instrument, Order, Strategy, TimeInForce
from trading_engine.sim.binance import BinanceSimulator
from trading_engine.sim.exchange_sim import Faults

ROOT = Path(__file__).resolve().parents[2]
SYMBOL = "BTCUSDT"
INSTRUMENT = Instrument(SYMBOL, "0.01", "0.001")
MAX_POSITION_LOTS = 20
DEEP_TICKS = 300
EVERY_FAULT = Faults(
    fail_before=0.1, fail_after=0.15, unknown_status=0.1, rate_limit=0.03, retry_after_s=1,
    read_rate_limit=0.03, hang=0.03, hang_s=0.6, late_answer=0.05, reset=0.03, expire=0.02,
)  # fmt: skip


class BinanceAccumulator(Strategy):
    """One deep resting bid of 4 lots; IOC buys of 2 lots at the ask, 0.3 s apart."""

    def on_start(self) -> None:
        self.deep = [o for o in self.ctx.open_orders(SYMBOL) if o.quantity == 4]
        self.closed_ns = 0

    def on_book(self, book: BookView) -> None:
        bid, ask = book.best_bid, book.best_ask
        if bid is None or ask is None:
            return
        self.deep = [o for o in self.deep if o.is_open]
        if not self.deep:
            order = self.ctx.buy(SYMBOL, 4, bid - DEEP_TICKS, TimeInForce.GTC)
            if order is not None:
                self.deep.append(order)
            return
        takers = [o for o in self.ctx.open_orders(SYMBOL) if o.quantity == 2]
        if takers or self.ctx.now_ns() - self.closed_ns < 300_000_000:
            return
        self.ctx.buy(SYMBOL, 2, ask, TimeInForce.IOC)

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
venue = "binance"
base_url = "http://127.0.0.1:{sim_port}"
api_secret_env = "BINANCE_TEST_SECRET"
timeout_s = 0.3
settle_backoff_s = 0.5
max_requests_per_s = 100
resting_order_check_s = 2.0

[risk]
max_position = "{INSTRUMENT.format_size(MAX_POSITION_LOTS)}"
max_orders_per_s = 20

[journal]
path = "{tmp_path / "journal.db"}"
flush_ms = 5.0

[[instruments]]
symbol = "{SYMBOL}"
tick_size = "0.01"
lot_size = "0.001"

[[strategies]]
name = "acc"
class = "tests.integration.test_binance_venue:BinanceAccumulator"
symbols = ["{SYMBOL}"]
"""
    )
    return path


async def start_engine(config: Path, log: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "EXCHANGE_API_KEY": API_KEY, "BINANCE_TEST_SECRET": SECRET}
    with log.open("ab") as stderr:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "trading_engine", "run", "--config", str(config),
            cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip


def venue_position(sim: BinanceSimulator) -> tuple[int, int]:
    """(position now, the largest position ever) in lots, from the venue's trades."""
    position = peak = 0
    for trade in sim.trades[SYMBOL]:
        position += trade.lots if trade.order.side == "buy" else -trade.lots
        peak = max(peak, abs(position))
    return position, peak


@pytest.mark.slow
@pytest.mark.asyncio
@pytest.mark.timeout(180)
async def test_every_fault_then_sigkill_then_restart_matches_the_binance_venue(
    tmp_path: Path,
) -> None:
    sim = BinanceSimulator([INSTRUMENT], keys=keys(), port=0, rate=300, seed=11, faults=EVERY_FAULT)
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
            position, _ = venue_position(sim)
            resting = any(o.is_open and o.quantity == 4 for o in sim.binance_orders.values())
            return "unknown" in statuses and position > 0 and resting

        await wait_for(unknown_in_flight, 90, "an order of unknown outcome, a fill, a resting bid")
        engine.send_signal(signal.SIGKILL)
        assert await engine.wait() == -signal.SIGKILL
        killed_at, _ = venue_position(sim)
        assert killed_at > 0

        engine = await start_engine(config, log)

        async def ready() -> bool:
            try:
                return (await client.get("/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_for(ready, 60, "the restarted engine to be ready")
        status = (await client.get("/status")).json()
        assert status["venue"]["dialect"] == "binance"
        assert status["venue"]["clock_offset_ms"] is not None

        # The engine trades on, faults still on, until risk stops it; then the faults
        # stop and it and the venue agree.
        async def at_limit() -> bool:
            position, _ = venue_position(sim)
            return position >= MAX_POSITION_LOTS - 4

        await wait_for(at_limit, 90, "the venue's position to reach the limit")
        sim.faults = Faults()

        async def agrees() -> bool:
            status = (await client.get("/status")).json()
            position, _ = venue_position(sim)
            venue_open = [o for o in sim.binance_orders.values() if o.is_open]
            quantity = status["positions"].get(SYMBOL, {}).get("quantity")
            return quantity == INSTRUMENT.format_size(position) and status["open_orders"] == len(
                venue_open
            )

        await wait_for(agrees, 60, "the engine's position and open orders to be the venue's")
        _, peak = venue_position(sim)
        assert peak <= MAX_POSITION_LOTS
        counts = sim.counts
        assert counts.get("fail_after", 0) + counts.get("unknown_status", 0) >= 1, counts
        engine.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(engine.wait(), 30) == 0, log.read_text()[-3000:]
    finally:
        await client.aclose()
        if engine.returncode is None:
            engine.kill()
            await engine.wait()
        await sim.stop()
