"""Azure OpenAI adapter: URLs, api-version, auth, config, responses, streams and error bodies.

Reference: https://learn.microsoft.com/azure/ai-services/openai/reference (2024-10-21) and the
api-version lifecycle page (stream_options accepted from 2024-09-01-preview).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from switchboard.config.schema import ProviderConfig, Timeouts
from switchboard.errors import GatewayError, UpstreamAuthFailed, UpstreamBadGateway, UpstreamRateLimited
from switchboard.providers import registry
from switchboard.providers.azure import SPEC, Options
from switchboard.providers.target import Target
from switchboard.upstream.request import UpstreamRequest

ADAPTER = SPEC.adapter
BASE = "https://contoso.openai.azure.com"
USER = {"role": "user", "content": "hi"}


def target(deployment: str = "gpt-4o-prod", **options: Any) -> Target:
    return Target(
        name="gpt-4o",
        model=deployment,
        provider="az",
        provider_type="azure",
        api_base=BASE,
        options=Options(**options),
        timeouts=Timeouts(),
    )


def body(upstream: UpstreamRequest) -> dict[str, Any]:
    return dict(orjson.loads(upstream.body or b""))


# ---- requests ---------------------------------------------------------------------------------


def test_chat_url_and_body() -> None:
    upstream = ADAPTER.chat_request(
        {"model": "gpt-4o", "messages": [USER], "seed": 1, "drop_params": True}, target()
    )
    assert upstream.url == f"{BASE}/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
    assert body(upstream) == {"model": "gpt-4o-prod", "messages": [USER], "seed": 1}


def test_other_operations_and_versions() -> None:
    t = target("text embedding/v3", api_version="2025-01-01-preview")
    upstream = ADAPTER.embeddings_request({"model": "e", "input": "x", "dimensions": 8}, t)
    assert upstream.url == (
        f"{BASE}/openai/deployments/text%20embedding%2Fv3/embeddings?api-version=2025-01-01-preview"
    )
    assert ADAPTER.completions_request({"model": "i", "prompt": "p"}, target()).url.endswith(
        "/openai/deployments/gpt-4o-prod/completions?api-version=2024-10-21"
    )


def test_stream_usage_when_the_version_has_it() -> None:
    upstream = ADAPTER.chat_request({"model": "m", "messages": [USER], "stream": True}, target())
    assert upstream.stream
    assert body(upstream)["stream_options"] == {"include_usage": True}
    preview = ADAPTER.chat_request(
        {"model": "m", "messages": [USER], "stream": True}, target(api_version="2024-09-01-preview")
    )
    assert body(preview)["stream_options"] == {"include_usage": True}


def test_no_stream_options_for_older_versions() -> None:
    request = {"model": "m", "messages": [USER], "stream": True, "stream_options": {"include_usage": True}}
    assert "stream_options" not in body(ADAPTER.chat_request(request, target(api_version="2024-06-01")))
    completions = {"model": "m", "prompt": "p", "stream": True}
    assert "stream_options" not in body(
        ADAPTER.completions_request(completions, target(api_version="2024-02-01"))
    )


def test_max_completion_tokens_by_version() -> None:
    request = {"model": "m", "messages": [USER], "max_completion_tokens": 50}
    assert body(ADAPTER.chat_request(dict(request), target()))["max_completion_tokens"] == 50
    older = body(ADAPTER.chat_request(dict(request), target(api_version="2024-06-01")))
    assert older["max_tokens"] == 50 and "max_completion_tokens" not in older
    both = body(ADAPTER.chat_request({**request, "max_tokens": 20}, target(api_version="2024-06-01")))
    assert both["max_tokens"] == 20 and "max_completion_tokens" not in both

@pytest.mark.parametrize("parallel", [True, False])
def test_parallel_tool_calls_by_version(parallel: bool) -> None:
    request = {"model": "m", "messages": [USER], "tools": [{"type": "function", "function": {"name": "f"}}],
               "parallel_tool_calls": parallel}
    assert body(ADAPTER.chat_request(dict(request), target()))["parallel_tool_calls"] is parallel
    # Refused before 2024-09-01-preview; false is then kept by the gateway (providers/tool_calls.py),
    # which reads the request, not the body sent.
    older = body(ADAPTER.chat_request(request, target(api_version="2024-08-01-preview")))
    assert "parallel_tool_calls" not in older
    assert request["parallel_tool_calls"] is parallel


def test_http_images_are_left_to_azure() -> None:
    assert not ADAPTER.inline_images


# ---- auth and config --------------------------------------------------------------------------


def applied(config: ProviderConfig) -> dict[str, str]:
    auth = SPEC.make_auth(config, registry.options_for(config))
    request = UpstreamRequest("POST", BASE)
    asyncio.run(auth.apply(request))
    return request.headers


def test_api_key_header() -> None:
    assert applied(ProviderConfig(name="az", type="azure", api_base=BASE, api_key="k-1")) == {
        "api-key": "k-1"
    }


def test_entra_id_token() -> None:
    config = ProviderConfig.model_validate(
        {"name": "az", "type": "azure", "api_base": BASE, "api_key": "k-1", "azure_ad_token": "eyJ0eXAi"}
    )
    assert applied(config) == {"Authorization": "Bearer eyJ0eXAi"}
    assert "eyJ0eXAi" not in repr(registry.options_for(config))


def test_api_base_from_resource() -> None:
    config = ProviderConfig.model_validate({"name": "az", "type": "azure", "azure_resource": "contoso"})
    assert registry.check_provider(config) == []
    assert SPEC.api_base(config, registry.options_for(config)) == "https://contoso.openai.azure.com"


def test_configured_api_base_wins_over_resource() -> None:
    config = ProviderConfig.model_validate(
        {"name": "az", "type": "azure", "azure_resource": "contoso", "api_base": "https://proxy.example.com/"}
    )
    assert SPEC.api_base(config, registry.options_for(config)) == "https://proxy.example.com"


def test_neither_api_base_nor_resource_is_a_config_error() -> None:
    config = ProviderConfig(name="az", type="azure", api_key="k")
    assert registry.check_provider(config) == ["api_base: required for this provider type"]


@pytest.mark.parametrize(
    "extra, key",
    [
        ({"api_version": "latest"}, "api_version"),
        ({"azure_resource": "contoso.openai.azure.com"}, "azure_resource"),
        ({"api_verison": "2024-10-21"}, "api_verison"),
    ],
)
def test_bad_options_are_reported(extra: dict[str, str], key: str) -> None:
    config = ProviderConfig.model_validate({"name": "az", "type": "azure", "api_base": BASE, **extra})
    problems = registry.check_provider(config)
    assert len(problems) == 1 and problems[0].startswith(f"{key}: ")


def test_default_api_version() -> None:
    assert Options().api_version == "2024-10-21"
    with pytest.raises(ValidationError):
        Options(api_version="2024-10-21-beta")


# ---- responses and streams --------------------------------------------------------------------


def test_response_passes_filter_results_and_normalises_usage() -> None:
    response = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-2024-08-06",
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
        "choices": [
            {
                "index": 0,
                "finish_reason": "content_filter",
                "message": {"role": "assistant", "content": None},
                "content_filter_results": {"violence": {"filtered": True, "severity": "high"}},
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 0, "total_tokens": 5},
    }
    out = ADAPTER.chat_response(orjson.dumps(response), target())
    assert out["choices"][0]["finish_reason"] == "content_filter"
    assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}


def test_stream_drops_the_prompt_filter_chunk() -> None:
    decoder = ADAPTER.chat_stream({}, target())
    events = [
        {
            "choices": [],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
        },
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 9,
            "model": "gpt-4o-2024-08-06",
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": "Hi"},
                    "finish_reason": None,
                    "content_filter_results": {},
                }
            ],
            "usage": None,
        },
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 9,
            "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter"}],
            "usage": None,
        },
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 9,
            "model": "gpt-4o-2024-08-06",
            "choices": [],
            "usage": {
                "prompt_tokens": 4,
                "completion_tokens": 1,
                "total_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 2},
            },
        },
    ]
    raw = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    chunks = decoder.feed(raw) + decoder.close()
    assert [len(c["choices"]) for c in chunks] == [1, 1, 0]
    assert chunks[1]["choices"][0]["finish_reason"] == "content_filter"
    assert chunks[2]["usage"]["prompt_tokens_details"] == {"cached_tokens": 2}
    assert chunks[2]["id"] == "chatcmpl-1"


# ---- errors -----------------------------------------------------------------------------------


def error(status: int, payload: Any, headers: dict[str, str] | None = None) -> GatewayError:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return ADAPTER.error(status, headers or {}, raw, target())


def test_content_filter_400() -> None:
    err = error(
        400,
        {
            "error": {
                "message": "The response was filtered due to the prompt triggering Azure "
                "OpenAI's content management policy.",
                "type": None,
                "param": "prompt",
                "code": "content_filter",
                "status": 400,
                "innererror": {
                    "code": "ResponsibleAIPolicyViolation",
                    "content_filter_result": {"hate": {"filtered": True}},
                },
            }
        },
    )
    assert err.status == 400
    assert err.code == "content_filter"
    assert err.type == "invalid_request_error"
    assert err.param == "prompt"


def test_rate_limit_with_both_retry_headers() -> None:
    err = error(
        429,
        {
            "error": {
                "code": "429",
                "message": "Requests to the ChatCompletions_Create Operation under "
                "Azure OpenAI API version 2024-10-21 have exceeded token rate limit. Please retry "
                "after 6 seconds.",
            }
        },
        {"retry-after": "6", "retry-after-ms": "6000", "x-ms-region": "East US"},
    )
    assert isinstance(err, UpstreamRateLimited)
    assert err.code == "rate_limit_exceeded"
    assert err.headers == {"retry-after": "6", "retry-after-ms": "6000", "x-ratelimit-scope": "upstream"}


def test_context_length() -> None:
    err = error(
        400,
        {
            "error": {
                "message": "This model's maximum context length is 8192 tokens.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        },
    )
    assert err.code == "context_length_exceeded" and err.param == "messages"


def test_deployment_not_found() -> None:
    err = error(
        404,
        {
            "error": {
                "code": "DeploymentNotFound",
                "message": "The API deployment for this resource does not exist.",
            }
        },
    )
    assert err.status == 404 and err.code == "DeploymentNotFound"


def test_auth_failure() -> None:
    err = error(401, {"error": {"code": "401", "message": "Access denied due to invalid subscription key"}})
    assert isinstance(err, UpstreamAuthFailed) and err.status == 502


def test_html_500() -> None:
    err = error(500, b"<!DOCTYPE html><html><body>Service Error</body></html>")
    assert isinstance(err, UpstreamBadGateway) and "HTTP 500" in err.message
