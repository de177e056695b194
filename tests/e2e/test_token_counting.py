"""``POST /v1/messages/count_tokens`` and ``POST /v1/responses/input_tokens`` through a running
gateway, on the embedded default (SQLite) and on a cluster (PostgreSQL and Redis): exact counts for
an OpenAI model, equal to tiktoken's reference counting of the same request; the documented
estimate for a Claude model. A count is neither billed nor held to rate limits."""

from __future__ import annotations

import base64
import math
import random
import string
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import tiktoken

from tests.ledger import database_of, wait_for
from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway
from tests.services import Postgres, RedisServer
from tests.unit.tokens.cases import data_url, pdf, png
from tests.unit.tokens.reference import Reference, reference_encoding, seed_cache

WEATHER = {
    "name": "get_current_weather",
    "description": "Get the current weather in a given location",
    "input_schema": {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
            "unit": {"type": "string", "description": "The unit", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location"],
    },
}
SYSTEM = "You are a helpful assistant that can answer questions about the weather."
QUESTION = "Wie ist das Wetter in Zürich? 今日の天気は"
IMAGE = data_url("image/png", png(1000, 500))
PROFILE_ARN = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6"


def _config(mock: Mock) -> dict[str, Any]:
    config = openai_config(mock)
    config["providers"].append({"name": "up-anthropic", "type": "anthropic", "api_base": mock.url,
                                "api_key": "${UPSTREAM_KEY}"})
    config["models"].append(
        {"name": "claude-haiku", "provider": "up-anthropic", "model": "claude-3-5-haiku-latest"})
    # A Bedrock application inference profile: its ARN names no model, its info.base_model does.
    config["providers"].append({"name": "up-bedrock", "type": "bedrock", "api_base": mock.url,
                                "aws_access_key_id": "AKIDTEST", "aws_secret_access_key": "${UPSTREAM_KEY}",
                                "aws_region": "us-east-1"})
    config["models"].append({"name": "claude-profile", "provider": "up-bedrock", "model": PROFILE_ARN,
                             "info": {"base_model": "anthropic.claude-3-5-haiku-20241022-v1:0"}})
    # No known context window: a conversation of megabytes is served and stored.
    config["models"].append({"name": "house-model", "provider": "local-openai", "model": "house-model-1"})
    return config


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def started(request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[Gateway, str]]:
    """The gateway and its database (the usage ledger's)."""
    config = _config(mock_upstream)
    if request.param == "cluster":
        postgres: Postgres = request.getfixturevalue("postgres")
        redis: RedisServer = request.getfixturevalue("redis_server")
        config["database"] = {"url": postgres.create_database(f"tokens_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
    tmp: Path = tmp_path_factory.mktemp(f"tokens-{request.param}")
    gateway = start_gateway(config, tmp)
    yield gateway, database_of(config, tmp)
    gateway.process.stop()


@pytest.fixture
def gw(started: tuple[Gateway, str]) -> Gateway:
    return started[0]


@pytest.fixture(scope="module")
def o200k(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tiktoken.Encoding]:
    cache = tmp_path_factory.mktemp("tiktoken-cache")
    seed_cache(cache)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIKTOKEN_CACHE_DIR", str(cache))
        yield reference_encoding("o200k_base")


def client(gw: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def expected(ref: Reference) -> int:
    """The same request as OpenAI chat messages, counted by the reference."""
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": [
            {"type": "text", "text": QUESTION},
            {"type": "image_url", "image_url": {"url": IMAGE}},
        ]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "t1", "type": "function", "function": {
            "name": "get_current_weather", "arguments": '{"location":"Zürich"}'}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "21°C, sunny"},
    ]
    tools = [{"type": "function", "function": {"name": WEATHER["name"], "description": WEATHER["description"],
                                               "parameters": WEATHER["input_schema"]}}]
    return ref.chat({"messages": messages, "tools": tools}, {IMAGE: (1000, 500)})


def count(gw: Gateway, model: str) -> int:
    result = client(gw).messages.count_tokens(
        model=model,
        system=SYSTEM,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": [
                {"type": "text", "text": QUESTION},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": IMAGE.split(",", 1)[1]}},
            ]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get_current_weather",
                                               "input": {"location": "Zürich"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "21°C, sunny"}]},
        ],
    )
    return result.input_tokens


