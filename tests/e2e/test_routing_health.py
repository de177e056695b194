"""Cooldowns, half-open probes and context-window pre-routing on a real gateway, against the
mock upstream's fault injection; a 503 for a model whose deployments are all out says in its
``Retry-After`` when the first may be tried again. Every test runs embedded (SQLite, state in
the process) and as a cluster (PostgreSQL and Redis); two instances sharing Redis see the same
cooldown."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.servers import MASTER_KEY, Gateway, Mock, captured, new_marker, openai_config, start_gateway
from tests.services import Postgres, RedisServer

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
# The tests check that a deployment is still out right after its failures (its 503s, the 7
# statuses of _exhaust): a stall of the machine as long as the cooldown would end it first and
# let the check's request through as the probe. 1.5 s was too short for a loaded runner; each
# wait for a recovery returns as soon as it comes.
COOLDOWN = 3.0


def _config(mock: Mock) -> dict[str, Any]:
    config = openai_config(mock)
    p = "local-openai"
    config["models"] += [
        {"name": "flaky", "deployment": "one", "provider": p, "model": "gpt-4o-mini"},
        {"name": "flaky", "deployment": "two", "provider": p, "model": "gpt-4o"},
        {"name": "fragile", "deployment": "one", "provider": p, "model": "gpt-4o-mini"},
        {"name": "fragile", "deployment": "two", "provider": p, "model": "gpt-4o"},
        {"name": "brittle", "deployment": "one", "provider": p, "model": "gpt-4o-mini"},
        {"name": "brittle", "deployment": "two", "provider": p, "model": "gpt-4o"},
        {"name": "flaky-shared", "deployment": "one", "provider": p, "model": "gpt-4o-mini"},
        {"name": "flaky-shared", "deployment": "two", "provider": p, "model": "gpt-4o"},
        # Pinned one deployment at a time, to probe a chosen one.
        {"name": "probed", "deployment": "one", "provider": p, "model": "gpt-4o-mini"},
        {"name": "probed", "deployment": "two", "provider": p, "model": "gpt-4o"},
        # One deployment taken out through pins while the other stays healthy.
        {"name": "pinned-out", "deployment": "one", "provider": p, "model": "gpt-4o-mini"},
        {"name": "pinned-out", "deployment": "two", "provider": p, "model": "gpt-4o"},
        # Taken out whole, then served again by single requests after the cooldown (a cluster).
        {"name": "revived", "deployment": "one", "provider": p, "model": "gpt-4o-mini"},
        {"name": "revived", "deployment": "two", "provider": p, "model": "gpt-4o"},
        {"name": "rejoined", "deployment": "one", "provider": p, "model": "gpt-4o-mini"},
        {"name": "rejoined", "deployment": "two", "provider": p, "model": "gpt-4o"},
        # Out on one instance while another (re)starts.
        {"name": "restarted", "deployment": "one", "provider": p, "model": "gpt-4o-mini"},
        {"name": "restarted", "deployment": "two", "provider": p, "model": "gpt-4o"},
        # A group of one without fallbacks is never taken out: nowhere else to go.
        {"name": "lonely", "provider": p, "model": "gpt-4o-mini"},
        # Context windows from the entries' catalog overrides.
        # Small's window holds a short request's whole body, so such a request is not counted
        # unless the gateway adds to its prompt (a stored conversation, a registry prompt).
        {"name": "sized", "deployment": "small", "provider": p, "model": "gpt-4o-mini",
         "info": {"context_window": 150}},
        {"name": "sized", "deployment": "large", "provider": p, "model": "gpt-4o",
         "info": {"context_window": 100_000}},
        {"name": "tiny", "provider": p, "model": "gpt-4o-mini", "info": {"context_window": 60}},
        {"name": "roomy", "provider": p, "model": "gpt-4o", "info": {"context_window": 100_000}},
        {"name": "tiny-alone", "provider": p, "model": "gpt-4o-mini", "info": {"context_window": 60}},
        # Semantic routing's embedding model: one deployment, with a fallback so it may cool down.
        {"name": "embedder-h", "deployment": "one", "provider": p, "model": "text-embedding-3-small"},
        {"name": "embedder-spare", "provider": p, "model": "text-embedding-3-small"},
    ]
    config["router"] = {
        "num_retries": 0,
        "context_window_fallbacks": {"tiny": ["roomy"]},
        "fallbacks": {"embedder-h": ["embedder-spare"]},
        "semantic": [{"model": "by-meaning", "embedding_model": "embedder-h", "threshold": 0.3,
                      "default": "lonely",
                      "routes": [{"to": "roomy", "examples": ["write a python function"]}]}],
        "cooldown": {"failures": 3, "seconds": COOLDOWN},
        "groups": {"brittle": {"num_retries": 3}, "probed": {"allow_pinning": True},
                   "pinned-out": {"allow_pinning": True},
                   "rejoined": {"allow_pinning": True}, "sized": {"allow_pinning": True},
                   "restarted": {"allow_pinning": True}},
    }
    return config


@dataclass
class Deployment:
    kind: str
    gateway: Gateway
    mock: Mock


def chat(gw: Gateway, model: str, text: str, headers: dict[str, str] | None = None,
         timeout: float = 30, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    return httpx.post(f"{gw.base_url}/chat/completions", json=body, headers={**ADMIN, **(headers or {})},
                      timeout=timeout)


def _cluster(mock: Mock, postgres: Postgres, redis: RedisServer) -> dict[str, Any]:
    config = _config(mock)
    config["database"] = {"url": postgres.create_database(f"health_{uuid.uuid4().hex[:8]}")}
    config["redis"] = {"url": redis.url}
    return config


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def deployment(
    request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    if request.param == "embedded":
        config = _config(mock_upstream)
    else:
        config = _cluster(mock_upstream, request.getfixturevalue("postgres"),
                          request.getfixturevalue("redis_server"))
    gw = start_gateway(config, tmp_path_factory.mktemp(f"health-{request.param}"))
    yield Deployment(request.param, gw, mock_upstream)
    gw.process.stop()


def poll(check: Callable[[], httpx.Response | None], what: str, deadline: float = 10.0) -> httpx.Response:
    """Repeat ``check`` until it returns a response; fails after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while True:
        found = check()
        if found is not None:
            return found
        assert time.monotonic() < end, what


