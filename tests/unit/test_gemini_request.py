"""Canonical request -> Gemini generateContent body (pure translation, golden bodies)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from switchboard.config.schema import Timeouts
from switchboard.errors import InvalidRequest, UnsupportedParameter
from switchboard.providers.gemini import SPEC, GeminiOptions
from switchboard.providers.google.request import SKIP_SIGNATURE, media_part
from switchboard.providers.google.schema import clean_schema
from switchboard.providers.target import Target


def target(model: str = "gemini-2.5-flash", drop_params: bool = False) -> Target:
    base = "https://generativelanguage.googleapis.com"
    return Target("g", model, "studio", "gemini", base, GeminiOptions(), Timeouts(), drop_params)


def body_of(request: dict[str, Any], t: Target | None = None) -> dict[str, Any]:
    upstream = SPEC.adapter.chat_request({"model": "g", **request}, t or target())
    assert upstream.body is not None
    return orjson.loads(upstream.body)


def test_urls_and_headers() -> None:
    hi = [{"role": "user", "content": "hi"}]
    plain = SPEC.adapter.chat_request({"model": "g", "messages": hi}, target())
    assert (
        plain.url
        == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    )
    assert not plain.stream and plain.headers["Content-Type"] == "application/json"
    streamed = SPEC.adapter.chat_request(
        {"model": "g", "stream": True, "messages": hi}, target("models/gemini-x")
    )
    assert streamed.url.endswith("/v1beta/models/gemini-x:streamGenerateContent?alt=sse")
    assert streamed.stream and streamed.headers["Accept"] == "text/event-stream"


def test_full_conversation_golden() -> None:
    body = body_of(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Weather here?"},
                        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/AAA="}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": "Checking.",
                    "tool_calls": [
                        {
                            "id": "call_a",
                            "type": "function",
                            "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                        },
                        {"id": "call_b", "type": "function", "function": {"name": "time", "arguments": ""}},
                    ],
                },
                {"role": "tool", "tool_call_id": "call_a", "content": '{"temp": 21}'},
                {"role": "tool", "tool_call_id": "call_b", "content": "12:00"},
                {"role": "user", "content": "Thanks"},
            ],
            "temperature": 0.3,
            "top_p": 0.8,
            "max_tokens": 50,
            "seed": 1,
            "stop": "END",
            "n": 2,
            "presence_penalty": 0.1,
            "frequency_penalty": 0.2,
        }
    )
    assert body == {
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Use metric units."}]},
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Weather here?"},
                    {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/AAA="}},
                ],
            },
            {
                "role": "model",
                "parts": [
                    {"text": "Checking."},
                    {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
                    {"functionCall": {"name": "time", "args": {}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "weather", "response": {"temp": 21}}},
                    {"functionResponse": {"name": "time", "response": {"result": "12:00"}}},
                    {"text": "Thanks"},
                ],
            },
        ],
        "generationConfig": {
            "temperature": 0.3,
            "topP": 0.8,
            "seed": 1,
            "candidateCount": 2,
            "presencePenalty": 0.1,
            "frequencyPenalty": 0.2,
            "maxOutputTokens": 50,
            "stopSequences": ["END"],
        },
    }


def test_max_completion_tokens_wins_and_json_tool_result_kinds() -> None:
    body = body_of(
        {
            "messages": [
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                    ],
                },
                {"role": "tool", "tool_call_id": "1", "content": [{"type": "text", "text": "[1, 2]"}]},
            ],
            "max_tokens": 10,
            "max_completion_tokens": 20,
        }
    )
    assert body["generationConfig"] == {"maxOutputTokens": 20}
    assert body["contents"][2]["parts"][0]["functionResponse"]["response"] == {"result": [1, 2]}


def test_thought_signatures_round_trip_and_fallback() -> None:
    call = {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    signed = {**call, "id": "2", "extra_content": {"google": {"thought_signature": "c2ln"}}}
    messages = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [signed, {**call, "id": "3"}]},
        {"role": "tool", "tool_call_id": "2", "content": "a"},
        {"role": "tool", "tool_call_id": "3", "content": "b"},
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "1", "content": "c"},
    ]
    gemini3 = body_of({"messages": messages}, target("gemini-3-pro-preview"))["contents"]
    assert gemini3[1]["parts"][0]["thoughtSignature"] == "c2ln"
    assert "thoughtSignature" not in gemini3[1]["parts"][1]  # parallel calls: only the first is signed
    assert gemini3[3]["parts"][0]["thoughtSignature"] == SKIP_SIGNATURE
    gemini2 = body_of({"messages": messages}, target("gemini-2.0-flash"))["contents"]
    assert "thoughtSignature" not in gemini2[3]["parts"][0]


def test_tool_result_needs_a_known_call() -> None:
    with pytest.raises(InvalidRequest) as info:
        body_of(
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {"role": "tool", "tool_call_id": "zz", "content": "1"},
                ]
            }
        )
    assert info.value.param == "messages[1].tool_call_id"


def test_bad_tool_arguments_are_a_clear_400() -> None:
    with pytest.raises(InvalidRequest) as info:
        body_of(
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "1", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
                        ],
                    }
                ]
            }
        )
    assert info.value.param == "messages[0].tool_calls[0].function.arguments"


def test_only_system_messages_is_refused() -> None:
    with pytest.raises(InvalidRequest):
        body_of({"messages": [{"role": "system", "content": "x"}]})


def test_jpg_data_url_is_sent_as_image_jpeg() -> None:
    content = [{"type": "image_url", "image_url": {"url": "data:IMAGE/JPG;base64,/9j/"}},
               {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}]
    parts = body_of({"messages": [{"role": "user", "content": content}]})["contents"][0]["parts"]
    assert [p["inlineData"]["mimeType"] for p in parts] == ["image/jpeg", "image/png"]


def test_media_parts() -> None:
    request = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "gs://bucket/cat.png"}},
                    {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
                    {
                        "type": "file",
                        "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"},
                    },
                ],
            }
        ]
    }
    # A gs:// object is read with the request's credential: only the caller's own may name one.
    body = body_of(request, replace(target(), own_account=True))
    assert body["contents"][0]["parts"] == [
        {"fileData": {"mimeType": "image/png", "fileUri": "gs://bucket/cat.png"}},
        {"inlineData": {"mimeType": "audio/wav", "data": "UklG"}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBE"}},
    ]
    # The file's name is Vertex AI's displayName; the Gemini API has no such field.
    vertex = body_of(request, replace(target(), own_account=True, provider_type="vertex"))
    assert vertex["contents"][0]["parts"][2] == {
        "inlineData": {"mimeType": "application/pdf", "data": "JVBE", "displayName": "a.pdf"}
    }
    with pytest.raises(UnsupportedParameter) as caught:
        body_of(request)
    assert caught.value.param == "messages[0].content[0].image_url.url"
    with pytest.raises(InvalidRequest):
        body_of(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/png,notbase64"}}],
                    }
                ]
            }
        )


def test_inline_images_flag() -> None:
    assert SPEC.adapter.inline_images is True


def test_tools_and_choices() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "a",
                "description": "A",
                "parameters": {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]},
            },
        },
        {"type": "function", "function": {"name": "b", "parameters": {"type": "object", "properties": {}}}},
    ]
    base = {"messages": [{"role": "user", "content": "x"}], "tools": tools}
    body = body_of(base)
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "a",
                    "description": "A",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {"x": {"type": "STRING"}},
                        "required": ["x"],
                    },
                },
                {"name": "b"},
            ]
        }
    ]
    assert "toolConfig" not in body
    modes = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
    for choice, mode in modes.items():
        config = body_of({**base, "tool_choice": choice})["toolConfig"]
        assert config == {"functionCallingConfig": {"mode": mode}}
    named = body_of({**base, "tool_choice": {"type": "function", "function": {"name": "b"}}})
    assert named["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["b"]}}
    allowed = {
        "type": "allowed_tools",
        "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": {"name": "b"}}]},
    }
    narrowed = body_of({**base, "tool_choice": allowed})
    assert narrowed["tools"] == [{"functionDeclarations": [{"name": "b"}]}]
    assert narrowed["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    allowed["allowed_tools"]["mode"] = "required"  # type: ignore[index]
    assert body_of({**base, "tool_choice": allowed})["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["b"]}
    }


def test_response_formats_and_logprobs() -> None:
    base = {"messages": [{"role": "user", "content": "x"}]}
    assert body_of({**base, "response_format": {"type": "json_object"}})["generationConfig"] == {
        "responseMimeType": "application/json"
    }
    assert "generationConfig" not in body_of({**base, "response_format": {"type": "text"}})
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False}
    fmt = {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}
    config = body_of({**base, "response_format": fmt})
    assert config["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseSchema": {"type": "OBJECT", "properties": {"a": {"type": "INTEGER"}}},
    }
    probs = body_of({**base, "logprobs": True, "top_logprobs": 3})["generationConfig"]
    assert probs == {"responseLogprobs": True, "logprobs": 3}


def test_reasoning_effort() -> None:
    base = {"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "low"}
    thinking = body_of(base)["generationConfig"]["thinkingConfig"]
    assert thinking == {"thinkingBudget": 1024, "includeThoughts": True}
    later = body_of(base, target("gemini-3-pro"))["generationConfig"]["thinkingConfig"]
    assert later == {"thinkingLevel": "low", "includeThoughts": True}


def test_unsupported_parameters() -> None:
    base = {"messages": [{"role": "user", "content": "x"}]}
    with pytest.raises(UnsupportedParameter) as info:
        body_of({**base, "logit_bias": {"1": 1}})
    assert info.value.param == "logit_bias" and "gemini" in info.value.message
    dropped = body_of({**base, "logit_bias": {"1": 1}, "temperature": 1}, target(drop_params=True))
    assert dropped["generationConfig"] == {"temperature": 1}


def test_schema_cleaning() -> None:
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "additionalProperties": False,
        "$defs": {"Unit": {"type": "string", "enum": ["c", "f"], "description": "unit"}},
        "properties": {
            "unit": {"$ref": "#/$defs/Unit"},
            "when": {"type": "string", "format": "date-time"},
            "email": {"type": "string", "format": "email", "minLength": 3},
            "maybe": {"type": ["integer", "null"], "exclusiveMinimum": 0},
            "either": {"oneOf": [{"type": "string"}, {"type": "number"}]},
            "opt": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
            "fixed": {"const": "x"},
            "codes": {"enum": [1, 2]},
            "merged": {
                "allOf": [
                    {"properties": {"a": {"type": "string"}}, "required": ["a"]},
                    {"properties": {"b": {"type": "boolean"}}},
                ]
            },
        },
        "required": ["unit", "ghost"],
    }
    assert clean_schema(schema) == {
        "type": "OBJECT",
        "properties": {
            "unit": {"type": "STRING", "enum": ["c", "f"], "description": "unit"},
            "when": {"type": "STRING", "format": "date-time"},
            "email": {"type": "STRING", "minLength": 3},
            "maybe": {"type": "INTEGER", "nullable": True},
            "either": {"anyOf": [{"type": "STRING"}, {"type": "NUMBER"}]},
            "opt": {"type": "STRING", "nullable": True},
            "tags": {"type": "ARRAY", "items": {"type": "STRING"}, "maxItems": 3},
            "fixed": {"type": "STRING", "enum": ["x"]},
            "codes": {"type": "INTEGER"},
            "merged": {
                "type": "OBJECT",
                "properties": {"a": {"type": "STRING"}, "b": {"type": "BOOLEAN"}},
                "required": ["a"],
            },
        },
        "required": ["unit"],
    }


def test_untyped_nodes_get_a_type_gemini_accepts() -> None:
    # Gemini refuses a nested node without a type (unless it is an anyOf); JSON Schema reads one
    # as "any value", which a string can carry.
    schema = {
        "type": "object",
        "properties": {
            "anything": {"description": "anything"},
            "empty": {},
            "list": {"type": "array", "items": {}},
            "flags": {"enum": [True, False]},
            "ratio": {"enum": [0.5, 1]},
            "mixed": {"enum": ["a", 1]},
            "maybe": {"anyOf": [{}, {"type": "null"}]},
            "union": {"anyOf": [{"type": "string"}, {}]},
        },
    }
    assert clean_schema(schema)["properties"] == {
        "anything": {"type": "STRING", "description": "anything"},
        "empty": {"type": "STRING"},
        "list": {"type": "ARRAY", "items": {"type": "STRING"}},
        "flags": {"type": "BOOLEAN"},
        "ratio": {"type": "NUMBER"},
        "mixed": {"type": "STRING"},
        "maybe": {"type": "STRING", "nullable": True},
        "union": {"anyOf": [{"type": "STRING"}, {"type": "STRING"}]},
    }
    # The root is left as it is: a tool without arguments sends no parameters at all.
    assert clean_schema({}) == {}


def test_recursive_schema_is_refused_naming_the_ref() -> None:
    # Gemini's subset has no references: a recursive one cannot be written out, and cutting it
    # at some depth would send a weaker schema than the caller's.
    schema = {
        "$defs": {"Node": {"type": "object", "properties": {
            "value": {"type": "integer"},
            "child": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]},
        }}},
        "$ref": "#/$defs/Node",
    }
    with pytest.raises(UnsupportedParameter) as caught:
        clean_schema(schema, "response_format.json_schema.schema")
    # Named where the caller wrote it: inside the definition.
    where = "response_format.json_schema.schema.$defs.Node.properties.child.anyOf[0].$ref"
    assert caught.value.param == where
    assert "'#/$defs/Node'" in caught.value.message and "recursive" in caught.value.message


def test_refs_reused_without_recursion_are_inlined() -> None:
    # The same definition twice in one schema (siblings, not nested in itself) is no recursion.
    schema = {
        "$defs": {"Point": {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}},
        "type": "object",
        "properties": {"start": {"$ref": "#/$defs/Point"}, "end": {"$ref": "#/definitions/Point"}},
    }
    point = {"type": "OBJECT", "properties": {"x": {"type": "NUMBER"}}, "required": ["x"]}
    assert clean_schema(schema)["properties"] == {"start": point, "end": point}


def test_all_of_ref_is_inlined() -> None:
    # allOf: [{$ref}] is how pydantic v1 (and other generators) describe a field holding a model;
    # it was sent as an untyped field (STRING).
    schema = {
        "definitions": {"X": {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}},
        "type": "object",
        "properties": {"x": {"allOf": [{"$ref": "#/definitions/X"}], "description": "an x"}},
    }
    assert clean_schema(schema)["properties"]["x"] == {
        "type": "OBJECT", "description": "an x", "properties": {"a": {"type": "STRING"}}, "required": ["a"]}


def test_strict_all_of_with_conflicting_parts_is_refused() -> None:
    parts = [{"type": "integer", "minimum": 0}, {"minimum": 5}]
    schema = {"type": "object", "properties": {"n": {"allOf": parts}}}
    with pytest.raises(UnsupportedParameter) as caught:
        clean_schema(schema, "response_format.json_schema.schema", strict=True)
    assert caught.value.param == "response_format.json_schema.schema.properties.n.allOf"
    assert "'minimum'" in caught.value.message


def test_several_types_become_branches_with_their_own_keywords() -> None:
    # Gemini refuses properties on a non-OBJECT node and a type beside anyOf: each branch keeps the
    # keywords of its type (as JSON Schema applies them), the node its description.
    node = {"type": ["string", "object", "array", "null"], "description": "d", "maxLength": 3, "minItems": 1,
            "properties": {"a": {"type": "string"}}, "items": {"type": "integer"}}
    assert clean_schema({"type": "object", "properties": {"x": node}})["properties"]["x"] == {
        "description": "d", "nullable": True, "anyOf": [
            {"type": "STRING", "maxLength": 3},
            {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}},
            {"type": "ARRAY", "minItems": 1, "items": {"type": "INTEGER"}},
        ]}


def test_keywords_of_another_type_are_left_out() -> None:
    # MCP servers send properties on strings; JSON Schema ignores them there, Gemini refuses them.
    node = {"type": "string", "properties": {"a": {"type": "string"}}, "items": {}, "minItems": 1,
            "maxLength": 9}
    assert clean_schema({"type": "object", "properties": {"x": node}}, strict=True)["properties"]["x"] == {
        "type": "STRING", "maxLength": 9}


def test_exponential_schema_is_refused_quickly() -> None:
    # Each definition uses the one before twice: a few hundred bytes that copy out to 2**20 nodes.
    defs: dict[str, Any] = {"L0": {"type": "string"}}
    for i in range(1, 21):
        ref = {"$ref": f"#/$defs/L{i - 1}"}
        defs[f"L{i}"] = {"type": "object", "properties": {"a": ref, "b": ref}}
    with pytest.raises(UnsupportedParameter) as caught:
        clean_schema({"$defs": defs, "$ref": "#/$defs/L20"}, "tools[0].function.parameters")
    assert caught.value.param == "tools[0].function.parameters"
    assert "5000 nodes" in caught.value.message


def test_unknown_ref_is_refused() -> None:
    schema = {"type": "object", "properties": {"x": {"$ref": "#/components/schemas/X"}}}
    with pytest.raises(UnsupportedParameter) as caught:
        clean_schema(schema, "tools[1].function.parameters")
    assert caught.value.param == "tools[1].function.parameters.properties.x.$ref"
    assert "#/components/schemas/X" in caught.value.message


STRICT_LOSSES = [
    ({"type": "integer", "exclusiveMinimum": 0}, "exclusiveMinimum"),
    ({"type": "number", "multipleOf": 0.5}, "multipleOf"),
    ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "uniqueItems"),
    ({"type": "array", "prefixItems": [{"type": "string"}]}, "prefixItems"),
    ({"type": "array", "items": [{"type": "string"}, {"type": "integer"}]}, "items"),
    ({"type": "object", "additionalProperties": {"type": "integer"}}, "additionalProperties"),
    ({"type": "integer", "enum": [1, 2, 3]}, "enum"),
    ({"const": 7}, "const"),
    ({"type": "string", "not": {"const": "x"}}, "not"),
]


@pytest.mark.parametrize(("node", "key"), STRICT_LOSSES, ids=[k for _, k in STRICT_LOSSES])
def test_strict_schema_is_not_sent_weaker(node: dict[str, Any], key: str) -> None:
    # Strict promises answers that match: a constraint the subset cannot carry is refused there...
    schema = {"type": "object", "properties": {"n": node}, "required": ["n"], "additionalProperties": False}
    with pytest.raises(UnsupportedParameter) as caught:
        clean_schema(schema, "response_format.json_schema.schema", strict=True)
    assert caught.value.param == f"response_format.json_schema.schema.properties.n.{key}"
    assert f"'{key}'" in caught.value.message and "strict" in caught.value.message
    # ... and, without strict (no promise), sent as close as the subset allows.
    assert "n" in clean_schema(schema, "response_format.json_schema.schema")["properties"]


def test_strict_schema_keeps_what_gemini_can_say() -> None:
    # additionalProperties: false, format, $schema do not constrain what Gemini answers; a null
    # among string enum values is nullable.
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object", "additionalProperties": False, "required": ["unit", "day"],
        "properties": {"unit": {"type": ["string", "null"], "enum": ["c", "f", None]},
                       "day": {"type": "string", "format": "date"},
                       "kind": {"enum": ["a", None]}},
    }
    assert clean_schema(schema, strict=True)["properties"] == {
        "unit": {"type": "STRING", "enum": ["c", "f"], "nullable": True},
        "day": {"type": "STRING"},
        "kind": {"type": "STRING", "enum": ["a"], "nullable": True},
    }


def test_strict_tools_and_response_format_reach_the_check() -> None:
    tool = {"type": "function", "function": {"name": "pick", "strict": True, "parameters": {
        "type": "object", "properties": {"n": {"type": "integer", "enum": [1, 2]}}}}}
    base = {"model": "gemini", "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(UnsupportedParameter) as caught:
        body_of({**base, "tools": [tool]})
    assert caught.value.param == "tools[0].function.parameters.properties.n.enum"
    loose = {"type": "function", "function": {**tool["function"], "strict": False}}
    assert body_of({**base, "tools": [loose]})["tools"][0]["functionDeclarations"][0]["parameters"] == {
        "type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "strict": True, "schema": {
        "type": "object", "properties": {"n": {"type": "integer", "multipleOf": 2}}}}}
    with pytest.raises(UnsupportedParameter) as caught:
        body_of({**base, "response_format": fmt})
    assert caught.value.param == "response_format.json_schema.schema.properties.n.multipleOf"


def test_a_url_media_type_is_the_parts_format_else_its_extension() -> None:
    # An image_url the gateway does not fetch (gs://, the caller's own account): the same rule as
    # a file URL (tests/e2e/test_provider_gemini.py).
    own = replace(target(), own_account=True)
    image: Any = {"url": "gs://b/scan"}
    with pytest.raises(InvalidRequest) as caught:
        body_of({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": image}]}]}, own)
    assert caught.value.param == "messages[0].content[0].image_url.url"
    sent = body_of({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {**image, "format": "image/jpg"}}]}]}, own)
    assert sent["contents"][0]["parts"] == [{"fileData": {"mimeType": "image/jpeg", "fileUri": "gs://b/scan"}}]


def test_media_part_schemes() -> None:
    own = replace(target(), own_account=True)  # gs:// names an object of the account: the caller's own
    assert media_part("gs://b/x.png", "p", own) == {"fileData": {"mimeType": "image/png", "fileUri": "gs://b/x.png"}}
    assert media_part("HTTPS://h/x.jpg", "p", target())["fileData"]["fileUri"] == "https://h/x.jpg"
    inline = media_part("DATA:image/png;base64,AAAA", "p", target())
    assert inline == {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}
    for url in ("file:///etc/passwd", "gopher://h/", "x.png"):
        with pytest.raises(InvalidRequest) as caught:
            media_part(url, "messages[0].content[1]", target())
        assert caught.value.param == "messages[0].content[1]"
