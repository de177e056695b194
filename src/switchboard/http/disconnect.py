"""Cancel a request's work when its client goes away.

The ASGI server tells us about a disconnect only through ``receive()``. A small watcher task
waits on it and cancels the request task, so an abandoned request stops its upstream call
(closing the connection) instead of running to completion.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from switchboard.http.asgi import Receive

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected; nothing more can be sent."""


async def until_disconnect(receive: Receive, work: Awaitable[T]) -> T:
    task = asyncio.current_task()
    assert task is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
        gone = True
        task.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if gone:
            task.uncancel()
            raise ClientGone from None
        raise
    finally:
        watcher.cancel()