def _error(resp: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = resp.json()["error"]
    return error


def _exhaust(gw: Gateway, model: str, cooldown: float = COOLDOWN) -> list[int]:
    """Failing requests until every deployment of ``model`` is out (a 503): the statuses seen."""
    statuses: list[int] = []

    def out() -> httpx.Response | None:
        resp = chat(gw, model, "mock:status=500 failing")
        statuses.append(resp.status_code)
        return resp if resp.status_code == 503 else None

    refused = poll(out, f"{model} never ran out of deployments", deadline=20)
    error = _error(refused)
    assert error["code"] == "no_healthy_deployment" and f"'{model}'" in error["message"]
    assert error["type"] == "api_error"
    # When to come back: the first deployment's cooldown ends within it (whole seconds, at least 1).
    assert 1 <= int(refused.headers["retry-after"]) <= math.ceil(cooldown), refused.headers
    assert "x-should-retry" not in refused.headers
    return statuses


def test_cooldown_opens_after_the_failures_and_traffic_returns_through_the_probe(
    deployment: Deployment,
) -> None:
    gw = deployment.gateway
    assert chat(gw, "flaky", "fine").status_code == 200
    statuses = _exhaust(gw, "flaky")
    # Three failures per deployment, then every one is out: a 503 naming the group.
    assert len(statuses) == 7 and all(s >= 500 and s != 503 for s in statuses[:-1]), statuses
    marker = new_marker()
    refused = chat(gw, "flaky", f"mock:capture={marker} while cooling")
    assert refused.status_code == 503 and _error(refused)["code"] == "no_healthy_deployment"
    # Fails fast, without calling the upstream.
    assert captured(deployment.mock, marker, timeout=0.5) == []

    def served() -> httpx.Response | None:
        resp = chat(gw, "flaky", "are you back?")
        if resp.status_code == 503:
            assert _error(resp)["code"] == "no_healthy_deployment"
            return None
        return resp

    back = poll(served, "the deployments never came back")
    assert back.status_code == 200, back.text
    # The probes answered: full traffic again.
    poll(lambda: (r if (r := chat(gw, "flaky", "both back")).status_code == 200 else None),
         "the other deployment never came back")
    for i in range(4):
        assert chat(gw, "flaky", f"again {i}").status_code == 200


def test_a_pin_on_a_deployment_cooling_down_says_when_it_comes_back(deployment: Deployment) -> None:
    gw = deployment.gateway
    pin = {"x-switchboard-deployment": "one"}
    for _ in range(3):  # the cooldown's failures in a row
        assert chat(gw, "pinned-out", "mock:status=500 failing", pin).status_code >= 500
    refused = chat(gw, "pinned-out", "while it cools", pin)
    assert refused.status_code == 503 and _error(refused)["code"] == "no_healthy_deployment"
    # Its own cooldown's end (COOLDOWN s from its last failure), not its healthy sibling's "now".
    assert 2 <= int(refused.headers["retry-after"]) <= math.ceil(COOLDOWN), refused.headers
    assert chat(gw, "pinned-out", "the other one").status_code == 200


def test_a_failed_probe_cools_the_deployment_down_again(deployment: Deployment) -> None:
    gw = deployment.gateway
    _exhaust(gw, "fragile")
    probes: list[int] = []

    def both_probed() -> httpx.Response | None:
        resp = chat(gw, "fragile", "mock:status=500 probe")
        if resp.status_code != 503:
            probes.append(resp.status_code)
        return resp if len(probes) == 2 else None

    poll(both_probed, "no probes were sent")
    assert all(s >= 500 for s in probes)
    # One failed probe each, and both are out again at once (no three failures needed).
    again = chat(gw, "fragile", "right after")
    assert again.status_code == 503 and _error(again)["code"] == "no_healthy_deployment"
    poll(lambda: (r if (r := chat(gw, "fragile", "later")).status_code == 200 else None),
         "the deployments never came back")


def test_a_retry_never_goes_back_to_a_deployment_its_own_failures_took_out(
    deployment: Deployment,
) -> None:
    gw, mock = deployment.gateway, deployment.mock
    # Four attempts (num_retries 3) over two deployments: two failures each, none out yet.
    first = chat(gw, "brittle", "mock:status=500 first")
    assert first.status_code == 502 and first.headers["x-switchboard-attempts"] == "4"
    # The third failure of each takes it out: the retries stop there instead of sending two
    # more requests into the cooldowns they just opened.
    marker = new_marker()
    second = chat(gw, "brittle", f"mock:status=500 mock:capture={marker} second")
    assert second.status_code == 502, second.text
    assert second.headers["x-switchboard-attempts"] == "2"
    assert len(captured(mock, marker, count=2)) == 2
    refused = chat(gw, "brittle", "while cooling")
    assert refused.status_code == 503 and _error(refused)["code"] == "no_healthy_deployment"


def test_the_one_deployment_of_a_group_without_fallbacks_keeps_its_own_errors(
    deployment: Deployment,
) -> None:
    gw = deployment.gateway
    for _ in range(5):
        failed = chat(gw, "lonely", "mock:status=500")
        assert (failed.status_code, _error(failed)["code"]) == (502, "upstream_error")
    assert chat(gw, "lonely", "fine").status_code == 200


def test_an_oversized_request_never_reaches_the_small_deployment(deployment: Deployment) -> None:
    gw, mock = deployment.gateway, deployment.mock
    marker = new_marker()
    long = f"mock:capture={marker} " + "word " * 200
    for _ in range(6):
        resp = chat(gw, "sized", long, max_tokens=20)
        assert resp.status_code == 200, resp.text
    seen = captured(mock, marker, count=6)
    assert len(seen) == 6
    assert {r["body"]["model"] for r in seen} == {"gpt-4o"}  # the large one, every time
    # A request small enough may go to either; nothing is refused.
    assert chat(gw, "sized", "short", max_tokens=5).status_code == 200


def test_max_tokens_counts_and_the_context_window_fallback_is_used(deployment: Deployment) -> None:
    gw, mock = deployment.gateway, deployment.mock
    marker = new_marker()
    # A short prompt fits the tiny model; with 500 tokens of output it does not: the larger one.
    assert chat(gw, "tiny", f"mock:capture={marker} short").status_code == 200
    assert chat(gw, "tiny", f"mock:capture={marker} short", max_tokens=500).status_code == 200
    seen = captured(mock, marker, count=2)
    assert [r["body"]["model"] for r in seen] == ["gpt-4o-mini", "gpt-4o"]


def test_a_request_no_deployment_can_hold_is_a_400_naming_the_limit(deployment: Deployment) -> None:
    gw, mock = deployment.gateway, deployment.mock
    marker = new_marker()
    resp = chat(gw, "tiny-alone", f"mock:capture={marker} " + "word " * 200)
    assert resp.status_code == 400, resp.text
    error = _error(resp)
    assert error["code"] == "context_length_exceeded" and error["type"] == "invalid_request_error"
    assert "60 tokens" in error["message"] and "'tiny-alone'" in error["message"]
    assert captured(mock, marker, timeout=0.5) == []
    assert chat(gw, "tiny-alone", "small enough").status_code == 200  # still serving


def test_a_continued_responses_conversation_is_counted_whole(deployment: Deployment) -> None:
    gw = deployment.gateway
    first = httpx.post(f"{gw.base_url}/responses", json={"model": "sized", "input": "word " * 200},
                       headers=ADMIN, timeout=30)
    assert first.status_code == 200 and first.headers["x-switchboard-deployment"] == "large", first.text
    # Each turn's own body is tiny; what is sent holds the stored conversation: too long for small.
    served = set()
    for i in range(10):
        turn = {"model": "sized", "input": f"and {i}?", "previous_response_id": first.json()["id"]}
        resp = httpx.post(f"{gw.base_url}/responses", headers=ADMIN, timeout=30, json=turn)
        assert resp.status_code == 200, resp.text
        served.add(resp.headers["x-switchboard-deployment"])
    assert served == {"large"}


def test_a_registry_prompt_is_counted_whole(deployment: Deployment) -> None:
    gw = deployment.gateway
    name = f"long-{uuid.uuid4().hex[:8]}"
    created = httpx.post(f"{gw.url}/admin/v1/prompts", headers=ADMIN, timeout=30, json={
        "name": name, "model": "sized",
        "messages": [{"role": "system", "content": "word " * 200}, {"role": "user", "content": "{{ q }}"}],
        "variables": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}})
    assert created.status_code == 201, created.text
    served = set()
    for _ in range(10):
        resp = httpx.post(f"{gw.base_url}/chat/completions", headers=ADMIN, timeout=30,
                          json={"prompt": {"id": name, "variables": {"q": "hi"}}})
        assert resp.status_code == 200, resp.text
        served.add(resp.headers["x-switchboard-deployment"])
    assert served == {"large"}


