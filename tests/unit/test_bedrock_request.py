"""Canonical chat request -> Bedrock Converse request (golden bodies)."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from switchboard.config.schema import ProviderConfig, Timeouts
from switchboard.errors import InvalidRequest, UnsupportedParameter
from switchboard.providers.bedrock import SPEC, BedrockOptions, model_path
from switchboard.providers.target import Target

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n rest").decode()
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"


def target(drop_params: bool = False, model: str = MODEL) -> Target:
    options = BedrockOptions(aws_region="us-east-1")
    base = "https://bedrock-runtime.us-east-1.amazonaws.com"
    return Target("claude", model, "aws", "bedrock", base, options, Timeouts(), drop_params)


def build(request: dict[str, Any], t: Target | None = None) -> tuple[str, dict[str, Any], dict[str, str]]:
    req = SPEC.adapter.chat_request({"model": "claude", **request}, t or target())
    return req.url, orjson.loads(req.body or b""), req.headers


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def test_minimal_request_url_headers_and_body() -> None:
    url, body, headers = build({"messages": [user("hi")]})
    assert url == ("https://bedrock-runtime.us-east-1.amazonaws.com/model/"
                   "anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse")
    assert headers == {"Content-Type": "application/json", "Accept": "application/json"}
    assert body == {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}


def test_stream_uses_converse_stream_and_drops_openai_only_keys() -> None:
    req = SPEC.adapter.chat_request(
        {"messages": [user("hi")], "stream": True, "stream_options": {"include_usage": True}},
        target(),
    )
    assert req.url.endswith("/converse-stream") and req.stream
    assert req.headers["Accept"] == "application/vnd.amazon.eventstream"
    assert set(orjson.loads(req.body or b"")) == {"messages"}


def test_model_arns_are_one_encoded_path_segment() -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"
    assert model_path(arn, "converse") == (
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2F"
        "us.anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    )


def test_leading_system_messages_are_hoisted_later_ones_stay_in_place() -> None:
    _, body, _ = build({"messages": [
        {"role": "system", "content": "be brief"},
        {"role": "developer", "content": [{"type": "text", "text": "and kind"}]},
        user("one"),
        {"role": "developer", "content": "now answer in French"},
        user("two"),
        {"role": "assistant", "content": "ok"},
        {"role": "assistant", "content": [{"type": "text", "text": "more"}]},
        user("three"),
    ]})
    assert body["system"] == [{"text": "be brief"}, {"text": "and kind"}]
    assert body["messages"] == [
        {"role": "user", "content": [
            {"text": "one"}, {"text": "System: now answer in French"}, {"text": "two"}]},
        {"role": "assistant", "content": [{"text": "ok"}, {"text": "more"}]},
        {"role": "user", "content": [{"text": "three"}]},
    ]


def test_an_earlier_refusal_is_replayed_as_text_and_blank_parts_are_left_out() -> None:
    _, body, _ = build({"messages": [
        user("one"),
        {"role": "assistant", "refusal": "I can't help with that.", "content": [
            {"type": "refusal", "refusal": "I can't help with that."}, {"type": "text", "text": " "}]},
        user("two"),
    ]})
    assert body["messages"][1] == {"role": "assistant", "content": [{"text": "I can't help with that."}]}


def test_inference_config_mapping() -> None:
    _, body, _ = build({"messages": [user("x")], "max_tokens": 50, "max_completion_tokens": 60,
                        "temperature": 0.3, "top_p": 0.9, "stop": "END", "top_k": 40, "user": "u-1", "n": 1})
    assert body["inferenceConfig"] == {
        "maxTokens": 60, "temperature": 0.3, "topP": 0.9, "stopSequences": ["END"],
    }
    assert body["additionalModelRequestFields"] == {"top_k": 40}
    _, body, _ = build({"messages": [user("x")], "max_tokens": 5, "stop": ["a", "b"]})
    assert body["inferenceConfig"] == {"maxTokens": 5, "stopSequences": ["a", "b"]}


def test_stop_sequences_bedrock_refuses_are_never_sent() -> None:
    # Converse: each stop sequence has a minimum length of 1; Claude: "each stop sequence must
    # contain non-whitespace". Other families take "\n" (a common stop for Llama).
    request = {"messages": [user("hi")], "stop": ["", "END"]}
    body = build(request)[1]
    assert body["inferenceConfig"] == {"stopSequences": ["END"]}  # an empty one asks for nothing
    assert body["additionalModelResponseFieldPaths"] == ["/stop_sequence"]
    assert "inferenceConfig" not in build({**request, "stop": [""]})[1]
    assert "additionalModelResponseFieldPaths" not in build({**request, "stop": [""]})[1]
    with pytest.raises(UnsupportedParameter) as exc:
        build({**request, "stop": ["\n", "END"]})
    assert exc.value.param == "stop"
    assert "inferenceConfig" not in build({**request, "stop": "\n\n"}, target(drop_params=True))[1]
    assert build({**request, "stop": [" ", "END"], "drop_params": True})[1]["inferenceConfig"] == {
        "stopSequences": ["END"]}
    llama = target(model="meta.llama3-70b-instruct-v1:0")
    assert build({**request, "stop": ["\n", ""]}, llama)[1]["inferenceConfig"] == {"stopSequences": ["\n"]}


def test_images_become_inline_image_blocks() -> None:
    _, body, _ = build({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,AAAA"}},
    ]}]})
    assert body["messages"][0]["content"] == [
        {"text": "what is this?"},
        {"image": {"format": "png", "source": {"bytes": PNG}}},
        {"image": {"format": "jpeg", "source": {"bytes": "AAAA"}}},  # bytes of no known type: the label
    ]


@pytest.mark.parametrize(("url", "fmt"), [
    (f"data:image/jpeg;base64,{PNG}", "png"),  # PNG bytes labelled jpeg
    ("data:image/png;base64,/9j/4AAQSkZJRgABAQ==", "jpeg"),
    ("data:image/jpeg;base64,R0lGODlhAQABAAAAACw=", "gif"),
    ("data:image/png;base64,UklGRiQAAABXRUJQVlA4IA==", "webp"),
    (f"data:application/octet-stream;base64,{PNG}", "png"),
])
def test_a_data_url_image_is_sent_as_the_format_its_bytes_are(url: str, fmt: str) -> None:
    # Bedrock refuses an image whose bytes are not its format; OpenAI reads the bytes.
    part = {"type": "image_url", "image_url": {"url": url}}
    _, body, _ = build({"messages": [{"role": "user", "content": [part]}]})
    assert body["messages"][0]["content"][0]["image"]["format"] == fmt


@pytest.mark.parametrize("url", [
    "https://example.com/cat.png",  # should have been inlined by the gateway
    "data:image/bmp;base64,AAAA",
    "data:image/png,rawdata",
    "data:image/png;base64,***",
])
def test_unusable_images_are_a_400_naming_the_part(url: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        build({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]})
    assert err.value.param == "messages[0].content[0].image_url.url"


TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}}]


def test_tool_round_trip_history() -> None:
    _, body, _ = build({"tools": TOOLS, "messages": [
        user("weather in Paris and Rome?"),
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "rain"}]},
        user("thanks"),
    ]})
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "weather in Paris and Rome?"}]},
        {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Paris"}}},
            {"toolUse": {"toolUseId": "call_2", "name": "get_weather", "input": {}}},
        ]},
        {"role": "user", "content": [
            {"toolResult": {"toolUseId": "call_1", "content": [{"text": "sunny"}]}},
            {"toolResult": {"toolUseId": "call_2", "content": [{"text": "rain"}]}},
            {"text": "thanks"},
        ]},
    ]
    assert body["toolConfig"] == {"tools": [{"toolSpec": {
        "name": "get_weather", "description": "Weather for a city",
        "inputSchema": {"json": TOOLS[0]["function"]["parameters"]},
    }}]}


@pytest.mark.parametrize(("choice", "expected"), [
    ("auto", {"auto": {}}),
    ("required", {"any": {}}),
    ({"type": "function", "function": {"name": "get_weather"}}, {"tool": {"name": "get_weather"}}),
])
def test_tool_choice_mapping(choice: Any, expected: dict[str, Any]) -> None:
    _, body, _ = build({"messages": [user("x")], "tools": TOOLS, "tool_choice": choice})
    assert body["toolConfig"]["toolChoice"] == expected


HISTORY = [user("x"), {"role": "assistant", "content": None, "tool_calls": [
    {"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}]},
    {"role": "tool", "tool_call_id": "c", "content": "sunny"}]


def test_tool_choice_none_offers_no_tools_and_sends_the_tool_history_as_text() -> None:
    _, body, _ = build({"messages": [user("x")], "tools": TOOLS, "tool_choice": "none"})
    assert "toolConfig" not in body
    _, body, _ = build({"messages": [*HISTORY, user("and now?")], "tools": TOOLS, "tool_choice": "none"})
    assert "toolConfig" not in body
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "x"}]},
        {"role": "assistant", "content": [{"text": '[tool call get_weather (c): {"city":"Rome"}]'}]},
        {"role": "user", "content": [{"text": "[tool result (c): sunny]"}, {"text": "and now?"}]},
    ]
    # Without tools in the request either: the history is not declared as tools.
    _, body, _ = build({"messages": HISTORY, "tool_choice": "none"})
    assert "toolConfig" not in body


def test_parameterless_tools_get_an_empty_object_schema() -> None:
    tools = [{"type": "function", "function": {"name": "now"}}]
    _, body, _ = build({"messages": [user("x")], "tools": tools})
    assert body["toolConfig"]["tools"][0] == {"toolSpec": {
        "name": "now", "inputSchema": {"json": {"type": "object", "properties": {}}}}}


def test_invalid_tool_arguments_are_a_400() -> None:
    with pytest.raises(InvalidRequest) as err:
        build({"messages": [user("x"), {"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]})
    assert err.value.param == "messages[1].tool_calls[0].function.arguments"


def test_json_schema_response_format_uses_output_config() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    _, body, _ = build({"messages": [user("x")], "response_format": {
        "type": "json_schema", "json_schema": {"name": "thing", "description": "A thing", "schema": schema}}})
    definition = body["outputConfig"]["textFormat"]["structure"]["jsonSchema"]
    assert body["outputConfig"]["textFormat"]["type"] == "json_schema"
    assert orjson.loads(definition.pop("schema")) == schema  # a JSON string on the wire
    assert definition == {"name": "thing", "description": "A thing"}


def test_json_object_is_unsupported_unless_dropped() -> None:
    request = {"messages": [user("x")], "response_format": {"type": "json_object"}}
    with pytest.raises(UnsupportedParameter) as err:
        build(request)
    assert err.value.param == "response_format" and "bedrock" in err.value.message
    _, body, _ = build(request, target(drop_params=True))
    assert "outputConfig" not in body
    _, body, _ = build({"messages": [user("x")], "response_format": {"type": "text"}})
    assert "outputConfig" not in body


@pytest.mark.parametrize("param", [
    "seed", "logprobs", "presence_penalty", "frequency_penalty", "logit_bias", "n",
])
def test_params_converse_lacks_are_a_400_or_dropped(param: str) -> None:
    value: Any = {"logprobs": True, "logit_bias": {"1": 1}, "n": 2}.get(param, 1)
    with pytest.raises(UnsupportedParameter) as err:
        build({"messages": [user("x")], param: value})
    assert err.value.param == param
    _, body, _ = build({"messages": [user("x")], param: value}, target(drop_params=True))
    assert body == {"messages": [{"role": "user", "content": [{"text": "x"}]}]}


def test_non_function_tools_and_function_role_are_rejected() -> None:
    with pytest.raises(UnsupportedParameter):
        build({"messages": [user("x")], "tools": [{"type": "web_search"}]})
    with pytest.raises(InvalidRequest) as err:
        build({"messages": [user("x"), {"role": "function", "name": "f", "content": "1"}]})
    assert err.value.param == "messages[1].role"


def test_options_and_api_base_contract() -> None:
    config = ProviderConfig(name="aws", type="bedrock", aws_region="eu-west-3", aws_access_key_id="AKID",
                            aws_secret_access_key="s3cr3t")
    options = SPEC.options.model_validate(config.options)
    assert SPEC.api_base(config, options) == "https://bedrock-runtime.eu-west-3.amazonaws.com"
    custom = ProviderConfig(name="aws", type="bedrock", api_base="http://127.0.0.1:9/",
                            aws_region="eu-west-3")
    assert SPEC.api_base(custom, SPEC.options.model_validate(custom.options)) == "http://127.0.0.1:9"
    assert "s3cr3t" not in repr(options) and "s3cr3t" not in repr(SPEC.make_auth(config, options))


@pytest.mark.parametrize("options", [
    {},  # aws_region is required
    {"aws_region": "us-east-1", "aws_access_key_id": "AKID"},  # secret missing
    {"aws_region": "us-east-1", "aws_session_token": "t"},
    {"aws_region": "Virginia"},
    {"aws_region": "us-east-1", "aws_secret_key": "typo"},
])
def test_invalid_options_are_reported(options: dict[str, Any]) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        BedrockOptions.model_validate(options)


def test_history_tools_are_declared_when_the_client_dropped_tools() -> None:
    history = [user("x"), {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "ok"}]
    _, body, _ = build({"messages": history})
    assert body["toolConfig"] == {"tools": [
        {"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}]}


def test_empty_assistant_turns_keep_their_place_and_a_trailing_one_is_left_out() -> None:
    _, body, _ = build({"messages": [user("a"), {"role": "assistant", "content": ""}, user("b"),
                                     {"role": "assistant", "content": None}]})
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "a"}]},
        {"role": "assistant", "content": [{"text": "(no content)"}]},
        {"role": "user", "content": [{"text": "b"}]},
    ]


def test_tool_results_come_first_in_their_user_turn() -> None:
    _, body, _ = build({"messages": [
        user("x"),
        {"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "system", "content": "be careful"},
        {"role": "tool", "tool_call_id": "c", "content": [
            {"type": "text", "text": "ok", "cache_control": {"type": "ephemeral"}}]},
    ]})
    assert body["messages"][2]["content"] == [
        {"toolResult": {"toolUseId": "c", "content": [{"text": "ok"}]}},
        {"cachePoint": {"type": "default"}},
        {"text": "System: be careful"},
    ]


def test_tool_result_content_converse_refuses_is_never_sent() -> None:
    # Converse refuses a toolResult whose content is empty or whose text is blank: a tool that
    # printed nothing (or only "\n") gets the text "(no content)"; blank text beside other parts
    # is left out.
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}

    def result(**tool: Any) -> Any:
        messages = [user("hi"), {"role": "assistant", "content": None, "tool_calls": [call]},
                    {"role": "tool", "tool_call_id": "c1", **tool}]
        return build({"messages": messages})[1]["messages"][2]["content"][0]["toolResult"]

    for empty in ("", None, "\n", [{"type": "text", "text": ""}], [{"type": "text", "text": " "}]):
        assert result(content=empty) == {"toolUseId": "c1", "content": [{"text": "(no content)"}]}
    assert result(content="", is_error=True) == {
        "toolUseId": "c1", "content": [{"text": "(no content)"}], "status": "error"}
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    parts = [{"type": "text", "text": "\n"}, image]
    assert result(content=parts)["content"] == [{"image": {"format": "png", "source": {"bytes": PNG}}}]
    assert result(content=" 18C\n")["content"] == [{"text": " 18C\n"}]  # kept as written


def test_blank_user_and_system_text_is_left_out() -> None:
    # Converse refuses blank text blocks, in system and in messages.
    _, body, _ = build({"messages": [
        {"role": "system", "content": [{"type": "text", "text": " "}, {"type": "text", "text": "be brief"}]},
        {"role": "developer", "content": "\n"},
        {"role": "user", "content": [{"type": "text", "text": "\n", "cache_control": {"type": "ephemeral"}},
                                     {"type": "text", "text": "hi"}, {"type": "text", "text": ""}]},
        {"role": "assistant", "content": "ok"},
        user("  "),
        user(" again "),
    ]})
    assert body["system"] == [{"text": "be brief"}]
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "hi"}]},
        {"role": "assistant", "content": [{"text": "ok"}]},
        {"role": "user", "content": [{"text": " again "}]},  # text beside whitespace kept as written
    ]


def test_a_claude_prefill_is_sent_without_trailing_whitespace() -> None:
    # Claude: "final assistant content cannot end with trailing whitespace"; other families take it.
    messages: Any = [user("hi"), {"role": "assistant", "content": [
        {"type": "text", "text": " Sure:\n", "cache_control": {"type": "ephemeral"}}]}]
    assert build({"messages": messages})[1]["messages"][-1]["content"] == [
        {"text": " Sure:"}, {"cachePoint": {"type": "default"}}]
    llama = target(model="meta.llama3-70b-instruct-v1:0")
    assert build({"messages": messages}, llama)[1]["messages"][-1]["content"][0] == {"text": " Sure:\n"}
    # Only the final turn: earlier replies are kept as written.
    messages = [user("hi"), {"role": "assistant", "content": "ok\n"}, user("again")]
    assert build({"messages": messages})[1]["messages"][1]["content"] == [{"text": "ok\n"}]
