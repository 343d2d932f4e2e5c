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

from pathlib import Path

import pytest

from tests.helpers import EngineRun, wait_for, wait_until
from tests.sim.binance.helpers import API_KEY, SECRET, keys
from trading_engine import Instrument
from trading_engine.sim.binance import BinanceSimulator
from trading_engine.sim.exchange_sim import Faults

SYMBOL = "BTCUSDT"
INSTRUMENT = Instrument(SYMBOL, "0.01", "0.001")
MAX_POSITION_LOTS = 20
EVERY_FAULT = Faults(
    fail_before=0.1, fail_after=0.15, unknown_status=0.1, rate_limit=0.03, retry_after_s=1,
    read_rate_limit=0.03, hang=0.03, hang_s=0.6, late_answer=0.05, reset=0.03, expire=0.02,
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
    gateway = {
        "venue": "binance",
        "api_secret_env": "BINANCE_TEST_SECRET",
        "timeout_s": 0.3,
        "settle_backoff_s": 0.5,
        "max_requests_per_s": 100,
        "resting_order_check_s": 2.0,
    }
    risk = {"max_position": INSTRUMENT.format_size(MAX_POSITION_LOTS), "max_orders_per_s": 20}
    async with (
        sim,
        EngineRun(
            tmp_path, SYMBOL, sim.port, gateway=gateway, risk=risk,
            env={"EXCHANGE_API_KEY": API_KEY, "BINANCE_TEST_SECRET": SECRET},
        ) as engine,
    ):  # fmt: skip
        sim.publish_to("127.0.0.1", engine.feed)

        await engine.kill_mid_trading(lambda: venue_position(sim)[0], sim.binance_orders.values, 90)
        # A 429 answered to the killed process may still run its Retry-After, and
        # the venue counts requests sent meanwhile towards a ban that a new process
        # cannot know of (docs/venues.md): restart once it has run out.
        await wait_until(
            lambda: not sim.limiter.backing_off(sim.now_ms()), 65, "the 429's Retry-After to end"
        )
        await engine.restart(60)
        status = await engine.status()
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
            status = await engine.status()
            position, _ = venue_position(sim)
            venue_open = [o for o in sim.binance_orders.values() if o.is_open]
            quantity = status["positions"].get(SYMBOL, {}).get("quantity")
            return bool(
                quantity == INSTRUMENT.format_size(position)
                and status["open_orders"] == len(venue_open)
            )

        await wait_for(agrees, 60, "the engine's position and open orders to be the venue's")
        _, peak = venue_position(sim)
        assert peak <= MAX_POSITION_LOTS
        counts = sim.counts
        assert counts.get("fail_after", 0) + counts.get("unknown_status", 0) >= 1, counts
        assert await engine.terminate() == 0, engine.log.read_text()[-3000:]
