"""Loop health metrics: lag, slow callbacks, loop counters, garbage collector pauses."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable

import pytest
from prometheus_client import generate_latest

from tests.fakes import config
from trading_engine.core.orders import OrderStatus
from trading_engine.core.reports import FillReport, OrderReport
from trading_engine.engine.engine import Engine
from trading_engine.engine.supervisor import merge_status, worker_environment
from trading_engine.engine.telemetry import GcMonitor, LoopMonitor, registry_for
from trading_engine.lowlevel.loop import PriorityEventLoop
from trading_engine.sim.venue import simulated_venue


def _value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in the exposition")


@pytest.mark.parametrize(
    "factory",
    [lambda: PriorityEventLoop(slow_callback_s=0.02), asyncio.SelectorEventLoop],
    ids=["priority", "asyncio"],
)
def test_lag_and_slow_callback_metrics_respond_to_a_slow_callback(
    factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    async def main() -> str:
        monitor = LoopMonitor(interval_s=0.01, slow_callback_s=0.02)
        registry = registry_for(Engine(config(), sink_factory=simulated_venue), monitor)
        monitor.start()
        await asyncio.sleep(0.05)
        before = generate_latest(registry).decode()
        assert _value(before, "trading_engine_loop_slow_callbacks_total") == 0
        asyncio.get_running_loop().call_soon(time.sleep, 0.06)  # blocks the loop
        await asyncio.sleep(0.1)
        after = generate_latest(registry).decode()
        await monitor.stop()
        return after

    with asyncio.Runner(loop_factory=factory) as runner:
        text = runner.run(main())
        priority = isinstance(runner.get_loop(), PriorityEventLoop)
    assert _value(text, "trading_engine_loop_slow_callbacks_total") >= 1
    # A lag sample of more than 20 ms was recorded.
    over = _value(text, "trading_engine_loop_lag_seconds_count") - _value(
        text, 'trading_engine_loop_lag_seconds_bucket{le="0.01"}'
    )
    assert over >= 1
    if priority:
        assert _value(text, 'trading_engine_loop_callbacks_total{priority="normal"}') > 0


def test_gc_monitor_times_collections() -> None:
    monitor = GcMonitor()
    monitor.install()
    try:
        gc.collect(0)
        gc.collect(2)
    finally:
        monitor.uninstall()
    assert monitor.pauses[0].count >= 1
    assert monitor.pauses[2].count >= 1
    text = generate_latest(
        registry_for(Engine(config(), sink_factory=simulated_venue), None, monitor)
    ).decode()
    assert 'trading_engine_gc_pause_seconds_count{generation="2"}' in text


def test_gc_tune_freezes_and_sets_the_threshold() -> None:
    saved = gc.get_threshold()
    try:
        GcMonitor.tune(freeze=True, threshold=5000)
        assert gc.get_threshold()[0] == 5000
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)


def test_worker_environment_maps_shard_and_ports() -> None:
    cfg = config(
        feed={"port": 7001, "capture_path": "feed.cap"},
        admin={"port": 9100},
        journal={"path": "state/journal.db"},
    )
    assert worker_environment(cfg, 2, 4) == {
        "TRADING_ENGINE__ENGINE__SHARD": "2",
        "TRADING_ENGINE__ENGINE__SHARDS": "4",
        "TRADING_ENGINE__FEED__PORT": "7003",
        "TRADING_ENGINE__ADMIN__HOST": "127.0.0.1",
        "TRADING_ENGINE__ADMIN__PORT": "9103",
        "TRADING_ENGINE__FEED__CAPTURE_PATH": "feed.cap.2",
        "TRADING_ENGINE__JOURNAL__PATH": "state/journal.2.db",
    }
    memory = config(feed={"port": 7001}, admin={"port": 9100}, journal={"path": ":memory:"})
    assert "TRADING_ENGINE__JOURNAL__PATH" not in worker_environment(memory, 0, 2)


def test_merged_status_reports_the_most_restrictive_state() -> None:
    def doc(state: str, breaker: str, symbol: str, orders: int) -> dict[str, object]:
        return {
            "trading_state": state,
            "breaker": breaker,
            "books": {symbol: {"state": "live"}},
            "positions": {symbol: {"quantity": "1"}},
            "open_orders": orders,
            "strategies": {symbol.lower(): {"enabled": True}},
        }

    merged = merge_status(
        [doc("active", "open", "A", 1), doc("reducing", "closed", "B", 2), None], ["w"]
    )
    assert merged["trading_state"] == "reducing"
    assert merged["breaker"] == "open"
    assert set(merged["books"]) == {"A", "B"}
    assert merged["open_orders"] == 3
    assert merged["workers"] == ["w"]


def test_order_metrics_count_every_status_faults_and_long_latencies() -> None:

    from tests.fakes import snapshot
    from trading_engine.core.orders import OrderType, TimeInForce
    from trading_engine.core.protocol import Side

    engine = Engine(config(), sink_factory=simulated_venue)
    engine.builder.handle(snapshot(1, [["100.00", "5"]], [["100.10", "5"]]))
    order, _ = engine.submit(
        engine.runners["probe"], "BTC-USD", Side.BUY, 10, 9000 + 990, OrderType.LIMIT,
        TimeInForce.GTC,
    )  # fmt: skip
    assert order is not None
    assert order.status is OrderStatus.NEW  # resting at the in-process venue
    engine.on_report(OrderReport(order.client_order_id, OrderStatus.PARTIALLY_FILLED, 4, 9990))
    engine.on_fill(FillReport(order.client_order_id, 9990, 4, 1))
    engine.on_fill(FillReport(order.client_order_id, 9990, 4, 1))
    engine.on_order_fault(order.client_order_id, "not_found")
    engine.tick_to_trade.observe_ns(7 * 10**9)  # a 7 s backlog
    text = generate_latest(registry_for(engine)).decode()
    for status, count in (("submitted", 1), ("new", 1), ("partially_filled", 1), ("unknown", 0)):
        assert _value(text, f'trading_engine_orders_total{{status="{status}"}}') == count
    assert _value(text, 'trading_engine_order_faults_total{kind="not_found"}') == 1
    assert _value(text, 'trading_engine_order_faults_total{kind="overfill"}') == 0
    assert (
        _value(text, 'trading_engine_execution_reports_ignored_total{reason="duplicate_fill"}') == 1
    )
    assert _value(text, 'trading_engine_tick_to_trade_seconds_bucket{le="5.0"}') == 0
    assert _value(text, 'trading_engine_tick_to_trade_seconds_bucket{le="10.0"}') == 1