def claude_estimate(ref: Reference) -> tuple[int, int]:
    """The bounds of the estimate for a Claude model: the text's o200k count times 1.2, plus the
    1000 x 500 image by Anthropic's rule (28 px patches: 36 x 18, 648), carried through the
    factor with at most 2 tokens more (docs/tokens.md)."""
    text = expected(ref) - ref.image(1000, 500, "auto")
    low = math.ceil(text * 1.2) + 648
    return low, low + 2


def test_exact_for_openai_models_and_estimated_for_others(gw: Gateway, o200k: tiktoken.Encoding) -> None:
    assert count(gw, "gpt-4o-mini") == expected(Reference(o200k, "gpt-4o-mini"))
    # Other providers: the o200k count times 1.2; a Claude model's image by Anthropic's rule, not
    # OpenAI's 85 + 2 x 170 tiles times 1.2 (510, where Anthropic counts 648).
    low, high = claude_estimate(Reference(o200k, "claude"))
    assert low <= count(gw, "claude-haiku") <= high
    assert count(gw, "claude-haiku") > math.ceil(expected(Reference(o200k, "claude")) * 1.2)


def test_a_model_named_by_an_inference_profile_arn_is_counted_as_its_base_model(
    gw: Gateway, o200k: tiktoken.Encoding
) -> None:
    # The ARN says no family; info.base_model says Claude: its image by Anthropic's rule, not by
    # OpenAI's tiles (which the text's count alone would land under).
    low, high = claude_estimate(Reference(o200k, "claude"))
    assert low <= count(gw, "claude-profile") <= high


def test_bad_count_tokens_bodies_get_400_and_the_server_keeps_serving(gw: Gateway) -> None:
    url = f"{gw.url}/v1/messages/count_tokens"
    headers = {"x-api-key": MASTER_KEY, "anthropic-version": "2023-06-01"}
    hi = [{"role": "user", "content": "hi"}]
    for body in (
        {"model": "gpt-4o-mini", "messages": "hi"},
        {"model": "gpt-4o-mini", "messages": hi, "max_tokens": 5},
        {"model": "gpt-4o-mini", "messages": hi, "no_such_field": 1},
        {"model": "x" * 5000, "messages": hi},
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [{"type": "image", "source": 3}]}]},
    ):
        resp = httpx.post(url, json=body, headers=headers, timeout=10)
        assert resp.status_code in (400, 404), (body, resp.text)
        assert resp.json()["type"] == "error" and resp.json()["error"]["type"] in (
            "invalid_request_error", "not_found_error")
    ok = httpx.post(url, json={"model": "gpt-4o-mini", "messages": hi}, headers=headers, timeout=10)
    # 3 per message + "user" + "hi" + 3 for the reply priming.
    assert ok.status_code == 200 and ok.json()["input_tokens"] == 3 + 1 + 1 + 3


# -- POST /v1/responses/input_tokens: the Responses API's count ------------------------------------

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
# The request count() sends, as Responses input items.
INPUT: list[Any] = [
    {"role": "user", "content": [{"type": "input_text", "text": QUESTION},
                                 {"type": "input_image", "image_url": IMAGE}]},
    {"type": "function_call", "call_id": "t1", "name": "get_current_weather",
     "arguments": '{"location":"Zürich"}'},
    {"type": "function_call_output", "call_id": "t1", "output": "21°C, sunny"},
]
TOOLS: list[Any] = [{"type": "function", "name": WEATHER["name"], "description": WEATHER["description"],
                     "parameters": WEATHER["input_schema"]}]


def sdk(gw: Gateway, key: str = MASTER_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30)


def new_key(gw: Gateway, **fields: Any) -> str:
    resp = httpx.post(f"{gw.url}/admin/v1/keys", json={"models": ["*"], **fields}, headers=ADMIN, timeout=10)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["key"])


