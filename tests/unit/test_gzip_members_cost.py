"""A gzip body of many small members costs work in proportion to its size, on the request side
(http/asgi.py ``_inflate``, run on the event loop below INFLATE_IN_THREAD_BYTES, before any
authentication) and on the upstream side (upstream/gunzip.py, read by upstream/http1.py)."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import pytest

from switchboard.errors import GatewayError
from switchboard.http.asgi import INFLATE_IN_THREAD_BYTES, inflate_body
from switchboard.upstream import http1
from switchboard.upstream.gunzip import Gunzip

EMPTY_MEMBER = gzip.compress(b"")  # 20 bytes, no content


class _Counting:
    """zlib.decompressobj, counting every input byte handed to zlib across all decoders."""

    fed = 0

    def __init__(self, real: Any) -> None:
        self._real = real

    def decompress(self, data: bytes, max_length: int = 0) -> bytes:
        _Counting.fed += len(data)
        return self._real.decompress(data, max_length)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> type[_Counting]:
    real = zlib.decompressobj
    _Counting.fed = 0
    monkeypatch.setattr(zlib, "decompressobj", lambda *a, **k: _Counting(real(*a, **k)))
    return _Counting


def test_a_request_body_of_many_empty_gzip_members_is_not_decoded_in_quadratic_work(
    counted: type[_Counting],
) -> None:
    body = EMPTY_MEMBER * ((INFLATE_IN_THREAD_BYTES - 1) // len(EMPTY_MEMBER))  # inflated on the loop
    with pytest.raises(GatewayError) as refused:  # a caller's body of so many members is refused
        inflate_body(body, "gzip", 32 << 20)
    assert refused.value.code == "invalid_content_encoding" and "64 gzip members" in refused.value.message
    # Each member's decoder is handed every byte after it: ~ n^2 / 2 bytes (some 27 GB here,
    # about 1.5 s of the event loop), not a few times the body.
    assert counted.fed <= 4 * len(body), f"{counted.fed} bytes fed to zlib for a {len(body)}-byte body"


def test_an_upstream_read_of_many_empty_gzip_members_is_not_decoded_in_quadratic_work(
    counted: type[_Counting],
) -> None:
    data = EMPTY_MEMBER * (256 * 1024 // len(EMPTY_MEMBER))  # one read's worth
    decoder = Gunzip()
    assert decoder.decompress(data, http1.MAX_INFLATE) == b""
    assert decoder.eof and not decoder.unconsumed_tail
    assert counted.fed <= 4 * len(data), f"{counted.fed} bytes fed to zlib for a {len(data)}-byte read"
