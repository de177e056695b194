"""A caller's body that fails while the upstream client sends it on (a file upload): the files
service raises the body's own error (http/files/service.py ``_watched``/``failure``), and an
unexpected one is logged with its traceback (http/errors.py ``Unexpected.error``). That
traceback must still show where the body failed, not only where the service raised it again."""

from __future__ import annotations

import traceback
from collections.abc import AsyncIterator
from typing import cast

import pytest

from switchboard.errors import GatewayError
from switchboard.http.files.service import _watched  # the files service's own keeping of it
from switchboard.upstream.request import UpstreamRequest
from tests.unit.upstream.test_http1 import Upstream, keep_alive, upstream_client


def _broken_piece() -> bytes:
    raise RuntimeError("a fault in the body's code")


async def _body() -> AsyncIterator[bytes]:
    yield b"first piece"
    yield _broken_piece()


async def test_the_body_error_keeps_the_frames_it_failed_in() -> None:
    failure: list[BaseException] = []
    async with Upstream(keep_alive()) as up, upstream_client() as client:
        request = UpstreamRequest("POST", up.url("/v1/files"), cast(bytes, _watched(_body(), failure)),
                                  {"Content-Type": "application/octet-stream"})
        with pytest.raises(GatewayError):
            await client.send(request, None)
    assert len(failure) == 1 and isinstance(failure[0], RuntimeError)
    frames = [f.name for f in traceback.extract_tb(failure[0].__traceback__)]
    assert "_broken_piece" in frames, frames
