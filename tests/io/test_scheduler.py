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
    # Limit 10, a burst of 50 order decisions on an idle engine.
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


def http_date(unix_s: float) -> str:
    return format_datetime(datetime.fromtimestamp(unix_s, UTC), usegmt=True)


@pytest.mark.parametrize("host_offset_s", [-3600.0, -20.0, 0.0, 20.0, 3600.0])
def test_an_http_date_retry_after_is_measured_against_the_answers_date(
    host_offset_s: float,
) -> None:
    # The venue says "retry at its 12:00:10" in an answer it dated 12:00:00: 10 s,
    # whatever the host's clock says (ahead, behind or right).
    venue_now = NOW
    host_now = NOW + host_offset_s
    delay = retry_after_s(
        http_date(venue_now + 10), host_now, default_s=1.0, cap_s=30.0, date=http_date(venue_now)
    )
    assert delay == pytest.approx(10.0)


@pytest.mark.parametrize("date", [None, "", "yesterday", "Fri, 99 Foo 2026 25:61:00 GMT"])
def test_without_a_readable_date_the_host_clock_measures_an_http_date(date: str | None) -> None:
    assert retry_after_s(
        http_date(NOW + 4), NOW, default_s=1.0, cap_s=30.0, date=date
    ) == pytest.approx(4.0)


def test_a_dated_retry_after_keeps_the_cap_the_floor_and_delay_seconds() -> None:
    dated = {"default_s": 1.0, "cap_s": 30.0, "date": http_date(NOW - 7200)}
    assert retry_after_s(http_date(NOW - 7200 + 600), NOW, **dated) == 30.0  # capped
    assert retry_after_s(http_date(NOW - 7200 - 5), NOW, **dated) == 0.0  # already past
    assert retry_after_s("12", NOW, **dated) == 12.0  # delay-seconds: no date involved
    assert retry_after_s("soon", NOW, **dated) == 1.0


@pytest.mark.parametrize(("value", "expected"), [("\u00b2", 1.0), ("9" * 5000, 30.0)])
def test_odd_digit_strings_never_raise(value: str, expected: float) -> None:
    # A superscript two is a digit to str.isdigit() but not to int(); a long
    # number exceeds int()'s 4300-digit limit.
    assert retry_after_s(value, NOW, default_s=1.0, cap_s=30.0) == expected


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
