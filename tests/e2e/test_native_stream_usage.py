"""Same-dialect streams cut short, end to end: ``/v1/messages`` to an ``anthropic`` deployment and
``/v1/responses`` to a ``responses: native`` one, relayed as the upstream sent them. A stream the
client leaves, or the upstream breaks, before its final usage event is recorded with the output
estimated from the text relayed (docs/spend.md, "A stream the client abandons"), flagged
``estimated``, as a translated stream is (whose prompt, from an anthropic upstream, is the one
its message_start reported too); the budget and the key's token limit settle to that
record. On the embedded default and on a cluster (PostgreSQL + Redis)."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from switchboard import tokens
from switchboard.stores.protocols import UsageRecord
from tests import ledger
from tests.e2e.periods import zone_far_from_period_end
from tests.servers import MASTER_KEY, Gateway, Mock, start_gateway
from tests.services import Postgres, RedisServer

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
PRICES = {"input_cost_per_mtok": 3.0, "output_cost_per_mtok": 15.0}
WORDS = 200
LONG = "_".join(["word"] * WORDS)  # the mock's reply: 200 words, one stream event each
LEAVE_AFTER = 30  # text deltas the client reads before it leaves
FAIL_AFTER = 60  # upstream events before the mock's mid-stream error


def _config(mock: Mock) -> dict[str, Any]:
    return {
        "providers": [
            {"name": "anth", "type": "anthropic", "api_base": mock.url, "api_key": "${UPSTREAM_KEY}"},
            {"name": "oai", "type": "openai", "api_base": f"{mock.url}/v1", "api_key": "${UPSTREAM_KEY}"},
        ],
        "models": [
            {"name": "claude-native", "provider": "anth", "model": "claude-sonnet-4-5", "info": PRICES},
            {"name": "gpt-native", "provider": "oai", "model": "gpt-4o-mini", "responses": "native",
             "info": PRICES},
        ],
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
        "spend": {"flush_seconds": 0.1},
    }


@dataclass
class World:
    gateway: Gateway
    database: str

    def record(self, request_id: str) -> UsageRecord:
        return ledger.wait_for(self.database, {request_id})[request_id]

    def admin(self, method: str, path: str, json: Any = None) -> httpx.Response:
        return httpx.request(method, f"{self.gateway.url}{path}", json=json, headers=ADMIN, timeout=10)

    def anthropic(self, key: str = MASTER_KEY) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.gateway.url, api_key=key, max_retries=0, timeout=30)

    def openai(self, key: str = MASTER_KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=key, max_retries=0, timeout=30)


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def world(request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[World]:
    config = _config(mock_upstream)
    if request.param == "cluster":
        postgres: Postgres = request.getfixturevalue("postgres")
        redis: RedisServer = request.getfixturevalue("redis_server")
        config["database"] = {"url": postgres.create_database(f"native_cut_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
    tmp: Path = tmp_path_factory.mktemp(f"native-cut-{request.param}")
    gateway = start_gateway(config, tmp)
    yield World(gateway, ledger.database_of(config, tmp))
    gateway.process.stop()


def rid() -> str:
    return f"native-cut-{uuid.uuid4().hex}"


def claude_estimate(text: str) -> int:
    """The documented estimate for a model off OpenAI's encodings: o200k_base x 1.2."""
    return math.ceil(tokens.count_text(text, "o200k_base") * tokens.OTHER_PROVIDER_FACTOR)


# -- the Anthropic Messages pass-through ----------------------------------------------------------


def messages_stream(client: anthropic.Anthropic, request_id: str, directive: str) -> Any:
    return client.messages.create(
        model="claude-native", max_tokens=1000, stream=True, extra_headers={"x-request-id": request_id},
        messages=[{"role": "user", "content": f"mock:reply={LONG} {directive}"}])


