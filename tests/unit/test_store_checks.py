"""StoreChecks (/health/ready): one check at a time however many probes ask, its answers kept for
a second, and a store that never answers reported down after the timeout."""

from __future__ import annotations

import asyncio

from switchboard.stores.checks import StoreChecks


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_probes_share_one_check_and_its_answer_is_kept_a_second() -> None:
    calls = 0
    release = asyncio.Event()

    async def database() -> None:
        nonlocal calls
        calls += 1
        await release.wait()

    clock = Clock()
    checks = StoreChecks({"database": database}, clock=clock)
    waiting = [asyncio.create_task(checks.results()) for _ in range(20)]
    release.set()
    assert await asyncio.gather(*waiting) == [{"database": "ok"}] * 20
    assert calls == 1
    clock.now += 0.5
    assert await checks.results() == {"database": "ok"} and calls == 1
    clock.now += 0.6
    assert await checks.results() == {"database": "ok"} and calls == 2


async def test_a_store_that_never_answers_or_fails_is_down_the_others_ok() -> None:
    async def hangs() -> None:
        await asyncio.Event().wait()

    async def refuses() -> None:
        raise ConnectionRefusedError

    async def answers() -> str:
        return "PONG"

    checks = StoreChecks({"database": answers, "redis": hangs, "other": refuses}, timeout=0.05)
    assert await checks.results() == {"database": "ok", "redis": "down", "other": "down"}
    await checks.close()


async def test_a_probe_that_leaves_does_not_cancel_the_check_for_the_others() -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def slow() -> None:
        started.set()
        await release.wait()

    checks = StoreChecks({"database": slow})
    first = asyncio.create_task(checks.results())
    second = asyncio.create_task(checks.results())
    await started.wait()  # both wait on the one check
    first.cancel()
    release.set()
    assert await second == {"database": "ok"}


async def test_a_question_slow_to_give_up_does_not_hold_the_answer_nor_pile_up() -> None:
    """A driver cancelled on a frozen database may take seconds to let go: the check answers
    "down" at its timeout, and asks no second question while the first has not ended."""
    calls = 0
    let_go = asyncio.Event()

    async def frozen() -> None:
        nonlocal calls
        calls += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await let_go.wait()  # the driver's slow clean-up
            raise

    clock = Clock()
    checks = StoreChecks({"database": frozen}, timeout=0.05, clock=clock)
    async with asyncio.timeout(1):
        assert await checks.results() == {"database": "down"}
    clock.now += 2
    async with asyncio.timeout(1):
        assert await checks.results() == {"database": "down"}
    assert calls == 1
    let_go.set()
    for _ in range(10):  # the first question ends in the background
        await asyncio.sleep(0)
    clock.now += 2
    assert await checks.results() == {"database": "down"} and calls == 2
    let_go.set()
    await checks.close()


async def test_latest_never_waits_and_starts_one_check_when_the_answers_are_old() -> None:
    """A scrape (switchboard_store_up) reads the last answers at once; an old answer starts one
    check in the background, shared with /health/ready, whose answer the next read sees."""
    up = True
    calls = 0
    release = asyncio.Event()

    async def database() -> None:
        nonlocal calls
        calls += 1
        await release.wait()
        if not up:
            raise ConnectionRefusedError

    clock = Clock()
    checks = StoreChecks({"database": database}, clock=clock)
    assert checks.latest() == {}  # no check ended yet: nothing to report, one started
    assert checks.latest() == {}  # not a second one while it runs
    release.set()
    assert await checks.results() == {"database": "ok"} and calls == 1  # the one check, shared
    up = False
    assert checks.latest() == {"database": "ok"} and calls == 1  # a second old at most: none
    clock.now += 1.1
    assert checks.latest() == {"database": "ok"}  # the old answer, a check started
    assert await checks.results() == {"database": "down"} and calls == 2
    assert checks.latest() == {"database": "down"}
    await checks.close()


async def test_a_local_store_slow_to_answer_keeps_its_last_answer_and_its_late_error_is_down() -> None:
    """The embedded SQLite file: a question waiting past the bound (a busy host, a busy pool) is
    not cut nor "down"; no second question is asked while it runs; its answer, when it comes,
    decides: an error is down at the next check."""
    calls = 0
    release = asyncio.Event()
    fail = False

    async def database() -> None:
        nonlocal calls
        calls += 1
        await release.wait()
        if fail:
            raise OSError("disk I/O error")

    clock = Clock()
    checks = StoreChecks({"database": database}, local=["database"], timeout=0.05, clock=clock)
    assert await checks.results() == {"database": "ok"}  # slow from the start: not down
    clock.now += 2
    assert await checks.results() == {"database": "ok"} and calls == 1  # still the one question
    fail = True
    release.set()
    clock.now += 2
    assert await checks.results() == {"database": "down"} and calls == 1  # its late answer
    clock.now += 2
    assert await checks.results() == {"database": "down"} and calls == 2  # asked anew: fails at once
    await checks.close()


async def test_a_local_store_that_never_answers_is_down_after_its_patience() -> None:
    """A hung disk: the local question that has not ended after ``patience`` is down."""
    async def hangs() -> None:
        await asyncio.Event().wait()

    clock = Clock()
    checks = StoreChecks({"database": hangs}, local=["database"], timeout=0.05, patience=10, clock=clock)
    assert await checks.results() == {"database": "ok"}
    clock.now += 5
    assert await checks.results() == {"database": "ok"}
    clock.now += 6
    assert await checks.results() == {"database": "down"}
    await checks.close()