def test_the_count_is_exact_for_openai_models_and_estimated_for_others(
    gw: Gateway, o200k: tiktoken.Encoding
) -> None:
    client = sdk(gw)
    for model in ("gpt-4o-mini", "claude-haiku"):
        counted = client.responses.input_tokens.count(model=model, instructions=SYSTEM, input=INPUT,
                                                      tools=TOOLS)
        assert counted.object == "response.input_tokens"
        if model == "gpt-4o-mini":
            assert counted.input_tokens == expected(Reference(o200k, model))
        else:
            low, high = claude_estimate(Reference(o200k, "claude"))
            assert low <= counted.input_tokens <= high


def test_the_fields_that_shape_the_input_are_taken(gw: Gateway) -> None:
    client = sdk(gw)
    plain = client.responses.input_tokens.count(model="gpt-4o-mini", input="hi").input_tokens
    # 3 per message + "user" + "hi" + 3 for the reply priming, as /v1/messages/count_tokens.
    assert plain == 3 + 1 + 1 + 3
    shaped = client.responses.input_tokens.count(
        model="gpt-4o-mini", input="hi", tools=TOOLS, tool_choice="auto", parallel_tool_calls=False,
        reasoning={"effort": "low"}, truncation="disabled",
        text={"format": {"type": "json_schema", "name": "a", "schema": {"type": "object"}}},
    ).input_tokens
    assert shaped > plain


def test_previous_response_id_counts_the_callers_stored_conversation(gw: Gateway) -> None:
    alice, bob = sdk(gw, new_key(gw)), sdk(gw, new_key(gw))
    first = alice.responses.create(model="gpt-4o-mini", input="My name is Ada and I like long walks.")
    alone = alice.responses.input_tokens.count(model="gpt-4o-mini", input="What is my name?").input_tokens
    replayed = alice.responses.input_tokens.count(model="gpt-4o-mini", input=[
        {"role": "user", "content": "My name is Ada and I like long walks."},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "What is my name?"},
    ]).input_tokens
    continued = alice.responses.input_tokens.count(model="gpt-4o-mini", previous_response_id=first.id,
                                                   input="What is my name?").input_tokens
    assert continued == replayed > alone
    # Another key's response, and one that does not exist: as a create answers them.
    for client, response_id in ((bob, first.id), (alice, "resp_" + "0" * 48)):
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.input_tokens.count(model="gpt-4o-mini", previous_response_id=response_id,
                                                input="What is my name?")
        assert refused.value.code == "previous_response_not_found"
        assert refused.value.param == "previous_response_id"


def test_a_count_is_not_billed_nor_held_to_rate_limits(started: tuple[Gateway, str]) -> None:
    gw, database = started
    client = sdk(gw, new_key(gw, rpm_limit=1, tpm_limit=1000))
    long = "word " * 3000  # more tokens than the key's tokens per minute
    counted = [client.responses.input_tokens.with_raw_response.count(model="gpt-4o-mini", input=long)
               for _ in range(3)]
    assert all(r.parse().input_tokens > 1000 for r in counted)
    # The key's one request of the minute is still there, for a model call.
    created = client.responses.with_raw_response.create(model="gpt-4o-mini", input="hi", store=False)
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model="gpt-4o-mini", input="hi", store=False)
    call = created.headers["x-request-id"]
    ledger = wait_for(database, {call})
    assert not {r.headers["x-request-id"] for r in counted} & set(ledger)
    assert ledger[call].prompt_tokens > 0


