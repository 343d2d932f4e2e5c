"""Loop health metrics: lag, slow callbacks, loop counters, garbage collector pauses."""

from __future__ import annotations

import asyncio
import gc
import sys
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
    async def main() -> tuple[str, str]:
        monitor = LoopMonitor(interval_s=0.01, slow_callback_s=0.02)
        registry = registry_for(Engine(config(), sink_factory=simulated_venue), monitor)
        monitor.start()
        await asyncio.sleep(0.05)
        # (A busy machine can make a callback slow already: counted from here.)
        before = generate_latest(registry).decode()
        asyncio.get_running_loop().call_soon(time.sleep, 0.06)  # blocks the loop
        await asyncio.sleep(0.1)
        after = generate_latest(registry).decode()
        await monitor.stop()
        return before, after

    with asyncio.Runner(loop_factory=factory) as runner:
        before, text = runner.run(main())
        priority = isinstance(runner.get_loop(), PriorityEventLoop)
    slow = "trading_engine_loop_slow_callbacks_total"
    assert _value(text, slow) >= _value(before, slow) + 1
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
            "open_order_list": [{"symbol": symbol, "tag": "t"}] * orders,
            "strategies": {symbol.lower(): {"enabled": True}},
        }

    merged = merge_status(
        [doc("active", "open", "A", 1), doc("reducing", "closed", "B", 2), None], ["w"]
    )
    assert merged["trading_state"] == "reducing"
    assert merged["breaker"] == "open"
    assert set(merged["books"]) == {"A", "B"}
    assert merged["open_orders"] == 3
    assert [o["symbol"] for o in merged["open_order_list"]] == ["A", "B", "B"]
    assert merged["workers"] == ["w"]
    # A worker that did not answer leaves the positions unknown, not a partial map.
    assert merged["positions"] is None
    answered = merge_status([doc("active", "open", "A", 1), doc("active", "open", "B", 0)], [])
    assert answered["positions"] == {"A": {"quantity": "1"}, "B": {"quantity": "1"}}
    reconciling = {**doc("active", "closed", "B", 0), "positions": None}
    assert merge_status([doc("active", "open", "A", 1), reconciling], [])["positions"] is None
    # The supervisor's own halt holds when no worker answers; a silent worker's books stay.
    silent = merge_status([None], ["w"], own_state="halted", silent_symbols=["C"])
    assert silent["trading_state"] == "halted"
    assert silent["books"] == {
        "C": {"state": "stale", "seq": None, "best_bid": None, "best_ask": None,
              "reason": "its worker did not answer"}
    }  # fmt: skip
    stricter = merge_status([doc("halted", "closed", "A", 0)], ["w"], own_state="reducing")
    assert stricter["trading_state"] == "halted"
    assert "venue" not in stricter  # the own API's workers say nothing of a venue


def test_merged_status_shows_the_venue_with_the_latest_ban_of_any_worker() -> None:
    def doc(ban: str | None, offset: int) -> dict[str, object]:
        return {
            "trading_state": "halted" if ban else "active", "breaker": "closed", "books": {},
            "positions": {}, "open_orders": 0, "strategies": {},
            "venue": {"dialect": "binance", "ban_until": ban, "clock_offset_ms": offset},
        }  # fmt: skip

    merged = merge_status(
        [doc(None, 3), doc("2026-12-06T04:10:00Z", 4), doc("2026-12-06T04:05:00Z", 5)], []
    )
    assert merged["venue"] == {
        "dialect": "binance", "ban_until": "2026-12-06T04:10:00Z", "clock_offset_ms": 3
    }  # fmt: skip


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


def _many_symbols(count: int, active_every: int, **sections: dict[str, object]) -> Engine:
    """An engine with ``count`` live books; every ``active_every``-th symbol holds a position."""
    from tests.fakes import snapshot
    from trading_engine.core.protocol import Side

    instruments = [
        {"symbol": f"S{i:05d}-USD", "tick_size": "0.01", "lot_size": "0.001"} for i in range(count)
    ]
    strategies = [{"name": "probe", "class": "tests.fakes:Probe", "symbols": ["S00000-USD"]}]
    engine = Engine(
        config(strategies, instruments=instruments, **sections),  # type: ignore[arg-type]
        sink_factory=simulated_venue,
    )
    for i in range(count):
        symbol = f"S{i:05d}-USD"
        engine.builder.handle(snapshot(1, [["100.00", "1"]], [["100.10", "1"]], symbol=symbol))
        if i % active_every == 0:
            engine.positions.fill("probe", symbol, Side.BUY, 10000, 1000)
    return engine