def test_a_pinned_deployment_too_small_for_the_request_is_a_400(deployment: Deployment) -> None:
    gw, mock = deployment.gateway, deployment.mock
    pin = {"x-switchboard-deployment": "small"}
    marker = new_marker()
    resp = chat(gw, "sized", f"mock:capture={marker} short", pin, max_tokens=200)
    assert resp.status_code == 400, resp.text
    error = _error(resp)
    assert (error["type"], error["code"]) == ("invalid_request_error", "context_length_exceeded")
    assert "'small'" in error["message"] and "150 tokens" in error["message"], error
    body = {"model": "sized", "max_tokens": 200,
            "messages": [{"role": "user", "content": f"mock:capture={marker}"}]}
    message = httpx.post(f"{gw.url}/v1/messages", json=body, timeout=30,
                         headers={**ADMIN, **pin, "anthropic-version": "2023-06-01"})
    assert message.status_code == 400, message.text
    assert message.json()["error"]["type"] == "invalid_request_error"
    assert captured(mock, marker, timeout=0.5) == []
    # A request that fits is served by the pinned deployment.
    fits = chat(gw, "sized", "short", pin, max_tokens=5)
    assert fits.status_code == 200 and fits.headers["x-switchboard-deployment"] == "small", fits.text


def _pinned(gw: Gateway, deployment: str, text: str, timeout: float = 30) -> httpx.Response:
    return chat(gw, "probed", text, {"x-switchboard-deployment": deployment}, timeout)


