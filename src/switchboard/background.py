"""Background tasks: stopping one the way every owner of a loop needs it stopped."""

from __future__ import annotations

import asyncio
from typing import Any


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended.

    The task's own cancellation is swallowed; a cancellation of the caller (a close that is
    itself cancelled while it waits) still propagates, which a bare ``suppress(CancelledError)``
    would hide.
    An error the task had already ended with is raised, as awaiting it raises it.
    """
    if task is None:
        return
    current = asyncio.current_task()
    # Requests to cancel the caller made before this call (a close run from an except
    # CancelledError block, on purpose) are not ours to re-raise; only one made while waiting.
    before = current.cancelling() if current is not None else 0
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if current is not None and current.cancelling() > before:
            raise
