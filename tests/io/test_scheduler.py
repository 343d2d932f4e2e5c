"""The request scheduler: the venue's budget, priorities, 429 pauses, halts."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trading_engine.core.clock import ManualClock
from trading_engine.io.scheduler import Dropped, Priority, RequestScheduler, retry_after_s


def test_a_burst_gets_exactly_the_limit_in_one_second() -> None:
    # The input: limit 10, a burst of 50 order decisions on an idle engine.
    clock = ManualClock(start_ns=10**12)
    scheduler = RequestScheduler(10, clock.monotonic_ns)
    granted = 0
    for _ in range(50):
        granted += scheduler.try_now(Priority.ORDER)
        clock.advance(0.019)  # the burst spans 0.95 s
    assert granted == 10  # a token bucket let 19-20 through


@given(st.lists(st.integers(min_value=0, max_value=300_000_000), min_size=1, max_size=300))
def test_never_more_than_the_limit_in_any_second(gaps_ns: list[int]) -> None:
    clock = ManualClock(start_ns=10**12)
    scheduler = RequestScheduler(7, clock.monotonic_ns)
    starts = []
    for gap in gaps_ns:
        clock.now_ns += gap
        if scheduler.try_now(Priority.POLL):
            starts.append(clock.now_ns)
    for i, start in enumerate(starts):
        assert sum(1 for t in starts[i:] if t - start < 10**9) <= 7


def test_orders_are_not_granted_after_a_stop_and_resume_later() -> None:
    clock = ManualClock()
    scheduler = RequestScheduler(10, clock.monotonic_ns)
    scheduler.stop_orders()
    assert not scheduler.try_now(Priority.ORDER)
    assert scheduler.try_now(Priority.CANCEL)
    scheduler.resume_orders()
    assert scheduler.try_now(Priority.ORDER)


def test_a_pause_holds_everything_and_counts_its_seconds() -> None:
    clock = ManualClock(start_ns=10**12)
    scheduler = RequestScheduler(10, clock.monotonic_ns)
    scheduler.pause(2.0)
    assert not scheduler.try_now(Priority.CANCEL)
    assert not scheduler.try_now(Priority.ORDER)
    clock.advance(1.0)
    scheduler.pause(2.0)  # overlaps by 1 s: 3 s paused in all
    clock.advance(1.999)
    assert not scheduler.try_now(Priority.ORDER)
    clock.advance(0.001)
    assert scheduler.try_now(Priority.ORDER)
    assert scheduler.paused_ns_total == 3 * 10**9


@pytest.mark.asyncio
async def test_waiters_are_served_by_priority() -> None:
    scheduler = RequestScheduler(1, time.monotonic_ns, window_ns=30_000_000)
    assert scheduler.try_now(Priority.POLL)  # the window is now full
    order: list[str] = []

    async def wait(priority: Priority, name: str) -> None:
        await scheduler.acquire(priority)
        order.append(name)

    tasks = [
        asyncio.create_task(wait(Priority.POLL, "poll")),
        asyncio.create_task(wait(Priority.SETTLE, "settle")),
        asyncio.create_task(wait(Priority.ORDER, "order")),
        asyncio.create_task(wait(Priority.CANCEL, "cancel")),
    ]
    await asyncio.sleep(0)
    # A new order may not jump over a cancel that waits.
    assert not scheduler.try_now(Priority.ORDER)
    async with asyncio.timeout(2):
        await asyncio.gather(*tasks)
    assert order == ["cancel", "order", "settle", "poll"]


@pytest.mark.asyncio
async def test_a_stop_drops_queued_orders_and_polls_but_not_cancels_or_settlement() -> None:
    scheduler = RequestScheduler(1, time.monotonic_ns, window_ns=50_000_000)
    assert scheduler.try_now(Priority.POLL)
    waiting = {priority: asyncio.create_task(scheduler.acquire(priority)) for priority in Priority}
    await asyncio.sleep(0)
    assert scheduler.stop_orders() == 2
    async with asyncio.timeout(2):
        results = await asyncio.gather(*waiting.values(), return_exceptions=True)
    outcome = dict(zip(waiting, results, strict=True))
    assert isinstance(outcome[Priority.ORDER], Dropped)
    assert isinstance(outcome[Priority.POLL], Dropped)
    assert outcome[Priority.CANCEL] is None
    assert outcome[Priority.SETTLE] is None
    with pytest.raises(Dropped):
        await scheduler.acquire(Priority.ORDER)


@pytest.mark.asyncio
async def test_the_429d_orders_retry_is_exempt_from_the_pause() -> None:
    scheduler = RequestScheduler(10, time.monotonic_ns)
    scheduler.pause(30.0)
    cancel = asyncio.create_task(scheduler.acquire(Priority.CANCEL))
    async with asyncio.timeout(1):
        await scheduler.acquire(Priority.ORDER, exempt=True)
    await asyncio.sleep(0.01)
    assert not cancel.done()  # everything else waits for the pause
    cancel.cancel()
    scheduler.close()


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", 1.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("120", 30.0),  # capped
        (format_datetime(datetime.fromtimestamp(NOW + 5, UTC), usegmt=True), 5.0),
        (format_datetime(datetime.fromtimestamp(NOW - 5, UTC), usegmt=True), 0.0),
        (datetime.fromtimestamp(NOW + 9, UTC).strftime("%A, %d-%b-%y %H:%M:%S GMT"), 9.0),
        (datetime.fromtimestamp(NOW + 3, UTC).strftime("%a %b %d %H:%M:%S %Y"), 3.0),
        (format_datetime(datetime.fromtimestamp(NOW + 600, UTC), usegmt=True), 30.0),
        (None, 1.0),
        ("soon", 1.0),
        ("-3", 1.0),
        ("1.5", 1.0),
    ],
)
def test_retry_after_delay_seconds_and_http_dates(value: str | None, expected: float) -> None:
    assert retry_after_s(value, NOW, default_s=1.0, cap_s=30.0) == pytest.approx(expected)


def test_reads_leave_half_the_window_to_cancels_and_orders() -> None:
    clock = ManualClock(start_ns=10**12)
    scheduler = RequestScheduler(10, clock.monotonic_ns)
    polls = sum(scheduler.try_now(Priority.POLL) for _ in range(10))
    settles = sum(scheduler.try_now(Priority.SETTLE) for _ in range(10))
    orders = sum(scheduler.try_now(Priority.ORDER) for _ in range(10))
    assert (polls, settles, orders) == (5, 0, 5)
    assert scheduler.in_window == 10
    clock.advance(1.0)
    assert scheduler.in_window == 0
