"""Prometheus metrics and the overhead headers, end to end: /metrics parses with
prometheus-client's parser and its counters match the requests sent (successes, a 4xx, a 5xx,
streams, retries and fallbacks, rate-limit and budget refusals, a deployment cooling down); an
unknown model name is ``other``, and so is a caller label past ``metrics.max_label_values``; the
master key and ``metrics.key`` read it, nothing else does; ``metrics.port`` serves it without a
key; with two workers a scrape adds up both; with metrics off /metrics is 404. Every model-call
response carries ``x-switchboard-overhead-ms`` and ``x-switchboard-upstream-ms``, and the usage
ledger the same values. Every test runs on the embedded default (SQLite) and on a cluster
(PostgreSQL + Redis), but the label bound (per process, nothing stored) on the embedded one."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import ledger
from tests.e2e.sdk import ask, stream_text
from tests.servers import (
    MASTER_KEY,
    Gateway,
    Mock,
    free_port,
    openai_config,
    running,
    start_gateway,
    workers_of,
)
from tests.services import with_cluster

METRICS_KEY = "metrics-scraper-key-0123456789"
ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
RUN = uuid.uuid4().hex[:8]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metrics_config(mock: Mock, **metrics: Any) -> dict[str, Any]:
    config = openai_config(mock)
    config["providers"].append({
        "name": "hangs", "type": "openai", "api_base": f"{mock.url}/v1", "api_key": "${UPSTREAM_KEY}",
        "headers": {"x-mock-faults": f"rate=1;kinds=timeout;run={RUN}"},
        "timeouts": {"connect": 1, "first_byte": 0.2, "total": 2},
    })
    config["models"] += [
        {"name": "primary", "provider": "hangs", "model": "gpt-4o-mini", "deployment": "primary-a"},
        {"name": "backup", "provider": "local-openai", "model": "gpt-4o-mini", "deployment": "backup-a"},
    ]
    config["router"] = {
        "num_retries": 0,
        "retry": {"backoff_seconds": 0.01, "max_backoff_seconds": 0.02},
        "groups": {"primary": {"num_retries": 1}},
        "fallbacks": {"primary": ["backup"]},
        # Only timeouts cool a deployment down here: the 5xx the tests ask for must not.
        "cooldown": {"failures": 2, "seconds": 600, "on": ["timeout"]},
    }
    config["spend"] = {"flush_seconds": 0.1}
    config["metrics"] = {"key": METRICS_KEY, **metrics}
    return config


@dataclass
class Deployment:
    kind: str
    config: dict[str, Any]
    gateway: Gateway
    tmp: Path
    metrics_port: int

    def sdk(self, key: str = MASTER_KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=key, max_retries=0, timeout=30)

    def scrape(self, key: str = MASTER_KEY) -> Samples:
        auth = {"Authorization": f"Bearer {key}"}
        resp = httpx.get(f"{self.gateway.url}/metrics", headers=auth, timeout=10)
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("text/plain")
        return parse(resp.text)


def parse(text: str) -> Samples:
    """Every sample of the exposition by (name, labels); the parser rejects a malformed text."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def poll(check: Callable[[], bool], what: str, deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while not check():
        assert time.monotonic() < end, what
        time.sleep(0.05)


