"""The admin API's bodies have their own bound, ``server.max_admin_body_bytes`` (4 MiB by
default), below the model API's ``server.max_body_bytes`` (32 MiB): they are parsed and validated
whole, and a pathological 32 MiB one held the event loop for about a second. Over it is a 413
``request_too_large``, whether the size is declared or found while reading a chunked body, as
for the other size limit; the model API keeps its own. Where the body is read, not what it
holds: the embedded backend suffices."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway

MIB = 1024 * 1024
AUTH = {"Authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"}
KEY = b'{"models": ["*"]}'


def _padded(body: bytes, size: int) -> bytes:
    """``body`` as JSON of ``size`` bytes: the same object, then whitespace."""
    return body + b" " * (size - len(body))


def _chunked(body: bytes, piece: int = 256 * 1024) -> Iterator[bytes]:
    for start in range(0, len(body), piece):
        yield body[start:start + piece]


def _too_large(resp: httpx.Response) -> None:
    assert resp.status_code == 413, resp.text[:300]
    assert resp.json()["error"]["code"] == "request_too_large"
    assert resp.json()["error"]["type"] == "invalid_request_error"


def _chat(size: int) -> bytes:
    """A chat request of ``size`` bytes (whitespace after the object: within any context window)."""
    return _padded(b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}', size)


def test_an_admin_body_over_4_mib_is_413_by_default(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.url, headers=AUTH, timeout=30) as http:
        # Declared, and found while reading (no Content-Length).
        _too_large(http.post("/admin/v1/keys", content=_padded(KEY, 4 * MIB + 1)))
        _too_large(http.post("/admin/v1/keys", content=_chunked(_padded(KEY, 5 * MIB))))
        # At the bound it is read and served, either way.
        created = http.post("/admin/v1/keys", content=_padded(KEY, 4 * MIB))
        assert created.status_code == 201, created.text[:300]
        created = http.post("/admin/v1/keys", content=_chunked(_padded(KEY, 4 * MIB)))
        assert created.status_code == 201, created.text[:300]
        # The model API keeps its 32 MiB.
        answer = http.post("/v1/chat/completions", content=_chat(6 * MIB))
        assert answer.status_code == 200, answer.text[:300]


@pytest.fixture(scope="module")
def bounded(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = openai_config(mock_upstream, max_admin_body_bytes=64 * 1024)
    gw = start_gateway(config, tmp_path_factory.mktemp("bounded"))
    yield gw
    gw.process.stop()


def test_the_bound_is_a_setting(bounded: Gateway) -> None:
    with httpx.Client(base_url=bounded.url, headers=AUTH, timeout=30) as http:
        refused = http.post("/admin/v1/keys", content=_padded(KEY, 64 * 1024 + 1))
        _too_large(refused)
        assert refused.json()["error"]["message"] == (
            f"request body is {64 * 1024 + 1} bytes; the limit is {64 * 1024} bytes")
        limit = _padded(b'{"scope": "tenant"}', 100_000)
        _too_large(http.put("/admin/v1/limits", content=_chunked(limit, 8192)))
        assert http.post("/admin/v1/keys", content=_padded(KEY, 64 * 1024)).status_code == 201
        # The model API is not held to it.
        answer = http.post("/v1/chat/completions", content=_chat(200_000))
        assert answer.status_code == 200, answer.text[:300]
        assert json.loads(answer.text)["choices"]
