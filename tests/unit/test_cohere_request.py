"""Canonical requests -> Cohere v2 request bodies (https://docs.cohere.com/reference/chat, /embed)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from switchboard.config.schema import ProviderConfig, Timeouts
from switchboard.errors import InvalidRequest, UnsupportedParameter
from switchboard.providers import registry
from switchboard.providers.cohere import SPEC, CohereOptions
from switchboard.providers.target import Target
from switchboard.upstream.request import UpstreamRequest

API_BASE = "https://api.cohere.com"
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CALL_1 = {"id": "call_1", "type": "function",
          "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
COHERE_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "description": "Weather for a city",
    },
}


def target(drop_params: bool = False, options: CohereOptions | None = None) -> Target:
    return Target(name="command-a", model="command-a-03-2025", provider="co", provider_type="cohere",
                  api_base=API_BASE, options=options or CohereOptions(), timeouts=Timeouts(),
                  drop_params=drop_params)


def chat_body(request: dict[str, Any], t: Target | None = None) -> dict[str, Any]:
    upstream = SPEC.adapter.chat_request(request, t or target())
    assert upstream.body is not None
    body: dict[str, Any] = orjson.loads(upstream.body)
    return body


def ask(text: str = "hi") -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def test_full_request_golden() -> None:
    request = {
        "model": "command-a",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather here?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ]},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [
                CALL_1,
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "3C"},
            {"role": "assistant", "content": [{"type": "text", "text": "It is 3C."}]},
            {"role": "user", "content": "thanks"},
        ],
        "tools": [TOOL],
        "tool_choice": "required",
        "stop": "END",
        "max_tokens": 10,
        "max_completion_tokens": 20,
        "temperature": 0.4,
        "top_p": 1,
        "seed": 42,
        "frequency_penalty": 0.1,
        "presence_penalty": 0.2,
        "logprobs": True,
        "parallel_tool_calls": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert chat_body(request) == {
        "model": "command-a-03-2025",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather here?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ]},
            {"role": "assistant", "tool_calls": [
                CALL_1,
            ], "tool_plan": "Let me check."},
            {"role": "tool", "content": "3C", "tool_call_id": "call_1"},
            {"role": "assistant", "content": [{"type": "text", "text": "It is 3C."}]},
            {"role": "user", "content": "thanks"},
        ],
        "stream": True,
        "max_tokens": 20,
        "temperature": 0.4,
        "seed": 42,
        "frequency_penalty": 0.1,
        "presence_penalty": 0.2,
        "p": 0.99,
        "stop_sequences": ["END"],
        "logprobs": True,
        "tools": [COHERE_TOOL],
        "tool_choice": "REQUIRED",
    }


def test_request_envelope() -> None:
    plain = SPEC.adapter.chat_request({"model": "m", "messages": ask()}, target())
    assert (plain.method, plain.url, plain.stream) == ("POST", f"{API_BASE}/v2/chat", False)
    assert plain.headers["Accept"] == "application/json"
    assert orjson.loads(plain.body or b"")["stream"] is False
    streamed = SPEC.adapter.chat_request({"model": "m", "messages": ask(), "stream": True}, target())
    assert streamed.stream and streamed.headers["Accept"] == "text/event-stream"
    assert "Authorization" not in streamed.headers  # the upstream client applies credentials


@pytest.mark.parametrize(("top_p", "p"), [(0.0, 0.01), (0.5, 0.5), (1.0, 0.99)])
def test_top_p_is_clamped_to_cohere_range(top_p: float, p: float) -> None:
    assert chat_body({"messages": ask(), "top_p": top_p})["p"] == p


def test_stop_list_and_max_tokens_only() -> None:
    body = chat_body({"messages": ask(), "stop": ["a", "b"], "max_tokens": 5})
    assert body["stop_sequences"] == ["a", "b"]
    assert body["max_tokens"] == 5


@pytest.mark.parametrize(("choice", "expected"), [(None, None), ("auto", None), ("none", "NONE"),
                                                   ("required", "REQUIRED")])
def test_tool_choice_strings(choice: str | None, expected: str | None) -> None:
    body = chat_body({"messages": ask(), "tools": [TOOL], "tool_choice": choice})
    assert body.get("tool_choice") == expected
    assert body["tools"] == [COHERE_TOOL]


def test_named_tool_choice_keeps_only_that_tool() -> None:
    other = {"type": "function", "function": {"name": "get_time"}}
    body = chat_body({"messages": ask(), "tools": [other, TOOL],
                      "tool_choice": {"type": "function", "function": {"name": "get_weather"}}})
    assert body["tool_choice"] == "REQUIRED"
    assert body["tools"] == [COHERE_TOOL]


def test_named_tool_choice_must_exist() -> None:
    with pytest.raises(InvalidRequest) as exc:
        chat_body({"messages": ask(), "tools": [TOOL], "tool_choice": {"type": "function",
                                                                          "function": {"name": "nope"}}})
    assert exc.value.param == "tool_choice"


STRICT_TOOL = {"type": "function", "function": {**TOOL["function"], "strict": True}}
LOOSE_TOOL = {"type": "function", "function": {"name": "ping", "parameters": {"type": "object"}}}


def test_strict_tools_only_when_every_tool_is_strict() -> None:
    assert chat_body({"messages": ask(), "tools": [STRICT_TOOL]})["strict_tools"] is True
    assert "strict_tools" not in chat_body({"messages": ask(), "tools": [TOOL, LOOSE_TOOL]})


def test_mixed_strictness_is_refused_naming_the_tools() -> None:
    # One strict tool used to turn strict_tools on for every tool (Cohere's switch is request-wide).
    with pytest.raises(UnsupportedParameter) as exc:
        chat_body({"messages": ask(), "tools": [STRICT_TOOL, LOOSE_TOOL]})
    assert exc.value.param == "tools"
    assert "get_weather" in str(exc.value) and "ping" in str(exc.value)
    body = chat_body({"messages": ask(), "tools": [STRICT_TOOL, LOOSE_TOOL], "drop_params": True})
    assert "strict_tools" not in body and len(body["tools"]) == 2


def test_user_is_accepted_and_not_sent() -> None:
    # Cohere has no end-user field; an end-user id does not change the output (capability table).
    body = chat_body({"messages": ask(), "user": "end-user-7"})
    assert "end-user-7" not in orjson.dumps(body).decode()
    assert body == chat_body({"messages": ask()})


@pytest.mark.parametrize(("extra", "param"), [
    ({"metadata": {"app": "x"}}, "metadata"),
])
def test_fields_cohere_lacks_are_refused_not_dropped(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedParameter) as exc:
        chat_body({"messages": ask(), **extra})
    assert exc.value.param == param
    body = chat_body({"messages": ask(), **extra}, target(drop_params=True))
    assert param not in body


def test_parallel_tool_calls_false_is_accepted_and_not_sent() -> None:
    # Cohere has no control: the gateway keeps the first call of the reply (providers/tool_calls.py).
    body = chat_body({"messages": ask(), "tools": [TOOL], "parallel_tool_calls": False})
    assert body == chat_body({"messages": ask(), "tools": [TOOL]}) and body["tools"]


@pytest.mark.parametrize(("extra", "thinking"), [
    ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, {"type": "enabled", "token_budget": 2048}),
    ({"thinking": {"type": "disabled"}}, {"type": "disabled"}),
    ({"thinking": {"type": "enabled", "token_budget": 500}}, {"type": "enabled", "token_budget": 500}),
    ({"reasoning_effort": "low"}, {"type": "enabled", "token_budget": 1024}),
    ({"reasoning_effort": "medium"}, {"type": "enabled", "token_budget": 8192}),
    ({"reasoning_effort": "high"}, {"type": "enabled"}),
    ({"reasoning_effort": "none"}, {"type": "disabled"}),
    ({"reasoning_effort": "high", "thinking": {"type": "disabled"}}, {"type": "disabled"}),
])
def test_thinking_and_reasoning_effort_become_cohere_thinking(extra: dict[str, Any], thinking: Any) -> None:
    body = chat_body({"messages": ask(), **extra})
    assert body["thinking"] == thinking
    assert "reasoning_effort" not in body and "budget_tokens" not in str(body)


@pytest.mark.parametrize("extra", [
    {"thinking": {"type": "on"}},
    {"thinking": {"type": "enabled", "budget_tokens": 0}},
    {"reasoning_effort": "max"},
])
def test_malformed_thinking_is_a_400(extra: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest) as exc:
        chat_body({"messages": ask(), **extra})
    assert exc.value.param in ("thinking", "thinking.budget_tokens", "reasoning_effort")
    assert exc.value.code == "invalid_value"


def test_tool_error_result_is_prefixed() -> None:
    messages = [*ask(), {"role": "assistant", "tool_calls": [CALL_1]},
                {"role": "tool", "tool_call_id": "call_1", "content": "no such city", "is_error": True}]
    body = chat_body({"messages": messages, "tools": [TOOL]})
    assert body["messages"][-1] == {"role": "tool", "tool_call_id": "call_1",
                                    "content": "Error: no such city"}


def test_tool_without_parameters_gets_empty_schema_and_strict_maps() -> None:
    tool = {"type": "function", "function": {"name": "ping", "strict": True}}
    body = chat_body({"messages": ask(), "tools": [tool]})
    assert body["tools"] == [{"type": "function", "function": {
        "name": "ping", "parameters": {"type": "object", "properties": {}}}}]
    assert body["strict_tools"] is True


def test_non_function_tool_is_refused() -> None:
    with pytest.raises(InvalidRequest) as exc:
        chat_body({"messages": ask(), "tools": [{"type": "custom", "custom": {"name": "x"}}]})
    assert exc.value.param == "tools[0].type"


@pytest.mark.parametrize(("fmt", "expected"), [
    ({"type": "text"}, None),
    ({"type": "json_object"}, {"type": "json_object"}),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True}},
     {"type": "json_object", "json_schema": {"type": "object"}}),
    ({"type": "json_schema", "json_schema": {"name": "x"}}, {"type": "json_object"}),
])
def test_response_format(fmt: dict[str, Any], expected: dict[str, Any] | None) -> None:
    assert chat_body({"messages": ask(), "response_format": fmt}).get("response_format") == expected


def test_assistant_tool_call_without_arguments_or_text() -> None:
    msg = {"role": "assistant", "content": None,
           "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "ping"}}]}
    body = chat_body({"messages": [*ask(), msg]})
    assert body["messages"][1] == {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "ping", "arguments": "{}"}}]}


def test_tool_message_text_parts_become_blocks() -> None:
    msg = {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "ok"}]}
    messages = [*ask(), {"role": "assistant", "tool_calls": [CALL_1]}, msg]
    assert chat_body({"messages": messages})["messages"][2] == {
        "role": "tool", "content": [{"type": "text", "text": "ok"}], "tool_call_id": "call_1"}


def test_function_role_is_refused() -> None:
    with pytest.raises(InvalidRequest) as exc:
        chat_body({"messages": [*ask(), {"role": "function", "name": "f", "content": "1"}]})
    assert exc.value.param == "messages[1].role"


@pytest.mark.parametrize(("role", "part"), [
    ("user", {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}),
    ("system", {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}),
])
def test_unsupported_content_parts_are_refused(role: str, part: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest) as exc:
        chat_body({"messages": [{"role": role, "content": [part]}]})
    assert exc.value.param == "messages[0].content[0]"


def test_unsupported_parameter_is_refused_or_dropped() -> None:
    with pytest.raises(UnsupportedParameter) as exc:
        chat_body({"messages": ask(), "n": 2})
    assert exc.value.param == "n"
    assert "cohere" in exc.value.message
    assert "n" not in chat_body({"messages": ask(), "n": 2}, target(drop_params=True))
    assert "n" not in chat_body({"messages": ask(), "n": 2, "drop_params": True})
    assert "drop_params" not in chat_body({"messages": ask(), "drop_params": True})


def test_top_logprobs_zero_is_neutral_but_positive_is_refused() -> None:
    assert chat_body({"messages": ask(), "logprobs": True, "top_logprobs": 0})["logprobs"] is True
    with pytest.raises(UnsupportedParameter) as exc:
        chat_body({"messages": ask(), "logprobs": True, "top_logprobs": 3})
    assert exc.value.param == "top_logprobs"


def test_cohere_native_fields_pass_through() -> None:
    body = chat_body({"messages": ask(), "top_k": 40, "safety_mode": "STRICT",
                      "thinking": {"type": "disabled"}, "documents": ["doc"], "vendor_field": 1})
    assert body["k"] == 40
    assert body["safety_mode"] == "STRICT"
    assert body["thinking"] == {"type": "disabled"}
    assert body["documents"] == ["doc"]
    assert "vendor_field" not in body and "top_k" not in body


# ---- embeddings -------------------------------------------------------------------------------


def embed_body(request: dict[str, Any], t: Target | None = None) -> dict[str, Any]:
    upstream: UpstreamRequest = SPEC.adapter.embeddings_request(request, t or target())
    assert upstream.url == f"{API_BASE}/v2/embed"
    body: dict[str, Any] = orjson.loads(upstream.body or b"")
    return body


def test_embeddings_request() -> None:
    assert embed_body({"model": "e", "input": "hello", "dimensions": 512, "user": "u"}) == {
        "model": "command-a-03-2025", "texts": ["hello"], "input_type": "search_document",
        "embedding_types": ["float"], "output_dimension": 512,
    }


def test_embeddings_input_type_from_options_and_request() -> None:
    t = target(options=CohereOptions(embed_input_type="classification"))
    assert embed_body({"input": ["a", "b"]}, t)["input_type"] == "classification"
    assert embed_body({"input": ["a"], "input_type": "search_query"}, t)["input_type"] == "search_query"
    # Another name, or no string at all, is refused naming it (not replaced by the default), as
    # provider type 'bedrock' refuses it for Cohere's models there.
    for wrong in ("poetry", ["search_query"], 5):
        with pytest.raises(InvalidRequest) as refused:
            embed_body({"input": ["a"], "input_type": wrong}, t)
        assert (refused.value.param, refused.value.code) == ("input_type", "invalid_value")


def test_embeddings_input_type_from_a_task_type() -> None:
    # The task types with Cohere's meaning become its input_type; an explicit input_type wins;
    # the others keep the configured default; a title has no Cohere field.
    t = target(options=CohereOptions(embed_input_type="classification"))
    for task, expected in [
        ("RETRIEVAL_QUERY", "search_query"), ("RETRIEVAL_DOCUMENT", "search_document"),
        ("CLASSIFICATION", "classification"), ("CLUSTERING", "clustering"),
        ("SEMANTIC_SIMILARITY", "classification"), ("TASK_TYPE_UNSPECIFIED", "classification"),
    ]:
        body = embed_body({"input": ["a"], "task_type": task}, t)
        assert body["input_type"] == expected and "task_type" not in body
    body = embed_body({"input": ["a"], "task_type": "RETRIEVAL_DOCUMENT", "title": "T",
                       "input_type": "clustering"}, t)
    assert body["input_type"] == "clustering" and "title" not in body
    with pytest.raises(InvalidRequest) as refused:
        embed_body({"input": ["a"], "task_type": "SEARCH"}, t)
    assert (refused.value.param, refused.value.code) == ("task_type", "invalid_value")


def test_embeddings_always_ask_for_floats() -> None:
    # base64 is packed by the gateway from the floats (providers/embedding_encoding.py).
    assert embed_body({"input": "a", "encoding_format": "base64"})["embedding_types"] == ["float"]


def test_embeddings_token_arrays_and_more_than_96_texts_are_the_deployments_refusal() -> None:
    # UnsupportedParameter: in a group mixing providers, a deployment that takes them serves.
    with pytest.raises(UnsupportedParameter) as exc:
        embed_body({"input": [[1, 2]]})
    assert (exc.value.param, exc.value.code) == ("input", "invalid_value")
    assert len(embed_body({"input": ["x"] * 96})["texts"]) == 96
    with pytest.raises(UnsupportedParameter) as over:
        embed_body({"input": ["x"] * 97})
    assert (over.value.param, over.value.code) == ("input", "too_many_inputs")


# ---- config and credentials ---------------------------------------------------------------------


def test_default_api_base_and_trailing_slash() -> None:
    assert SPEC.api_base(ProviderConfig(name="co", type="cohere"), CohereOptions()) == API_BASE
    config = ProviderConfig(name="co", type="cohere", api_base="http://127.0.0.1:9/")
    assert SPEC.api_base(config, CohereOptions()) == "http://127.0.0.1:9"


def test_options_are_validated() -> None:
    assert registry.check_provider(ProviderConfig(name="co", type="cohere", embed_input_typ="x")) == [
        "embed_input_typ: unknown key"]
    assert registry.check_provider(ProviderConfig(name="co", type="cohere", embed_input_type="image"))
    valid = ProviderConfig(name="co", type="cohere", embed_input_type="search_query")
    assert registry.check_provider(valid) == []


def apply_auth(config: ProviderConfig) -> dict[str, str]:
    auth = SPEC.make_auth(config, registry.options_for(config))
    request = UpstreamRequest("POST", API_BASE + "/v2/chat")
    asyncio.run(auth.apply(request))
    return request.headers


def test_bearer_auth_and_client_name() -> None:
    assert apply_auth(ProviderConfig(name="co", type="cohere", api_key="co-key")) == {
        "Authorization": "Bearer co-key"}
    assert apply_auth(ProviderConfig(name="co", type="cohere", api_key="k", client_name="gw")) == {
        "Authorization": "Bearer k", "X-Client-Name": "gw"}
    assert apply_auth(ProviderConfig(name="co", type="cohere")) == {}
    auth = SPEC.make_auth(ProviderConfig(name="co", type="cohere", api_key="secret-key"), CohereOptions())
    assert "secret-key" not in repr(auth)