class Delta:
    """What changed between a scrape before the requests and one after. Metrics are recorded
    once the response has been written, so the scrape after is repeated until ``ready`` holds."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.before = deployment.scrape()
        self.after: Samples = {}

    def settle(self, name: str, expected: float, **labels: str) -> None:
        def ready() -> bool:
            self.after = self.deployment.scrape()
            return self(name, **labels) == expected

        poll(ready, f"{name} {labels} never moved by {expected}")

    def __call__(self, name: str, **labels: str) -> float:
        return total(self.after, name, **labels) - total(self.before, name, **labels)


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def deployment(
    request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    port = free_port()
    config = with_cluster(metrics_config(mock_upstream, port=port, labels=["team"]), request, "metrics")
    tmp = tmp_path_factory.mktemp(f"metrics-{request.param}")
    gw = start_gateway(config, tmp)
    yield Deployment(request.param, config, gw, tmp, port)
    gw.process.stop()


# -- counters ---------------------------------------------------------------------------------


def test_counters_match_the_requests_sent(deployment: Deployment) -> None:
    delta = Delta(deployment)
    client = deployment.sdk()
    for i in range(3):
        assert client.chat.completions.create(model="gpt-4o-mini", messages=ask(f"count {i}")).choices
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=ask("streamed"), stream=True))
    assert stream_text(chunks).endswith("You said: streamed")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=f"no-such-model-{uuid.uuid4().hex}", messages=ask("x"))
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="gpt-4o-mini", messages=ask("mock:status=500"))
    assert failed.value.status_code >= 500
    name = "switchboard_requests_total"
    delta.settle(name, 5, model="gpt-4o-mini")
    assert delta(name, model="gpt-4o-mini", status="200") == 4
    assert delta(name, model="gpt-4o-mini", status="200", stream="true", group="gpt-4o-mini",
                 deployment="local-openai/gpt-4o-mini", provider="local-openai", operation="chat",
                 status_class="2xx", code="") == 1
    assert delta(name, model="gpt-4o-mini", status="200", stream="false") == 3
    assert delta(name, model="gpt-4o-mini", status_class="5xx") == 1
    assert delta(name, model="gpt-4o-mini", status=str(failed.value.status_code), code="upstream_error") == 1
    # The unknown name is not a label of its own: a caller cannot mint series.
    assert delta(name, model="other", status="404", status_class="4xx", code="model_not_found") == 1
    assert not any("no-such-model" in str(labels) for _, labels in delta.after)
    # Latency, overhead, upstream time, tokens and cost moved with them.
    assert delta("switchboard_request_duration_seconds_count", group="gpt-4o-mini") == 5
    assert delta("switchboard_overhead_seconds_count", group="gpt-4o-mini") == 5
    assert delta("switchboard_upstream_seconds_count", group="gpt-4o-mini") == 5
    assert delta("switchboard_time_to_first_token_seconds_count", group="gpt-4o-mini") == 1
    assert delta("switchboard_input_tokens_total", model="gpt-4o-mini") > 0
    assert delta("switchboard_output_tokens_total", model="gpt-4o-mini") > 0
    assert delta("switchboard_cost_usd_total", model="gpt-4o-mini") > 0
    # Nothing is in flight once answered (the scrape itself is not counted).
    assert total(delta.after, "switchboard_requests_in_flight") == 0
    assert total(delta.after, "switchboard_streams_in_flight") == 0


def test_a_request_refused_by_validation_is_counted_under_the_model_it_named(deployment: Deployment) -> None:
    """A 400 from validation names the model its body named when the configuration knows it;
    an unknown name is ``other``, never a label of its own."""
    delta = Delta(deployment)
    client = deployment.sdk()
    unknown = f"no-such-model-{uuid.uuid4().hex}"
    for model in ("gpt-4o-mini", unknown):
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model=model, messages=ask("x"), temperature=7)
    bad = httpx.post(f"{deployment.gateway.base_url}/chat/completions", content=b'{"model": "gpt-4o-mini",',
                     headers={**ADMIN, "content-type": "application/json"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"
    name = "switchboard_requests_total"
    delta.settle(name, 1, model="gpt-4o-mini", status="400")
    assert delta(name, model="other", status="400", status_class="4xx") == 1
    assert delta(name, model="", status="400", code="invalid_json") == 1  # nothing could be read
    assert not any(unknown in str(labels) for _, labels in delta.after)


@pytest.mark.parametrize("deployment", ["embedded"], indirect=True)  # no state involved
def test_a_gemini_request_refused_by_validation_is_counted_under_the_model_of_its_url(
    deployment: Deployment,
) -> None:
    """The Gemini API names the model in the URL (/v1beta/models/{model}:{method}): its 400s count
    under it when the configuration knows it, whatever the body (even one that is not JSON);
    an unknown name is ``other``, never a label of its own."""
    delta = Delta(deployment)
    unknown = f"no-such-model-{uuid.uuid4().hex}"
    base = f"{deployment.gateway.url}/v1beta/models"
    key = {"x-goog-api-key": MASTER_KEY}
    with httpx.Client(headers=key, timeout=10) as http:
        refused = [
            http.post(f"{base}/gpt-4o-mini:generateContent", json={"contents": "not a list"}),
            http.post(f"{base}/gpt-4o-mini:streamGenerateContent", json={"contents": []}),  # no ?alt=sse
            http.post(f"{base}/gpt-4o-mini:generateContent", content=b"{not json",
                      headers={"content-type": "application/json"}),
            http.post(f"{base}/text-embedding-3-small:embedContent", json={"content": {"parts": []}}),
            http.post(f"{base}/{unknown}:generateContent", json={"contents": "not a list"}),
        ]
    assert [r.status_code for r in refused] == [400] * 5, [r.text for r in refused]
    name = "switchboard_requests_total"
    delta.settle(name, 3, model="gpt-4o-mini", status="400")
    assert delta(name, model="gpt-4o-mini", operation="chat", status="400", status_class="4xx") == 3
    assert delta(name, model="text-embedding-3-small", operation="embeddings", status="400") == 1
    assert delta(name, model="other", operation="chat", status="400") == 1
    assert delta(name, model="", status="400") == 0
    assert not any(unknown in str(labels) for _, labels in delta.after)


@pytest.mark.parametrize("deployment", ["embedded"], indirect=True)  # no state involved
def test_a_query_parameter_given_twice_is_counted_as_a_duplicate_parameter(deployment: Deployment) -> None:
    """Anthropic's model list and the Gemini API's ``?key=`` answer in their own error shapes,
    which carry no code; the metrics (and the failed-request log line) name it as the admin
    lists' do: ``duplicate_parameter``."""
    delta = Delta(deployment)
    url = deployment.gateway.url
    listed = httpx.get(f"{url}/v1/models?limit=2&limit=3", timeout=10,
                       headers={"x-api-key": MASTER_KEY, "anthropic-version": "2023-06-01"})
    assert listed.status_code == 400 and listed.json()["error"]["type"] == "invalid_request_error"
    keyed = httpx.post(f"{url}/v1beta/models/gpt-4o-mini:generateContent?key={MASTER_KEY}&key=other",
                       json={"contents": [{"parts": [{"text": "hi"}]}]}, timeout=10)
    assert keyed.status_code == 400 and keyed.json()["error"]["status"] == "INVALID_ARGUMENT"
    name = "switchboard_requests_total"
    delta.settle(name, 2, status="400", code="duplicate_parameter")
    assert delta(name, status="400", code="invalid_value") == 0
    line = deployment.gateway.process.wait_for_all("request failed", "path=/v1/models")
    assert "status=400 code=duplicate_parameter" in line


