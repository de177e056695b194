"""A large compressed request body (gzip or zstd) is inflated in a worker thread, so the event loop keeps
serving other requests meanwhile; a small one inline (a thread would cost more than it saves)."""

from __future__ import annotations

import asyncio
import gzip
import random
from typing import Any

import pytest
import zstandard

from switchboard.errors import InvalidRequest
from switchboard.http.asgi import INFLATE_IN_THREAD_BYTES, inflate_request_body

LIMIT = 64 << 20
# The codings decoded with the same bounds: (Content-Encoding, the compressor).
CODINGS = pytest.mark.parametrize(("coding", "squeeze"),
                                  [("gzip", gzip.compress), ("zstd", zstandard.compress)])


async def _ticks_while_inflating(body: bytes, coding: str) -> tuple[bytes, int]:
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
        plain = await inflate_request_body(body, coding, LIMIT)
    finally:
        done = True
        await ticker
    return plain, ticks


@CODINGS
async def test_a_large_body_is_inflated_off_the_event_loop(coding: str, squeeze: Any) -> None:
    raw = random.Random(3).randbytes(INFLATE_IN_THREAD_BYTES + 4096)  # incompressible
    plain, ticks = await _ticks_while_inflating(squeeze(raw), coding)
    assert plain == raw
    assert ticks > 0  # the loop ran another task while the worker thread inflated


@CODINGS
async def test_a_small_body_is_inflated_inline(coding: str, squeeze: Any) -> None:
    raw = b'{"model": "m"}' * 100
    plain, ticks = await _ticks_while_inflating(squeeze(raw), coding)
    assert plain == raw and ticks == 0


@CODINGS
async def test_a_corrupt_large_body_is_still_a_400(coding: str, squeeze: Any) -> None:
    body = squeeze(random.Random(4).randbytes(INFLATE_IN_THREAD_BYTES + 10))[:-20]
    with pytest.raises(InvalidRequest) as caught:
        await inflate_request_body(body, coding, LIMIT)
    assert caught.value.code == "invalid_content_encoding"
