"""A request the gateway refuses before anything is sent upstream does not use its caller's
rate limits, end to end with the official SDK, embedded and on a cluster (the Redis limiter):
every deployment of its group cooling down (503 ``no_healthy_deployment``), a request too long
for every context window (400 ``context_length_exceeded``) and a pin on a deployment that may
never serve it each give back the request the caller's ``rpm_limit`` took."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.sdk import ask
from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway
from tests.services import with_cluster

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


def _config(mock: Mock) -> dict[str, Any]:
    config = openai_config(mock)
    p = "local-openai"
    config["models"] += [
        {"name": "cooling", "deployment": "one", "provider": p, "model": "gpt-4o-mini"},
        {"name": "cooling", "deployment": "two", "provider": p, "model": "gpt-4o"},
        {"name": "tiny", "provider": p, "model": "gpt-4o-mini", "info": {"context_window": 60}},
        {"name": "sized", "deployment": "small", "provider": p, "model": "gpt-4o-mini",
         "info": {"context_window": 60}},
        {"name": "sized", "deployment": "large", "provider": p, "model": "gpt-4o",
         "info": {"context_window": 100_000}},
    ]
    # Two requests a minute to this account: a group on it with a fallback, and another group.
    config["providers"].append({"name": "resting-account", "type": "openai", "api_base": f"{mock.url}/v1",
                                "api_key": "${UPSTREAM_KEY}", "rpm": 2})
    config["models"] += [
        {"name": "resting", "provider": "resting-account", "model": "gpt-4o-mini"},
        {"name": "resting-spare", "provider": p, "model": "gpt-4o-mini"},
        {"name": "resting-direct", "provider": "resting-account", "model": "gpt-4o-mini"},
    ]
    config["router"] = {
        "fallbacks": {"resting": ["resting-spare"]},
        "num_retries": 1,
        "retry": {"backoff_seconds": 0.01, "max_backoff_seconds": 0.02},
        # Out after one failure, for longer than the test runs: nothing comes back meanwhile.
        "cooldown": {"failures": 1, "seconds": 600},
        "groups": {"sized": {"allow_pinning": True}},
    }
    return config


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def gateway(request: pytest.FixtureRequest, mock_upstream: Mock,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = with_cluster(_config(mock_upstream), request, "limits_unsent")
    gw = start_gateway(config, tmp_path_factory.mktemp(f"limits-unsent-{request.param}"))
    yield gw
    gw.process.stop()


def _key(gw: Gateway, rpm: int) -> str:
    resp = httpx.post(f"{gw.url}/admin/v1/keys", json={"models": ["*"], "rpm_limit": rpm},
                      headers=ADMIN, timeout=10)
    assert resp.status_code == 201, resp.text
    key: str = resp.json()["key"]
    return key


def _client(gw: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30)


def _left(gw: Gateway, key: str) -> str:
    """The caller's requests left this minute, after one more request that is served."""
    raw = _client(gw, key).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=ask("x"))
    return raw.headers["x-ratelimit-remaining-requests"]


def _refused_thrice(gw: Gateway, key: str, status: int, code: str, **request: Any) -> None:
    """Three refusals of a caller allowed two requests a minute: none took one."""
    for _ in range(3):
        with pytest.raises(openai.APIStatusError) as refused:
            _client(gw, key).chat.completions.create(**request)
        body: Any = refused.value.body
        assert (refused.value.status_code, body["code"]) == (status, code), body
    assert _left(gw, key) == "1"  # this one alone counted


def test_every_deployment_cooling_down_uses_none_of_the_callers_limits(gateway: Gateway) -> None:
    with pytest.raises(openai.APIStatusError):  # each deployment fails once: both are out
        openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30
                      ).chat.completions.create(model="cooling", messages=ask("mock:status=500 failing"))
    _refused_thrice(gateway, _key(gateway, 2), 503, "no_healthy_deployment",
                    model="cooling", messages=ask("x"))


LONG = " ".join(["word"] * 200)


def test_a_request_too_long_for_every_window_uses_none_of_the_callers_limits(gateway: Gateway) -> None:
    _refused_thrice(gateway, _key(gateway, 2), 400, "context_length_exceeded",
                    model="tiny", messages=ask(LONG))


def test_a_pin_that_may_never_serve_uses_none_of_the_callers_limits(gateway: Gateway) -> None:
    _refused_thrice(gateway, _key(gateway, 2), 400, "context_length_exceeded", model="sized",
                    messages=ask(LONG), extra_headers={"x-switchboard-deployment": "small"})


def test_a_group_cooling_down_leaves_its_providers_limit_to_what_is_sent_there(gateway: Gateway) -> None:
    admin = openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    with pytest.raises(openai.APIStatusError):  # sent to the account once (one of its two), then out
        admin.chat.completions.create(model="resting", messages=ask("mock:status=500 failing"))
    raw = admin.chat.completions.with_raw_response.create(model="resting", messages=ask("x"))
    assert raw.headers["x-switchboard-model"] == "resting-spare"
    # Served by the fallback: nothing went to the account, whose second request is still there.
    raw = admin.chat.completions.with_raw_response.create(model="resting-direct", messages=ask("x"))
    assert raw.headers["x-switchboard-deployment"] == "resting-account/gpt-4o-mini", raw.headers