def test_a_stream_failing_after_its_first_chunk_counts_its_first_token(deployment: Deployment) -> None:
    delta = Delta(deployment)
    client = deployment.sdk()
    with pytest.raises(openai.APIError):  # the error event after two chunks
        list(client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                            messages=ask("mock:fail_after=2 tell me more")))
    delta.settle("switchboard_requests_total", 1, model="gpt-4o-mini", stream="true", status="502")
    assert delta("switchboard_time_to_first_token_seconds_count", group="gpt-4o-mini") == 1
    # A stream refused before it began (an error body, no chunk) has no first token.
    delta = Delta(deployment)
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="gpt-4o-mini", stream=True, messages=ask("mock:status=500"))
    delta.settle("switchboard_requests_total", 1, model="gpt-4o-mini", stream="true", status_class="5xx")
    assert delta("switchboard_time_to_first_token_seconds_count", group="gpt-4o-mini") == 0


def test_a_stream_the_client_left_before_its_first_chunk_is_labelled_a_stream(deployment: Deployment) -> None:
    delta = Delta(deployment)
    body = {"model": "gpt-4o-mini", "stream": True, "messages": ask("mock:latency_ms=3000 slow stream")}
    with pytest.raises(httpx.ReadTimeout):  # the client gives up before the stream began
        httpx.post(f"{deployment.gateway.base_url}/chat/completions", json=body, headers=ADMIN, timeout=0.5)
    name = "switchboard_requests_total"
    delta.settle(name, 1, model="gpt-4o-mini", status="499")
    assert delta(name, model="gpt-4o-mini", status="499", stream="true") == 1


def test_a_stream_the_client_leaves_midway_is_counted_as_abandoned(deployment: Deployment) -> None:
    """The official SDK reads the first chunk and closes the stream: the request keeps the status
    it was sent (200, as the ledger), and the abandoned streams' counter moves; a stream read
    to its end does not move it."""
    delta = Delta(deployment)
    client = deployment.sdk()
    whole = list(client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                messages=ask("read it all")))
    assert stream_text(whole).endswith("You said: read it all")
    stream = client.chat.completions.create(
        model="gpt-4o-mini", stream=True,
        messages=ask("mock:chunk_delay_ms=200 a long answer the client leaves after its first chunk"))
    assert next(iter(stream)).choices  # the stream began
    stream.close()  # the client leaves mid-way
    name = "switchboard_streams_abandoned_total"
    delta.settle(name, 1, model="gpt-4o-mini")
    assert delta(name, model="gpt-4o-mini", group="gpt-4o-mini", deployment="local-openai/gpt-4o-mini",
                 provider="local-openai", operation="chat", team="") == 1
    delta.settle("switchboard_requests_total", 2, model="gpt-4o-mini", stream="true")
    assert delta("switchboard_requests_total", model="gpt-4o-mini", stream="true", status="200", code="") == 2


