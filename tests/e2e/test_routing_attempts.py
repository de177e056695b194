"""Retries and fallbacks, end to end, against the mock upstream's fault injection: a group of two
deployments where one fails half its requests still answers (stream and non-stream), Retry-After
is honoured and bounded, the request's deadline holds, fallbacks follow their chain on the
configured error classes only, nothing is retried once a streamed byte reached the client, every
answer names the group, deployment and attempt count, and the ledger keeps every attempt. Every
test runs on the embedded default (SQLite) and on a cluster (PostgreSQL + Redis)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from switchboard.stores.protocols import UsageRecord
from tests import ledger
from tests.e2e.sdk import ask
from tests.servers import MASTER_KEY, Gateway, Mock, captured, openai_config, start_gateway
from tests.services import Postgres, RedisServer

DEADLINE = 3.0
RUN = uuid.uuid4().hex[:8]  # fault counters are per header value: this run's own


_OPENS_THEN_FAILS = {"x-mock-fail-after": "1", "x-mock-chunk-delay-ms": "30"}


def _faulty(mock: Mock, name: str, spec: str, **timeouts: float) -> dict[str, Any]:
    return {
        "name": name, "type": "openai", "api_base": f"{mock.url}/v1", "api_key": "${UPSTREAM_KEY}",
        "headers": {"x-mock-faults": f"{spec};run={RUN}-{name}"},
        "timeouts": {"connect": 1, "first_byte": 0.2, "total": 2, **timeouts},
    }


def _model(name: str, provider: str, deployment: str, weight: int = 1) -> dict[str, Any]:
    return {"name": name, "provider": provider, "model": "gpt-4o-mini", "deployment": deployment,
            "weight": weight}


def attempts_config(mock: Mock) -> dict[str, Any]:
    config = openai_config(mock, request_timeout_seconds=DEADLINE)
    kinds = "429,500,timeout,reset,stall"
    config["providers"] += [
        _faulty(mock, "half-broken", f"rate=0.5;kinds={kinds};retry_after=1"),
        _faulty(mock, "limited-short", "rate=0.5;kinds=429;retry_after=0.6"),
        _faulty(mock, "limited-long", "rate=1;kinds=429;retry_after=30"),
        _faulty(mock, "always-500", "rate=1;kinds=500"),
        _faulty(mock, "always-503", "rate=1;kinds=503"),
        _faulty(mock, "always-400", "rate=1;kinds=400"),
        _faulty(mock, "refuses", "rate=1;kinds=content_policy"),
        _faulty(mock, "hangs", "rate=1;kinds=timeout", first_byte=0.5, total=5),
        # Its model's window is smaller than anybody knows: every request is too long for it.
        {"name": "too-long", "type": "openai", "api_base": f"{mock.url}/v1", "api_key": "${UPSTREAM_KEY}",
         "headers": {"x-mock-status": "400", "x-mock-error-code": "context_length_exceeded"}},
        # Streams open (the role chunk; Anthropic's message_start), then fail with the provider's
        # error event before any content, each event in its own read.
        {"name": "opens-then-fails", "type": "openai", "api_base": f"{mock.url}/v1",
         "api_key": "${UPSTREAM_KEY}", "headers": _OPENS_THEN_FAILS},
        {"name": "claude-opens-then-fails", "type": "anthropic", "api_base": mock.url,
         "api_key": "${UPSTREAM_KEY}", "headers": _OPENS_THEN_FAILS},
    ]
    config["models"] += [
        _model("flaky", "half-broken", "flaky-a", 100), _model("flaky", "local-openai", "flaky-b"),
        _model("patient", "limited-short", "patient-a"),
        _model("impatient", "limited-long", "impatient-a"),
        _model("moves-on", "limited-long", "moves-on-a", 100),
        _model("moves-on", "local-openai", "moves-on-b"),
        _model("primary", "always-500", "primary-a"),
        _model("second", "always-503", "second-a"),
        _model("third", "local-openai", "third-a"),
        _model("picky", "always-400", "picky-a"),
        _model("careful", "refuses", "careful-a"),
        _model("stuck", "hangs", "stuck-a"),
        _model("steady", "local-openai", "steady-a"), _model("steady", "local-openai", "steady-b"),
        _model("cramped", "too-long", "cramped-a"),
        _model("spacious", "local-openai", "spacious-a"),
        {**_model("narrow", "local-openai", "narrow-a"), "info": {"context_window": 50}},
        _model("opens-then-fails", "opens-then-fails", "opens-then-fails-a"),
        _model("opens-then-fails-alone", "opens-then-fails", "opens-then-fails-alone-a"),
        {**_model("claude-opens-then-fails-alone", "claude-opens-then-fails",
                  "claude-opens-then-fails-alone-a"), "model": "claude-sonnet-4-5"},
        {**_model("claude-opens-then-fails", "claude-opens-then-fails", "claude-opens-then-fails-a"),
         "model": "claude-sonnet-4-5"},
    ]
    config["router"] = {
        "num_retries": 2,
        "retry": {"backoff_seconds": 0.01, "max_backoff_seconds": 0.05, "max_retry_after_seconds": 2},
        "fallbacks": {"primary": ["second", "third"], "picky": ["third"], "careful": ["third"],
                      "stuck": ["third"], "opens-then-fails": ["third"],
                      "claude-opens-then-fails": ["third"]},
        "fallback_on": ["rate_limit", "server_error", "content_policy"],  # not timeout
        "context_window_fallbacks": {"cramped": ["spacious"], "narrow": ["spacious"]},
        "groups": {"primary": {"num_retries": 0}, "second": {"num_retries": 0},
                   "opens-then-fails": {"num_retries": 0}, "claude-opens-then-fails": {"num_retries": 0},
                   "claude-opens-then-fails-alone": {"num_retries": 0},
                   "stuck": {"num_retries": 10}},
        "aliases": {"flaky-alias": "flaky"},
        # Retries alone must mask the faults here: cooldowns (which would take the half-failing
        # deployment out after a few failures) are tested in test_routing_health.py.
        "cooldown": {"failures": 1000},
    }
    config["spend"] = {"flush_seconds": 0.1}
    return config


@dataclass
class Deployment:
    kind: str
    config: dict[str, Any]
    gateway: Gateway
    tmp: Path
    mock: Mock

    def sdk(self, **extra: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=MASTER_KEY, max_retries=0,
                             timeout=30, **extra)

    def async_sdk(self) -> openai.AsyncOpenAI:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        return openai.AsyncOpenAI(base_url=self.gateway.base_url, api_key=MASTER_KEY, max_retries=0,
                                  timeout=30, http_client=httpx.AsyncClient(limits=limits))

    def record(self, request_id: str, timeout: float = 20.0) -> UsageRecord:
        database = ledger.database_of(self.config, self.tmp)
        return ledger.wait_for(database, {request_id}, timeout)[request_id]


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def deployment(
    request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    config = attempts_config(mock_upstream)
    if request.param == "cluster":
        postgres: Postgres = request.getfixturevalue("postgres")
        redis: RedisServer = request.getfixturevalue("redis_server")
        config["database"] = {"url": postgres.create_database(f"attempts_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
    tmp = tmp_path_factory.mktemp(f"attempts-{request.param}")
    gw = start_gateway(config, tmp)
    yield Deployment(request.param, config, gw, tmp, mock_upstream)
    gw.process.stop()


def _routing(headers: Any) -> tuple[str, str, int]:
    return (headers["x-switchboard-model"], headers["x-switchboard-deployment"],
            int(headers["x-switchboard-attempts"]))


# -- a group of two where one deployment fails half its requests ------------------------------


async def _many(deployment: Deployment, n: int, stream: bool) -> list[tuple[bool, int, str]]:
    """(answered in full, attempts, why not) for ``n`` requests to the flaky group, 32 at a time."""
    gate = asyncio.Semaphore(32)

    async def one(client: openai.AsyncOpenAI, i: int) -> tuple[bool, int, str]:
        async with gate:
            try:
                if stream:
                    raw = await client.chat.completions.with_raw_response.create(
                        model="flaky", messages=ask(f"request {i}"), stream=True)
                    text = ""
                    async for chunk in raw.parse():
                        if chunk.choices and chunk.choices[0].delta.content:
                            text += chunk.choices[0].delta.content
                    return text.endswith(f"request {i}"), int(raw.headers["x-switchboard-attempts"]), text
                raw = await client.chat.completions.with_raw_response.create(
                    model="flaky", messages=ask(f"request {i}"))
                reply = raw.parse()
                content = reply.choices[0].message.content or ""
                return content.endswith(f"request {i}"), int(raw.headers["x-switchboard-attempts"]), content
            except openai.APIStatusError as error:  # what the client saw, and the attempts made
                headers = error.response.headers
                return False, 0, (f"{error.status_code} {headers.get('x-switchboard-deployment')} "
                                  f"attempts={headers.get('x-switchboard-attempts')} {error.body}")
            except openai.OpenAIError as error:
                return False, 0, repr(error)

    async with deployment.async_sdk() as client:
        return await asyncio.gather(*(one(client, i) for i in range(n)))


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_a_group_with_a_half_failing_deployment_answers_nearly_every_request(
    deployment: Deployment, stream: bool
) -> None:
    results = asyncio.run(_many(deployment, 1000, stream))
    failed = [why for ok, _, why in results if not ok]
    assert len(failed) <= 1, f"{len(failed)} of 1000 requests failed: {failed}"
    # The faulty deployment was tried, failed, and the request went on to the other one.
    assert sum(1 for _, attempts, _ in results if attempts >= 2) >= 100
    assert max(attempts for _, attempts, _ in results) <= 3  # num_retries 2


# -- Retry-After -----------------------------------------------------------------------------


def test_retry_after_is_waited_for_before_the_same_deployment_is_tried_again(
    deployment: Deployment,
) -> None:
    client = deployment.sdk()
    retried = []
    # Every other request to the deployment is a 429 with Retry-After 0.6: the retry that
    # follows goes to the same deployment (the group's only one), after that wait.
    for i in range(4):
        began = time.monotonic()
        raw = client.chat.completions.with_raw_response.create(model="patient", messages=ask(f"wait {i}"))
        elapsed = time.monotonic() - began
        assert raw.parse().choices[0].message.content
        model, name, attempts = _routing(raw.headers)
        assert (model, name) == ("patient", "patient-a")
        if attempts == 2:
            retried.append(elapsed)
        else:
            assert attempts == 1 and elapsed < 0.6
    assert len(retried) >= 2 and all(elapsed >= 0.6 for elapsed in retried)


def test_a_retry_after_beyond_the_bound_is_not_waited_for(deployment: Deployment) -> None:
    client = deployment.sdk()
    began = time.monotonic()
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="impatient", messages=ask("no waiting"))
    # Retry-After 30 is beyond max_retry_after_seconds 2: the one attempt (a wait of up to the
    # bound would be followed by a second) answers, without the 30 s wait.
    assert time.monotonic() - began < 10
    response = caught.value.response
    assert _routing(response.headers) == ("impatient", "impatient-a", 1)
    assert response.headers["retry-after"] == "30"
    # With another deployment in the group, the request moves to it at once. Waiting up to the
    # bound first would make every request that tried moves-on-a take 2 s at least (a sleep is
    # never shorter): one of them quicker rules that out, however loaded the machine.
    moved = []
    for i in range(5):
        began = time.monotonic()
        raw = client.chat.completions.with_raw_response.create(model="moves-on", messages=ask(f"move {i}"))
        assert raw.parse().choices[0].message.content
        elapsed = time.monotonic() - began
        model, name, attempts = _routing(raw.headers)
        assert (model, name) == ("moves-on", "moves-on-b") and attempts in (1, 2)
        if attempts == 2:
            moved.append(elapsed)
    assert moved and min(moved) < 2.0, moved


# -- the deadline ----------------------------------------------------------------------------


def test_retries_stop_at_the_request_deadline(deployment: Deployment) -> None:
    began = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        deployment.sdk().chat.completions.create(model="stuck", messages=ask("never answers"))
    elapsed = time.monotonic() - began
    # 11 attempts of 0.5 s would take 5.5 s: the 3 s deadline stops them.
    assert DEADLINE - 0.6 <= elapsed < DEADLINE + 1.0
    response = caught.value.response
    assert response.status_code == 504
    model, name, attempts = _routing(response.headers)
    assert (model, name) == ("stuck", "stuck-a") and 4 <= attempts <= 7
    # A timeout is not in fallback_on here: the fallback group was not tried.


# -- fallbacks ---------------------------------------------------------------------------------


def test_fallbacks_are_tried_in_order(deployment: Deployment) -> None:
    raw = deployment.sdk().chat.completions.with_raw_response.create(
        model="primary", messages=ask("fall back"))
    assert raw.parse().choices[0].message.content
    assert _routing(raw.headers) == ("third", "third-a", 3)
    record = deployment.record(raw.headers["x-request-id"])
    assert record.deployment == "third-a" and record.model == "third"
    assert [(a["group"], a["deployment"], a["status"]) for a in record.attempts or ()] == [
        ("primary", "primary-a", 502), ("second", "second-a", 503), ("third", "third-a", 200)]


def test_an_upstream_bad_request_is_neither_retried_nor_fallen_back(deployment: Deployment) -> None:
    marker = uuid.uuid4().hex
    with pytest.raises(openai.BadRequestError) as caught:
        deployment.sdk().chat.completions.create(model="picky", messages=ask(f"mock:capture={marker}"))
    assert _routing(caught.value.response.headers) == ("picky", "picky-a", 1)
    request_id = caught.value.response.headers["x-request-id"]
    record = deployment.record(request_id)
    assert record.status == 400 and len(record.attempts or ()) == 1
    # The failure's log line names the deployment and the attempts.
    line = deployment.gateway.process.wait_for_all(f"request_id={request_id}", "request failed", timeout=10)
    assert "deployment=picky-a" in line and "attempts=1" in line


def test_a_content_policy_refusal_falls_back(deployment: Deployment) -> None:
    raw = deployment.sdk().chat.completions.with_raw_response.create(
        model="careful", messages=ask("a refused prompt"))
    assert raw.parse().choices[0].message.content
    assert _routing(raw.headers) == ("third", "third-a", 2)


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_an_upstream_context_window_error_goes_to_the_context_window_fallback(
    deployment: Deployment, stream: bool,
) -> None:
    # The window of cramped's model is unknown to the catalog: only the upstream can say the
    # request is too long. Its context_window_fallbacks answer, as LiteLLM's do.
    create = deployment.sdk().chat.completions.with_raw_response.create
    raw = create(model="cramped", messages=ask("a long story"), stream=stream)
    if stream:
        assert any(c.choices and c.choices[0].delta.content for c in raw.parse())
    else:
        assert raw.parse().choices[0].message.content
    assert _routing(raw.headers) == ("spacious", "spacious-a", 2)
    record = deployment.record(raw.headers["x-request-id"])
    assert record.status == 200 and record.model == "spacious" and record.deployment == "spacious-a"
    assert [(a["group"], a["deployment"], a["status"], a["code"]) for a in record.attempts or ()] == [
        ("cramped", "cramped-a", 400, "context_length_exceeded"), ("spacious", "spacious-a", 200, None)]


def test_a_request_too_long_for_the_group_answers_under_the_larger_groups_name(
    deployment: Deployment,
) -> None:
    # Pre-routing sends it to the context-window fallback at once (50 tokens cannot hold 100
    # of output): the header, the ledger's model and its attempt all name that group.
    raw = deployment.sdk().chat.completions.with_raw_response.create(
        model="narrow", messages=ask("hi"), max_tokens=100)
    assert raw.parse().choices[0].message.content
    assert _routing(raw.headers) == ("spacious", "spacious-a", 1)
    record = deployment.record(raw.headers["x-request-id"])
    assert record.model == "spacious" and record.deployment == "spacious-a"
    assert [(a["group"], a["deployment"]) for a in record.attempts or ()] == [("spacious", "spacious-a")]
    client = anthropic.Anthropic(base_url=deployment.gateway.url, api_key=MASTER_KEY, max_retries=0)
    message = client.messages.with_raw_response.create(
        model="narrow", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    assert message.parse().content
    assert _routing(message.headers) == ("spacious", "spacious-a", 1)


def test_an_alias_answers_under_its_group_name(deployment: Deployment) -> None:
    raw = deployment.sdk().chat.completions.with_raw_response.create(
        model="flaky-alias", messages=ask("alias"))
    assert raw.parse().choices[0].message.content
    model, name, attempts = _routing(raw.headers)
    assert model == "flaky" and name in ("flaky-a", "flaky-b") and attempts >= 1


# -- streams -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["fail_after", "disconnect_after"])
def test_a_stream_failing_after_its_first_byte_is_not_retried(deployment: Deployment, fault: str) -> None:
    marker = uuid.uuid4().hex
    raw = deployment.sdk().chat.completions.with_raw_response.create(
        model="steady", stream=True,
        messages=ask(f"mock:{fault}=2 mock:capture={marker} mock:reply=one_two_three_four"))
    assert int(raw.headers["x-switchboard-attempts"]) == 1
    received = []
    with pytest.raises(openai.APIError):
        for chunk in raw.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert received  # the client had bytes before the failure
    # The upstream saw the request once: no second attempt.
    requests = captured(deployment.mock, marker, count=2, timeout=1.0)
    assert len(requests) == 1
    record = deployment.record(raw.headers["x-request-id"])
    assert len(record.attempts or ()) == 1 and record.deployment in ("steady-a", "steady-b")
    # The attempt answered its first byte, then failed: it is recorded with the stream's error,
    # as the record is (the alert rules count it as a failure of its deployment).
    (attempt,) = record.attempts or ()
    assert record.status >= 500 and record.error_code
    assert (attempt["status"], attempt["code"]) == (record.status, record.error_code)


def test_a_stream_failing_before_any_content_falls_back(deployment: Deployment) -> None:
    # The upstream answered 200 and sent its opening chunk (role only), then its error event: the
    # client has been sent nothing of it, so the stream goes to the fallback like any failure.
    raw = deployment.sdk().chat.completions.with_raw_response.create(
        model="opens-then-fails", stream=True, messages=ask("mock:reply=after_the_fallback"))
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == "after the fallback"
    assert _routing(raw.headers) == ("third", "third-a", 2)
    record = deployment.record(raw.headers["x-request-id"])
    assert [(a["deployment"], a["status"]) for a in record.attempts or ()] == [
        ("opens-then-fails-a", 502), ("third-a", 200)]


def test_an_anthropic_stream_overloaded_after_message_start_falls_back(deployment: Deployment) -> None:
    # Anthropic's way to be overloaded mid-stream: 200, message_start, then an overloaded_error
    # event. The pass-through stream had no content yet: the fallback (an OpenAI deployment,
    # translated) answers, and the client sees one whole, ordinary stream.
    client = anthropic.Anthropic(base_url=deployment.gateway.url, api_key=MASTER_KEY, max_retries=0)
    raw = client.messages.with_raw_response.create(
        model="claude-opens-then-fails", max_tokens=50, stream=True,
        messages=[{"role": "user", "content": "mock:reply=answered_elsewhere"}])
    events = list(raw.parse())
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    text = "".join(e.delta.text for e in events
                   if e.type == "content_block_delta" and e.delta.type == "text_delta")
    assert text == "answered elsewhere"
    assert _routing(raw.headers) == ("third", "third-a", 2)


def test_a_stream_failing_before_any_content_with_nowhere_to_go_is_an_error_status(
    deployment: Deployment,
) -> None:
    # Nothing was sent before the failure, so the client gets the error as an HTTP status, which
    # the SDKs retry on their own, rather than a 200 stream holding only an error event.
    with pytest.raises(openai.APIStatusError) as exc:
        deployment.sdk().chat.completions.create(
            model="opens-then-fails-alone", stream=True, messages=ask("hi"))
    assert exc.value.status_code == 502 and "failed mid-stream" in exc.value.message
    client = anthropic.Anthropic(base_url=deployment.gateway.url, api_key=MASTER_KEY, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as failed:
        client.messages.create(model="claude-opens-then-fails-alone", max_tokens=50, stream=True,
                               messages=[{"role": "user", "content": "hi"}])
    error = failed.value.body["error"]  # type: ignore[index]
    assert failed.value.status_code == 503 and error["type"] == "overloaded_error"
    # As for an error status: the failed call is recorded with its status and no tokens, although
    # message_start had reported the prompt's.
    record = deployment.record(failed.value.response.headers["x-request-id"])
    assert (record.status, record.prompt_tokens, record.completion_tokens) == (503, 0, 0)


# -- headers and the Anthropic API -------------------------------------------------------------


def test_anthropic_answers_carry_the_routing_headers_and_the_same_model_naming(
    deployment: Deployment,
) -> None:
    client = anthropic.Anthropic(base_url=deployment.gateway.url, api_key=MASTER_KEY, max_retries=0)
    raw = client.messages.with_raw_response.create(
        model="flaky-alias", max_tokens=50, messages=[{"role": "user", "content": "hello"}])
    message = raw.parse()
    model, name, attempts = _routing(raw.headers)
    assert model == "flaky" and name in ("flaky-a", "flaky-b") and attempts in (1, 2)
    openai_reply = deployment.sdk().chat.completions.create(model="flaky-alias", messages=ask("hello"))
    assert message.model == openai_reply.model == "gpt-4o-mini"  # the upstream's model id, both
    with client.messages.with_streaming_response.create(
        model="flaky", max_tokens=50, stream=True, messages=[{"role": "user", "content": "hi"}],
    ) as streamed:
        assert _routing(streamed.headers)[0] == "flaky"
        assert any(line.startswith("event: message_stop") for line in streamed.iter_lines())
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="picky", max_tokens=50, messages=[{"role": "user", "content": "x"}])
    assert _routing(caught.value.response.headers) == ("picky", "picky-a", 1)
    assert caught.value.status_code == 400


def test_every_model_operation_names_its_group_deployment_and_attempts(deployment: Deployment) -> None:
    client = deployment.sdk()
    raw_embedding = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="hi")
    assert raw_embedding.parse().data
    assert _routing(raw_embedding.headers) == (
        "text-embedding-3-small", "local-openai/text-embedding-3-small", 1)
    raw_completion = client.completions.with_raw_response.create(
        model="gpt-3.5-turbo-instruct", prompt="say hi", max_tokens=5)
    assert raw_completion.parse().choices
    assert _routing(raw_completion.headers) == (
        "gpt-3.5-turbo-instruct", "local-openai/gpt-3.5-turbo-instruct", 1)
    with client.chat.completions.with_streaming_response.create(
        model="steady", messages=ask("stream"), stream=True,
    ) as streamed:
        model, name, attempts = _routing(streamed.headers)
        assert (model, attempts) == ("steady", 1) and name in ("steady-a", "steady-b")
        assert any("[DONE]" in line for line in streamed.iter_lines())
    # An unknown model was never routed: no routing headers on its 404.
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-group", messages=ask("x"))
    assert "x-switchboard-model" not in caught.value.response.headers
