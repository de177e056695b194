"""A stream request answered 200 with a JSON error body: the status the error stands for and the
error each adapter makes of it (pipeline/invoke.py raises it instead of relaying the body)."""

from __future__ import annotations

import orjson
import pytest

from switchboard.config.schema import Timeouts
from switchboard.errors import UpstreamBadGateway, UpstreamRateLimited, UpstreamUnavailable
from switchboard.providers import registry
from switchboard.providers.errors import error_object, error_status
from switchboard.providers.target import Target


def target(provider_type: str) -> Target:
    return Target("m", "m", "prov", provider_type, "http://127.0.0.1:9", None, Timeouts())


@pytest.mark.parametrize(("body", "status"), [
    ({"error": {"message": "x", "type": "invalid_request_error"}}, 400),
    ({"error": {"message": "x", "type": "requests", "code": "rate_limit_exceeded"}}, 429),
    ({"error": {"message": "x", "type": None, "code": "context_length_exceeded"}}, 400),
    ({"error": {"message": "x", "code": 404, "status": "NOT_FOUND"}}, 404),  # Google
    ({"error": {"message": "x", "code": "503"}}, 503),  # the status as a string (Azure, Mistral)
    ({"object": "error", "message": "x", "type": "BadRequestError", "code": 400}, 400),  # vLLM
    ({"type": "error", "error": {"type": "overloaded_error", "message": "x"}}, 529),  # Anthropic
    ({"error": {"message": "x", "type": "server_error"}}, 500),
    ({"error": {"message": "x", "type": "something_else"}}, 502),
    ({"error": "model is loading"}, 502),  # TGI
    ({"error": {"message": "x", "code": "\u00b2"}}, 502),  # a digit to isdigit, not to int(): was a crash
])
def test_the_status_an_error_body_stands_for(body: dict[str, object], status: int) -> None:
    err = error_object(orjson.dumps(body))
    assert err is not None and error_status(err) == status


@pytest.mark.parametrize("body", [b'{"id": "chatcmpl-1", "choices": []}', b"[1]", b"not json",
                                  b'{"error": null}', b'{"error": {}}'])
def test_a_body_without_an_error_is_none(body: bytes) -> None:
    assert error_object(body) is None
    for kind in ("openai", "anthropic", "gemini", "openai-compatible"):
        assert registry.get(kind).adapter.answer_error({}, body, target(kind)) is None


def test_each_adapter_maps_the_error_as_it_maps_that_body_on_an_error_status() -> None:
    openai = registry.get("openai").adapter
    err = openai.answer_error({}, b'{"error": {"message": "slow down", "type": "requests", '
                                  b'"code": "rate_limit_exceeded"}}', target("openai"))
    assert isinstance(err, UpstreamRateLimited) and err.message == "slow down"
    anthropic = registry.get("anthropic").adapter
    err = anthropic.answer_error({}, b'{"type": "error", "error": {"type": "overloaded_error", '
                                     b'"message": "Overloaded"}}', target("anthropic"))
    assert isinstance(err, UpstreamUnavailable)
    gemini = registry.get("gemini").adapter
    err = gemini.answer_error({}, b'[{"error": {"code": 400, "message": "bad", "status": '
                                  b'"INVALID_ARGUMENT"}}]', target("gemini"))
    assert err is not None and (err.status, err.type, err.code) == (400, "invalid_request_error",
                                                                     "invalid_argument")
    err = openai.answer_error({}, b'{"error": {"message": "boom", "type": "mystery"}}', target("openai"))
    assert isinstance(err, UpstreamBadGateway) and err.status == 502 and "boom" in err.message