def test_a_messages_stream_the_client_leaves_is_billed_for_what_was_relayed(world: World) -> None:
    request_id, received, start = rid(), [], None
    with messages_stream(world.anthropic(), request_id, "mock:chunk_delay_ms=20") as events:
        for event in events:
            if event.type == "message_start":
                start = event.message.usage
            elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                received.append(event.delta.text)
                if len(received) == LEAVE_AFTER:
                    break  # the client leaves with most of the answer still to come
    assert start is not None and start.output_tokens == 1
    record = world.record(request_id)
    assert record.metadata.get("client_disconnected") is True
    assert record.metadata.get("estimated") is True  # message_delta never came
    # The prompt as the upstream counted it; the output at least what the client read (the
    # gateway may have relayed a few more events before it saw the client go), not 1 token.
    assert record.prompt_tokens == start.input_tokens
    assert claude_estimate("".join(received)) <= record.completion_tokens < claude_estimate(LONG)
    assert record.cost_usd > 0


def test_a_messages_stream_the_upstream_breaks_is_billed_for_what_was_relayed(world: World) -> None:
    request_id, received = rid(), []
    with (
        pytest.raises(anthropic.APIStatusError),
        messages_stream(world.anthropic(), request_id, f"mock:fail_after={FAIL_AFTER}") as events,
    ):
        for event in events:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                received.append(event.delta.text)
    assert len(received) > FAIL_AFTER // 2
    record = world.record(request_id)
    assert record.metadata.get("estimated") is True
    assert record.completion_tokens == claude_estimate("".join(received))  # exactly what was relayed


# -- a translated stream: an OpenAI client to the anthropic deployment ---------------------------


def test_a_translated_stream_the_upstream_breaks_keeps_the_prompt_the_upstream_reported(world: World) -> None:
    messages = [{"role": "user", "content": f"mock:reply={LONG} mock:fail_after={FAIL_AFTER}"}]
    client = world.openai()
    # The same request answered whole: the prompt tokens the upstream counts for it (the mock
    # counts words, not the gateway's offline estimate), as its message_start reports them too.
    whole = client.chat.completions.create(model="claude-native", max_tokens=1000, messages=messages)
    assert whole.usage is not None
    request_id, received, usages = rid(), [], []
    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(
                model="claude-native", max_tokens=1000, stream=True, messages=messages,
                stream_options={"include_usage": True}, extra_headers={"x-request-id": request_id}):
            received += [c.delta.content for c in chunk.choices if c.delta.content]
            usages += [chunk.usage] if chunk.usage is not None else []
    assert len(received) > FAIL_AFTER // 2
    assert usages == []  # the usage so far is the gateway's; a client gets only the final one
    record = world.record(request_id)
    assert record.metadata.get("estimated") is True
    assert record.prompt_tokens == whole.usage.prompt_tokens
    assert record.completion_tokens == claude_estimate("".join(received))


# -- the Responses API to a native deployment -----------------------------------------------------


def responses_stream(client: openai.OpenAI, request_id: str, directive: str) -> Any:
    return client.responses.create(
        model="gpt-native", input=f"mock:reply={LONG} {directive}", max_output_tokens=1000, stream=True,
        extra_headers={"x-request-id": request_id})


def gpt_tokens(text: str) -> int:
    return tokens.count_text(text, "o200k_base")  # gpt-4o-mini's own encoding: no factor


def test_a_responses_stream_the_client_leaves_is_billed_for_what_was_relayed(world: World) -> None:
    request_id, received = rid(), []
    stream = responses_stream(world.openai(), request_id, "mock:chunk_delay_ms=20")
    for event in stream:
        if event.type == "response.output_text.delta":
            received.append(event.delta)
            if len(received) == LEAVE_AFTER:
                break
    stream.close()
    record = world.record(request_id)
    assert record.metadata.get("client_disconnected") is True
    assert record.metadata.get("estimated") is True  # response.completed never came
    assert record.prompt_tokens > 0  # the offline estimate of the prompt
    assert gpt_tokens("".join(received)) <= record.completion_tokens < gpt_tokens(LONG)
    assert record.cost_usd > 0


