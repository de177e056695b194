"""The files and batches upstream's errors in the gateway's terms, as api.md maps a model call's."""

from __future__ import annotations

from typing import Any, cast

import pytest

from switchboard.config.schema import Timeouts
from switchboard.http.files.upstream import Upstream

UPSTREAM = Upstream("oai", "openai", "http://up/v1", None, cast(Any, None), Timeouts())


@pytest.mark.parametrize(("status", "answered", "code"), [
    (408, 504, "upstream_timeout"),
    (504, 504, "upstream_timeout"),
    (503, 503, "upstream_overloaded"),
    (529, 503, "upstream_overloaded"),
    (500, 502, "upstream_error"),
    (401, 502, "upstream_authentication_failed"),
    (429, 429, "rate_limit_exceeded"),
])
def test_upstream_failures_are_the_gateways(status: int, answered: int, code: str) -> None:
    err = UPSTREAM.error(status, b'{"error": {"message": "no"}}')
    assert (err.status, err.code) == (answered, code)


def test_a_callers_mistake_keeps_the_upstreams_status_and_code() -> None:
    err = UPSTREAM.error(400, b'{"error": {"message": "bad line", "code": "invalid_jsonl", "param": "file"}}')
    assert (err.status, err.code, err.param, err.message) == (400, "invalid_jsonl", "file", "bad line")
