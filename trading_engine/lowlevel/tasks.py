"""Owned background tasks: stopping them without losing a cancellation.

``await task`` after ``task.cancel()`` raises CancelledError, and so does
a cancellation of the awaiting task itself; suppressing the error blindly
would swallow the latter and leave a shutdown hanging.
:func:`cancel_and_wait` re-raises when the caller itself is being
cancelled.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_and_wait"]


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
