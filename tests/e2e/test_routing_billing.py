"""An upstream account out of credit or quota (error class ``billing``): OpenAI's 429
``insufficient_quota``, Anthropic's 402 ``billing_error``, an OpenAI-compatible host's 402
(OpenRouter's "insufficient credits"). Never retried on the same deployment, sent to the
group's fallbacks, the deployment cooled down; without a fallback the caller gets the
provider's status shaped as OpenAI's ``insufficient_quota``, marked not to be retried. Runs
embedded and as a cluster (the cooldown is shared state)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.servers import MASTER_KEY, Gateway, Mock, captured, new_marker, openai_config, start_gateway

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
# Long enough that the deployment is still out when the test looks (the mock never recovers).
COOLDOWN = 60.0


def _config(mock: Mock) -> dict[str, Any]:
    config = openai_config(mock)
    # Every request to these providers fails as the account's provider would (x-mock-* headers).
    config["providers"] += [
        {"name": "openai-unpaid", "type": "openai", "api_base": f"{mock.url}/v1",
         "api_key": "${UPSTREAM_KEY}",
         "headers": {"x-mock-status": "429", "x-mock-error-code": "insufficient_quota"}},
        {"name": "router-unpaid", "type": "openai", "api_base": f"{mock.url}/v1",
         "api_key": "${UPSTREAM_KEY}", "headers": {"x-mock-status": "402"}},
        {"name": "claude-unpaid", "type": "anthropic", "api_base": mock.url,
         "api_key": "${UPSTREAM_KEY}", "headers": {"x-mock-status": "402"}},
    ]
    config["models"] += [
        {"name": "unpaid", "deployment": "broke", "provider": "openai-unpaid", "model": "gpt-4o-mini"},
        {"name": "uncredited", "deployment": "broke", "provider": "router-unpaid", "model": "gpt-4o-mini"},
        {"name": "paid", "provider": "local-openai", "model": "gpt-4o"},
        {"name": "quota-alone", "provider": "openai-unpaid", "model": "gpt-4o-mini"},
        {"name": "credits-alone", "provider": "router-unpaid", "model": "gpt-4o-mini"},
        {"name": "claude-alone", "provider": "claude-unpaid", "model": "claude-sonnet-4-5"},
    ]
    config["router"] = {
        "num_retries": 2,
        "fallbacks": {"unpaid": ["paid"], "uncredited": ["paid"]},
        "cooldown": {"failures": 2, "seconds": COOLDOWN},
    }
    return config


@dataclass
class Deployment:
    kind: str
    gateway: Gateway
    mock: Mock


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def deployment(
    request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    config = _config(mock_upstream)
    if request.param == "cluster":
        postgres = request.getfixturevalue("postgres")
        config["database"] = {"url": postgres.create_database(f"billing_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": request.getfixturevalue("redis_server").url}
    gw = start_gateway(config, tmp_path_factory.mktemp(f"billing-{request.param}"))
    yield Deployment(request.param, gw, mock_upstream)
    gw.process.stop()


def _chat(gw: Gateway, model: str, text: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    return httpx.post(f"{gw.base_url}/chat/completions", json=body, headers=ADMIN, timeout=30)


def _states(gw: Gateway, group: str) -> dict[str, str]:
    resp = httpx.get(f"{gw.url}/admin/v1/routing/groups/{group}", headers=ADMIN, timeout=10)
    assert resp.status_code == 200, resp.text
    return {d["name"]: d["state"]["status"] for d in resp.json()["deployments"]}


@pytest.mark.parametrize("group", ["unpaid", "uncredited"])
def test_an_account_out_of_quota_falls_back_at_once_and_is_cooled_down(
    deployment: Deployment, group: str,
) -> None:
    gw, mock = deployment.gateway, deployment.mock
    for _ in range(2):
        marker = new_marker()
        resp = _chat(gw, group, f"mock:capture={marker} hello")
        # Served by the fallback group after one attempt at the unpaid deployment: no retry on
        # it (num_retries 2), whatever status carried the refusal (429 or 402).
        assert resp.status_code == 200, resp.text
        assert resp.json()["model"] == "gpt-4o"
        assert resp.headers["x-switchboard-attempts"] == "2"
        sent = captured(mock, marker, count=2)
        assert [r["body"]["model"] for r in sent] == ["gpt-4o-mini", "gpt-4o"]
    # Two billing failures took the deployment out (cooldown.failures: 2): no more calls to it.
    assert _states(gw, group) == {"broke": "cooling_down"}
    later = new_marker()
    again = _chat(gw, group, f"mock:capture={later} again")
    assert again.status_code == 200 and again.headers["x-switchboard-attempts"] == "1"
    assert [r["body"]["model"] for r in captured(mock, later, count=1)] == ["gpt-4o"]


def test_openai_insufficient_quota_reaches_the_caller_as_openai_shapes_it(deployment: Deployment) -> None:
    gw = deployment.gateway
    client = openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=2)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.with_raw_response.create(
            model="quota-alone", messages=[{"role": "user", "content": "hi"}])
    error = caught.value
    assert error.status_code == 429 and error.code == "insufficient_quota"
    assert error.type == "insufficient_quota"
    # Not retried by the gateway (one attempt) nor by the SDK (x-should-retry: false).
    assert error.response.headers["x-switchboard-attempts"] == "1"
    assert error.response.headers["x-should-retry"] == "false"


def test_a_402_from_an_openai_compatible_host_is_a_402(deployment: Deployment) -> None:
    resp = _chat(deployment.gateway, "credits-alone", "hi")
    assert resp.status_code == 402, resp.text
    error = resp.json()["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
    assert resp.headers["x-switchboard-attempts"] == "1" and resp.headers["x-should-retry"] == "false"


def test_anthropic_billing_error_reaches_both_apis_as_a_402(deployment: Deployment) -> None:
    gw = deployment.gateway
    resp = _chat(gw, "claude-alone", "hi")
    assert resp.status_code == 402, resp.text
    assert resp.json()["error"]["code"] == "billing_error"
    client = anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=2)
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="claude-alone", max_tokens=10,
                               messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 402
    assert caught.value.body["error"]["type"] == "billing_error"  # type: ignore[index]