async def _get(port: int, path: str) -> bytes:
    """A bare HTTP/1.0 GET: the client's own work on the loop stays negligible."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"200", head[:80]
    return body


def test_a_scrape_of_10000_symbols_never_holds_the_loop() -> None:
    from trading_engine.io.admin import AdminServer

    engine = _many_symbols(10_000, active_every=50, admin={"port": 0})
    admin = AdminServer(engine, engine.config.admin, registry_for(engine))

    async def main() -> tuple[bytes, float, float]:
        await admin.start()
        worst_wall = worst_cpu = 0.0
        scraping = True

        async def probe() -> None:
            # One turn of the loop per iteration: each gap is the longest any
            # callback (a scrape step included) held the loop in between.
            nonlocal worst_wall, worst_cpu
            while scraping:
                wall, cpu = time.perf_counter(), time.thread_time()
                await asyncio.sleep(0)
                worst_wall = max(worst_wall, time.perf_counter() - wall)
                worst_cpu = max(worst_cpu, time.thread_time() - cpu)

        try:
            task = asyncio.create_task(probe())
            await asyncio.sleep(0)
            body = await _get(admin.port, "/metrics")
            scraping = False
            await task
        finally:
            await admin.stop()
        return body, worst_wall, worst_cpu

    gc.freeze()  # as [engine] gc_freeze does: no full collection of the 10,000 books
    try:
        body, worst_wall, worst_cpu = asyncio.run(main())
    finally:
        gc.unfreeze()
    text = body.decode()
    # The loop's own CPU time per turn leaves out time the machine gave to
    # other processes: strict. Wall time: a generous bound against noise
    # (a scrape done in one go held it for about 0.5-2 s).
    assert worst_cpu < 0.001, worst_cpu
    assert worst_wall < 0.05, worst_wall
    assert admin.renderer.longest_step_cpu_ns < 1_000_000
    assert admin.renderer.steps.count > 10
    assert _value(text, 'trading_engine_books{state="live"}') == 10_000
    assert _value(text, "trading_engine_symbols_active") == 200
    assert _value(text, "trading_engine_metrics_symbols_omitted") == 100
    assert text.count("trading_engine_position{") == 100
    assert 'trading_engine_position{symbol="S00050-USD"} 1.0' in text
    assert "process_cpu_seconds_total" in text or not sys.platform.startswith("linux")
    assert "trading_engine_metrics_step_seconds_count" in text


def test_per_symbol_series_are_capped_and_small_setups_keep_all() -> None:
    few = generate_latest(registry_for(_many_symbols(5, active_every=10**9))).decode()
    for i in range(5):
        assert f'trading_engine_book_state{{state="live",symbol="S{i:05d}-USD"}} 1.0' in few
        assert f'trading_engine_position{{symbol="S{i:05d}-USD"}} ' in few
    engine = _many_symbols(300, active_every=2)
    text = generate_latest(registry_for(engine, symbol_limit=20)).decode()
    assert text.count("trading_engine_position{") == 20
    assert text.count("trading_engine_book_state{") == 20 * 4
    assert _value(text, "trading_engine_symbols_active") == 150
    assert _value(text, "trading_engine_metrics_symbols_omitted") == 130
    # The first active symbols in configuration order, so series stay put.
    assert 'trading_engine_position{symbol="S00038-USD"} 1.0' in text
    assert "S00040-USD" not in text
    assert _value(text, 'trading_engine_books{state="live"}') == 300


def test_engine_registry_has_process_gc_and_platform_collectors() -> None:
    text = generate_latest(registry_for(Engine(config(), sink_factory=simulated_venue))).decode()
    assert "python_gc_objects_collected_total" in text
    assert "python_info{" in text
    if sys.platform.startswith("linux"):
        assert _value(text, "process_resident_memory_bytes") > 0
        assert _value(text, "process_open_fds") > 0


def test_supervisor_metrics_merge_workers_and_its_own_process_metrics() -> None:
    from prometheus_client.registry import CollectorRegistry

    from trading_engine.engine.supervisor import merged_exposition
    from trading_engine.lowlevel.metrics import register_process_collectors

    worker = generate_latest(registry_for(Engine(config(), sink_factory=simulated_venue)))
    own = CollectorRegistry(auto_describe=False)
    register_process_collectors(own)
    scraped = [(0, 2, worker.decode(), False), (1, 0, None, True)]
    text = merged_exposition(scraped, own, {"health": 1}).decode()
    assert _value(text, 'trading_engine_worker_up{worker="0"}') == 1
    assert _value(text, 'trading_engine_worker_up{worker="1"}') == 0
    assert _value(text, 'trading_engine_worker_restarts_total{worker="0"}') == 2
    assert _value(text, 'trading_engine_worker_trading_state_pending{worker="1"}') == 1
    assert _value(text, 'trading_engine_supervisor_task_crashes_total{task="health"}') == 1
    assert 'python_info{implementation="CPython"' in text
    assert text.count("# TYPE python_gc_collections_total counter") == 1
    assert 'worker="supervisor"' in text
    if sys.platform.startswith("linux"):
        for label in ("0", "supervisor"):
            line = f'process_resident_memory_bytes{{worker="{label}"}}'
            assert _value(text, line) > 0


def test_book_state_changes_are_counted_a_crossed_book_included() -> None:
    from tests.fakes import snapshot, update

    engine = Engine(config(), sink_factory=simulated_venue)
    registry = registry_for(engine)

    def changes(source: str, target: str) -> float | None:
        return registry.get_sample_value(
            "trading_engine_book_transitions_total", {"from": source, "to": target}
        )

    assert changes("live", "crossed") == 0
    engine.builder.handle(snapshot(1, [["100.00", "5"]], [["100.10", "5"]]))
    engine.builder.handle(update(2, [["100.20", "1"]], []))  # the bid crosses the ask
    assert changes("awaiting_snapshot", "live") == 1
    assert changes("live", "crossed") == 1
