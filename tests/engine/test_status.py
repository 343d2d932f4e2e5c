"""The engine's /status document and what it logs: exact decimals, never ticks."""

from __future__ import annotations

from tests.fakes import Recorder, config, snapshot, update
from trading_engine.core.orders import TimeInForce
from trading_engine.core.protocol import Side
from trading_engine.engine.engine import Engine
from trading_engine.sim.venue import simulated_venue


def test_status_pnl_carries_the_price_and_size_decimals() -> None:
    # tick 0.01, lot 0.001: money has 5 decimals.
    engine = Engine(config(), run_id="t", sink_factory=simulated_venue)
    engine.start_strategies()
    ctx = engine.contexts["probe"]
    engine.builder.handle(snapshot(1, [["99.99", "1"]], [["100.00", "1"]]))
    bought = ctx.submit("BTC-USD", Side.BUY, 155, 10000, time_in_force=TimeInForce.IOC)
    assert bought is not None
    assert bought.filled == 155
    engine.builder.handle(update(2, [["100.01", "1"]], [["100.00", "0"], ["100.02", "1"]]))
    sold = ctx.submit("BTC-USD", Side.SELL, 155, 10001, time_in_force=TimeInForce.IOC)
    assert sold is not None
    assert sold.filled == 155
    position = engine.status()["positions"]["BTC-USD"]
    # 0.155 bought at 100.00 and sold at 100.01: 0.00155 realized, not "0.00".
    assert position == {
        "quantity": "0.000",
        "avg_price": None,
        "realized_pnl": "0.00155",
        "unrealized_pnl": "0.00000",
        "fees": "0.00000",
    }


def test_orders_and_fills_render_decimals() -> None:
    strategies = [{"name": "r", "class": "tests.fakes:Recorder", "symbols": ["BTC-USD"]}]
    engine = Engine(config(strategies), run_id="t", sink_factory=simulated_venue)
    engine.start_strategies()
    engine.builder.handle(snapshot(1, [["99.99", "1"]], [["100.23", "1"]]))
    order = engine.contexts["r"].buy("BTC-USD", 10, 10023, TimeInForce.IOC)
    assert repr(order) == "Order('te-r-t-1', buy 0.010 BTC-USD @ 100.23, filled, filled=0.010)"
    recorder = engine.runners["r"].strategy
    assert isinstance(recorder, Recorder)
    assert recorder.calls[-1] == "Fill('te-r-t-1', 0.010 @ 100.23)"