def _half_open_probe(gw: Gateway, deployment: str, send: Callable[[], httpx.Response | None]) -> None:
    """Take ``deployment`` of ``probed`` out (three failures), then repeat ``send`` (a pinned
    request) until it is the half-open probe: ``send`` returns None while refused with a 503."""
    for _ in range(3):
        assert _pinned(gw, deployment, "mock:status=500 failing").status_code == 502
    assert _pinned(gw, deployment, "while cooling").status_code == 503
    poll(send, f"{deployment} was never probed")


def _served_again(gw: Gateway, deployment: str) -> None:
    """The next requests reach ``deployment`` within a few seconds (well within its cooldown
    seconds and a claim's lapse, far from the probe's 600 s timeout)."""
    def answered() -> httpx.Response | None:
        resp = _pinned(gw, deployment, "are you back?")
        if resp.status_code == 503:
            assert _error(resp)["code"] == "no_healthy_deployment"
            return None
        return resp

    assert poll(answered, f"{deployment} took no traffic after its probe", deadline=4).status_code == 200
    assert _pinned(gw, deployment, "and again").status_code == 200  # healthy: full traffic


def test_a_probe_answered_with_the_callers_400_leaves_the_deployment_probed_again(
    deployment: Deployment,
) -> None:
    # The caller's 400 says nothing of the deployment: its probe slot was kept until the probe's
    # timeout (600 s), so the deployment took no traffic for ten minutes.
    gw = deployment.gateway

    def bad_request() -> httpx.Response | None:
        resp = _pinned(gw, "one", "mock:status=400 a bad request")
        return None if resp.status_code == 503 else resp

    _half_open_probe(gw, "one", bad_request)
    _served_again(gw, "one")