def test_an_upstream_429_passed_on_is_counted_as_the_upstreams_rate_limit(deployment: Deployment) -> None:
    """A provider's 429 reaches the caller as 429 ``rate_limit_exceeded`` naming its scope,
    ``upstream``, as the gateway's own refusal for a provider's limit does, and is counted with
    the rate-limit refusals under that scope."""
    delta = Delta(deployment)
    with pytest.raises(openai.RateLimitError) as refused:
        deployment.sdk().chat.completions.create(model="gpt-4o-mini",
                                                 messages=ask("mock:status=429 slow down"))
    assert refused.value.code == "rate_limit_exceeded"
    assert refused.value.response.headers["x-ratelimit-scope"] == "upstream"
    assert refused.value.response.headers["retry-after"] == "1"  # the upstream's, carried over
    name = "switchboard_rate_limit_rejections_total"
    delta.settle(name, 1, scope="upstream")
    assert delta(name, scope="upstream", code="rate_limit_exceeded") == 1
    assert delta("switchboard_requests_total", model="gpt-4o-mini", status="429",
                 code="rate_limit_exceeded") == 1


def test_tokens_and_cost_of_cut_and_abandoned_streams_match_the_ledger(deployment: Deployment) -> None:
    """A stream the upstream breaks and one the client leaves are charged in the ledger for
    what was produced (estimated); the token and cost counters carry the same amounts."""
    delta = Delta(deployment)
    client = deployment.sdk()
    seen: set[str] = set()
    with pytest.raises(openai.APIError), client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", stream=True, messages=ask("mock:fail_after=2 broken stream"),
    ) as broken:  # the error event after two chunks
        seen.add(broken.headers["x-request-id"])
        list(broken.parse())
    body = {"model": "gpt-4o-mini", "stream": True,
            "messages": ask("mock:chunk_delay_ms=200 a long answer the client leaves early")}
    url = f"{deployment.gateway.base_url}/chat/completions"
    with httpx.Client(headers=ADMIN, timeout=30) as http, http.stream("POST", url, json=body) as left:
        seen.add(left.headers["x-request-id"])
        lines = left.iter_lines()
        while not next(lines).startswith("data: {"):  # the first chunk, then the client goes
            pass
    records = ledger.wait_for(ledger.database_of(deployment.config, deployment.tmp), seen)
    charged = [records[rid] for rid in seen]
    assert all(r.metadata.get("estimated") and r.completion_tokens > 0 for r in charged)
    prompt = sum(r.prompt_tokens for r in charged)
    delta.settle("switchboard_input_tokens_total", prompt, model="gpt-4o-mini")
    completion = sum(r.completion_tokens for r in charged)
    assert delta("switchboard_output_tokens_total", model="gpt-4o-mini") == completion
    cost = sum(r.cost_usd for r in charged)
    assert cost > 0
    assert delta("switchboard_cost_usd_total", model="gpt-4o-mini") == pytest.approx(float(cost), abs=1e-12)


