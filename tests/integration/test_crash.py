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

from pathlib import Path

import pytest

from tests.helpers import EngineRun, wait_for
from trading_engine import Instrument
from trading_engine.sim.exchange_sim import ExchangeSimulator, Faults

KEY = "crash-key"
BTC = Instrument("BTC-USD", "0.01", "0.001")
MAX_POSITION_LOTS = 20


def exchange_position(sim: ExchangeSimulator) -> tuple[int, int]:
    """(position now, the largest position ever) in lots, from the venue's fills log."""
    position = peak = 0
    for fill in sorted(sim.fills, key=lambda f: f["fill_id"]):
        lots = BTC.size_to_lots(fill["quantity"])
        position += lots if fill["side"] == "buy" else -lots
        peak = max(peak, abs(position))
    return position, peak


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_sigkill_mid_trading_then_restart_matches_the_exchange(tmp_path: Path) -> None:
    sim = ExchangeSimulator(
        [BTC], api_key=KEY, port=0, rate=300, seed=11, faults=Faults(fail_after=0.25)
    )
    gateway = {
        "timeout_s": 0.3,
        "fills_poll_s": 0.05,
        "settle_backoff_s": 1.0,
        "max_requests_per_s": 200,
    }
    risk = {"max_position": BTC.format_size(MAX_POSITION_LOTS), "max_orders_per_s": 50}
    async with (
        sim,
        EngineRun(
            tmp_path, "BTC-USD", sim.port, gateway=gateway, risk=risk,
            env={"EXCHANGE_API_KEY": KEY},
        ) as engine,
    ):  # fmt: skip
        sim.publish_to("127.0.0.1", engine.feed)

        await engine.kill_mid_trading(lambda: exchange_position(sim)[0], sim.orders.values, 60)
        await engine.restart(30)
        report = (await engine.status())["reconciliation"]
        assert report["journal_open_orders"] >= 2  # the deep bid and the unknown order(s)

        # The engine trades on until risk stops it; then it and the venue agree.
        async def agrees() -> bool:
            status = await engine.status()
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
        assert await engine.terminate() == 1
        text = engine.log.read_text()
        assert "still open" in text
        assert deep.client_order_id in text.split("still open")[-1]
