"""Background tasks: a crash is retrieved, logged, counted by kind, and halts when asked."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from trading_engine.lowlevel.tasks import TaskCrashes


async def _boom() -> None:
    await asyncio.sleep(0)
    raise RuntimeError("boom")


async def _forever() -> None:
    await asyncio.Event().wait()


@pytest.mark.asyncio
async def test_a_crash_is_counted_by_kind_and_halts_with_the_task_named() -> None:
    halts: list[tuple[str, str]] = []
    crashes = TaskCrashes(lambda who, reason: halts.append((who, reason)), kinds=["place", "x"])
    task = crashes.spawn(_boom(), name="place:maker-r-1", kind="place", halts="gateway")
    await asyncio.wait({task})
    await asyncio.sleep(0)  # done-callbacks run one turn later
    assert crashes.counts == {"place": 1, "x": 0}
    assert halts == [("gateway", "background task place:maker-r-1 crashed: RuntimeError: boom")]


@pytest.mark.asyncio
async def test_a_crash_without_halts_is_only_counted_and_a_cancel_is_no_crash() -> None:
    halts: list[tuple[str, str]] = []
    crashes = TaskCrashes(lambda who, reason: halts.append((who, reason)))
    crashed = crashes.spawn(_boom(), name="sweeper", kind="sweeper")
    canceled = crashes.spawn(_forever(), name="poll", kind="poll", halts="gateway")
    await asyncio.sleep(0)
    canceled.cancel()
    await asyncio.wait({crashed, canceled})
    await asyncio.sleep(0)
    assert crashes.counts == {"sweeper": 1}
    assert halts == []


@pytest.mark.asyncio
async def test_the_crash_is_retrieved_so_asyncio_never_reports_it_at_collection() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        crashes = TaskCrashes()
        task = crashes.spawn(_boom(), name="t", kind="t")
        await asyncio.wait({task})
        await asyncio.sleep(0)
        del task
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert reported == []
    assert crashes.counts["t"] == 1