def test_admin_errors_are_counted_and_logged_with_their_code(deployment: Deployment) -> None:
    delta = Delta(deployment)
    url = deployment.gateway.url
    resp = httpx.get(f"{url}/admin/v1/logs", params={"limit": 0}, headers=ADMIN, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_value"
    missing = f"key_{uuid.uuid4().hex}"
    resp = httpx.get(f"{url}/admin/v1/keys/{missing}", headers=ADMIN, timeout=10)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "key_not_found"
    name = "switchboard_requests_total"
    delta.settle(name, 1, operation="admin", status="404", code="key_not_found")
    assert delta(name, operation="admin", status="400", code="invalid_value") == 1
    assert delta(name, operation="admin", status_class="4xx", code="") == 0
    line = deployment.gateway.process.wait_for_all("request failed", f"path=/admin/v1/keys/{missing}")
    assert "status=404 code=key_not_found" in line


def test_retries_fallbacks_and_a_deployment_cooling_down(deployment: Deployment) -> None:
    delta = Delta(deployment)
    create = deployment.sdk().chat.completions.with_raw_response.create
    reply = create(model="primary", messages=ask("fall back"))
    assert reply.headers["x-switchboard-model"] == "backup"
    assert reply.headers["x-switchboard-attempts"] == "3"
    delta.settle("switchboard_requests_total", 1, model="primary", group="backup", deployment="backup-a",
                 status="200")
    assert delta("switchboard_retries_total", group="primary", deployment="primary-a") == 1
    assert delta("switchboard_fallbacks_total", group="primary", fallback="backup") == 1
    # Two timeouts in a row: primary-a is cooling down; the healthy ones read 0.
    after = delta.after
    assert total(after, "switchboard_deployment_cooling_down", group="primary", deployment="primary-a") == 1
    assert total(after, "switchboard_deployment_cooling_down", group="backup", deployment="backup-a") == 0
    assert ("switchboard_deployment_half_open",
            frozenset({("group", "primary"), ("deployment", "primary-a")})) in after


def test_rate_limit_and_budget_refusals_are_counted_by_scope(deployment: Deployment) -> None:
    def key(**extra: Any) -> str:
        resp = httpx.post(f"{deployment.gateway.url}/admin/v1/keys",
                          json={"models": ["gpt-4o-mini"], **extra}, headers=ADMIN, timeout=10)
        assert resp.status_code == 201, resp.text
        return str(resp.json()["key"])

    delta = Delta(deployment)
    limited = deployment.sdk(key(rpm_limit=1))
    limited.chat.completions.create(model="gpt-4o-mini", messages=ask("one"))
    with pytest.raises(openai.RateLimitError):
        limited.chat.completions.create(model="gpt-4o-mini", messages=ask("two"))
    poor = deployment.sdk(key(max_budget_usd=0.0000001))
    with pytest.raises(openai.APIStatusError) as refused:
        poor.chat.completions.create(model="gpt-4o-mini", messages=ask("too dear"))
    code = refused.value.body["code"]  # type: ignore[index]
    assert code in ("budget_exceeded", "request_exceeds_budget")
    delta.settle("switchboard_requests_total", 3, model="gpt-4o-mini")
    assert delta("switchboard_rate_limit_rejections_total", scope="key", code="rate_limit_exceeded") == 1
    assert delta("switchboard_budget_rejections_total", scope="key", code=code) == 1
    assert delta("switchboard_requests_total", model="gpt-4o-mini", status="429",
                 code="rate_limit_exceeded") == 1


def test_a_configured_label_carries_the_callers_team(deployment: Deployment) -> None:
    resp = httpx.post(f"{deployment.gateway.url}/admin/v1/keys",
                      json={"models": ["gpt-4o-mini"], "team": "labelled-team"}, headers=ADMIN, timeout=10)
    assert resp.status_code == 201, resp.text
    delta = Delta(deployment)
    deployment.sdk(resp.json()["key"]).chat.completions.create(model="gpt-4o-mini", messages=ask("team"))
    delta.settle("switchboard_requests_total", 1, team="labelled-team")
    assert delta("switchboard_requests_total", team="labelled-team", model="gpt-4o-mini", status="200") == 1
    assert delta("switchboard_cost_usd_total", team="labelled-team") > 0
    # The master key has no team: its requests carry an empty one; no other label is added.
    assert all("key" not in dict(labels) and "tenant" not in dict(labels)
               for name, labels in delta.after if name == "switchboard_requests_total")


# -- who may read them ------------------------------------------------------------------------


def test_only_the_master_key_and_the_metrics_key_read_metrics(deployment: Deployment) -> None:
    url = f"{deployment.gateway.url}/metrics"
    assert deployment.scrape(MASTER_KEY)
    assert deployment.scrape(METRICS_KEY)
    resp = httpx.get(url, headers={"x-request-id": "scrape-1"}, timeout=10)
    assert resp.status_code == 401 and resp.headers["x-request-id"] == "scrape-1"
    assert resp.headers["www-authenticate"].startswith("Bearer ")
    assert resp.json()["error"]["type"] == "authentication_error"
    assert resp.json()["error"]["code"] == "missing_api_key"
    api_key = httpx.post(f"{deployment.gateway.url}/admin/v1/keys", json={"models": ["*"]}, headers=ADMIN,
                         timeout=10).json()["key"]
    for header in (f"Bearer {METRICS_KEY}x", f"Bearer {MASTER_KEY[:-1]}", f"Basic {METRICS_KEY}",
                   "Bearer", "Bearer " + "k" * 5000, f"Bearer {api_key}", METRICS_KEY):
        resp = httpx.get(url, headers={"Authorization": header}, timeout=10)
        assert resp.status_code == 401, header
        assert resp.json()["error"]["code"] == "invalid_api_key"
        assert "switchboard_" not in resp.text
    assert httpx.post(url, headers=ADMIN, timeout=10).status_code == 405
    assert deployment.scrape()  # still serving


def test_the_metrics_port_serves_without_a_key(deployment: Deployment) -> None:
    base = f"http://127.0.0.1:{deployment.metrics_port}"
    resp = httpx.get(f"{base}/metrics", timeout=10)
    assert resp.status_code == 200
    assert ("switchboard_requests_in_flight", frozenset()) in parse(resp.text)
    assert httpx.get(f"{base}/other", timeout=10).status_code == 404
    refused = httpx.post(f"{base}/metrics", timeout=10)
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
    # Garbage, and a head far too long: the connection is answered 400 or closed, nothing more.
    for junk in (b"NONSENSE\r\n\r\n", b"GET /metrics HTTP/1.1\r\nx: " + b"a" * 20_000 + b"\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", deployment.metrics_port), timeout=10) as s:
            s.sendall(junk)
            try:
                answer = s.recv(100)
            except ConnectionResetError:  # closed with our bytes unread: a reset, not an answer
                answer = b""
        assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer
    assert httpx.get(f"{base}/metrics", timeout=10).status_code == 200


