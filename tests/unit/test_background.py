"""stop_task: a background task is cancelled and awaited; the caller's own cancellation is kept."""

from __future__ import annotations

import asyncio

import pytest

from switchboard.background import stop_task


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
