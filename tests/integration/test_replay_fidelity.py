"""A replay reruns the live session: capture against exchange-sim, replay, compare.

The session runs in lock step: the simulator's books move one step, the
frames go to the engine's feed port, and the next step waits until the
engine and the simulator agree on every order (its status and filled
quantity) and every fill. That takes the order latency out of the
session, the one cause of divergence ``docs/replay.md`` allows, so the
replay must give the same orders, fills and PnL exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fakes import config
from tests.helpers import wait_until
from trading_engine import Instrument
from trading_engine.core.orders import OrderStatus
from trading_engine.engine.engine import Engine
from trading_engine.engine.runner import build_engine
from trading_engine.sim.exchange_sim import ExchangeSimulator
from trading_engine.sim.publisher import Publisher
from trading_engine.sim.replay import replay_file

KEY = "replay-key"
STEPS = 300

STRATEGIES = [
    {"name": "taker", "class": "strategies.threshold:ThresholdTaker", "symbols": ["BTC-USD"],
     "params": {"side": "buy", "trigger_price": "100.03", "quantity": "0.01"}},
    {"name": "seller", "class": "strategies.threshold:ThresholdTaker", "symbols": ["BTC-USD"],
     "params": {"side": "sell", "trigger_price": "99.97", "quantity": "0.02"}},
    {"name": "maker", "class": "strategies.market_maker:MarketMaker", "symbols": ["ETH-USD"],
     "params": {"quantity": "0.05", "max_inventory": "1", "half_spread_ticks": 1,
                "skew_ticks": 2}},
]  # fmt: skip


def in_sync(engine: Engine, sim: ExchangeSimulator) -> bool:
    """The engine knows everything the simulator did, and nothing is in flight."""
    for symbol, walk in sim.walks.items():
        if engine.builder.books[symbol].seq != walk.seq:
            return False
    if len(engine.orders) != len(sim.orders):
        return False
    if engine.order_counts["fills"] != len(sim.fills):
        return False
    for client_order_id, order in engine.orders.items():
        theirs = sim.orders.get(client_order_id)
        if theirs is None or order.status.value != theirs.status or order.filled != theirs.filled:
            return False
        if order.cancel_requested and order.is_open:
            return False
    return True


def orders_of(engine: Engine) -> list[tuple[Any, ...]]:
    return [
        (o.strategy, o.symbol, o.side.value, o.quantity, o.price, o.status.value, o.filled)
        for o in engine.orders.values()
    ]


@pytest.mark.asyncio
async def test_a_replay_of_an_exchange_sim_session_fills_as_the_session_did(
    tmp_path: Path,
) -> None:
    capture = tmp_path / "session.capture"
    cfg = config(
        STRATEGIES,
        feed={"host": "127.0.0.1", "port": 0, "capture_path": str(capture)},
        gateway={"base_url": "http://127.0.0.1:1", "fills_poll_s": 0.005,
                 "max_requests_per_s": 10_000, "settle_backoff_s": 0.01},
        risk={"max_orders_per_s": 10_000, "max_position": "1000"},
    )  # fmt: skip
    instruments = [item.to_instrument() for item in cfg.instruments]
    sim = ExchangeSimulator(
        [Instrument(i.symbol, i.tick_size, i.lot_size) for i in instruments],
        api_key=KEY,
        port=0,
        seed=11,
    )
    await sim.start()
    gateway = cfg.gateway.model_copy(update={"base_url": f"http://127.0.0.1:{sim.port}"})
    cfg = cfg.model_copy(update={"gateway": gateway})
    engine = build_engine(cfg, environ={"EXCHANGE_API_KEY": KEY})
    try:
        await engine.start()
        assert engine.feed is not None
        async with Publisher("127.0.0.1", engine.feed.port) as publisher:
            await publisher.send(b"".join(walk.snapshot_frame() for walk in sim.walks.values()))
            await wait_until(lambda: in_sync(engine, sim), 10, "the snapshots")
            for step in range(STEPS):
                await publisher.send(b"".join(sim.step()))
                await wait_until(lambda: in_sync(engine, sim), 10, f"step {step}")
        live_status = engine.status()
    finally:
        await engine.stop()
        await sim.stop()
    live_orders = orders_of(engine)
    statuses = {order[5] for order in live_orders}
    # The session exercised what replay must reproduce: IOC fills, IOC
    # cancels, resting orders filled later, resting orders canceled.
    assert {"filled", "canceled"} <= statuses, statuses
    resting_fills = [o for o in engine.orders.values() if o.strategy == "maker" and o.filled > 0]
    assert resting_fills, "no resting order filled in the session"
    assert engine.order_counts["fills"] >= 10

    result = replay_file(cfg, str(capture))

    replayed = [
        (cid.split("-", 2)[1], symbol, side, quantity, price, status, filled)
        for cid, symbol, side, quantity, price, status, filled in result.order_log
    ]
    assert replayed == live_orders
    assert result.fills == engine.order_counts["fills"] == len(sim.fills)
    assert result.positions == live_status["positions"]
    assert OrderStatus.UNKNOWN.value not in statuses
