"""The OpenAI Responses API inbound (``/v1/responses``), driven by the official ``openai`` SDK.

A gateway started by this module routes models of several provider types to the mock upstream;
the tests that reach an upstream run once per provider type (``PROVIDERS``).
"""

from __future__ import annotations

import base64
import json
import typing
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pydantic
import pytest
from openai.types.responses import ResponseError

from tests.ledger import database_of, wait_for
from tests.servers import MASTER_KEY, Gateway, Mock, captured, new_marker, start_gateway

PIXEL = (
    "data:image/png;base64,"
    + base64.b64encode(
        base64.b64decode(
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
        )
    ).decode()
)
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
SCHEMA = {
    "type": "json_schema",
    "name": "answer",
    "schema": {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
        "additionalProperties": False,
    },
    "strict": True,
}
MAX_BODY = 256 * 1024
ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
# provider type -> (provider entry without name, upstream model id)
PROVIDERS: dict[str, tuple[dict[str, Any], str]] = {
    "openai": ({"type": "openai", "api_base": "{mock}/v1", "api_key": "${UPSTREAM_KEY}"}, "gpt-4o-mini"),
    "gemini": ({"type": "gemini", "api_base": "{mock}", "api_key": "${UPSTREAM_KEY}"}, "gemini-2.0-flash"),
    "bedrock": (
        {
            "type": "bedrock",
            "api_base": "{mock}",
            "aws_access_key_id": "AKIDTEST",
            "aws_secret_access_key": "${UPSTREAM_KEY}",
            "aws_region": "us-east-1",
        },
        "anthropic.claude-3-haiku-20240307-v1:0",
    ),
    "anthropic": (
        {"type": "anthropic", "api_base": "{mock}", "api_key": "${UPSTREAM_KEY}"},
        "claude-3-5-haiku-latest",
    ),
}


def _config(mock: Mock) -> dict[str, Any]:
    providers, models = [], []
    for kind, (entry, upstream_model) in PROVIDERS.items():
        filled = {k: v.replace("{mock}", mock.url) if isinstance(v, str) else v for k, v in entry.items()}
        providers.append({"name": f"up-{kind}", **filled})
        models.append({"name": f"via-{kind}", "provider": f"up-{kind}", "model": upstream_model})
    # A Bedrock model with no reasoning control (not Claude, not Nova 2).
    models.append({"name": "via-llama", "provider": "up-bedrock", "model": "meta.llama3-1-70b-instruct-v1:0"})
    # Native deployments: the Responses request goes upstream as is.
    providers.append(
        {"name": "up-azure", "type": "azure", "api_base": mock.url, "api_key": "${UPSTREAM_KEY}"}
    )
    models += [
        {"name": "native-openai", "provider": "up-openai", "model": "gpt-4o-mini", "responses": "native"},
        {"name": "native-azure", "provider": "up-azure", "model": "my-deployment", "responses": "native"},
    ]
    # An Anthropic deployment no one answers (a port of this module's range nothing listens on),
    # falling back to OpenAI: a refused hint left out for the first attempt reaches the second.
    providers.append({"name": "up-down", "type": "anthropic", "api_base": "http://127.0.0.1:54769",
                      "api_key": "${UPSTREAM_KEY}"})
    models.append({"name": "down-anthropic", "provider": "up-down", "model": "claude-3-5-haiku-latest"})
    return {
        "providers": providers,
        "models": models,
        "router": {"fallbacks": {"down-anthropic": ["via-openai"]},
                   "groups": {"down-anthropic": {"num_retries": 0}}},
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
        "images": {"allow_private_networks": True},
        "server": {"max_body_bytes": MAX_BODY},
    }


@pytest.fixture(scope="module")
def started(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, str]]:
    config, tmp = _config(mock_upstream), tmp_path_factory.mktemp("responses")
    gateway = start_gateway(config, tmp)
    yield gateway, database_of(config, tmp)
    gateway.process.stop()


@pytest.fixture
def gw(started: tuple[Gateway, str]) -> Gateway:
    return started[0]


@pytest.fixture
def client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)


@pytest.fixture(params=sorted(PROVIDERS))
def model(request: pytest.FixtureRequest) -> str:
    return f"via-{request.param}"


def upstream_model(model: str) -> str:
    return PROVIDERS[model.removeprefix("via-")][1]


def new_key(gw: Gateway) -> str:
    resp = httpx.post(f"{gw.url}/admin/v1/keys", json={"models": ["*"]}, headers=ADMIN, timeout=10)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["key"])


# -- create ----------------------------------------------------------------------------------------


def test_text(client: openai.OpenAI, model: str) -> None:
    response = client.responses.create(model=model, input="Say hello to the gateway", store=False)
    assert response.id.startswith("resp_")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.model == upstream_model(model)
    assert "hello to the gateway" in response.output_text
    [message] = response.output
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert response.usage is not None
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert response.store is False and response.tool_choice == "auto" and response.parallel_tool_calls is True


def test_instructions_and_items_reach_the_upstream(
    client: openai.OpenAI, model: str, mock_upstream: Mock
) -> None:
    marker = new_marker()
    response = client.responses.create(
        model=model,
        instructions="You are terse.",
        input=[
            {"role": "developer", "content": "Answer in English."},
            {
                "role": "user",
                "content": [{"type": "input_text", "text": f"first question mock:capture={marker}"}],
            },
            {"role": "assistant", "content": [{"type": "output_text", "text": "first answer"}]},
            {"type": "message", "role": "user", "content": "second question"},
        ],
        temperature=0.5,
        top_p=0.9,
        max_output_tokens=200,
        metadata={"ticket": "T-1"},
    )
    assert "second question" in response.output_text
    assert response.instructions == "You are terse."
    assert response.metadata == {"ticket": "T-1"}
    assert response.temperature == 0.5 and response.top_p == 0.9 and response.max_output_tokens == 200
    [record] = captured(mock_upstream, marker)
    sent = json.dumps(record["body"])
    for text in ("You are terse.", "Answer in English.", "first answer", "second question"):
        assert text in sent
    if model == "openai":  # the name OpenAI's reasoning models take too
        assert record["body"]["max_completion_tokens"] == 200 and "max_tokens" not in record["body"]


def test_image_input(client: openai.OpenAI, model: str, mock_upstream: Mock) -> None:
    response = client.responses.create(
        model=model,
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Describe these images"},
                    {"type": "input_image", "image_url": PIXEL, "detail": "auto"},
                    {"type": "input_image", "image_url": mock_upstream.url + "/images/pixel.png"},
                ],
            }
        ],
    )
    assert "Describe these images" in response.output_text


def test_max_output_tokens_incomplete(client: openai.OpenAI, model: str) -> None:
    response = client.responses.create(
        model=model, input="one two three four five six seven eight nine ten " * 4, max_output_tokens=16
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert client.responses.retrieve(response.id).status == "incomplete"  # stored, as sent
    *_, last = client.responses.create(
        model=model, input="one two three four five six seven eight nine ten " * 4, max_output_tokens=16,
        stream=True,
    )
    assert last.type == "response.incomplete"
    streamed = last.response
    assert client.responses.retrieve(streamed.id).output_text == streamed.output_text


def test_function_call_round_trip(client: openai.OpenAI, model: str) -> None:
    question = {"role": "user", "content": "What is the weather in Paris?"}
    first = client.responses.create(model=model, input=[question], tools=[WEATHER], store=False)
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather" and call.call_id and call.id and call.id.startswith("fc_")
    assert isinstance(json.loads(call.arguments).get("city"), str)
    second = client.responses.create(
        model=model,
        tools=[WEATHER],
        store=False,
        input=[
            question,
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "18 degrees, sunny"},
        ],
    )
    assert "18 degrees, sunny" in second.output_text


