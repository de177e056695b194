"""The error table: one row per error class, agreeing with the classes themselves, with the
router's error classes and with what each inbound API writes."""

from __future__ import annotations

import orjson
import pytest

from switchboard import errors
from switchboard.errors import ERROR_TABLE, ErrorSpec, GatewayError, error_class, spec
from switchboard.http.anthropic.messages import MESSAGES
from switchboard.http.openai_api import CHAT


def _every_class(cls: type[GatewayError]) -> list[type[GatewayError]]:
    found = []
    for sub in cls.__subclasses__():
        if sub.__module__ == errors.__name__:
            found += [sub, *_every_class(sub)]
    return found


def test_every_error_class_has_a_row() -> None:
    assert set(_every_class(GatewayError)) == set(ERROR_TABLE)


@pytest.mark.parametrize("cls", list(ERROR_TABLE), ids=lambda c: c.__name__)
def test_a_row_is_what_an_error_of_its_class_is_on_the_wire(cls: type[GatewayError]) -> None:
    row = ERROR_TABLE[cls]
    error = cls("something happened")
    assert spec(error) == row
    assert orjson.loads(CHAT.encode_error(error))["error"] == {
        "message": "something happened", "type": row.openai_type, "param": None, "code": row.code}
    assert orjson.loads(MESSAGES.encode_error(error)) == {
        "type": "error", "error": {"type": row.anthropic_type, "message": "something happened"}}
    assert row.retryable == (error_class(error) in ("rate_limit", "server_error", "timeout", "connection"))
    assert row.source == ("upstream" if error_class(error) != "gateway" else "gateway")


def test_the_statuses_and_codes_clients_rely_on() -> None:
    rows = {cls.__name__: (row.status, row.code) for cls, row in ERROR_TABLE.items()}
    assert rows["RateLimited"] == (429, "rate_limit_exceeded")
    assert rows["UpstreamRateLimited"] == (429, "rate_limit_exceeded")
    assert rows["UpstreamUnavailable"] == (503, "upstream_overloaded")
    assert rows["UpstreamTimeout"] == (504, "upstream_timeout")
    assert rows["ModelNotFound"] == (404, "model_not_found")
    assert rows["AuthenticationFailed"] == (401, "invalid_api_key")
    # The gateway's own 429 is not retried on another deployment; a provider's is.
    assert not ERROR_TABLE[errors.RateLimited].retryable and ERROR_TABLE[errors.UpstreamRateLimited].retryable


def test_an_upstream_error_keeps_the_status_it_was_given() -> None:
    refused = errors.UpstreamBadGateway("no", status=400, code="content_policy_violation",
                                        type="invalid_request_error")
    assert spec(refused) == ErrorSpec(400, "invalid_request_error", "invalid_request_error",
                                      "content_policy_violation", False, "upstream")
    assert error_class(refused) == "content_policy"
    overloaded = errors.GatewayError("x", status=529)
    assert spec(overloaded).anthropic_type == "overloaded_error"
    assert errors.anthropic_type(418) == "invalid_request_error" and errors.anthropic_type(502) == "api_error"
