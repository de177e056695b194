"""Resident memory that follows the load down: freed memory handed back to the OS.

A burst of concurrent requests (or a stalled upstream holding many open) makes the allocator
grow its heap; when the burst is over, glibc keeps the freed pages, so resident memory stays at
the burst's high-water mark. ``malloc_trim(0)`` returns them (the top of the heap and, since
glibc 2.8, free pages within it). Called every ``server.memory_trim_seconds`` in a thread: it
takes the allocator's lock for a few milliseconds and must not stall the event loop. On a libc
without it (musl, macOS) nothing is done.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

from switchboard.background import stop_task

log = logging.getLogger("switchboard")


def _trim_function() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class MemoryTrim:
    def __init__(self, every_seconds: float) -> None:
        self._every = every_seconds
        self._trim = _trim_function() if every_seconds > 0 else None
        self._task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        if self._trim is not None and self._task is None:
            self._task = asyncio.create_task(self._run(), name="switchboard-memory-trim")

    async def _run(self) -> None:
        trim = self._trim
        assert trim is not None
        while True:
            await asyncio.sleep(self._every)
            try:
                await asyncio.to_thread(trim, 0)
            except Exception as exc:  # never worth stopping the gateway for
                log.debug("malloc_trim failed: %s", exc)

    async def close(self) -> None:
        await stop_task(self._task)
        self._task = None