def test_tool_choice_none_and_named(client: openai.OpenAI, model: str) -> None:
    text = client.responses.create(model=model, input="weather?", tools=[WEATHER], tool_choice="none")
    assert not [item for item in text.output if item.type == "function_call"]
    named = client.responses.create(
        model=model,
        input="weather?",
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
    )
    assert [item.name for item in named.output if item.type == "function_call"] == ["get_weather"]


NEWS = {**WEATHER, "name": "get_news", "description": "Headlines"}
# provider type -> what reaches the upstream for allowed_tools (Anthropic and Converse have no form
# of it: only the allowed tools are sent, with the list's mode).
ALLOWED_TOOLS_SENT: dict[str, Any] = {
    "openai": lambda body: body["tool_choice"] == {"type": "allowed_tools", "allowed_tools": {
        "mode": "required", "tools": [{"type": "function", "function": {"name": "get_weather"}}]}},
    "gemini": lambda body: body["toolConfig"]["functionCallingConfig"] == {
        "mode": "ANY", "allowedFunctionNames": ["get_weather"]},
    "anthropic": lambda body: body["tool_choice"] == {"type": "any"} and [
        t["name"] for t in body["tools"]] == ["get_weather"],
    "bedrock": lambda body: body["toolConfig"]["toolChoice"] == {"any": {}} and [
        t["toolSpec"]["name"] for t in body["toolConfig"]["tools"]] == ["get_weather"],
}


def test_allowed_tools_is_the_chat_tool_choice(
    client: openai.OpenAI, model: str, mock_upstream: Mock
) -> None:
    marker = new_marker()
    choice: Any = {"type": "allowed_tools", "mode": "required",
                   "tools": [{"type": "function", "name": "get_weather"}]}
    tools: Any = [WEATHER, NEWS]
    sent = ALLOWED_TOOLS_SENT[model.removeprefix("via-")]
    response = client.responses.create(model=model, input=f"weather? mock:capture={marker}", tools=tools,
                                       tool_choice=choice)
    assert response.tool_choice.type == "allowed_tools"  # type: ignore[union-attr]
    assert [item.name for item in response.output if item.type == "function_call"] == ["get_weather"]
    [record] = captured(mock_upstream, marker)
    assert sent(record["body"]), record["body"]