# -- overhead on every response ---------------------------------------------------------------


def _timings(headers: httpx.Headers) -> tuple[float, float]:
    overhead, upstream = headers["x-switchboard-overhead-ms"], headers["x-switchboard-upstream-ms"]
    assert re.fullmatch(r"\d+\.\d{3}", overhead) and re.fullmatch(r"\d+\.\d{3}", upstream)
    return float(overhead), float(upstream)


def test_every_model_call_carries_its_overhead_and_the_ledger_the_same(deployment: Deployment) -> None:
    url = f"{deployment.gateway.base_url}/chat/completions"
    seen: dict[str, tuple[float, float]] = {}
    with httpx.Client(headers=ADMIN, timeout=30) as http:
        for body in ({"model": "gpt-4o-mini", "messages": ask("mock:latency_ms=30 timed")},
                     {"model": "gpt-4o-mini", "messages": ask("mock:status=500")}):
            began = time.perf_counter()
            resp = http.post(url, json=body)
            elapsed_ms = (time.perf_counter() - began) * 1000
            overhead, upstream = _timings(resp.headers)
            assert overhead + upstream <= elapsed_ms
            assert upstream > 0
            seen[resp.headers["x-request-id"]] = (overhead, upstream)
        assert max(u for _, u in seen.values()) >= 30  # the mock's latency is the upstream's
        began = time.perf_counter()
        body = {"model": "gpt-4o-mini", "messages": ask("mock:latency_ms=30 streamed"), "stream": True}
        with http.stream("POST", url, json=body) as resp:
            at_headers = (time.perf_counter() - began) * 1000
            overhead, upstream = _timings(resp.headers)
            assert "".join(resp.iter_text()).rstrip().endswith("[DONE]")
        assert overhead + upstream <= at_headers and upstream >= 30  # until the first chunk
        seen[resp.headers["x-request-id"]] = (overhead, upstream)
        # Refused before any upstream call: all of it is the gateway's.
        resp = http.post(url, json={"model": "gpt-4o-mini", "messages": ask("x")},
                         headers={"Authorization": "Bearer wrong"})
        assert resp.status_code == 401 and _timings(resp.headers)[1] == 0
        # Every model-call endpoint, whatever its wire format.
        base = deployment.gateway.base_url
        for path, body in (
            ("/embeddings", {"model": "text-embedding-3-small", "input": "timed"}),
            ("/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "timed"}),
            ("/messages", {"model": "gpt-4o-mini", "max_tokens": 20, "messages": ask("timed")}),
        ):
            resp = http.post(base + path, json=body)
            assert resp.status_code == 200, resp.text
            assert _timings(resp.headers)[1] > 0
        # Not a model call: no overhead headers.
        assert "x-switchboard-overhead-ms" not in http.get(f"{deployment.gateway.base_url}/models").headers
    records = ledger.wait_for(ledger.database_of(deployment.config, deployment.tmp), set(seen))
    for rid, (overhead, upstream) in seen.items():
        assert (records[rid].overhead_ms, records[rid].upstream_ms) == (round(overhead), round(upstream))


# -- off, and several workers -----------------------------------------------------------------


@pytest.fixture
def cluster(request: pytest.FixtureRequest) -> pytest.FixtureRequest:
    return request


@pytest.fixture(params=["embedded", "cluster"])
def kind(request: pytest.FixtureRequest) -> pytest.FixtureRequest:
    return request


def test_metrics_off_answers_404_and_keeps_the_headers(
    kind: pytest.FixtureRequest, mock_upstream: Mock, tmp_path: Path
) -> None:
    config = with_cluster(metrics_config(mock_upstream), kind, "nometrics")
    config["metrics"] = {"enabled": False}
    gw = start_gateway(config, tmp_path)
    try:
        resp = httpx.get(f"{gw.url}/metrics", headers=ADMIN, timeout=10)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "unknown_url"
        reply = httpx.post(f"{gw.base_url}/chat/completions", headers=ADMIN, timeout=30,
                           json={"model": "gpt-4o-mini", "messages": ask("no metrics")})
        assert reply.status_code == 200
        _timings(reply.headers)
    finally:
        assert gw.process.stop() == 0


def test_a_caller_label_past_its_bound_is_other_and_counted(mock_upstream: Mock, tmp_path: Path) -> None:
    # The bound is per process (nothing stored): the embedded default shows it.
    config = metrics_config(mock_upstream, labels=["key"], max_label_values=2)
    gw = start_gateway(config, tmp_path)
    try:
        keys = []
        for _ in range(3):
            made = httpx.post(f"{gw.url}/admin/v1/keys", json={"models": ["gpt-4o-mini"]}, headers=ADMIN,
                              timeout=10)
            assert made.status_code == 201, made.text
            keys.append((made.json()["id"], made.json()["key"]))
        for _, key in (*keys, keys[0]):  # the third key is past the bound; the first comes back
            client = openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30)
            client.chat.completions.create(model="gpt-4o-mini", messages=ask("bounded"))

        def scrape() -> Samples:
            resp = httpx.get(f"{gw.url}/metrics", headers=ADMIN, timeout=10)
            assert resp.status_code == 200
            return parse(resp.text)

        poll(lambda: total(scrape(), "switchboard_requests_total", model="gpt-4o-mini") == 4,
             "the four requests were never counted")
        samples = scrape()
        first, second, third = (key_id for key_id, _ in keys)
        assert total(samples, "switchboard_requests_total", key=first) == 2
        assert total(samples, "switchboard_requests_total", key=second) == 1
        assert total(samples, "switchboard_requests_total", key="other", model="gpt-4o-mini") == 1
        assert total(samples, "switchboard_cost_usd_total", key="other") > 0
        assert not any(third in str(labels) for _, labels in samples)
        assert total(samples, "switchboard_metric_label_overflow_total", label="key") == 1
    finally:
        assert gw.process.stop() == 0


