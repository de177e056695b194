"""Every error class surfaces as the openai SDK's matching exception, with an OpenAI error body."""

from __future__ import annotations

import contextlib

import httpx
import openai
import pytest

from tests.e2e.sdk import ask
from tests.servers import MASTER_KEY, UPSTREAM_KEY, Gateway


def test_wrong_key_is_authentication_error(gateway: Gateway) -> None:
    bad = openai.OpenAI(base_url=gateway.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as exc:
        bad.chat.completions.create(model="gpt-4o-mini", messages=ask("x"))
    assert exc.value.status_code == 401
    assert exc.value.body["type"] == "authentication_error"  # type: ignore[index]


def test_missing_key_is_401(gateway: Gateway) -> None:
    resp = httpx.post(
        f"{gateway.base_url}/chat/completions", json={"model": "gpt-4o-mini", "messages": ask("x")}
    )
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "missing_api_key"


def test_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        client.chat.completions.create(model="no-such-model", messages=ask("x"))
    assert exc.value.code == "model_not_found"
    assert exc.value.param == "model"


def test_invalid_field_is_bad_request_naming_param(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="gpt-4o-mini", messages=ask("x"), temperature=3)
    assert exc.value.param == "temperature"


def test_upstream_rate_limit_passes_status_and_retry_after(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as exc:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=ask("mock:status=429 mock:retry_after=7")
        )
    assert exc.value.status_code == 429
    assert exc.value.response.headers["retry-after"] == "7"


def test_upstream_4xx_passes_through_with_message(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=ask("mock:status=400 mock:error_code=context_length_exceeded")
        )
    assert exc.value.code == "context_length_exceeded"
    assert "injected error 400" in exc.value.message


def test_upstream_404_passes_through(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o-mini", messages=ask("mock:status=404"))


def test_upstream_5xx_is_502(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as exc:
        client.chat.completions.create(model="gpt-4o-mini", messages=ask("mock:status=500"))
    assert exc.value.status_code == 502
    assert exc.value.code == "upstream_error"


def test_upstream_overloaded_is_503(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as exc:
        client.chat.completions.create(model="gpt-4o-mini", messages=ask("mock:status=503"))
    assert exc.value.status_code == 503


def test_upstream_timeout_is_504(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model="slow-model", messages=ask("mock:hang=1"))
    assert exc.value.status_code == 504
    assert exc.value.code == "upstream_timeout"


def test_per_model_timeout_overrides_the_provider(client: openai.OpenAI) -> None:
    # The provider waits 120 s for a first byte; this model entry waits 0.5 s.
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model="impatient-model", messages=ask("mock:latency_ms=3000"))
    assert exc.value.status_code == 504
    assert client.chat.completions.create(model="gpt-4o-mini", messages=ask("mock:latency_ms=700")).choices


def test_stream_first_byte_timeout_is_504(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as exc:
        list(client.chat.completions.create(model="slow-model", messages=ask("mock:hang=1"), stream=True))
    assert exc.value.status_code == 504


def test_unreachable_upstream_is_502(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as exc:
        client.chat.completions.create(model="unreachable", messages=ask("x"))
    assert exc.value.status_code == 502
    assert exc.value.code == "upstream_unreachable"


def test_upstream_auth_failure_is_gateway_config_error_without_credentials(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as exc:
        client.chat.completions.create(model="misconfigured", messages=ask("x"))
    assert exc.value.status_code == 502
    assert exc.value.code == "upstream_authentication_failed"
    text = exc.value.response.text
    assert "sk-wrong-key-123" not in text and UPSTREAM_KEY not in text and MASTER_KEY not in text


def test_error_mid_stream_raises_in_sdk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=ask("mock:fail_after=3"), stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as exc:
        for chunk in stream:
            received.append(chunk)
    assert len(received) == 3
    assert "mid-stream" in exc.value.message


def test_upstream_connection_dropped_mid_stream_raises_in_sdk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=ask("mock:disconnect_after=2"), stream=True
    )
    with pytest.raises(openai.APIError) as exc:
        list(stream)
    assert "provider 'local-openai'" in exc.value.message


def test_stream_error_before_first_byte_is_http_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError):
        list(
            client.chat.completions.create(model="gpt-4o-mini", messages=ask("mock:status=429"), stream=True)
        )


def test_credentials_never_in_gateway_output(gateway: Gateway, client: openai.OpenAI) -> None:
    for model in ("misconfigured", "gpt-4o-mini"):
        with contextlib.suppress(openai.APIError):
            client.chat.completions.create(model=model, messages=ask("mock:status=500"))
    log = gateway.process.output
    assert UPSTREAM_KEY not in log and "sk-wrong-key-123" not in log and MASTER_KEY not in log