def test_a_responses_stream_the_upstream_breaks_is_billed_for_what_was_relayed(world: World) -> None:
    request_id = rid()
    events = list(responses_stream(world.openai(), request_id, f"mock:fail_after={FAIL_AFTER}"))
    assert events[-1].type == "response.failed"
    received = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(received) > FAIL_AFTER // 2
    record = world.record(request_id)
    assert record.metadata.get("estimated") is True
    assert record.prompt_tokens > 0
    assert record.completion_tokens == gpt_tokens("".join(received))


def test_a_responses_stream_whose_response_failed_is_recorded_as_a_failure(world: World) -> None:
    # OpenAI ends a stream whose response failed with response.failed (not an error event): the
    # client gets it as sent, once; the record (and the router) count the call as failed.
    request_id = rid()
    events = list(responses_stream(world.openai(), request_id,
                                   f"mock:fail_after={FAIL_AFTER} mock:failed_event=1"))
    kinds = [e.type for e in events]
    assert kinds[-1] == "response.failed" and kinds.count("response.failed") == 1
    failed = events[-1].response
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.message == "mock: injected mid-stream failure"
    received = [e.delta for e in events if e.type == "response.output_text.delta"]
    record = world.record(request_id)
    assert (record.status, record.error_code) == (502, "upstream_error")
    assert record.attempts is not None and record.attempts[-1]["status"] == 502
    assert record.metadata.get("estimated") is True  # the failed response reported no usage
    assert record.completion_tokens == gpt_tokens("".join(received))


def test_a_responses_stream_whose_response_failed_before_any_output_is_retried(world: World) -> None:
    # Only response.created and response.in_progress came before it: the client has nothing yet,
    # so it is retried (and fails the same way each time) and answered as an error status.
    request_id = rid()
    with pytest.raises(openai.APIStatusError) as exc:
        list(responses_stream(world.openai(), request_id, "mock:fail_after=2 mock:failed_event=1"))
    assert exc.value.status_code == 502
    assert "mock: injected mid-stream failure" in exc.value.message
    record = world.record(request_id)
    assert (record.status, record.error_code) == (502, "upstream_error")
    assert record.attempts is not None and len(record.attempts) == 3  # num_retries: 2
    assert (record.prompt_tokens, record.completion_tokens) == (0, 0)


def test_a_responses_answer_whose_response_failed_is_a_failure(world: World) -> None:
    # Non-stream, OpenAI answers a failed response with HTTP 200 and status failed. Nothing has
    # reached the client, as with a stream's response.failed before any output: it is retried,
    # recorded as failed and answered as an error status, never as a success.
    request_id = rid()
    with pytest.raises(openai.APIStatusError) as exc:
        world.openai().responses.create(model="gpt-native", input="hello mock:failed_event=1",
                                        extra_headers={"x-request-id": request_id})
    assert exc.value.status_code == 502
    assert "mock: injected failure" in exc.value.message
    record = world.record(request_id)
    assert (record.status, record.error_code) == (502, "upstream_error")
    assert record.attempts is not None
    assert [a["status"] for a in record.attempts] == [502, 502, 502]  # num_retries: 2


# OpenAI's codes of a failed response -> what the caller gets and the record says, and how many
# attempts were made (num_retries: 2; a rate limit, a timeout and a server error are retried).
FAILED_CODES = [
    ("rate_limit_exceeded", 429, "rate_limit_exceeded", 3),
    ("vector_store_timeout", 504, "upstream_timeout", 3),
    ("invalid_prompt", 400, "invalid_prompt", 1),
    ("invalid_base64_image", 400, "invalid_base64_image", 1),
    ("image_too_large", 400, "image_too_large", 1),
    ("server_error", 502, "upstream_error", 3),
    ("some_new_code", 502, "upstream_error", 3),
]