@pytest.mark.parametrize("cluster", ["cluster"], indirect=["cluster"])
def test_two_workers_add_up(cluster: pytest.FixtureRequest, mock_upstream: Mock, tmp_path: Path) -> None:
    # Several workers need Redis (the embedded default refuses them: test_lifecycle.py).
    port = free_port()  # bound by both workers: either answers, with both workers' counts
    config = with_cluster(metrics_config(mock_upstream, port=port), cluster, "workers")
    gw = start_gateway(config, tmp_path, args=["--workers", "2"])
    try:

        def one(i: int) -> str:
            with httpx.Client(timeout=30) as http:  # a connection of its own: either worker
                resp = http.post(f"{gw.base_url}/chat/completions", headers=ADMIN,
                                 json={"model": "backup", "messages": ask(f"w{i} mock:latency_ms=20")})
            assert resp.status_code == 200
            return resp.headers["x-request-id"][:12]  # the worker's prefix

        # Concurrent requests on fresh connections reach both workers within a few rounds.
        workers: set[str] = set()
        sent = 0
        with ThreadPoolExecutor(8) as pool:
            while len(workers) < 2 and sent < 160:
                workers.update(pool.map(one, range(sent, sent + 8)))
                sent += 8
        assert len(workers) == 2, "both workers must have answered for the sum to mean anything"

        def scrape(url: str = f"{gw.url}/metrics") -> float:
            with httpx.Client(timeout=10) as http:  # a connection of its own: either worker
                resp = http.get(url, headers=ADMIN)
            assert resp.status_code == 200
            return total(parse(resp.text), "switchboard_requests_total", model="backup", status="200")

        # Neither worker served them all: only the sum over both workers' files reaches ``sent``.
        poll(lambda: scrape() == sent, f"the scrapes never added up to {sent}")

        def writers() -> tuple[float, float, float]:
            with httpx.Client(timeout=10) as http:
                samples = parse(http.get(f"{gw.url}/metrics", headers=ADMIN).text)
            pending = [v for (n, _), v in samples.items() if n == "switchboard_ledger_pending_records"]
            assert len(pending) == 1  # one sample for the live workers together, no pid label
            return (total(samples, "switchboard_ledger_stored_records_total"), pending[0],
                    total(samples, "switchboard_ledger_oldest_pending_seconds"))

        # The usage records each worker stored add up the same way; none is left pending.
        poll(lambda: writers() == (sent, 0, 0), f"the stored usage records never added up to {sent}")
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(lambda _: scrape(), range(8))) == [sent] * 8
            metrics_port = f"http://127.0.0.1:{port}/metrics"
            assert list(pool.map(lambda _: scrape(metrics_port), range(8))) == [sent] * 8
    finally:
        assert gw.process.stop() == 0


