"""Every error class surfaces as the openai SDK's matching exception, with an OpenAI error body."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e.sdk import ask
from tests.servers import (
    MASTER_KEY,
    UPSTREAM_KEY,
    Gateway,
    Mock,
    captured,
    new_marker,
    openai_config,
    start_gateway,
)


def assert_error(
    exc: openai.APIStatusError, status: int, type_: str, code: str | None, param: str | None = None
) -> None:
    """The status and the whole OpenAI error object, as docs/api.md's error table says."""
    assert exc.status_code == status
    error = exc.response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (type_, code, param)
    assert isinstance(error["message"], str) and error["message"]
    assert (exc.type, exc.code, exc.param) == (type_, code, param)  # what the SDK exposes


def test_wrong_key_is_authentication_error(gateway: Gateway) -> None:
    bad = openai.OpenAI(base_url=gateway.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as exc:
        bad.chat.completions.create(model="gpt-4o-mini", messages=ask("x"))
    assert_error(exc.value, 401, "authentication_error", "invalid_api_key")


def test_missing_key_is_401(gateway: Gateway) -> None:
    resp = httpx.post(
        f"{gateway.base_url}/chat/completions", json={"model": "gpt-4o-mini", "messages": ask("x")}
    )
    assert resp.status_code == 401
    error = resp.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("authentication_error", "missing_api_key", None)


def test_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        client.chat.completions.create(model="no-such-model", messages=ask("x"))
    assert_error(exc.value, 404, "not_found_error", "model_not_found", "model")


def test_invalid_field_is_bad_request_naming_param(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="gpt-4o-mini", messages=ask("x"), temperature=3)
    assert_error(exc.value, 400, "invalid_request_error", "invalid_value", "temperature")


def test_upstream_rate_limit_passes_status_and_retry_after(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as exc:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=ask("mock:status=429 mock:retry_after=7")
        )
    assert_error(exc.value, 429, "rate_limit_error", "rate_limit_exceeded")
    assert exc.value.response.headers["retry-after"] == "7"


def test_upstream_4xx_passes_through_with_message(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=ask("mock:status=400 mock:error_code=context_length_exceeded")
        )
    assert_error(exc.value, 400, "invalid_request_error", "context_length_exceeded")
    assert "injected error 400" in exc.value.message


def test_upstream_404_passes_through(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        client.chat.completions.create(model="gpt-4o-mini", messages=ask("mock:status=404"))
    # The upstream's status, type and code (the mock's 404 has type invalid_request_error, no code).
    assert_error(exc.value, 404, "invalid_request_error", None)
    assert "injected error 404" in exc.value.message


def test_upstream_413_is_the_callers_request_too_large(client: openai.OpenAI) -> None:
    # The upstream's body says server_error (the mock's type for a status outside its table), but a
    # 413 is the caller's request being too large, whatever the upstream calls it.
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model="gpt-4o-mini", messages=ask("mock:status=413"))
    assert_error(exc.value, 413, "invalid_request_error", "request_too_large")
    assert "injected error 413" in exc.value.message
    with pytest.raises(openai.APIStatusError) as exc:  # the upstream's own code is kept
        client.chat.completions.create(
            model="gpt-4o-mini", messages=ask("mock:status=413 mock:error_code=payload_too_big")
        )
    assert_error(exc.value, 413, "invalid_request_error", "payload_too_big")


def test_upstream_5xx_is_502(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as exc:
        client.chat.completions.create(model="gpt-4o-mini", messages=ask("mock:status=500"))
    assert_error(exc.value, 502, "api_error", "upstream_error")


def test_upstream_overloaded_is_503(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as exc:
        client.chat.completions.create(model="gpt-4o-mini", messages=ask("mock:status=503"))
    assert_error(exc.value, 503, "api_error", "upstream_overloaded")


def test_upstream_timeout_is_504(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model="slow-model", messages=ask("mock:hang=1"))
    assert_error(exc.value, 504, "timeout_error", "upstream_timeout")


def test_per_model_timeout_overrides_the_provider(client: openai.OpenAI) -> None:
    # The provider waits 120 s for a first byte; this model entry waits 0.5 s.
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model="impatient-model", messages=ask("mock:latency_ms=3000"))
    assert_error(exc.value, 504, "timeout_error", "upstream_timeout")
    slow = client.chat.completions.create(model="gpt-4o-mini", messages=ask("mock:latency_ms=700"))
    assert slow.choices[0].message.content == "Hello from the Switchboard mock. You said: mock:latency_ms=700"


def test_stream_first_byte_timeout_is_504(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as exc:
        list(client.chat.completions.create(model="slow-model", messages=ask("mock:hang=1"), stream=True))
    assert_error(exc.value, 504, "timeout_error", "upstream_timeout")


def test_unreachable_upstream_is_502(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as exc:
        client.chat.completions.create(model="unreachable", messages=ask("x"))
    assert_error(exc.value, 502, "api_error", "upstream_unreachable")


def test_upstream_auth_failure_is_gateway_config_error_without_credentials(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as exc:
        client.chat.completions.create(model="misconfigured", messages=ask("x"))
    assert_error(exc.value, 502, "api_error", "upstream_authentication_failed")
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
    assert (exc.value.type, exc.value.code) == ("api_error", "upstream_error")


def test_upstream_connection_dropped_mid_stream_raises_in_sdk(
    client: openai.OpenAI, mock_upstream: Mock
) -> None:
    marker = new_marker()
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=ask(f"mock:disconnect_after=2 mock:capture={marker}"), stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as exc:
        for chunk in stream:
            received.append(chunk)
    assert len(received) == 2  # what the upstream sent before it dropped the connection
    assert "provider 'local-openai'" in exc.value.message
    assert (exc.value.type, exc.value.code) == ("api_error", "upstream_error")
    assert captured(mock_upstream, marker, outcome="dropped")[0]["outcome"] == "dropped"


def test_stream_error_before_first_byte_is_http_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as exc:
        list(
            client.chat.completions.create(model="gpt-4o-mini", messages=ask("mock:status=429"), stream=True)
        )
    assert_error(exc.value, 429, "rate_limit_error", "rate_limit_exceeded")
    assert exc.value.response.headers["retry-after"] == "1"


@pytest.mark.parametrize(
    ("directives", "status", "type_", "code"),
    [
        ("mock:status=400 mock:error_code=context_length_exceeded", 400, "invalid_request_error",
         "context_length_exceeded"),
        # the status the body's type stands for: the mock's 404 says invalid_request_error
        ("mock:status=404", 400, "invalid_request_error", None),
        ("mock:status=429", 429, "rate_limit_error", "rate_limit_exceeded"),
        ("mock:status=500", 502, "api_error", "upstream_error"),
    ],
)
def test_stream_answered_200_with_a_json_error_is_that_error(
    client: openai.OpenAI, mock_upstream: Mock, directives: str, status: int, type_: str, code: str | None
) -> None:
    # Some servers (and proxies) answer a stream request's failure with status 200 and the JSON
    # error body: the client gets the error the same body would be with its status, not a 502
    # about a cut stream, and it is retried as that error would be.
    marker = new_marker()
    with pytest.raises(openai.APIStatusError) as exc:
        list(client.chat.completions.create(
            model="gpt-4o-mini", messages=ask(f"{directives} mock:stream_json=1 mock:capture={marker}"),
            stream=True))
    assert_error(exc.value, status, type_, code)
    assert f"injected error {directives.split()[0][12:]}" in exc.value.message
    assert "before it was complete" not in exc.value.message
    attempts = int(exc.value.response.headers["x-switchboard-attempts"])
    assert attempts == (1 if status < 500 and status != 429 else 3)
    assert len(captured(mock_upstream, marker, count=attempts)) == attempts


def test_stream_answered_with_a_whole_json_answer_is_a_clear_502(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as exc:
        list(client.chat.completions.create(
            model="gpt-4o-mini", messages=ask("mock:stream_json=1"), stream=True))
    assert_error(exc.value, 502, "api_error", "upstream_error")
    assert "JSON body instead of an event stream" in exc.value.message


def test_a_stream_event_over_the_providers_configured_bound_is_refused(
    mock_upstream: Mock, tmp_path: Path
) -> None:
    config = openai_config(mock_upstream)
    config["providers"].append({"name": "tight", "type": "openai", "api_base": f"{mock_upstream.url}/v1",
                                "api_key": "${UPSTREAM_KEY}", "max_event_bytes": 128 * 1024})
    # Upstream models the catalog does not know: no context window refuses the long prompts.
    config["models"] += [{"name": "tight-model", "provider": "tight", "model": "mock-long"},
                         {"name": "roomy-model", "provider": "local-openai", "model": "mock-long"}]
    gw = start_gateway(config, tmp_path)
    try:
        client = openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=60)

        def streamed(model: str, size: int) -> str:
            # One word of ``size`` letters: one event of about that many bytes.
            stream = client.chat.completions.create(
                model=model, messages=ask(f"mock:reply={'A' * size}"), stream=True)
            return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

        assert streamed("tight-model", 100_000) == "A" * 100_000  # under its bound
        assert streamed("roomy-model", 2_000_000) == "A" * 2_000_000  # under the default 16 MiB
        with pytest.raises(openai.APIError) as exc:  # over its bound: the documented 502 error
            streamed("tight-model", 2_000_000)  # read in pieces (the client pauses at 256 KiB)
        assert (exc.value.type, exc.value.code) == ("api_error", "upstream_error")
        assert "provider 'tight' sent a stream event longer than 131072 bytes" in exc.value.message
    finally:
        gw.process.stop()


def test_credentials_never_in_gateway_output(mock_upstream: Mock, tmp_path: Path) -> None:
    # A gateway of its own, stopped before the check, so its whole output (every request's lines
    # and the shutdown) is collected and no other test's traffic is mixed in.
    gw = start_gateway(openai_config(mock_upstream), tmp_path)
    try:
        client = openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0)
        failures = []
        for model, prompt in [
            ("misconfigured", "x"),
            ("gpt-4o-mini", "mock:status=500"),
            ("gpt-4o-mini", "mock:status=429"),
            ("unreachable", "x"),
        ]:
            with pytest.raises(openai.APIStatusError) as exc:
                client.chat.completions.create(model=model, messages=ask(prompt))
            failures.append(exc.value.status_code)
        assert failures == [502, 502, 429, 502]
    finally:
        gw.process.stop()
    gw.process.wait_exit()
    log = gw.process.output
    assert "Application startup complete" in log
    assert UPSTREAM_KEY not in log and "sk-wrong-key-123" not in log and MASTER_KEY not in log


@pytest.mark.parametrize(
    ("directives", "status", "type_", "code"),
    [
        # upstream rate limit: the upstream's own code is kept
        ("mock:status=429 mock:error_code=tokens", 429, "rate_limit_error", "tokens"),
        # the provider account out of quota: OpenAI's shape (error class billing)
        ("mock:status=429 mock:error_code=insufficient_quota", 429, "insufficient_quota",
         "insufficient_quota"),
        # upstream rejected the gateway's credentials
        ("mock:status=401", 502, "api_error", "upstream_authentication_failed"),
        ("mock:status=403", 502, "api_error", "upstream_authentication_failed"),
        # upstream timeouts
        ("mock:status=408", 504, "timeout_error", "upstream_timeout"),
        ("mock:status=504", 504, "timeout_error", "upstream_timeout"),
        # upstream overloaded
        ("mock:status=529", 503, "api_error", "upstream_overloaded"),
        # other upstream 4xx: the upstream's status, type and code (the mock's type for a status
        # outside its table is server_error, which no gateway default would produce for a 409)
        ("mock:status=409 mock:error_code=conflict_here", 409, "server_error", "conflict_here"),
    ],
)
def test_upstream_status_table(
    client: openai.OpenAI, directives: str, status: int, type_: str, code: str
) -> None:
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model="gpt-4o-mini", messages=ask(directives))
    assert_error(exc.value, status, type_, code)
    assert UPSTREAM_KEY not in exc.value.response.text