@pytest.mark.parametrize(("choice", "param"), [
    ({"type": "allowed_tools", "mode": "sometimes", "tools": [{"type": "function", "name": "get_weather"}]},
     "tool_choice.mode"),
    ({"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "nope"}]},
     "tool_choice.tools[0].name"),
    ({"type": "allowed_tools", "mode": "auto", "tools": []}, "tool_choice.tools"),
    ({"type": "allowed_tools", "mode": "auto", "tools": [{"type": "mcp", "server_label": "notes"}]},
     "tool_choice.tools[0].type"),
])
def test_bad_allowed_tools_are_named(client: openai.OpenAI, choice: Any, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="via-openai", input="weather?", tools=[WEATHER], tool_choice=choice)
    assert refused.value.body["param"] == param  # type: ignore[index]


# provider type -> the efforts it has no level for (refused, 400 naming reasoning.effort); the others
# reach the upstream (OpenAI: as sent; the others: their own control).
NO_EFFORT_LEVEL: dict[str, set[str]] = {"openai": set(), "gemini": set(), "anthropic": set(),
                                         "bedrock": set()}


@pytest.mark.parametrize("effort", ["none", "minimal", "low", "medium", "high", "xhigh", "max"])
def test_every_sdk_reasoning_effort_is_sent_or_refused_by_name(
    client: openai.OpenAI, model: str, effort: Any, mock_upstream: Mock
) -> None:
    marker = new_marker()
    if effort in NO_EFFORT_LEVEL[model.removeprefix("via-")]:
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.create(model=model, input="hi", reasoning={"effort": effort})
        assert refused.value.body["param"] == "reasoning.effort"  # type: ignore[index]
        assert effort in refused.value.body["message"]  # type: ignore[index]
        return
    response = client.responses.create(model=model, input=f"hi mock:capture={marker}",
                                       reasoning={"effort": effort}, max_output_tokens=20000)
    assert response.reasoning is not None and response.reasoning.effort == effort
    [record] = captured(mock_upstream, marker)
    if model == "via-openai":
        assert record["body"]["reasoning_effort"] == effort
    if model == "via-anthropic" and effort in ("xhigh", "max"):  # Anthropic's levels of the same names
        assert record["body"]["output_config"] == {"effort": effort}
        assert record["body"]["thinking"] == {"type": "adaptive"}
    if model == "via-bedrock" and effort in ("xhigh", "max"):  # Claude's adaptive thinking there too
        fields = record["body"]["additionalModelRequestFields"]
        assert fields["output_config"] == {"effort": effort} and fields["thinking"] == {"type": "adaptive"}
    if model == "via-gemini" and effort in ("xhigh", "max"):  # Gemini's highest: high
        assert record["body"]["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 24576


def test_json_schema(client: openai.OpenAI, model: str) -> None:
    response = client.responses.create(model=model, input="Say hi as JSON", text={"format": SCHEMA})
    assert isinstance(json.loads(response.output_text)["answer"], str)
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "json_schema"


def test_previous_response_id_chains(client: openai.OpenAI, model: str, mock_upstream: Mock) -> None:
    first = client.responses.create(model=model, instructions="Be brief.", input="My name is Ada.")
    marker = new_marker()
    second = client.responses.create(
        model=model, previous_response_id=first.id, input=f"What is my name? mock:capture={marker}"
    )
    assert second.previous_response_id == first.id
    [record] = captured(mock_upstream, marker)
    sent = json.dumps(record["body"])
    # The stored conversation (input and output) went upstream; the old instructions did not.
    assert "My name is Ada." in sent and first.output_text[:30] in sent
    assert "Be brief." not in sent
    fetched = client.responses.retrieve(second.id)
    assert fetched.id == second.id and fetched.output_text == second.output_text


# The Responses API's hints with a chat field of the same meaning: sent to the providers whose
# chat takes them (OpenAI: prompt-cache routing, flex/priority tiers), left out elsewhere (never a 400).
HINTS = {"service_tier": "flex", "prompt_cache_key": "codex-session-1"}


@pytest.mark.parametrize("stream", [False, True])
def test_hints_reach_the_providers_that_take_them(
    client: openai.OpenAI, model: str, stream: bool, mock_upstream: Mock
) -> None:
    marker = new_marker()
    asked: dict[str, Any] = {"model": model, "input": f"hi mock:capture={marker}",
                             "text": {"verbosity": "low"}, **HINTS}
    if stream:
        with client.responses.stream(**asked) as events:
            response = events.get_final_response()
    else:
        response = client.responses.create(**asked)
    assert response.status == "completed" and response.text is not None
    assert response.text.verbosity == "low"
    # Echoed as OpenAI does; the tier the one the upstream reports (OpenAI's mock: the one asked
    # for); a provider without tiers, which the hint did not reach, served it at its standard one.
    assert response.prompt_cache_key == "codex-session-1"
    assert response.service_tier == ("flex" if model == "via-openai" else "default")
    [record] = captured(mock_upstream, marker)
    sent = record["body"]
    assert "switchboard_hints" not in sent
    if model == "via-openai":
        assert {k: sent.get(k) for k in ("verbosity", *HINTS)} == {"verbosity": "low", **HINTS}
    else:  # no such fields in their APIs: the answer is the same without them
        assert not {"verbosity", *HINTS} & set(sent), sent


def test_hints_reach_a_fallback_that_takes_them(client: openai.OpenAI, mock_upstream: Mock) -> None:
    marker = new_marker()
    response = client.responses.create(model="down-anthropic", input=f"hi mock:capture={marker}",
                                       text={"verbosity": "high"}, **HINTS)
    assert response.status == "completed" and response.model == upstream_model("via-openai")
    [record] = captured(mock_upstream, marker)
    assert {k: record["body"].get(k) for k in ("verbosity", *HINTS)} == {"verbosity": "high", **HINTS}
    assert "switchboard_hints" not in record["body"]


@pytest.mark.parametrize("stream", [False, True])
def test_the_response_says_the_tier_the_upstream_served(client: openai.OpenAI, stream: bool) -> None:
    asked: dict[str, Any] = {"model": "via-openai", "input": "hi", "service_tier": "auto",
                             "safety_identifier": "user-hash-1"}
    if stream:
        with client.responses.stream(**asked) as events:
            response = events.get_final_response()
    else:
        response = client.responses.create(**asked)
    assert response.service_tier == "default"  # what OpenAI answers for auto (the mock too)
    assert response.safety_identifier == "user-hash-1" and response.prompt_cache_key is None


# -- streaming -------------------------------------------------------------------------------------


def test_stream_helper(client: openai.OpenAI, model: str) -> None:
    with client.responses.stream(model=model, input="Stream hello to the gateway") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text
    assert "hello to the gateway" in final.output_text
    assert final.status == "completed" and final.usage is not None and final.usage.output_tokens > 0
    assert final.model == upstream_model(model)


def test_streamed_function_call(client: openai.OpenAI, model: str) -> None:
    with client.responses.stream(
        model=model, input="weather in Paris?", tools=[WEATHER], tool_choice="required"
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    [call] = [item for item in final.output if item.type == "function_call"]
    assert call.name == "get_weather" and isinstance(json.loads(call.arguments)["city"], str)
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert [e.arguments for e in done] == [call.arguments]


CLOCK = {"type": "function", "name": "get_time", "description": "Local time in a city",
         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def _calls_streamed(client: openai.OpenAI, directives: str) -> tuple[list[Any], list[Any]]:
    """The events and the final output of a streamed turn making two calls."""
    with client.responses.stream(
        model="via-openai", input=f"weather and time in Paris? mock:parallel_calls=2 {directives}",
        tools=[WEATHER, CLOCK], tool_choice="required",
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    return events, [item for item in final.output if item.type == "function_call"]


def test_interleaved_call_deltas_reach_their_calls_before_they_are_done(client: openai.OpenAI) -> None:
    """Call 0, call 1, then more of call 0's arguments: those were written after call 0's done
    events, which (and the response) held its arguments cut short."""
    events, calls = _calls_streamed(client, "mock:interleaved_calls=1")
    assert [call.name for call in calls] == ["get_weather", "get_time"]
    for index, call in enumerate(calls):
        assert isinstance(json.loads(call.arguments)["city"], str)
        own = [e for e in events if getattr(e, "output_index", None) == index]
        kinds = [e.type for e in own]
        assert kinds[0] == "response.output_item.added" and kinds[-1] == "response.output_item.done"
        assert kinds[-2] == "response.function_call_arguments.done"
        deltas = "".join(e.delta for e in own if e.type == "response.function_call_arguments.delta")
        assert deltas == own[-2].arguments == own[-1].item.arguments == call.arguments
    # As OpenAI streams output items: one at a time, each done before the next is added.
    items = [(e.type, e.output_index) for e in events if e.type.startswith("response.output_item.")]
    assert items == [("response.output_item.added", 0), ("response.output_item.done", 0),
                     ("response.output_item.added", 1), ("response.output_item.done", 1)]


def test_a_call_id_sent_after_the_calls_first_chunk_names_the_call(client: openai.OpenAI) -> None:
    events, calls = _calls_streamed(client, "mock:late_call_id=1")
    added = [e.item for e in events if e.type == "response.output_item.added"]
    for call, first in zip(calls, added, strict=True):
        # The mock's id (call_ + 24 hex digits), not one the gateway made up (48), from the first event on.
        assert len(call.call_id) == len("call_") + 24 and first.call_id == call.call_id
        assert first.name == call.name and isinstance(json.loads(call.arguments)["city"], str)


def test_a_streamed_refusal_is_a_refusal_part(client: openai.OpenAI) -> None:
    """An upstream's refusal (chat ``delta.refusal``, as OpenAI streams a structured output it
    declines) streams as OpenAI's Responses API does: a ``refusal`` part, never output text the
    SDK would parse as the answer; the stream, the stored response and a non-stream answer agree."""

    class Answer(pydantic.BaseModel):
        answer: str

    prompt = "Do the forbidden thing mock:refuse"
    with client.responses.stream(model="via-openai", input=prompt, text_format=Answer) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = _collapsed([e.type for e in events])
    assert kinds == [k.replace("output_text", "refusal") for k in GOLDEN_TEXT]
    [message] = final.output
    assert message.type == "message"
    [part] = message.content
    assert part.type == "refusal" and part.refusal.startswith("I'm sorry")
    assert final.output_text == "" and final.output_parsed is None
    deltas = [e.delta for e in events if e.type == "response.refusal.delta"]
    [done] = [e for e in events if e.type == "response.refusal.done"]
    assert "".join(deltas) == done.refusal == part.refusal
    stored = client.responses.retrieve(final.id)
    assert stored.output[0].model_dump() == message.model_dump(exclude={"content": {0: {"parsed"}}})
    whole = client.responses.create(model="via-openai", input=prompt)
    assert [p.model_dump() for p in whole.output[0].content] == [part.model_dump()]  # type: ignore[union-attr]


GOLDEN_TEXT = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]
GOLDEN_CALL = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.output_item.done",
    "response.completed",
]


def _collapsed(kinds: list[str]) -> list[str]:
    """Runs of the same delta event collapsed to one."""
    out: list[str] = []
    for kind in kinds:
        if not (out and out[-1] == kind and kind.endswith(".delta")):
            out.append(kind)
    return out


def test_golden_event_sequence(gw: Gateway, model: str) -> None:
    """The exact wire sequence: event names match their data's type, sequence numbers count up."""
    for body, golden in (
        ({"input": "hello there"}, GOLDEN_TEXT),
        ({"input": "weather?", "tools": [WEATHER], "tool_choice": "required"}, GOLDEN_CALL),
    ):
        with httpx.stream(
            "POST",
            f"{gw.base_url}/responses",
            headers=ADMIN,
            timeout=30,
            json={"model": model, "stream": True, **body},
        ) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            raw = resp.read().decode()
        events = [block for block in raw.split("\n\n") if block.strip()]
        kinds, numbers = [], []
        for block in events:
            name_line, data_line = block.split("\n")
            data = json.loads(data_line.removeprefix("data: "))
            assert name_line == f"event: {data['type']}"
            kinds.append(data["type"])
            numbers.append(data["sequence_number"])
        assert _collapsed(kinds) == golden
        assert numbers == list(range(len(events)))


# -- state -----------------------------------------------------------------------------------------


def test_stored_responses_belong_to_their_key(gw: Gateway) -> None:
    alice, bob = new_key(gw), new_key(gw)
    a = openai.OpenAI(base_url=gw.base_url, api_key=alice, max_retries=0)
    b = openai.OpenAI(base_url=gw.base_url, api_key=bob, max_retries=0)
    first = a.responses.create(model="via-openai", input="secret plans")
    assert a.responses.retrieve(first.id).id == first.id
    with pytest.raises(openai.NotFoundError):
        b.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        b.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        b.responses.input_items.list(first.id)
    with pytest.raises(openai.BadRequestError) as refused:
        b.responses.create(model="via-openai", input="continue", previous_response_id=first.id)
    assert refused.value.code == "previous_response_not_found"
    items = a.responses.input_items.list(first.id)
    assert [item.type for item in items.data] == ["message"]
    a.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        a.responses.retrieve(first.id)


@pytest.mark.parametrize("own", [False, True])
def test_a_model_the_key_may_not_use_is_refused_before_an_unknown_previous_response(
        gw: Gateway, own: bool) -> None:
    # The conversation was read first: 400 previous_response_not_found, whatever the model.
    resp = httpx.post(f"{gw.url}/admin/v1/keys", json={"models": ["via-gemini"]}, headers=ADMIN, timeout=10)
    assert resp.status_code == 201, resp.text
    client = openai.OpenAI(base_url=gw.base_url, api_key=resp.json()["key"], max_retries=0)
    previous = client.responses.create(model="via-gemini", input="hi").id if own else "resp_nope"
    other = openai.OpenAI(base_url=gw.base_url, api_key=new_key(gw), max_retries=0)
    first = other.responses.create(model="via-openai", input="secret").id  # another caller's
    for given in (first, "resp_nope"):
        with pytest.raises(openai.PermissionDeniedError) as refused:
            client.responses.create(model="via-openai", input="go on", previous_response_id=given)
        assert refused.value.code == "model_not_allowed"
        with pytest.raises(openai.PermissionDeniedError) as refused:
            client.responses.input_tokens.count(model="via-openai", input="go on", previous_response_id=given)
        assert refused.value.code == "model_not_allowed"
    # A model it may use: the id is still unknown to it.
    with pytest.raises(openai.BadRequestError) as unknown:
        client.responses.create(model="via-gemini", input="go on", previous_response_id=first)
    assert unknown.value.code == "previous_response_not_found"
    # Its own response, a model it may not use: refused by the model, as ever.
    with pytest.raises(openai.PermissionDeniedError):
        client.responses.create(model="via-openai", input="go on", previous_response_id=previous)


def test_store_false_is_not_kept(client: openai.OpenAI) -> None:
    response = client.responses.create(model="via-openai", input="forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="via-openai", input="again", previous_response_id=response.id)


def test_input_items_pagination(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="via-anthropic",
        input=[{"role": "user", "content": f"message {i}"} for i in range(5)],
    )
    page = client.responses.input_items.list(response.id, limit=2, order="asc")
    texts = [item.content[0].text for item in page.data]  # type: ignore[union-attr]
    assert texts == ["message 0", "message 1"]
    assert page.has_more is True and page.first_id == page.data[0].id and page.last_id == page.data[1].id
    rest = client.responses.input_items.list(response.id, limit=10, order="asc", after=page.last_id)
    assert [item.content[0].text for item in rest.data] == ["message 2", "message 3", "message 4"]  # type: ignore[union-attr]
    assert rest.has_more is False
    newest = client.responses.input_items.list(response.id, limit=1)
    assert newest.data[0].content[0].text == "message 4"  # type: ignore[union-attr]
    # '²' is a digit to str.isdigit, not to int(): it was a 500. So were more than 4300 digits.
    for limit in ("\u00b2", "\u0665", "0", "101", "1e1", "9" * 4400):
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.input_items.list(response.id, extra_query={"limit": limit})
        assert (refused.value.code, refused.value.param) == ("invalid_value", "limit")


def test_stream_is_stored(client: openai.OpenAI) -> None:
    with client.responses.stream(model="via-gemini", input="stream and keep") as stream:
        final = stream.get_final_response()
    follow = client.responses.create(model="via-bedrock", previous_response_id=final.id, input="and then?")
    assert follow.status == "completed"
    assert client.responses.retrieve(final.id).output_text == final.output_text


# -- bad input -------------------------------------------------------------------------------------

BAD: list[tuple[str, Any, int, str]] = [
    ("no model", {"input": "x"}, 400, "model"),
    ("no input", {"model": "via-openai"}, 400, "input"),
    ("input wrong type", {"model": "via-openai", "input": 3}, 400, "input"),
    ("empty input", {"model": "via-openai", "input": [], "instructions": "x"}, 400, "input"),
    ("unknown field", {"model": "via-openai", "input": "x", "frobnicate": 1}, 400, "frobnicate"),
    ("temperature type", {"model": "via-openai", "input": "x", "temperature": "hot"}, 400, "temperature"),
    ("safety_identifier type", {"model": "via-openai", "input": "x", "safety_identifier": 5}, 400,
     "safety_identifier"),
    ("user type beside a safety_identifier", {"model": "via-openai", "input": "x", "user": 5,
                                              "safety_identifier": "user-hash-1"}, 400, "user"),
    ("bad role", {"model": "via-openai", "input": [{"role": "robot", "content": "x"}]}, 400, "input[0].role"),
    (
        "built-in tool",
        {"model": "via-openai", "input": "x", "tools": [{"type": "web_search"}]},
        400,
        "tools[0].type",
    ),
    (
        "file search",
        {"model": "via-anthropic", "input": "x", "tools": [{"type": "file_search"}]},
        400,
        "tools[0].type",
    ),
    ("background", {"model": "via-openai", "input": "x", "background": True}, 400, "background"),
    ("store type", {"model": "via-openai", "input": "x", "store": "yes"}, 400, "store"),
    (
        "unknown previous",
        {"model": "via-openai", "input": "x", "previous_response_id": "resp_nope"},
        400,
        "previous_response_id",
    ),
    (
        "max_output_tokens",
        {"model": "via-openai", "input": "x", "max_output_tokens": 1},
        400,
        "max_output_tokens",
    ),
    (
        "text.format",
        {"model": "via-openai", "input": "x", "text": {"format": {"type": "yaml"}}},
        400,
        "text.format.type",
    ),
    ("unknown model", {"model": "nope", "input": "x"}, 404, ""),
    (
        # input_items pages by item id: a repeated one made every later page its first again.
        "duplicate item id",
        {"model": "via-openai",
         "input": [{"type": "message", "id": "msg_1", "role": "user", "content": text} for text in "ab"]},
        400,
        "input[1].id",
    ),
]


@pytest.mark.parametrize(("body", "status", "param"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input(gw: Gateway, body: Any, status: int, param: str) -> None:
    resp = httpx.post(f"{gw.base_url}/responses", json=body, headers=ADMIN, timeout=10)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["message"] and error["type"]
    if param:
        assert error["param"] == param


@pytest.mark.parametrize(("body", "param"), [
    ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id"),
    ({"input": [{"type": "function_call", "call_id": "c1", "name": "f"}]}, "input[0].arguments"),
    ({"input": [{"type": "function_call_output", "call_id": "c1"}]}, "input[0].output"),
    ({"input": [{"role": "user", "content": [{"type": "input_text"}]}]}, "input[0].content[0].text"),
    ({"input": "x", "text": {"format": {"type": "json_schema", "schema": {"type": "object"}}}},
     "text.format.name"),
    ({"input": "x", "tools": [WEATHER], "tool_choice": {"type": "function"}}, "tool_choice.name"),
])
def test_a_missing_field_is_missing_not_of_the_wrong_type(gw: Gateway, body: Any, param: str) -> None:
    # A required field left out was answered invalid_type, "expected a string", as if sent wrong.
    resp = httpx.post(f"{gw.base_url}/responses", json={"model": "via-openai", **body}, headers=ADMIN,
                      timeout=10)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == {
        "message": f"Missing required parameter: '{param}'.", "type": "invalid_request_error",
        "param": param, "code": "missing_required_parameter",
    }


@pytest.mark.parametrize(("body", "param", "expected"), [
    ({"input": "x", "text": {"format": {**SCHEMA, "strict": "yes"}}}, "text.format.strict", "a boolean"),
    ({"input": "x", "text": {"format": {**SCHEMA, "description": 5}}}, "text.format.description", "a string"),
    ({"input": [{"role": "user", "content": [
        {"type": "input_text", "text": "x", "prompt_cache_breakpoint": "x"}]}]},
     "input[0].content[0].prompt_cache_breakpoint", "an object"),
    ({"input": [{"role": "user", "content": [
        {"type": "input_image", "image_url": PIXEL, "prompt_cache_breakpoint": True}]}]},
     "input[0].content[0].prompt_cache_breakpoint", "an object"),
    ({"input": [{"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1",
                 "output": [{"type": "input_text", "text": "x", "prompt_cache_breakpoint": 1}]}]},
     "input[1].output[0].prompt_cache_breakpoint", "an object"),
    ({"input": "x", "stream": True, "stream_options": {"include_obfuscation": "no"}},
     "stream_options.include_obfuscation", "a boolean"),
])
def test_a_field_sent_on_unchecked_is_of_the_wrong_type(
        gw: Gateway, body: Any, param: str, expected: str) -> None:
    # They went upstream as sent: answered with the upstream's own error, or read its own way.
    resp = httpx.post(f"{gw.base_url}/responses", json={"model": "via-openai", **body}, headers=ADMIN,
                      timeout=10)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == {
        "message": f"Invalid type for '{param}': expected {expected}.", "type": "invalid_request_error",
        "param": param, "code": "invalid_type",
    }


def test_a_safety_identifier_over_openais_limit_is_refused(client: openai.OpenAI, gw: Gateway) -> None:
    """It went upstream as sent: a translated deployment passed it on as ``user``, OpenAI refuses it."""
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="via-anthropic", input="x", safety_identifier="s" * 129)
    assert refused.value.status_code == 400
    assert refused.value.body == {
        "message": "Invalid 'safety_identifier': string too long. Expected a string with maximum length "
                   "128, but got a string with length 129 instead.",
        "type": "invalid_request_error", "param": "safety_identifier", "code": "string_above_max_length",
    }
    reply = client.responses.create(model="via-anthropic", input="x", safety_identifier="s" * 128,
                                    user="u" * 200)
    assert reply.status == "completed" and reply.safety_identifier == "s" * 128


@pytest.mark.parametrize("value", [True, "100", 100.0, 123456789012345678901234567890])
def test_a_max_output_tokens_that_is_no_integer_is_invalid_type(gw: Gateway, value: Any) -> None:
    """Not "integer below minimum value": a boolean, a string, a float (as 100.0, and as the
    parser reads an integer past 64 bits) is of the wrong type."""
    body = {"model": "via-openai", "input": "x", "max_output_tokens": value}
    resp = httpx.post(f"{gw.base_url}/responses", json=body, headers=ADMIN, timeout=10)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == {
        "message": "Invalid type for 'max_output_tokens': expected an integer.",
        "type": "invalid_request_error", "param": "max_output_tokens", "code": "invalid_type",
    }


def test_built_in_tool_is_named(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(
            model="via-gemini", input="x", tools=[{"type": "code_interpreter", "container": {"type": "auto"}}]
        )
    assert "code_interpreter" in refused.value.message


@pytest.mark.parametrize("content", [b"{nope", b"[1, 2]", b""])
def test_malformed_json(gw: Gateway, content: bytes) -> None:
    resp = httpx.post(
        f"{gw.base_url}/responses",
        content=content,
        timeout=10,
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid_json"


def test_oversized_input(gw: Gateway) -> None:
    resp = httpx.post(
        f"{gw.base_url}/responses",
        headers=ADMIN,
        timeout=10,
        json={"model": "via-openai", "input": "x" * (MAX_BODY + 1)},
    )
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "request_too_large"
    assert httpx.get(f"{gw.url}/health/live", timeout=5).status_code == 200


def test_refused_without_a_key(gw: Gateway) -> None:
    resp = httpx.post(f"{gw.base_url}/responses", json={"model": "via-openai", "input": "x"}, timeout=10)
    assert resp.status_code == 401
    assert httpx.get(f"{gw.base_url}/responses/resp_x", timeout=10).status_code == 401


def test_unknown_response_id(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_does_not_exist")


def test_a_stored_response_cannot_be_cancelled(gw: Gateway) -> None:
    """Only a background response can be cancelled, and the gateway runs none: 400 for the
    caller's own response (left as it was), 404 for another key's or an unknown one, as GET."""
    alice = openai.OpenAI(base_url=gw.base_url, api_key=new_key(gw), max_retries=0)
    bob = openai.OpenAI(base_url=gw.base_url, api_key=new_key(gw), max_retries=0)
    first = alice.responses.create(model="via-openai", input="keep me")
    with pytest.raises(openai.BadRequestError) as refused:
        alice.responses.cancel(first.id)
    assert refused.value.type == "invalid_request_error" and "background" in refused.value.message
    assert alice.responses.retrieve(first.id).status == "completed"
    for client, response_id in ((bob, first.id), (alice, "resp_" + "0" * 48)):
        with pytest.raises(openai.NotFoundError) as missing:
            client.responses.cancel(response_id)
        assert missing.value.code == "response_not_found"


def test_cancel_is_a_post(gw: Gateway) -> None:
    auth = {"authorization": f"Bearer {MASTER_KEY}"}
    resp = httpx.get(f"{gw.base_url}/responses/resp_x/cancel", headers=auth, timeout=10)
    assert resp.status_code == 405 and resp.headers["allow"] == "POST"
    resp = httpx.post(f"{gw.url}/responses/resp_x/cancel", headers=auth, timeout=10)  # without /v1
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "response_not_found"
    assert httpx.post(f"{gw.base_url}/responses/resp_x/cancel", timeout=10).status_code == 401


def test_a_stored_response_is_not_streamed_again(client: openai.OpenAI) -> None:
    """retrieve(stream=True) re-streams a background response on OpenAI; the gateway runs none, so
    it is refused by name rather than answered with JSON the SDK reads as an empty stream."""
    response = client.responses.create(model="via-openai", input="Say hello")
    with pytest.raises(openai.BadRequestError) as refused:
        list(client.responses.retrieve(response.id, stream=True))
    assert refused.value.param == "stream" and refused.value.code == "unsupported_parameter"
    with pytest.raises(openai.NotFoundError):  # someone else's, or none: not found first
        client.responses.retrieve("resp_does_not_exist", stream=True)
    assert client.responses.retrieve(response.id, stream=False).output_text == response.output_text


# -- upstream failures -----------------------------------------------------------------------------


def test_upstream_error_before_stream_starts(client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model=model, input="mock:status=429", stream=True)


def test_upstream_failure_mid_stream(client: openai.OpenAI, model: str) -> None:
    stream = client.responses.create(
        model=model, input="a longer answer please mock:fail_after=4", stream=True
    )
    events = list(stream)
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.failed" and "response.completed" not in kinds
    failed = events[-1].response  # type: ignore[union-attr]
    assert failed.status == "failed" and failed.error is not None and failed.error.message
    assert [event.sequence_number for event in events] == list(range(len(events)))
    # One of the codes a failed response may have (it was the gateway's upstream_error, which
    # the SDK's ResponseError does not allow), the gateway's own code kept in the message.
    assert failed.error.code in typing.get_args(ResponseError.model_fields["code"].annotation)
    assert failed.error.code == "server_error" and failed.error.message.startswith("upstream_")
    ResponseError.model_validate(failed.error.model_dump())


def test_a_stream_that_failed_is_stored_and_can_be_continued(
    client: openai.OpenAI, model: str, mock_upstream: Mock
) -> None:
    # As OpenAI keeps it: GET answers the response as response.failed carried it, status failed
    # and its error; a later turn continues it like an incomplete one (its input and its output).
    events = list(
        client.responses.create(model=model, input="a longer answer please mock:fail_after=4", stream=True)
    )
    failed = events[-1].response  # type: ignore[union-attr]
    assert events[-1].type == "response.failed" and failed.output_text
    stored = client.responses.retrieve(failed.id)
    assert stored.status == "failed" and stored.error == failed.error
    assert stored.output_text == failed.output_text
    [item] = client.responses.input_items.list(failed.id).data
    assert item.content[0].text == "a longer answer please mock:fail_after=4"  # type: ignore[union-attr]
    marker = new_marker()
    follow = client.responses.create(
        model=model, previous_response_id=failed.id, input=f"go on mock:capture={marker}"
    )
    assert follow.status == "completed"
    [record] = captured(mock_upstream, marker)
    sent = json.dumps(record["body"])
    assert "a longer answer please" in sent and failed.output_text.strip() in sent


# -- native deployments ----------------------------------------------------------------------------


@pytest.fixture(params=["native-openai", "native-azure"])
def native(request: pytest.FixtureRequest) -> str:
    return str(request.param)


NATIVE_PATHS = {"native-openai": "/v1/responses", "native-azure": "/openai/responses"}


def test_native_passes_the_request_as_is(
    client: openai.OpenAI, native: str, mock_upstream: Mock, started: tuple[Gateway, str]
) -> None:
    marker = new_marker()
    response = client.responses.create(
        model=native,
        input=f"Say hello natively mock:capture={marker}",
        tools=[{"type": "web_search_preview"}],  # refused when translated; passed as is here
        include=["reasoning.encrypted_content"],
        metadata={"k": "v"},
    )
    assert response.id.startswith("resp_") and "hello natively" in response.output_text
    assert response.usage is not None and response.usage.input_tokens > 0
    [record] = captured(mock_upstream, marker)
    assert record["path"] == NATIVE_PATHS[native]
    sent = record["body"]
    assert sent["tools"] == [{"type": "web_search_preview"}] and sent["store"] is False
    assert sent["model"] == ("gpt-4o-mini" if native == "native-openai" else "my-deployment")
    # The usage was recorded like any other call's.
    rid = new_marker()
    client.responses.create(model=native, input="count me", extra_headers={"x-request-id": rid})
    record = wait_for(started[1], {rid})[rid]
    assert record.prompt_tokens > 0 and record.completion_tokens > 0


def test_native_chains_with_translated(client: openai.OpenAI, native: str, mock_upstream: Mock) -> None:
    first = client.responses.create(model="via-anthropic", input="My name is Ada.")
    marker = new_marker()
    second = client.responses.create(
        model=native, previous_response_id=first.id, input=f"What is my name? mock:capture={marker}"
    )
    [record] = captured(mock_upstream, marker)
    sent = record["body"]
    assert "previous_response_id" not in sent
    history = sent["input"]
    assert history[0] == {"type": "message", "role": "user", "content": "My name is Ada."}
    assert history[1]["role"] == "assistant" and history[1]["content"][0]["text"] == first.output_text
    assert history[2]["content"].startswith("What is my name?")
    third = client.responses.create(model="via-gemini", previous_response_id=second.id, input="And again?")
    assert third.status == "completed"
    assert client.responses.retrieve(second.id).output_text == second.output_text


def test_native_stream(client: openai.OpenAI, native: str) -> None:
    with client.responses.stream(
        model=native, input="Stream natively", tools=[WEATHER], tool_choice="none"
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert final.id.startswith("resp_") and "Stream natively" in final.output_text
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[0].response.id == final.id  # type: ignore[union-attr]
    assert final.usage is not None and final.usage.output_tokens > 0
    assert client.responses.retrieve(final.id).output_text == final.output_text


def test_native_stream_failing_before_any_output_is_an_error_status(
    client: openai.OpenAI, native: str
) -> None:
    # response.created and response.in_progress, then the upstream's error event: nothing of the
    # answer was sent, so the client gets the failure as an HTTP status (retried and fallen back
    # like one), not as a 200 stream that only fails.
    with pytest.raises(openai.APIStatusError) as exc:
        client.responses.create(model=native, input="Stream natively mock:fail_after=2", stream=True)
    assert exc.value.status_code == 502 and "failed mid-stream" in exc.value.message


@pytest.mark.parametrize(("code", "status"), [("rate_limit_exceeded", 429), ("invalid_prompt", 400),
                                             ("server_error", 502)])
def test_native_stream_error_event_is_answered_by_its_code(
    client: openai.OpenAI, native: str, code: str, status: int
) -> None:
    # OpenAI's error event carries a code, as a failed response's error does: a rate limit is the
    # upstream's 429, a refused prompt the caller's 400, anything else a 502.
    with pytest.raises(openai.APIStatusError) as exc:
        client.responses.create(model=native, input=f"Stream mock:fail_after=2 mock:error_code={code}",
                                stream=True)
    assert exc.value.status_code == status and "failed mid-stream" in exc.value.message


def test_native_function_call_round_trip(client: openai.OpenAI, native: str) -> None:
    first = client.responses.create(model=native, input="weather in Paris?", tools=[WEATHER])
    [call] = [item for item in first.output if item.type == "function_call"]
    second = client.responses.create(
        model=native,
        previous_response_id=first.id,
        tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18 degrees"}],
    )
    assert "18 degrees" in second.output_text


def test_background_mode_is_refused_on_native_deployments_too(
    client: openai.OpenAI, native: str, mock_upstream: Mock
) -> None:
    # The upstream would get store: false (the gateway keeps the state), and the gateway has no
    # queued response to poll or cancel: refused before anything is sent.
    marker = new_marker()
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=native, input=f"later mock:capture={marker}", background=True)
    assert refused.value.param == "background" and refused.value.code == "unsupported_parameter"
    assert captured(mock_upstream, marker, timeout=0.5) == []
    # The server keeps serving, and background: false is the default.
    assert "now" in client.responses.create(model=native, input="now", background=False).output_text


def test_native_only_features_are_refused_when_translated(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="via-openai", input="x", tools=[{"type": "web_search_preview"}])
    assert "web_search_preview" in refused.value.message


# Fields of the current SDK the chat form has no room for: a 400 naming them when translated, the
# request as sent to a native deployment.
NATIVE_FIELDS: dict[str, Any] = {
    "moderation": {"model": "omni-moderation-latest", "policy": {"output": {"mode": "block"}}},
    "prompt_cache_options": {"mode": "explicit", "ttl": "30m"},
    "image": {"context_compression": "disabled"},
}


@pytest.mark.parametrize("field", sorted(NATIVE_FIELDS))
def test_new_sdk_fields_are_refused_by_name_when_translated(
    client: openai.OpenAI, mock_upstream: Mock, field: str
) -> None:
    marker = new_marker()
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="via-gemini", input=f"x mock:capture={marker}",
                                **{field: NATIVE_FIELDS[field]})
    assert refused.value.param == field and refused.value.code == "unsupported_parameter"
    assert captured(mock_upstream, marker, timeout=0.5) == []


def test_new_sdk_fields_reach_a_native_deployment_as_sent(
    client: openai.OpenAI, native: str, mock_upstream: Mock
) -> None:
    marker = new_marker()
    client.responses.create(model=native, input=f"x mock:capture={marker}", **NATIVE_FIELDS)
    [record] = captured(mock_upstream, marker)
    assert {k: record["body"][k] for k in NATIVE_FIELDS} == NATIVE_FIELDS


# Keys inside input items and function tools the chat form has no room for (a function's
# namespace, programmatic callers, deferred tools): a 400 naming their path when translated, as
# sent to a native deployment.
_NAMESPACED_CALL = {"type": "function_call", "call_id": "call_ns", "name": "lookup", "arguments": "{}",
                    "namespace": "crm"}
NESTED_REFUSALS: dict[str, dict[str, Any]] = {
    "input[0].namespace": {"input": [_NAMESPACED_CALL,
                                     {"type": "function_call_output", "call_id": "call_ns", "output": "ok"}]},
    "tools[0].defer_loading": {"input": "x", "tools": [{**WEATHER, "defer_loading": True}]},
    "reasoning.context": {"input": "x", "reasoning": {"context": "all_turns"}},
}


@pytest.mark.parametrize("param", sorted(NESTED_REFUSALS))
def test_nested_keys_without_a_chat_counterpart_are_refused_by_path_when_translated(
    client: openai.OpenAI, mock_upstream: Mock, param: str
) -> None:
    marker = new_marker()
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="via-anthropic", instructions=f"mock:capture={marker}",
                                **NESTED_REFUSALS[param])
    assert refused.value.param == param and refused.value.code == "unsupported_parameter"
    assert captured(mock_upstream, marker, timeout=0.5) == []


@pytest.mark.parametrize("param", sorted(NESTED_REFUSALS))
def test_nested_keys_reach_a_native_deployment_as_sent(
    client: openai.OpenAI, native: str, mock_upstream: Mock, param: str
) -> None:
    marker = new_marker()
    body = NESTED_REFUSALS[param]
    client.responses.create(model=native, instructions=f"mock:capture={marker}", **body)
    [record] = captured(mock_upstream, marker)
    sent = record["body"]
    for name in body:
        assert sent[name] == body[name]


def test_prompt_cache_breakpoints_and_original_detail_reach_the_chat_parts(
    client: openai.OpenAI, mock_upstream: Mock
) -> None:
    marker, mark = new_marker(), {"mode": "explicit", "ttl": "30m"}
    client.responses.create(model="via-openai", input=[{"role": "user", "content": [
        {"type": "input_text", "text": f"long prefix mock:capture={marker}", "prompt_cache_breakpoint": mark},
        {"type": "input_image", "image_url": PIXEL, "detail": "original"},
    ]}])
    [record] = captured(mock_upstream, marker)
    text, image = record["body"]["messages"][0]["content"]
    assert text["prompt_cache_breakpoint"] == mark
    assert image["image_url"]["detail"] == "original"


# -- Codex CLI -------------------------------------------------------------------------------------
# The request shapes Codex CLI sends with wire_api = "responses" (openai/codex, codex-rs: the
# ResponsesApiRequest it serializes, its headers, and the items it replays each turn with
# store: false), replayed here; docs/api-responses.md has the config that points Codex here.

CODEX_HEADERS = {
    "openai-beta": "responses=experimental",
    "originator": "codex_cli_rs",
    "session_id": "0198f0aa-1111-7222-8333-944445555666",
    "accept": "text/event-stream",
    "user-agent": "codex_cli_rs/0.40.0 (Linux; x86_64)",
}
CODEX_TOOLS = [
    {
        "type": "function",
        "name": "shell",
        "description": "Runs a shell command and returns its output.",
        "strict": False,
        "parameters": {
            "type": "object",
            "properties": {
                "command": {"type": "array", "items": {"type": "string"}},
                "workdir": {"type": "string"},
                "timeout_ms": {"type": "number"},
            },
            "required": ["command"],
            "additionalProperties": False,
        },
    },
    {
        "type": "function",
        "name": "update_plan",
        "description": "Updates the task plan.",
        "strict": False,
        "parameters": {
            "type": "object",
            "properties": {"plan": {"type": "array", "items": {"type": "object"}}},
            "required": ["plan"],
            "additionalProperties": False,
        },
    },
]
CODEX_CONTEXT = [
    {
        "type": "message",
        "role": "developer",
        "content": [{"type": "input_text", "text": "<permissions instructions>sandbox: workspace-write"}],
    },
    {
        "type": "message",
        "role": "user",
        "content": [
            {"type": "input_text", "text": "<environment_context><cwd>/src</cwd></environment_context>"}
        ],
    },
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list the files here"}]},
]


# Providers whose adapters have no reasoning_effort equivalent refuse it (400 naming it) unless
# the model entry sets drop_params (test_codex_reasoning_is_refused_clearly...); every provider
# of this module has one (Anthropic and Claude on Bedrock: a thinking budget).
NO_REASONING: set[str] = set()


def _codex_body(model: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    body = {
        "model": model,
        "instructions": "You are Codex, a coding agent running in the terminal.",
        "input": items,
        "tools": CODEX_TOOLS,
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "0198f0aa-1111-7222-8333-944445555666",
        "client_metadata": {"x-codex-installation-id": "test"},
    }
    if model in NO_REASONING:
        del body["reasoning"], body["include"]
    return body


def _codex_turn(gw: Gateway, key: str, model: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    body = _codex_body(model, items)
    headers = {**CODEX_HEADERS, "authorization": f"Bearer {key}"}
    with httpx.stream("POST", f"{gw.base_url}/responses", json=body, headers=headers, timeout=30) as resp:
        assert resp.status_code == 200, resp.read()
        raw = resp.read().decode()
    return [json.loads(block.split("\ndata: ", 1)[1]) for block in raw.split("\n\n") if block.strip()]


@pytest.mark.parametrize(
    "codex_model", ["via-anthropic", "via-gemini", "via-bedrock", "via-openai", "native-openai"]
)
def test_codex_cli_session(gw: Gateway, codex_model: str) -> None:
    key = new_key(gw)  # Codex reads it from the env_key variable, e.g. SWITCHBOARD_API_KEY
    events = _codex_turn(gw, key, codex_model, CODEX_CONTEXT)
    # What Codex reads: output_item.done items, then response.completed with the usage.
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    [call] = [item for item in done if item["type"] == "function_call"]
    assert call["name"] == "shell" and isinstance(json.loads(call["arguments"])["command"], list)
    completed = events[-1]
    assert completed["type"] == "response.completed"
    assert completed["response"]["usage"]["input_tokens"] > 0
    # The next turn replays everything (store is false): a reasoning item with encrypted content
    # from an earlier OpenAI turn, the call and its output.
    replay = [
        *CODEX_CONTEXT,
        {"type": "reasoning", "id": "rs_1", "summary": [], "content": None, "encrypted_content": "gAAAAB..."},
        {
            "type": "function_call",
            "id": call["id"],
            "call_id": call["call_id"],
            "name": "shell",
            "arguments": call["arguments"],
        },
        {"type": "function_call_output", "call_id": call["call_id"], "output": "README.md\nsrc"},
    ]
    if codex_model == "native-openai":
        replay.pop(len(CODEX_CONTEXT))  # a made-up encrypted_content is OpenAI's to refuse, not the mock's
    events = _codex_turn(gw, key, codex_model, replay)
    texts = [e["text"] for e in events if e["type"] == "response.output_text.done"]
    assert texts and "README.md" in texts[0]
    assert events[-1]["type"] == "response.completed"


def test_codex_gets_one_call_per_turn_from_a_model_that_makes_several(gw: Gateway) -> None:
    # Gemini has no parallel control: with Codex's parallel_tool_calls false the gateway keeps the
    # first of the calls the model made (mock:parallel_calls=2 makes it call both tools).
    ask = {"type": "message", "role": "user",
           "content": [{"type": "input_text", "text": "list the files here mock:parallel_calls=2"}]}
    events = _codex_turn(gw, new_key(gw), "via-gemini", [*CODEX_CONTEXT[:-1], ask])
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [item["name"] for item in done if item["type"] == "function_call"] == ["shell"]
    completed = events[-1]["response"]
    assert [item["name"] for item in completed["output"] if item["type"] == "function_call"] == ["shell"]


def test_codex_reasoning_is_refused_clearly_where_there_is_no_equivalent(gw: Gateway) -> None:
    body = {**_codex_body("via-openai", CODEX_CONTEXT), "model": "via-llama"}
    resp = httpx.post(f"{gw.base_url}/responses", json=body, headers=ADMIN, timeout=10)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "reasoning.effort"
    # A Responses body has no drop_params (the unknown parameter's 400): the advice is the model
    # entry's key only.
    assert resp.json()["error"]["message"].endswith(
        "set drop_params: true on the model in the gateway's config (this API's requests have no "
        "drop_params field), to drop it instead"
    ), resp.text
    resp = httpx.post(f"{gw.base_url}/responses", json={**body, "drop_params": True}, headers=ADMIN,
                      timeout=10)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "drop_params", resp.text


def test_a_tool_name_the_provider_refuses_is_named_as_sent(gw: Gateway) -> None:
    # Converse takes no dots in tool names: the refusal names the Responses field (function tools
    # are flat here), in param and message alike.
    tool = {"type": "function", "name": "github.create_issue", "parameters": {"type": "object"}}
    resp = httpx.post(f"{gw.base_url}/responses", headers=ADMIN, timeout=10,
                      json={"model": "via-bedrock", "input": "x", "tools": [tool]})
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "tools[0].name"
    assert "'tools[0].name'" in resp.json()["error"]["message"]


@pytest.mark.parametrize(("model", "given", "param"), [
    # An answer to no call: messages[2] (the instructions first), the input's second item.
    ("via-anthropic", [{"role": "user", "content": "x"},
                       {"type": "function_call_output", "call_id": "nope", "output": "r"}],
     "input[1].call_id"),
    # Arguments Gemini cannot read, of the second call of an assistant message joining two items.
    ("via-gemini", [{"role": "user", "content": "x"},
                    {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
                    {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": "[1]"},
                    {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                    {"type": "function_call_output", "call_id": "c2", "output": "rain"}],
     "input[2].arguments"),
    # An image in a developer message (Converse takes only text in the system prompt).
    ("via-bedrock", [{"role": "developer", "content": [{"type": "input_text", "text": "a"},
                                                       {"type": "input_image", "image_url": PIXEL}]},
                     {"role": "user", "content": "x"}], "input[0].content[1].type"),
])
def test_an_adapters_refusal_of_an_input_item_names_the_item(
        gw: Gateway, model: str, given: list[Any], param: str) -> None:
    """It named the chat message the adapter read (messages[k]...), k counting the instructions."""
    resp = httpx.post(f"{gw.base_url}/responses", headers=ADMIN, timeout=10,
                      json={"model": model, "instructions": "Be brief.", "input": given, "tools": [WEATHER]})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] == param, error
    assert "messages[" not in error["message"]


def test_codex_built_in_tools_are_refused_when_translated(gw: Gateway) -> None:
    for tool in (
        {"type": "local_shell"},
        {"type": "web_search"},
        {"type": "custom", "name": "apply_patch", "format": {"type": "grammar"}},
    ):
        resp = httpx.post(
            f"{gw.base_url}/responses",
            headers=ADMIN,
            timeout=10,
            json={"model": "via-anthropic", "input": "x", "stream": True, "tools": [tool]},
        )
        assert resp.status_code == 400
        assert resp.json()["error"]["param"] == "tools[0].type"
        assert tool["type"] in resp.json()["error"]["message"]


def test_native_image_and_json_schema(client: openai.OpenAI, native: str, mock_upstream: Mock) -> None:
    marker = new_marker()
    response = client.responses.create(
        model=native,
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": f"Describe as JSON mock:capture={marker}"},
                    {"type": "input_image", "image_url": PIXEL, "detail": "low"},
                ],
            }
        ],
        text={"format": SCHEMA},
    )
    assert isinstance(json.loads(response.output_text)["answer"], str)
    [record] = captured(mock_upstream, marker)
    assert record["body"]["input"][0]["content"][1] == {
        "type": "input_image",
        "image_url": PIXEL,
        "detail": "low",
    }
    assert record["body"]["text"] == {"format": SCHEMA}


def test_paths_without_v1(gw: Gateway) -> None:
    created = httpx.post(
        f"{gw.url}/responses", headers=ADMIN, timeout=10, json={"model": "via-openai", "input": "hi"}
    )
    assert created.status_code == 200
    rid = created.json()["id"]
    assert httpx.get(f"{gw.url}/responses/{rid}", headers=ADMIN, timeout=10).json()["id"] == rid
    listed = httpx.get(f"{gw.url}/responses/{rid}/input_items", headers=ADMIN, timeout=10).json()
    assert listed["object"] == "list" and listed["first_id"] == listed["data"][0]["id"]
    assert httpx.get(f"{gw.url}/v1/responses/{rid}/nothing", headers=ADMIN, timeout=10).status_code == 404
    bad = httpx.get(
        f"{gw.url}/v1/responses/{rid}/input_items", params={"limit": "0"}, headers=ADMIN, timeout=10
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"
    deleted = httpx.delete(f"{gw.url}/responses/{rid}", headers=ADMIN, timeout=10).json()
    assert deleted == {"id": rid, "object": "response", "deleted": True}


def test_native_upstream_failures(client: openai.OpenAI, native: str) -> None:
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model=native, input="mock:status=429")
    events = list(
        client.responses.create(model=native, input="a longer answer mock:fail_after=4", stream=True)
    )
    assert [e.type for e in events][-1] == "response.failed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    failed = events[-1].response  # type: ignore[union-attr]
    assert failed.error is not None
    stored = client.responses.retrieve(failed.id)
    assert stored.status == "failed" and stored.error == failed.error


def test_a_call_cut_by_a_failed_stream_is_not_continued_as_made(client: openai.OpenAI) -> None:
    # A stream that failed inside a function call's arguments stored the call as it stood (its
    # arguments cut, not JSON, status incomplete). Continuing that response put the cut call in
    # the conversation: a deployment that reads the arguments refused every later turn.
    events = list(client.responses.create(
        model="via-openai", input="weather? mock:tool_call=get_weather mock:fail_after=2", tools=[WEATHER],
        stream=True,
    ))
    failed = events[-1].response  # type: ignore[union-attr]
    assert events[-1].type == "response.failed"
    [cut] = [item for item in failed.output if item.type == "function_call"]
    assert cut.status == "incomplete"
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut.arguments)  # type: ignore[union-attr,arg-type]
    follow = client.responses.create(
        model="via-anthropic", previous_response_id=failed.id, input="just say hi"
    )
    assert follow.status == "completed" and follow.output_text
    # The agent reports the cut call's arguments unreadable: that output is left out with its
    # call (a tool result without its call is refused upstream).
    told = client.responses.create(model="via-anthropic", previous_response_id=failed.id, input=[
        {"type": "function_call_output", "call_id": cut.call_id, "output": "error: arguments cut"},  # type: ignore[union-attr]
        {"role": "user", "content": "try again"}])
    assert told.status == "completed" and told.output_text


def test_the_output_of_a_cut_call_is_left_out_on_a_native_deployment_too(
    client: openai.OpenAI, native: str
) -> None:
    # A native deployment is sent the client's own input: the output answering a call the
    # previous response was cut in reached it without its call (the stored conversation leaves
    # the call out), which OpenAI refuses ("No tool call found for function call output").
    events = list(client.responses.create(
        model="via-openai", input="weather? mock:tool_call=get_weather mock:fail_after=2", tools=[WEATHER],
        stream=True,
    ))
    failed = events[-1].response  # type: ignore[union-attr]
    [cut] = [item for item in failed.output if item.type == "function_call"]
    assert cut.status == "incomplete"  # type: ignore[union-attr]
    told = client.responses.create(model=native, previous_response_id=failed.id, input=[
        {"type": "function_call_output", "call_id": cut.call_id, "output": "error: arguments cut"},  # type: ignore[union-attr]
        {"role": "user", "content": "try again"}])
    assert told.status == "completed" and told.output_text
    # What the client sent is still what this turn's input items list.
    listed = client.responses.input_items.list(told.id, order="asc")
    assert [item.type for item in listed.data] == ["function_call_output", "message"]


def test_a_tool_output_in_parts_is_continued_on_a_native_deployment(
    client: openai.OpenAI, native: str, mock_upstream: Mock
) -> None:
    # A function_call_output given in text parts (kept as parts for a prompt_cache_breakpoint)
    # was sent to a native deployment continuing the conversation in the chat form's "text"
    # part type, which the Responses API refuses: its parts are input_text, as they were given.
    mark = {"mode": "explicit", "ttl": "30m"}
    first = client.responses.create(model="via-openai", tools=[WEATHER], input=[
        {"role": "user", "content": "weather?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather",
         "arguments": '{"city":"Paris"}'},
        {"type": "function_call_output", "call_id": "call_1",
         "output": [{"type": "input_text", "text": "sunny", "prompt_cache_breakpoint": mark}]},
    ])
    marker = new_marker()
    follow = client.responses.create(model=native, previous_response_id=first.id,
                                     input=f"thanks mock:capture={marker}")
    assert follow.status == "completed"
    [record] = captured(mock_upstream, marker)
    [output] = [item for item in record["body"]["input"] if item.get("type") == "function_call_output"]
    assert output["output"] == [{"type": "input_text", "text": "sunny", "prompt_cache_breakpoint": mark}]
