"""A large compressed request body is inflated in a worker thread, so the event loop keeps
serving other requests meanwhile; a small one inline (a thread would cost more than it saves)."""

from __future__ import annotations

import asyncio
import gzip
import random

import pytest

from switchboard.errors import InvalidRequest
from switchboard.http.asgi import INFLATE_IN_THREAD_BYTES, inflate_request_body

LIMIT = 64 << 20


async def _ticks_while_inflating(body: bytes) -> tuple[bytes, int]:
    """The plain body, and how often another task ran on the loop while it was inflated."""
    ticks = 0
    done = False

    async def other_request() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(other_request())
    try:
        plain = await inflate_request_body(body, "gzip", LIMIT)
    finally:
        done = True
        await ticker
    return plain, ticks


async def test_a_large_body_is_inflated_off_the_event_loop() -> None:
    raw = random.Random(3).randbytes(INFLATE_IN_THREAD_BYTES + 4096)  # incompressible
    plain, ticks = await _ticks_while_inflating(gzip.compress(raw))
    assert plain == raw
    assert ticks > 0  # the loop ran another task while the worker thread inflated


async def test_a_small_body_is_inflated_inline() -> None:
    raw = b'{"model": "m"}' * 100
    plain, ticks = await _ticks_while_inflating(gzip.compress(raw))
    assert plain == raw and ticks == 0


async def test_a_corrupt_large_body_is_still_a_400() -> None:
    body = gzip.compress(random.Random(4).randbytes(INFLATE_IN_THREAD_BYTES + 10))[:-20]
    with pytest.raises(InvalidRequest) as caught:
        await inflate_request_body(body, "gzip", LIMIT)
    assert caught.value.code == "invalid_content_encoding"