def test_a_probe_the_client_hung_up_on_leaves_the_deployment_probed_again(deployment: Deployment) -> None:
    gw = deployment.gateway

    def abandoned() -> httpx.Response | None:
        try:
            resp = _pinned(gw, "two", "mock:latency_ms=3000 slow", timeout=0.5)
        except httpx.ReadTimeout:
            return httpx.Response(499)  # the probe was sent and the client left
        assert resp.status_code == 503, resp.text
        return None

    _half_open_probe(gw, "two", abandoned)
    _served_again(gw, "two")


@pytest.fixture(scope="module")
def two_instances(
    mock_upstream: Mock, postgres: Postgres, redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Gateway, Gateway]]:
    config = _cluster(mock_upstream, postgres, redis_server)
    config["router"]["cooldown"]["seconds"] = 30
    first = start_gateway(config, tmp_path_factory.mktemp("health-a"))
    second = start_gateway(config, tmp_path_factory.mktemp("health-b"))
    yield first, second
    first.process.stop()
    second.process.stop()


def test_a_cooldown_opened_on_one_instance_is_seen_by_the_other_within_a_second(
    two_instances: tuple[Gateway, Gateway],
) -> None:
    first, second = two_instances
    assert chat(second, "flaky-shared", "fine here").status_code == 200
    _exhaust(first, "flaky-shared", cooldown=30)
    opened = time.monotonic()

    def refused() -> httpx.Response | None:
        resp = chat(second, "flaky-shared", "on the other instance")
        return resp if resp.status_code == 503 else None

    resp = poll(refused, "the other instance never saw the cooldown", deadline=1.0)
    assert time.monotonic() - opened < 1.0
    assert _error(resp)["code"] == "no_healthy_deployment"
    assert 25 <= int(resp.headers["retry-after"]) <= 30  # the cooldown's end, as announced


