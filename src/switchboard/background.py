"""Background tasks: stopping one the way every owner of a loop needs it stopped, and work
retried in the background until its store answers (``Retries``)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

log = logging.getLogger("switchboard.background")

T = TypeVar("T")

# At most one warning per this many seconds about work that keeps failing.
_WARN_SECONDS = 60.0
# Closing: how long the last try of the work still waiting may take.
CLOSE_SECONDS = 2.0
# Closing: how long a writer's last write to the database may take (the keys' last-used times,
# the usage ledger, request-log bodies). A database that accepts connections and never answers
# would otherwise hold the shutdown for the driver's own timeouts (a minute per statement, and
# a write is several); past it what was not written is kept (the usage spool) or dropped and
# counted, as when the database is down.
LAST_WRITE_SECONDS = 5.0
# While serving: how long one write of a background writer (a batch of usage records, of
# request-log bodies, of keys' last-used times) may take before it counts as failed, as when the
# database is down: what it held is kept and tried again. asyncpg's own bound is a minute per
# statement (stores/sql/engine.py), during which a database that accepts connections and never
# answers would look to the writer like a slow write rather than an outage. A healthy database
# stores a batch (at most 500 rows) in well under a second.
WRITE_SECONDS = 15.0


async def stop_task(task: asyncio.Task[Any] | None, within: float | None = None) -> bool:
    """Cancel ``task`` and wait until it has ended; True once it has.

    The task's own cancellation is swallowed; a cancellation of the caller (a close that is
    itself cancelled while it waits) still propagates, which a bare ``suppress(CancelledError)``
    would hide.
    An error the task had already ended with is raised, as awaiting it raises it.
    With ``within``, waits at most that long and returns False if the task has not ended: a
    database writer cut mid-statement does not end before its driver has closed the connection,
    and that close waits behind the statement (a SQLite file another process holds locked: up to
    its busy timeout). The task is left to end on its own.
    """
    if task is None:
        return True
    current = asyncio.current_task()
    # Requests to cancel the caller made before this call (a close run from an except
    # CancelledError block, on purpose) are not ours to re-raise; only one made while waiting.
    before = current.cancelling() if current is not None else 0
    task.cancel()
    if within is not None:
        await asyncio.wait((task,), timeout=within)  # a cancellation of the caller propagates
        if not task.done():
            return False
    try:
        await task
    except asyncio.CancelledError:
        if current is not None and current.cancelling() > before:
            raise
    return True


async def finish_within(seconds: float, work: Awaitable[T]) -> T:
    """``work``'s result if it ends within ``seconds``, else TimeoutError, and the work is left
    to end on its own rather than cancelled: a database statement cut mid-way is not bounded by
    the cut (SQLAlchemy then closes the connection gracefully, behind the statement: on a SQLite
    file another process holds locked, up to the busy timeout), and at shutdown such a cut left
    a task the event loop's teardown waited on forever."""
    task = asyncio.ensure_future(work)
    await asyncio.wait((task,), timeout=seconds)  # a cancellation of the caller propagates
    if not task.done():
        raise TimeoutError
    return task.result()


class Retries:
    """Work that must be done but whose store may not answer for a while (a settlement while
    Redis is down): each piece is tried again in the background, oldest first, with a jittered
    backoff from ``first`` doubling to ``most`` seconds, until it succeeds. A failure ends the
    pass (the store is likely still out: one call per backoff, not one per piece) and puts that
    piece last, so one that keeps failing does not hold up the others. Bounded: at most
    ``limit`` pieces wait (the oldest is dropped for a new one) and none longer than
    ``max_age`` seconds; what is dropped is logged. In memory: what waits when the process
    ends is lost (``close`` tries it once more first)."""

    def __init__(self, what: str, limit: int, max_age: float, first: float = 0.1, most: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self._limit = limit
        self._max_age = max_age
        self._first = first
        self._most = most
        self._clock = clock
        # (when it was added, the work, what it is, for the log)
        self._waiting: deque[tuple[float, Callable[[], Awaitable[Any]], str]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._warned = -_WARN_SECONDS
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, work: Callable[[], Awaitable[Any]], name: str) -> None:
        """Try ``work()`` again later, until it returns without raising; ``name`` says what it is."""
        if len(self._waiting) >= self._limit:
            _, _, oldest = self._waiting.popleft()
            self._drop(oldest, "too many are waiting")
        self._waiting.append((self._clock(), work, name))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            delay = self._first
            while self._waiting:
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
                delay = self._first if await self._pass() else min(self._most, delay * 2)
        finally:
            self._task = None

    async def _pass(self) -> bool:
        """Try the waiting pieces in turn until one fails; whether none did."""
        waiting = self._waiting
        for _ in range(len(waiting)):
            if not waiting:
                break
            added, work, name = waiting[0]
            if self._clock() - added > self._max_age:
                waiting.popleft()
                self._drop(name, f"still failing after {self._max_age:g} s")
                continue
            try:
                await work()
            except Exception as exc:
                if waiting and waiting[0][1] is work:
                    waiting.rotate(-1)  # last: the others go first next time
                self._failing(exc)
                return False
            if waiting and waiting[0][1] is work:
                waiting.popleft()
        return True

    def _failing(self, exc: Exception) -> None:
        now = self._clock()
        if now - self._warned >= _WARN_SECONDS:
            self._warned = now
            log.warning("%d %s waiting: trying again failed (%s)", len(self._waiting), self.what,
                        type(exc).__name__)

    def _drop(self, name: str, why: str) -> None:
        self.dropped += 1
        log.error("%s: dropped (%s)", name, why)

    async def close(self) -> None:
        """Stop retrying, after one last pass of at most ``CLOSE_SECONDS``; what still waits is lost."""
        await stop_task(self._task)
        self._task = None
        if self._waiting:
            try:
                async with asyncio.timeout(CLOSE_SECONDS):
                    await self._pass()
            except TimeoutError:
                pass
        if self._waiting:
            log.error("%d %s lost at shutdown: their store did not answer", len(self._waiting), self.what)
            self._waiting.clear()
