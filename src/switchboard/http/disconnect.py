"""Cancel a request's work when its client goes away.

The ASGI server tells us about a disconnect only through ``receive()``, so something must wait
on it. A watcher task on every request is a noticeable share of a fast request's CPU, so the
watcher is started only once a request has been running for ``WATCH_AFTER`` seconds: quick
requests pay for one timer, and a client that leaves a long request or a stream is noticed
within that delay.
The watcher then cancels the request task, which closes the upstream response. A request that
is sending a body (a stream, any answer relayed as it arrives) learns sooner: its next send of a
body part once the connection is gone raises ClientGone (http/cycle.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from switchboard.http.asgi import Receive

T = TypeVar("T")

WATCH_AFTER = 0.25


class ClientGone(Exception):
    """The client disconnected; nothing more can be sent. Raised by ``until_disconnect`` (the
    watcher cancelled the request's work) and by the send of a body part on a gone connection
    (``on_send``: the relay stopped at that send), so the log can say which."""

    def __init__(self, *, on_send: bool = False) -> None:
        super().__init__("the client left during a send" if on_send else "the client left")
        self.on_send = on_send


class _Watch:
    __slots__ = ("gone", "receive", "task", "timer", "watcher")

    def __init__(self, receive: Receive, task: asyncio.Task[object]) -> None:
        self.receive = receive
        self.task = task
        self.gone = False
        self.watcher: asyncio.Task[None] | None = None
        self.timer = asyncio.get_running_loop().call_later(WATCH_AFTER, self.start)

    def start(self) -> None:
        self.watcher = asyncio.get_running_loop().create_task(self.watch())

    async def watch(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass
        self.gone = True
        self.task.cancel()

    def stop(self) -> None:
        self.timer.cancel()
        if self.watcher is not None:
            self.watcher.cancel()


async def until_disconnect(receive: Receive, work: Awaitable[T]) -> T:
    task = asyncio.current_task()
    assert task is not None
    watch = _Watch(receive, task)
    try:
        return await work
    except asyncio.CancelledError:
        if watch.gone:
            task.uncancel()
            raise ClientGone from None
        raise
    finally:
        watch.stop()
