"""Owned background tasks: started with a crash report, stopped without losing a cancellation.

A task nobody awaits keeps its exception to itself: asyncio only
mentions it ("Task exception was never retrieved") when the task is
garbage-collected, if ever, and nothing counts it. Every background task
of the engine is therefore started through :meth:`TaskCrashes.spawn`,
whose done-callback retrieves the exception at once, logs it with its
traceback, counts it by the task's *kind* (a fixed word such as
``place`` or ``fills-poll``, never the task's full name, so the metric's
labels stay bounded) and, for a task on the order path, asks its owner
to halt trading: an order whose placement, cancel or settlement died
half-way may still hold exposure, and nothing else would ever finish it.

``await task`` after ``task.cancel()`` raises CancelledError, and so does
a cancellation of the awaiting task itself; suppressing the error blindly
would swallow the latter and leave a shutdown hanging.
:func:`cancel_and_wait` re-raises when the caller itself is being
cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from functools import partial
from typing import Any, TypeVar

__all__ = ["TaskCrashes", "cancel_and_wait", "wait_or_stop"]

log = logging.getLogger("trading_engine.tasks")

T = TypeVar("T")

#: ``halt(who, reason)``: stop new orders (the engine's trading state -> halted).
HaltCallback = Callable[[str, str], None]


class TaskCrashes:
    """Starts background tasks and accounts for the ones that crash.

    ``halt(who, reason)`` is called after a crash of a task spawned with
    ``halts=who`` (the engine passes its ``set_trading_state`` to halted);
    ``kinds`` are counted from 0 so the metric shows them before any crash.
    A crash is an exception other than cancellation; the task's result is
    otherwise left to whoever awaits it.
    """

    def __init__(self, halt: HaltCallback | None = None, kinds: Iterable[str] = ()) -> None:
        self.halt = halt
        #: Crashes by task kind.
        self.counts: Counter[str] = Counter(dict.fromkeys(kinds, 0))
        # One done-callback per (kind, halts), made once: spawning sits on the
        # order path (every placement is a task) and a closure per task costs.
        self._callbacks: dict[tuple[str, str | None], Callable[[asyncio.Task[Any]], None]] = {}

    def spawn(
        self,
        coro: Coroutine[Any, Any, T],
        *,
        name: str,
        kind: str,
        halts: str | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> asyncio.Task[T]:
        """Start ``coro`` as a task named ``name`` on ``loop`` (default: the running loop).

        ``kind`` labels its crashes in the count; ``halts`` names who halts
        trading when it crashes (``"gateway"``, ``"engine"``...; None: a
        crash is logged and counted only). Priority follows the creating
        context, as with ``loop.create_task``. Raises ``RuntimeError``
        without a running loop and ``loop`` None.
        """
        if loop is None:
            loop = asyncio.get_running_loop()
        task = loop.create_task(coro, name=name)
        return self.watch(task, kind, halts=halts)

    def watch(
        self, task: asyncio.Task[T], kind: str, *, halts: str | None = None
    ) -> asyncio.Task[T]:
        """Add the crash report to a task started elsewhere; returns ``task``."""
        callback = self._callbacks.get((kind, halts))
        if callback is None:
            callback = self._callbacks[kind, halts] = partial(self._done, kind=kind, halts=halts)
        task.add_done_callback(callback)
        return task

    def _done(self, task: asyncio.Task[Any], kind: str, halts: str | None) -> None:
        if task.cancelled():
            return
        exc = task.exception()  # retrieved: asyncio no longer reports it at collection
        if exc is None:
            return
        self.counts[kind] += 1
        name = task.get_name()
        log.error("background task %s crashed: %s: %s", name, type(exc).__name__, exc, exc_info=exc)
        if halts is not None and self.halt is not None:
            self.halt(halts, f"background task {name} crashed: {type(exc).__name__}: {exc}")


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait for it to finish; its own errors are ignored."""
    if task is None or task.done():
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except Exception:  # the task's failure is its own business at shutdown
        pass


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Wait until ``stop`` is set or ``seconds`` pass; True when ``stop`` is set.

    The pause of a retry or tracking loop that must end at once when its
    owner stops it, rather than after the pause.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
    return stop.is_set()
