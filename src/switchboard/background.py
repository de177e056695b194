"""Background tasks: stopping one the way every owner of a loop needs it stopped."""

from __future__ import annotations

import asyncio
from typing import Any


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended.

    The task's own cancellation is swallowed; a cancellation of the caller (a close that is
    itself cancelled) still propagates, which a bare ``suppress(CancelledError)`` would hide.
    An error the task had already ended with is raised, as awaiting it raises it.
    """
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
