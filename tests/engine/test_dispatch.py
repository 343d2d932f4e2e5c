from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.fakes import AsyncQuick, AsyncSlow, Recorder, Stubborn, config, snapshot, update
from tests.helpers import wait_until
from trading_engine.core.risk import Denial
from trading_engine.engine.engine import Engine
from trading_engine.sim.venue import simulated_venue

BOOK = [["100.00", "1"]], [["100.02", "1"]]


def engine_with(*strategies: tuple[str, str], **engine: Any) -> Engine:
    cfg = config(
        [
            {"name": name, "class": f"tests.fakes:{cls}", "symbols": ["BTC-USD"]}
            for name, cls in strategies
        ],
        engine=engine,
    )
    return Engine(cfg, run_id="t", sink_factory=simulated_venue)


def feed(engine: Engine, count: int) -> None:
    engine.builder.handle(snapshot(1, *BOOK))
    for seq in range(2, count + 1):
        engine.builder.handle(update(seq, [["99.99", str(seq)]], []))


def test_sync_hooks_run_in_order_for_live_updates_only() -> None:
    engine = engine_with(("a", "Recorder"), ("b", "Recorder"))
    engine.start_strategies()
    feed(engine, 3)
    engine.builder.mark_stale(["BTC-USD"])
    engine.builder.handle(update(4, [], []))  # ignored: stale
    engine.stop_strategies()
    for name in ("a", "b"):
        strategy = engine.runners[name].strategy
        assert isinstance(strategy, Recorder)
        assert strategy.calls == ["start", "book:1", "book:2", "book:3", "stop"]


def test_hooks_are_timed_live_and_untimed_when_the_engine_says_so() -> None:
    # Live, every hook (book updates, order callbacks) is timed on the wall
    # clock; an engine built with timed=False (the backtest's) times none and
    # still counts its evaluations and isolates its errors.
    for timed, expected in ((True, 3), (False, 0)):
        cfg = config([{"name": "a", "class": "tests.fakes:Recorder", "symbols": ["BTC-USD"]}])
        engine = Engine(cfg, run_id="t", sink_factory=simulated_venue, timed=timed)
        feed(engine, 3)
        runner = engine.runners["a"]
        assert (runner.evaluations, runner.latency.count) == (3, expected)
        assert (runner.last_evaluation_ns > 0) is timed
    engine = Engine(
        config([{"name": "bad", "class": "tests.fakes:Raiser", "symbols": ["BTC-USD"]}]),
        run_id="t",
        sink_factory=simulated_venue,
        timed=False,
    )
    feed(engine, 2)
    assert (engine.runners["bad"].errors, engine.runners["bad"].latency.count) == (2, 0)


def test_a_raising_strategy_is_isolated_counted_and_disabled() -> None:
    engine = engine_with(("bad", "Raiser"), ("good", "Recorder"), strategy_error_limit=3)
    feed(engine, 6)
    bad = engine.runners["bad"]
    good = engine.runners["good"].strategy
    assert isinstance(good, Recorder)
    assert len(good.calls) == 6  # never disturbed
    assert bad.errors == 3
    assert not bad.enabled
    view = engine.status()["strategies"]["bad"]
    assert (view["enabled"], view["errors"], view["orders"]) == (False, 3, 0)
    assert view["state"] == "disabled"


def test_async_hooks_that_do_not_suspend_need_no_loop_and_no_task() -> None:
    engine = engine_with(("q", "AsyncQuick"))
    feed(engine, 50)  # no event loop is running here at all
    strategy = engine.runners["q"].strategy
    assert isinstance(strategy, AsyncQuick)
    assert strategy.seen == 50
    assert engine.runners["q"].suspended == 0


@pytest.mark.asyncio
async def test_a_suspending_hook_finishes_within_its_budget() -> None:
    engine = engine_with(("slow", "AsyncSlow"), ("fast", "Recorder"), strategy_budget_s=1.0)
    feed(engine, 3)  # the first suspends; the next two are skipped while it is in flight
    runner = engine.runners["slow"]
    assert runner.suspended == 1
    assert runner.skipped_busy == 2
    fast = engine.runners["fast"].strategy
    assert isinstance(fast, Recorder)
    assert len(fast.calls) == 3  # the slow one never held the others back
    await wait_until(lambda: runner.in_flight is None)
    slow = runner.strategy
    assert isinstance(slow, AsyncSlow)
    assert slow.done == 1
    assert slow.results[0] is not None  # its order went out
    assert runner.late == 0


@pytest.mark.asyncio
async def test_a_late_answer_is_dropped_and_counted() -> None:
    engine = engine_with(("late", "Stubborn"), strategy_budget_s=0.01)
    feed(engine, 1)
    runner = engine.runners["late"]
    await wait_until(lambda: runner.in_flight is None)
    strategy = runner.strategy
    assert isinstance(strategy, Stubborn)
    assert runner.late == 1
    assert strategy.results == [None]  # the order it tried after the deadline
    assert runner.late_orders == 1
    assert engine.risk.denied[Denial.LATE] == 1
    assert engine.orders == {}
    # The next update runs normally again.
    engine.builder.handle(update(2, [], []))
    assert runner.in_flight is not None
    runner.cancel_in_flight()
    await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_fan_out_is_cheaper_than_gather_semantics_but_equal_in_effect() -> None:
    """Same outcome as gather(return_exceptions=True): all run, errors isolated."""
    engine = engine_with(("a", "AsyncQuick"), ("b", "Raiser"), ("c", "AsyncQuick"))
    feed(engine, 4)
    for name in ("a", "c"):
        strategy = engine.runners[name].strategy
        assert isinstance(strategy, AsyncQuick)
        assert strategy.seen == 4
    assert engine.runners["b"].errors == 4