@pytest.mark.parametrize(("body", "status", "code", "param"), [
    ({"input": "hi"}, 400, "missing_required_parameter", "model"),
    ({"model": "gpt-4o-mini"}, 400, "missing_required_parameter", "input"),
    ({"model": "gpt-4o-mini", "input": 3}, 400, "invalid_type", "input"),
    ({"model": "gpt-4o-mini", "input": [{"role": "user", "content": 3}]}, 400, "invalid_type", None),
    ({"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 100}, 400, "unknown_parameter",
     "max_output_tokens"),
    ({"model": "gpt-4o-mini", "input": "hi", "stream": True}, 400, "unknown_parameter", "stream"),
    ({"model": "gpt-4o-mini", "input": "hi", "tools": [{"type": "web_search"}]}, 400, "unsupported_parameter",
     "tools[0].type"),
    ({"model": "gpt-4o-mini", "input": "hi", "conversation": "conv_1"}, 400, "unsupported_parameter",
     "conversation"),
    ({"model": "gpt-4o-mini", "input": "hi", "personality": "friendly"}, 400, "unsupported_parameter",
     "personality"),
    ({"model": "gpt-4o-mini", "input": "hi", "truncation": "auto"}, 400, "unsupported_parameter",
     "truncation"),
    ({"model": "gpt-4o-mini", "input": "hi", "tools": [{"type": "mcp", "server_label": "docs"}]}, 400,
     "unsupported_parameter", "tools[0].type"),
    ({"model": "no-such-model", "input": "hi"}, 404, "model_not_found", "model"),
])
def test_bad_input_is_answered_as_a_create_answers_it(
    gw: Gateway, body: dict[str, Any], status: int, code: str, param: str | None
) -> None:
    resp = httpx.post(f"{gw.base_url}/responses/input_tokens", json=body,
                      headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=10)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == code
    if param is not None:
        assert error["param"] == param


def test_the_key_and_its_models_are_checked(gw: Gateway) -> None:
    with pytest.raises(openai.AuthenticationError):
        sdk(gw, "sk-sb-nope").responses.input_tokens.count(model="gpt-4o-mini", input="hi")
    client = sdk(gw, new_key(gw, models=["gpt-4o-mini"]))
    assert client.responses.input_tokens.count(model="gpt-4o-mini", input="hi").input_tokens > 0
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.responses.input_tokens.count(model="claude-haiku", input="hi")
    assert refused.value.code == "model_not_allowed"


@pytest.mark.parametrize("fields", [
    {"tools": [{"type": "web_search"}]}, {"conversation": "conv_1"}, {"truncation": "auto"},
    {"personality": "friendly"}, {"tools": [{"type": "mcp", "server_label": "docs"}]},
], ids=["web_search", "conversation", "truncation", "personality", "mcp"])
def test_a_model_the_key_may_not_use_is_refused_before_what_the_count_cannot_see(
    gw: Gateway, fields: dict[str, Any]
) -> None:
    """A key limited to other models counting a request with a field the count refuses (only a
    native deployment could serve it): 403 ``model_not_allowed``, as a create of it answers,
    not the 400 that would tell the caller what the model's deployments can do."""
    client = sdk(gw, new_key(gw, models=["gpt-4o-mini"]))
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.responses.input_tokens.count(model="claude-haiku", input="hi", extra_body=fields)
    assert refused.value.code == "model_not_allowed"
    if "personality" not in fields and "mcp" not in str(fields):  # (fields a create reads too)
        with pytest.raises(openai.PermissionDeniedError) as created:
            client.responses.create(model="claude-haiku", input="hi", extra_body=fields)
        assert created.value.code == "model_not_allowed"
    # The model allowed: the field is refused, as before.
    with pytest.raises(openai.BadRequestError) as unsupported:
        client.responses.input_tokens.count(model="gpt-4o-mini", input="hi", extra_body=fields)
    assert unsupported.value.code == "unsupported_parameter"


def test_a_long_stored_conversation_is_counted_off_the_event_loop(gw: Gateway) -> None:
    """A count continuing a stored conversation of megabytes, from a body of a few bytes: its
    tokens are counted in a worker thread, as a large body's are, so the gateway answers its other
    requests meanwhile rather than stalling until the count is done."""
    client = sdk(gw)
    rnd = random.Random(7)
    words = ["".join(rnd.choices(string.ascii_letters, k=rnd.randint(3, 12))) for _ in range(5000)]
    first = client.responses.create(model="house-model", input=" ".join(rnd.choices(words, k=800_000)))
    answered: list[float] = []  # when each health check was answered
    polling, done = threading.Event(), threading.Event()

    def poll() -> None:
        with httpx.Client(timeout=30) as http:
            while not done.is_set():
                assert http.get(f"{gw.url}/health/live").status_code == 200
                answered.append(time.perf_counter())
                polling.set()

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        assert polling.wait(30)
        started = time.perf_counter()
        counted = client.responses.input_tokens.count(model="house-model", previous_response_id=first.id,
                                                      input="And?")
        finished = time.perf_counter()
    finally:
        done.set()
        poller.join()
    assert counted.input_tokens > 2_000_000
    during = [at for at in answered if started < at < finished]
    gaps = [b - a for a, b in zip([started, *during], [*during, finished], strict=True)]
    # Stalled, the loop answers nothing while it counts: one gap nearly as long as the count. The
    # conversation is long enough (a count of about two seconds) that a loaded host's own pauses
    # (up to 0.8 s seen with four test workers on two cores) stay well under half of it.
    assert max(gaps) < (finished - started) / 2, (max(gaps), finished - started)


# -- documents ----------------------------------------------------------------------------------

ONE_PAGE = base64.b64encode(pdf(1)).decode()
TEN_PAGES = base64.b64encode(pdf(10, packed=True)).decode()  # its pages in an object stream


def _document(data: str) -> list[Any]:
    return [{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": data}},
        {"type": "text", "text": "Summarise this."},
    ]}]


