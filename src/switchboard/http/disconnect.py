"""Cancel a request's work when its client goes away.

The ASGI server tells us about a disconnect only through ``receive()``, so something must wait
on it. A watcher task on every request is a noticeable share of a fast request's CPU, so the
watcher is started only once a request has been running for ``WATCH_AFTER`` seconds: quick
requests pay for an entry in a queue that one timer per event loop serves, and a client that
leaves a long request or a stream is noticed within that delay.
The watcher then cancels the request task, which closes the upstream response. A request that
is sending a body (a stream, any answer relayed as it arrives) learns sooner: its next send of a
body part once the connection is gone raises ClientGone (http/cycle.py).
"""

from __future__ import annotations

import asyncio
from collections import deque
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


# The message of the watcher's cancellation: a stream's relay tells it from the server's own
# (http/endpoint.py, at shutdown).
CLIENT_LEFT = "the client left"


class _Watch:
    __slots__ = ("due", "gone", "receive", "task", "watcher")

    def __init__(self, receive: Receive, task: asyncio.Task[object], due: float) -> None:
        self.receive: Receive | None = receive
        self.task: asyncio.Task[object] | None = task  # None once the request's work is over
        self.due = due  # loop time at which the watcher starts
        self.gone = False
        self.watcher: asyncio.Task[None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.watcher = loop.create_task(self.watch())

    async def watch(self) -> None:
        receive, task = self.receive, self.task
        assert receive is not None and task is not None, "started only while the work runs"
        while (await receive())["type"] != "http.disconnect":
            pass
        self.gone = True
        task.cancel(CLIENT_LEFT)

    def stop(self) -> None:
        # The references go at once; the queue drops the entry itself when it gets to it.
        self.task = self.receive = None
        # Let go of the watcher too: cancelled, it keeps the CancelledError whose traceback
        # holds its frame, which holds this watch (a reference cycle per request that ran long
        # enough to be watched, nearly every real model call, left to the cyclic collector).
        watcher, self.watcher = self.watcher, None
        if watcher is not None:
            watcher.cancel()


class _Watches:
    """One event loop's watches in the order they were made, behind a single timer.

    A timer per request (set, then cancelled by nearly every request) was a noticeable part of a
    fast request's CPU. Watches are made in the order they fall due (one delay for all), so one
    timer, set for the oldest watch still waiting, serves them all: when it fires it starts the
    watchers due, drops the entries of work already over (due or not) and is set again for the
    next one waiting, if any. A watcher starts when its own timer would have started it."""

    __slots__ = ("after", "armed", "loop", "queue", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, after: float) -> None:
        self.loop = loop
        self.after = after  # WATCH_AFTER when made: a queue in due order needs one delay
        self.queue: deque[_Watch] = deque()
        self.timer: asyncio.TimerHandle | None = None
        self.armed = 0.0  # the due time the timer was set for

    def add(self, watch: _Watch) -> None:
        self.queue.append(watch)
        if self.timer is None:
            self.armed = watch.due
            self.timer = self.loop.call_at(watch.due, self._fire)

    def _fire(self) -> None:
        self.timer = None
        loop, queue = self.loop, self.queue
        # A timer may run a little before its time (the loop's clock resolution): what it was set
        # for is due.
        now = max(loop.time(), self.armed)
        while queue:
            watch = queue[0]
            if watch.task is not None and watch.due > now:
                self.armed = watch.due
                self.timer = loop.call_at(watch.due, self._fire)
                return
            queue.popleft()
            if watch.task is not None:
                watch.start(loop)


_watches: _Watches | None = None  # the running loop's (tests run several loops in turn)


def _watches_of(loop: asyncio.AbstractEventLoop) -> _Watches:
    global _watches
    watches = _watches
    if watches is None or watches.loop is not loop or watches.after != WATCH_AFTER:
        # Another loop, or another delay (tests change it): a queue of its own. An older queue
        # keeps its timer and serves the watches it holds.
        watches = _watches = _Watches(loop, WATCH_AFTER)
    return watches


async def until_disconnect(receive: Receive, work: Awaitable[T]) -> T:
    task = asyncio.current_task()
    assert task is not None
    loop = task.get_loop()
    watches = _watches_of(loop)
    watch = _Watch(receive, task, loop.time() + watches.after)
    watches.add(watch)
    try:
        return await work
    except asyncio.CancelledError:
        if watch.gone:
            task.uncancel()
            raise ClientGone from None
        raise
    finally:
        watch.stop()
