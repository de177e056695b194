"""A service's compressed error body, decompressed to be scrubbed (services/proxy.py)."""

from __future__ import annotations

import gzip
import zlib

from switchboard.services.proxy import _inflated


def test_every_gzip_member_of_an_error_body_is_decompressed() -> None:
    body = gzip.compress(b'{"error": "bad key ') + gzip.compress(b'sk-secret"}')
    assert _inflated(body, 1000) == b'{"error": "bad key sk-secret"}'  # all of it, to be scrubbed


def test_zlib_raw_deflate_and_the_bound_are_as_before() -> None:
    text = b'{"error": "nope"}'
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert _inflated(zlib.compress(text), 1000) == text
    assert _inflated(raw.compress(text) + raw.flush(), 1000) == text
    assert _inflated(gzip.compress(text * 100) + gzip.compress(text), 50) == (text * 100)[:50]
    assert _inflated(b"\x1f\x8b not gzip", 1000) is None
    assert _inflated(b"neither", 1000) is None