def test_a_pdf_is_counted_by_its_pages(gw: Gateway) -> None:
    """3,000 tokens a page (docs/tokens.md, "Documents"), not the few hundred of its base64 text."""
    one = client(gw).messages.count_tokens(model="claude-haiku", messages=_document(ONE_PAGE)).input_tokens
    ten = client(gw).messages.count_tokens(model="claude-haiku", messages=_document(TEN_PAGES)).input_tokens
    assert 3000 < one < 3100
    assert ten - one == 9 * 3000
    # A plain-text document counts as its text, all of it.
    text = "Minutes of the meeting. " * 2000
    counted = client(gw).messages.count_tokens(model="claude-haiku", messages=[{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": text}},
        {"type": "text", "text": "Summarise this."},
    ]}]).input_tokens
    assert counted > 5 * 2000 * 1.2


def test_a_token_limit_refuses_a_long_pdf_and_takes_a_short_one(gw: Gateway) -> None:
    """A key of 20,000 tokens a minute: a 10-page PDF (some 30,000 tokens) can never fit, and is
    refused before anything is sent, with its estimate, whichever API it came through; a 1-page
    one is served."""
    key = new_key(gw, tpm_limit=20_000)
    claude = anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0, timeout=30)
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.messages.create(model="claude-haiku", max_tokens=100, messages=_document(TEN_PAGES))
    body: Any = refused.value.body
    assert body["error"]["type"] == "invalid_request_error"
    needs = int(body["error"]["message"].split("needs ")[1].split(" tokens")[0])
    assert 30_000 < needs < 31_000
    # The same PDF as an OpenAI file part, and from the Gemini API as inline data.
    file_part = {"type": "file", "file": {"filename": "report.pdf",
                                          "file_data": f"data:application/pdf;base64,{TEN_PAGES}"}}
    with pytest.raises(openai.BadRequestError) as by_openai:
        sdk(gw, key).chat.completions.create(model="claude-haiku", max_tokens=100, messages=[
            {"role": "user", "content": [file_part, {"type": "text", "text": "Summarise this."}]}])  # type: ignore[misc, list-item]
    assert by_openai.value.code == "request_exceeds_limit"
    gemini = httpx.post(
        f"{gw.url}/v1beta/models/claude-haiku:generateContent", headers={"x-goog-api-key": key},
        json={"contents": [{"role": "user", "parts": [
            {"inlineData": {"mimeType": "application/pdf", "data": TEN_PAGES}},
            {"text": "Summarise this."}]}]},
        timeout=30)
    assert gemini.status_code == 400 and "needs 3" in gemini.text, gemini.text
    # One page fits.
    reply = claude.messages.create(model="claude-haiku", max_tokens=100, messages=_document(ONE_PAGE))
    assert reply.content
