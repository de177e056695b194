"""Freed memory handed back to the OS on a timer (server_memory.py)."""

from __future__ import annotations

import asyncio

from switchboard.server_memory import MemoryTrim, _trim_function


def test_glibc_malloc_trim_is_found_and_callable() -> None:
    trim = _trim_function()
    assert trim is not None
    assert trim(0) in (0, 1)  # 1: memory was released, 0: there was none to release


async def test_the_timer_trims_until_closed() -> None:
    memory = MemoryTrim(0.01)
    called = asyncio.Event()
    calls: list[int] = []

    def fake(pad: int) -> int:
        calls.append(pad)
        called.set()
        return 0

    memory._trim = fake
    memory.start()
    assert memory.active
    await asyncio.wait_for(called.wait(), 5)
    await memory.close()
    assert not memory.active and calls[0] == 0


def test_zero_turns_it_off() -> None:
    memory = MemoryTrim(0)
    memory.start()
    assert not memory.active
