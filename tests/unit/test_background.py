"""stop_task: a background task is cancelled and awaited; the caller's own cancellation is kept.
Retries: work tried again with backoff until its store answers, bounded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from switchboard.background import Retries, finish_within, stop_task


async def test_a_running_task_is_cancelled_and_has_ended() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(forever())
    await started.wait()
    await stop_task(task)
    assert task.cancelled()


async def test_none_is_nothing_to_stop() -> None:
    await stop_task(None)


async def test_an_error_the_task_ended_with_is_raised() -> None:
    async def fails() -> None:
        raise ValueError("broken loop")

    task = asyncio.create_task(fails())
    await asyncio.wait([task])
    with pytest.raises(ValueError, match="broken loop"):
        await stop_task(task)


async def test_a_close_that_is_itself_cancelled_stays_cancelled() -> None:
    """The task being stopped takes its time to end; cancelling the closer meanwhile must not be
    swallowed as if it were the task's own cancellation."""
    release, waiting, stopping = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            waiting.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopping.set()
            await release.wait()
            raise

    task = asyncio.create_task(slow_to_stop())
    await waiting.wait()
    closer = asyncio.create_task(stop_task(task))
    await stopping.wait()
    closer.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await closer
    assert closer.cancelled()


async def test_a_close_run_while_handling_its_own_cancellation_still_stops_quietly() -> None:
    """A shutdown path that caught its task's cancellation on purpose (a forced exit) and then
    closes what it holds: the earlier cancellation is not raised again from stop_task."""
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    held = asyncio.create_task(forever())
    closed = asyncio.Event()

    async def owner() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await stop_task(held)
            closed.set()

    running = asyncio.create_task(owner())
    await started.wait()
    running.cancel()
    await running
    assert closed.is_set() and held.cancelled()


# -- Retries: work tried again until its store answers -----------------------------------------


class _Store:
    """A store that fails while ``down``; what it was asked to do, in order."""

    def __init__(self) -> None:
        self.down = True
        self.done: list[str] = []
        self.tries = 0

    def work(self, name: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            self.tries += 1
            if self.down:
                raise ConnectionError("down")
            self.done.append(name)
        return run


async def _until(condition: Callable[[], bool], what: str, deadline: float = 5.0) -> None:
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, what
        await asyncio.sleep(0.01)


async def test_a_task_that_does_not_end_when_cancelled_is_left_after_the_bound() -> None:
    """As a writer cut mid-statement, whose driver closes the connection behind the statement."""
    started, released = asyncio.Event(), asyncio.Event()

    async def absorbs_one_cancel() -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await released.wait()  # the driver's graceful close, not cancelled again
        return "ended"

    task = asyncio.create_task(absorbs_one_cancel())
    await started.wait()
    assert await stop_task(task, within=0.05) is False
    assert not task.done()
    released.set()
    assert await task == "ended"


async def test_a_task_that_ends_within_the_bound_is_stopped() -> None:
    task = asyncio.create_task(asyncio.Event().wait())
    assert await stop_task(task, within=5) is True
    assert task.cancelled()


async def test_work_not_finished_within_its_bound_is_a_timeout_and_not_cut() -> None:
    release = asyncio.Event()

    async def write() -> int:
        await release.wait()
        return 7

    work = asyncio.ensure_future(write())
    with pytest.raises(TimeoutError):
        await finish_within(0.05, work)
    assert not work.done()  # left to end on its own
    release.set()
    assert await work == 7
    assert await finish_within(5, asyncio.sleep(0, result="done")) == "done"


async def test_waiting_work_is_done_once_its_store_answers_again() -> None:
    store = _Store()
    retries = Retries("settlements", limit=10, max_age=60, first=0.01, most=0.05)
    for name in ("a", "b", "c"):
        retries.add(store.work(name), name)
    await _until(lambda: store.tries >= 4, "never tried again")
    # While the store is down each pass stops at the first failure: one call per backoff.
    assert store.done == [] and len(retries) == 3
    store.down = False
    await _until(lambda: len(retries) == 0, "never done")
    assert sorted(store.done) == ["a", "b", "c"]
    await retries.close()


async def test_work_that_keeps_failing_does_not_hold_up_the_rest() -> None:
    store = _Store()
    store.down = False

    async def poison() -> None:
        raise ValueError("never works")

    retries = Retries("settlements", limit=10, max_age=0.3, first=0.01, most=0.02)
    retries.add(poison, "poison")
    retries.add(store.work("b"), "b")
    await _until(lambda: store.done == ["b"], "the next piece was held up")
    await _until(lambda: len(retries) == 0, "the failing piece was kept past its age")
    assert retries.dropped == 1
    await retries.close()


async def test_the_oldest_is_dropped_beyond_the_bound_and_close_tries_once_more() -> None:
    store = _Store()
    retries = Retries("settlements", limit=2, max_age=60, first=10, most=10)
    for name in ("a", "b", "c"):
        retries.add(store.work(name), name)
    assert len(retries) == 2 and retries.dropped == 1
    store.down = False
    await retries.close()  # long before the first retry is due: the last pass does it
    assert store.done == ["b", "c"] and len(retries) == 0