def test_an_instance_restarted_during_a_cooldown_sends_the_deployment_nothing(
    two_instances: tuple[Gateway, Gateway], mock_upstream: Mock, postgres: Postgres,
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # The cooldown was announced on the change feed before the new instance listened: it used
    # to send the deployment requests until one failed and Redis said it was out.
    first, _ = two_instances
    pin = {"x-switchboard-deployment": "one"}
    for _ in range(3):
        assert chat(first, "restarted", "mock:status=500 failing", pin).status_code == 502
    _until_states((first,), "restarted", {"one": "cooling_down"}, "the cooldown never opened")
    config = _cluster(mock_upstream, postgres, redis_server)
    config["router"]["cooldown"]["seconds"] = 30
    restarted = start_gateway(config, tmp_path_factory.mktemp("health-restarted"))
    try:
        assert _states(restarted, "restarted") == {"one": "cooling_down", "two": "healthy"}
        for n in range(6):
            resp = chat(restarted, "restarted", f"who answers {n}?")
            assert resp.status_code == 200, resp.text
            assert resp.headers["x-switchboard-deployment"] == "two"
    finally:
        restarted.process.stop()


def test_semantic_routings_embedding_is_a_half_open_deployments_probe(deployment: Deployment) -> None:
    # The embedding call went to a half-open deployment without taking its probe (nor, on a
    # cluster, asking for it): its answer said nothing, the deployment stayed out of traffic,
    # and every semantic request could reach it at once while its probe was meant to be alone.
    gw = deployment.gateway
    for _ in range(3):
        resp = httpx.post(f"{gw.base_url}/embeddings", headers=ADMIN, timeout=30,
                          json={"model": "embedder-h", "input": "mock:status=500 x"})
        assert resp.status_code == 502, resp.text  # its fallback, sent the same text, too
    _until_states((gw,), "embedder-h", {"one": "half_open"}, "the cooldown never ended",
                  deadline=COOLDOWN + 10)
    resp = chat(gw, "by-meaning", "write a python function please")
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-switchboard-route"].startswith("roomy (semantic"), resp.headers
    # The embedding was the probe, and its answer brought the deployment back.
    _until_states((gw,), "embedder-h", {"one": "healthy"}, "the probe's answer was not heard")


@pytest.fixture(scope="module")
def quick_pair(
    mock_upstream: Mock, postgres: Postgres, redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Gateway, Gateway]]:
    """Two instances sharing Redis, with the short cooldown: half-open within seconds."""
    config = _cluster(mock_upstream, postgres, redis_server)
    first = start_gateway(config, tmp_path_factory.mktemp("health-quick-a"))
    second = start_gateway(config, tmp_path_factory.mktemp("health-quick-b"))
    yield first, second
    first.process.stop()
    second.process.stop()


def _states(gw: Gateway, group: str) -> dict[str, str]:
    """This instance's view of ``group``: each deployment's health status."""
    resp = httpx.get(f"{gw.url}/admin/v1/routing/groups/{group}", headers=ADMIN, timeout=10)
    assert resp.status_code == 200, resp.text
    return {d["name"]: d["state"]["status"] for d in resp.json()["deployments"]}


def _until_states(gateways: tuple[Gateway, ...], group: str, wanted: dict[str, str], what: str,
                  deadline: float = 10.0) -> None:
    """Poll the admin view of every one of ``gateways`` until ``group`` shows ``wanted``."""
    poll(lambda: httpx.Response(200) if all(
        {d: s for d, s in _states(gw, group).items() if d in wanted} == wanted for gw in gateways) else None,
        what, deadline)


def test_a_group_taken_out_whole_is_served_by_the_first_request_after_its_cooldown(
    quick_pair: tuple[Gateway, Gateway],
) -> None:
    # Each instance used to answer the first request after the cooldown with a 503, only asking
    # Redis for the probe in the background; its claim lapsed after 5 s, so at one request per
    # more than 5 s the group stayed out for good although the upstream was fine again.
    first, second = quick_pair
    _exhaust(first, "revived")
    out = {"one": "half_open", "two": "half_open"}
    _until_states(quick_pair, "revived", out, "the cooldowns never ended", deadline=COOLDOWN + 10)
    # One request, on the instance that saw none of the failures: it is the probe, and answers.
    resp = chat(second, "revived", "anyone back?")
    assert resp.status_code == 200, resp.text
    probed = resp.headers["x-switchboard-deployment"]
    # Its answer closed the breaker on both instances.
    _until_states(quick_pair, "revived", {probed: "healthy"}, "the probe's answer was not shared")
    # And a single request on the other instance is served at once as well.
    again = chat(first, "revived", "and here?")
    assert again.status_code == 200, again.text


def test_a_half_open_deployment_beside_a_healthy_one_is_probed_by_a_single_pinned_request(
    quick_pair: tuple[Gateway, Gateway],
) -> None:
    first, second = quick_pair
    pin = {"x-switchboard-deployment": "one"}
    for _ in range(3):
        assert chat(first, "rejoined", "mock:status=500 failing", pin).status_code == 502
    _until_states(quick_pair, "rejoined", {"one": "half_open"}, "the cooldown never ended",
                  deadline=COOLDOWN + 10)
    resp = chat(second, "rejoined", "one, are you back?", pin)
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-switchboard-deployment"] == "one"
    _until_states(quick_pair, "rejoined", {"one": "healthy", "two": "healthy"},
                  "the deployment never rejoined the rotation")


@dataclass
class Checked:
    gateway: Gateway
    mock: Mock
    good: str  # capture markers of the two providers: every request each upstream received
    bad: str


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def checked(
    request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Checked]:
    good, bad = new_marker(), new_marker()
    base = f"{mock_upstream.url}/v1"
    config = openai_config(mock_upstream)
    config["providers"] = [
        {"name": "fine", "type": "openai", "api_base": base, "api_key": "${UPSTREAM_KEY}",
         "headers": {"x-mock-capture": good}},
        {"name": "broken", "type": "openai", "api_base": base, "api_key": "${UPSTREAM_KEY}",
         "headers": {"x-mock-capture": bad, "x-mock-status": "500"}},
    ]
    config["models"] = [
        {"name": "checked", "deployment": "ok", "provider": "fine", "model": "gpt-4o-mini"},
        {"name": "checked", "deployment": "bad", "provider": "broken", "model": "gpt-4o-mini"},
    ]
    config["router"] = {"num_retries": 0, "cooldown": {"failures": 2, "seconds": 60},
                        "health_checks": {"enabled": True, "interval_seconds": 1, "timeout_seconds": 2}}
    if request.param == "cluster":
        pg: Postgres = request.getfixturevalue("postgres")
        config["database"] = {"url": pg.create_database(f"checks_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": request.getfixturevalue("redis_server").url}
    gw = start_gateway(config, tmp_path_factory.mktemp(f"checks-{request.param}"))
    yield Checked(gw, mock_upstream, good, bad)
    gw.process.stop()


def test_active_health_checks_take_a_failing_deployment_out_before_any_client_sees_it(
    checked: Checked,
) -> None:
    # Without a single client request, each upstream receives the tiny checks.
    bad_checks = captured(checked.mock, checked.bad, count=2, outcome="completed", timeout=10)
    assert len(bad_checks) >= 2 and all(r["body"]["max_completion_tokens"] == 1 for r in bad_checks)
    assert {r["status"] for r in bad_checks if r["outcome"] == "completed"} == {500}
    good_checks = captured(checked.mock, checked.good, count=2, outcome="completed", timeout=10)
    assert len(good_checks) >= 2
    assert {r["status"] for r in good_checks if r["outcome"] == "completed"} == {200}
    # Two failed checks: the broken deployment is out; no client request ever reaches it.
    for i in range(6):
        resp = chat(checked.gateway, "checked", f"from a client {i}")
        assert resp.status_code == 200, resp.text
    every = captured(checked.mock, checked.bad, timeout=0.5)
    assert all("from a client" not in str(r["body"]) for r in every)
    served = captured(checked.mock, checked.good, count=8, timeout=5)
    assert sum("from a client" in str(r["body"]) for r in served) == 6