@pytest.mark.parametrize(("given", "status", "code", "attempts"), FAILED_CODES)
def test_a_failed_response_is_answered_by_its_code(world: World, given: str, status: int, code: str,
                                                   attempts: int) -> None:
    request_id = rid()
    with pytest.raises(openai.APIStatusError) as exc:
        world.openai().responses.create(model="gpt-native", extra_headers={"x-request-id": request_id},
                                        input=f"hi mock:failed_event=1 mock:error_code={given}")
    assert (exc.value.status_code, exc.value.code) == (status, code)
    assert "mock: injected failure" in exc.value.message
    record = world.record(request_id)
    assert (record.status, record.error_code) == (status, code)
    assert record.attempts is not None and [a["status"] for a in record.attempts] == [status] * attempts


def test_a_stream_whose_response_failed_before_any_output_is_answered_by_its_code(world: World) -> None:
    # Nothing reached the client: the status is the code's (the caller's image, not retried).
    request_id = rid()
    with pytest.raises(openai.BadRequestError) as exc:
        list(responses_stream(world.openai(), request_id,
                              "mock:fail_after=2 mock:failed_event=1 mock:error_code=invalid_image"))
    assert exc.value.code == "invalid_image"
    record = world.record(request_id)
    assert (record.status, record.error_code) == (400, "invalid_image")
    assert record.attempts is not None and len(record.attempts) == 1


def test_a_stream_whose_response_failed_after_output_is_recorded_by_its_code(world: World) -> None:
    # The client has the output and the response.failed event as OpenAI sent it; the record (and
    # the router) take the failure as the rate limit it says it is.
    request_id = rid()
    events = list(responses_stream(world.openai(), request_id, f"mock:fail_after={FAIL_AFTER} "
                                   "mock:failed_event=1 mock:error_code=rate_limit_exceeded"))
    failed = events[-1].response  # type: ignore[union-attr]
    assert events[-1].type == "response.failed" and failed.error is not None
    assert failed.error.code == "rate_limit_exceeded"
    record = world.record(request_id)
    assert (record.status, record.error_code) == (429, "rate_limit_exceeded")
    assert record.attempts is not None and record.attempts[-1]["status"] == 429


# -- budgets and token limits settle to the record ------------------------------------------------


def until(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """``check()``'s first truthy value, polled with a deadline (settlement runs after the
    response)."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.05)
    return value


def test_the_budget_and_the_token_limit_settle_to_the_estimate(world: World) -> None:
    key = world.admin("POST", "/admin/v1/keys", {"models": ["*"], "tpm_limit": 1_000_000}).json()
    budget = world.admin("PUT", "/admin/v1/budgets", {"scope": "key", "subject": key["id"], "unit": "tokens",
                                                      "max_amount": 1_000_000, "period": "daily",
                                                      "timezone": zone_far_from_period_end("daily")})
    assert budget.status_code == 200, budget.text

    def status() -> dict[str, Any]:
        return dict(world.admin("GET", f"/admin/v1/budgets/{budget.json()['id']}").json()["status"])

    client = world.anthropic(key["key"])

    def probe() -> tuple[int, int]:
        """The tokens left in the key's minute after this call's reservation, and its usage."""
        raw = client.messages.with_raw_response.create(
            model="claude-native", max_tokens=50, messages=[{"role": "user", "content": "probe"}])
        usage = raw.parse().usage
        return int(raw.headers["x-ratelimit-remaining-tokens"]), usage.input_tokens + usage.output_tokens

    before, probed = probe()
    until(lambda: status()["reserved"] == 0)
    request_id, received = rid(), 0
    with messages_stream(client, request_id, "mock:chunk_delay_ms=20") as events:
        for event in events:
            if event.type == "content_block_delta":
                received += 1
                if received == LEAVE_AFTER:
                    break
    settled = until(lambda: (s := status())["reserved"] == 0 and s)
    record = world.record(request_id)
    cut = record.prompt_tokens + record.completion_tokens
    assert record.metadata.get("estimated") is True and record.completion_tokens >= LEAVE_AFTER
    assert settled["spent"] == probed + cut
    after, _ = probe()  # the same reservation as the first probe
    assert before - after == probed + cut  # the cut stream holds what it was recorded with