# Three starts and two stops of a two-worker instance (each worker a fresh interpreter): 20-30 s
# a start on a loaded 2-core host, over the suite's 120 s; every wait inside has its own bound.
@pytest.mark.timeout(300)
@pytest.mark.parametrize("cluster", ["cluster"], indirect=["cluster"])
def test_instances_sharing_a_data_dir_keep_their_own_worker_metrics(
    cluster: pytest.FixtureRequest, mock_upstream: Mock, tmp_path: Path
) -> None:
    """Two `serve --workers 2` on one data directory (one database and Redis): the second's start
    leaves the first's worker metric files alone, each /metrics adds up its own workers, each
    instance's folder under <data_dir>/metrics/ goes when it stops, and the folder of one killed
    outright goes at the next start."""
    config = with_cluster(metrics_config(mock_upstream), cluster, "instances")
    folders = tmp_path / "data" / "metrics"

    def own(gw: Gateway) -> list[Path]:
        return [p for p in folders.iterdir() if p.is_dir() and p.name.startswith(f"{gw.process.proc.pid}-")]

    def counted(gw: Gateway) -> float:
        with httpx.Client(timeout=10) as http:  # a connection of its own: either worker
            resp = http.get(f"{gw.url}/metrics", headers=ADMIN)
        assert resp.status_code == 200, resp.text
        return total(parse(resp.text), "switchboard_requests_total", model="gpt-4o-mini", status="200")

    def send(gw: Gateway, n: int) -> None:
        for i in range(n):
            with httpx.Client(timeout=30) as http:
                resp = http.post(f"{gw.base_url}/chat/completions", headers=ADMIN,
                                 json={"model": "gpt-4o-mini", "messages": ask(f"instance {i}")})
            assert resp.status_code == 200, resp.text

    first = start_gateway(config, tmp_path, args=["--workers", "2"])
    second: Gateway | None = None
    try:
        send(first, 4)
        poll(lambda: counted(first) == 4, "the first instance never counted its 4 requests")
        second = start_gateway(config, tmp_path, args=["--workers", "2"])
        send(second, 2)
        poll(lambda: counted(second) == 2, "the second instance never counted its 2 requests")
        assert [counted(first) for _ in range(6)] == [4] * 6
        assert len(own(first)) == 1 and len(own(second)) == 1
        assert second.process.stop() == 0
        assert own(second) == [] and len(own(first)) == 1
        assert [counted(first) for _ in range(6)] == [4] * 6
        # Killed outright: nothing removes its folder until the next start after its workers,
        # which outlive it for a while (they notice, then drain), have ended too.
        workers = workers_of(first.process.proc.pid)
        assert len(workers) == 2
        os.kill(first.process.proc.pid, signal.SIGKILL)
        first.process.proc.wait(30)
        poll(lambda: not any(running(pid) for pid in workers), "the killed instance's workers never ended",
             deadline=60)
        poll(lambda: first.process.output.count("is gone; this worker shuts down") == 2,
             "the killed instance's workers never said why they stopped")
        [left] = own(first)
        second = start_gateway(config, tmp_path, args=["--workers", "2"])
        assert not left.exists() and len(own(second)) == 1
    finally:
        for gw in (first, second):
            if gw is not None and gw.process.proc.poll() is None:
                assert gw.process.stop() == 0
    assert [p for p in folders.iterdir() if p.is_dir()] == []
