"""Gemini request bodies -> the canonical chat and embeddings requests (http/gemini/)."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from switchboard.errors import InvalidRequest
from switchboard.http.gemini.embeddings import batch_embed_request, embed_request
from switchboard.http.gemini.request import count_tokens_request, generate_request

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def chat(body: dict[str, Any], stream: bool = False) -> dict[str, Any]:
    return generate_request(orjson.dumps(body), "m", stream).request


def refused(body: Any, phrase: str) -> InvalidRequest:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    with pytest.raises(InvalidRequest) as info:
        generate_request(raw, "m", False)
    assert phrase in info.value.message, info.value.message
    return info.value


def user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "parts": list(parts)}


def test_text_system_and_model_turns() -> None:
    out = chat(
        {
            "systemInstruction": {"parts": [{"text": "be brief"}, {"text": "and kind"}]},
            "contents": [
                user({"text": "hi"}),
                {"role": "model", "parts": [{"text": "hello"}]},
                {"parts": [{"text": "x"}]},
            ],
        }
    )
    assert out == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "be brief\nand kind"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "x"},
        ],
    }


def test_snake_case_and_camel_case_are_both_read() -> None:
    out = chat(
        {
            "contents": [user({"inline_data": {"mime_type": "image/png", "data": PNG}}, {"text": "what?"})],
            "generation_config": {"max_output_tokens": 10, "thinkingConfig": {"thinking_budget": 2048}},
            "system_instruction": "plain string",
        }
    )
    assert out["messages"][0] == {"role": "system", "content": "plain string"}
    assert out["messages"][1]["content"][0] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{PNG}"},
    }
    assert out["max_completion_tokens"] == 10
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    refused(
        {"contents": [user({"text": "x"})], "generationConfig": {"topP": 0.5, "top_p": 0.4}}, "given twice"
    )


def test_media_parts() -> None:
    wav = base64.b64encode(b"RIFF....WAVE").decode()
    pdf = base64.b64encode(b"%PDF-1.4").decode()
    note = base64.urlsafe_b64encode("héllo".encode()).decode().rstrip("=")
    out = chat(
        {
            "contents": [
                user(
                    {"inlineData": {"mimeType": "audio/wav", "data": wav}},
                    {"inlineData": {"mimeType": "application/pdf", "data": pdf, "displayName": "a.pdf"}},
                    {"inlineData": {"mimeType": "text/plain", "data": note}},
                    {"fileData": {"fileUri": "https://example.com/cat.png"}},
                    {"fileData": {"fileUri": "https://example.com/photo", "mimeType": "image/jpeg"}},
                    {"fileData": {"fileUri": "https://example.com/report.pdf"}},
                    {"fileData": {"fileUri": "https://example.com/talk?id=3", "mimeType": "Audio/MPEG"}},
                )
            ]
        }
    )
    assert out["messages"][0]["content"] == [
        {"type": "input_audio", "input_audio": {"data": wav, "format": "wav"}},
        {"type": "file", "file": {"filename": "a.pdf", "file_data": f"data:application/pdf;base64,{pdf}"}},
        {"type": "text", "text": "héllo"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/photo", "format": "image/jpeg"}},
        {"type": "file", "file": {"file_data": "https://example.com/report.pdf",
                                  "format": "application/pdf"}},
        {"type": "file", "file": {"file_data": "https://example.com/talk?id=3", "format": "audio/mpeg"}},
    ]


@pytest.mark.parametrize(
    "part, phrase",
    [
        ({"inlineData": {"mimeType": "video/mp4", "data": "AAAA"}}, "video/mp4"),
        ({"inlineData": {"mimeType": "image/png", "data": "not base64!"}}, "base64"),
        ({"inlineData": {"data": "AAAA"}}, "mimeType"),
        ({"fileData": {"fileUri": "gs://b/x.png"}}, "gs://"),
        (
            {"fileData": {"fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc"}},
            "Files API",
        ),
        ({"fileData": {"fileUri": "https://example.com/report?id=3"}}, "mimeType': is required"),
        ({"fileData": {"fileUri": "https://example.com/report.pdf", "mimeType": "pdf"}}, "not a media type"),
        ({"executableCode": {"language": "PYTHON", "code": "1"}}, "code execution"),
        ({"text": "a", "inlineData": {"mimeType": "image/png", "data": PNG}}, "exactly one of"),
        ({}, "is empty"),
        ({"text": 5}, "TYPE_STRING"),
        ({"functionCall": {"name": "f"}}, "role 'model'"),
    ],
)
def test_parts_refused(part: dict[str, Any], phrase: str) -> None:
    refused({"contents": [user(part)]}, phrase)


def test_function_calls_and_responses_are_paired() -> None:
    out = chat(
        {
            "contents": [
                user({"text": "weather and time?"}),
                {
                    "role": "model",
                    "parts": [
                        {"thought": True, "text": "thinking..."},
                        {
                            "functionCall": {"name": "weather", "args": {"city": "Paris"}},
                            "thoughtSignature": "c2ln",
                        },
                        {"functionCall": {"id": "given-id", "name": "clock"}},
                    ],
                },
                user(
                    {"functionResponse": {"name": "clock", "response": {"output": "noon"}}},
                    {"functionResponse": {"name": "weather", "response": {"output": "sunny"}}},
                    {"text": "thanks"},
                ),
            ]
        }
    )
    assert out["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1_1",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                "extra_content": {"google": {"thought_signature": "c2ln"}},
            },
            {"id": "given-id", "type": "function", "function": {"name": "clock", "arguments": "{}"}},
        ],
    }
    assert out["messages"][2:] == [
        {"role": "tool", "tool_call_id": "given-id", "content": '{"output":"noon"}'},
        {"role": "tool", "tool_call_id": "call_1_1", "content": '{"output":"sunny"}'},
        {"role": "user", "content": "thanks"},
    ]


def test_a_response_by_id_and_an_orphan_response() -> None:
    turn = {
        "role": "model",
        "parts": [{"functionCall": {"id": "a", "name": "f"}}, {"functionCall": {"id": "b", "name": "f"}}],
    }
    out = chat(
        {
            "contents": [
                user({"text": "x"}),
                turn,
                user(
                    {"functionResponse": {"id": "b", "name": "f", "response": {}}},
                    {"functionResponse": {"name": "f", "response": {"r": 1}}},
                ),
            ]
        }
    )
    assert [m.get("tool_call_id") for m in out["messages"][2:]] == ["b", "a"]
    refused(
        {
            "contents": [
                user({"text": "x"}),
                turn,
                user(
                    {"functionResponse": {"name": "f", "response": {}}},
                    {"functionResponse": {"name": "f", "response": {}}},
                    {"functionResponse": {"name": "f", "response": {}}},
                ),
            ]
        },
        "answers no functionCall",
    )


def test_a_model_turn_of_only_thoughts_is_left_out() -> None:
    out = chat(
        {
            "contents": [
                user({"text": "a"}),
                {"role": "model", "parts": [{"text": "hm", "thought": True}]},
                user({"text": "b"}),
            ]
        }
    )
    assert [m["role"] for m in out["messages"]] == ["user", "user"]


def test_tools_and_schemas() -> None:
    out = chat(
        {
            "contents": [user({"text": "x"})],
            "tools": [
                {
                    "functionDeclarations": [
                        {
                            "name": "f",
                            "description": "d",
                            "parameters": {
                                "type": "OBJECT",
                                "propertyOrdering": ["a"],
                                "required": ["a"],
                                "properties": {
                                    "a": {"type": "STRING", "nullable": True, "enum": ["x", "y"]},
                                    "b": {"type": "ARRAY", "items": {"type": "INTEGER"}, "max_items": "3"},
                                },
                            },
                        },
                        {
                            "name": "g",
                            "parametersJsonSchema": {"type": "object", "additionalProperties": False},
                        },
                        {"name": "h"},
                    ]
                }
            ],
        }
    )
    assert out["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "f",
                "description": "d",
                "parameters": {
                    "type": "object",
                    "required": ["a"],
                    "properties": {
                        # nullable reaches the enum too: JSON Schema checks it apart from type.
                        "a": {"type": ["string", "null"], "enum": ["x", "y", None]},
                        "b": {"type": "array", "maxItems": 3, "items": {"type": "integer"}},
                    },
                },
            },
        },
        {
            "type": "function",
            "function": {"name": "g", "parameters": {"type": "object", "additionalProperties": False}},
        },
        {"type": "function", "function": {"name": "h", "parameters": {"type": "object", "properties": {}}}},
    ]
    assert "tool_choice" not in out


@pytest.mark.parametrize(
    "tools, phrase",
    [
        ([{"googleSearch": {}}], "googleSearch"),
        ([{"codeExecution": {}}], "codeExecution"),
        ([{"functionDeclarations": [{"name": "f"}, {"name": "f"}]}], "unique"),
        ([{"functionDeclarations": [{"name": "1bad"}]}], "must start with a letter"),
        (
            [
                {
                    "functionDeclarations": [
                        {"name": "f", "parameters": {"type": "OBJECT"}, "parametersJsonSchema": {}}
                    ]
                }
            ],
            "not both",
        ),
        (
            [
                {
                    "functionDeclarations": [
                        {"name": "f", "parameters": {"type": "OBJECT", "additionalProperties": False}}
                    ]
                }
            ],
            'Unknown name "additionalProperties"',
        ),
        ([{"functionDeclarations": [{"name": "f", "parameters": {"type": "THING"}}]}], "unknown type"),
    ],
)
def test_tools_refused(tools: list[Any], phrase: str) -> None:
    refused({"contents": [user({"text": "x"})], "tools": tools}, phrase)


TOOLS = [{"functionDeclarations": [{"name": "f"}, {"name": "g"}, {"name": "h"}]}]


@pytest.mark.parametrize(
    "config, choice, names",
    [
        ({"mode": "AUTO"}, "auto", ["f", "g", "h"]),
        ({"mode": "VALIDATED"}, "auto", ["f", "g", "h"]),
        ({"mode": "NONE"}, "none", ["f", "g", "h"]),
        ({"mode": "ANY"}, "required", ["f", "g", "h"]),
        (
            {"mode": "ANY", "allowedFunctionNames": ["g"]},
            {"type": "function", "function": {"name": "g"}},
            ["f", "g", "h"],
        ),
        ({"mode": "ANY", "allowed_function_names": ["g", "h"]}, "required", ["g", "h"]),
        ({"mode": "VALIDATED", "allowedFunctionNames": ["h"]}, "auto", ["h"]),
    ],
)
def test_function_calling_config(config: dict[str, Any], choice: Any, names: list[str]) -> None:
    out = chat(
        {"contents": [user({"text": "x"})], "tools": TOOLS, "toolConfig": {"functionCallingConfig": config}}
    )
    assert out["tool_choice"] == choice
    assert [t["function"]["name"] for t in out["tools"]] == names


@pytest.mark.parametrize(
    "config, phrase",
    [
        ({"mode": "AUTO", "allowedFunctionNames": ["f"]}, "only be set when mode is ANY or VALIDATED"),
        ({"mode": "NONE", "allowedFunctionNames": ["f"]}, "only be set when mode is ANY or VALIDATED"),
        ({"mode": "VALIDATED", "allowedFunctionNames": ["zzz"]}, "no function named 'zzz'"),
        ({"mode": "ANY", "allowedFunctionNames": ["zzz"]}, "no function named 'zzz'"),
        ({"mode": "SOMETIMES"}, "TYPE_ENUM"),
    ],
)
def test_function_calling_config_refused(config: dict[str, Any], phrase: str) -> None:
    refused(
        {"contents": [user({"text": "x"})], "tools": TOOLS, "toolConfig": {"functionCallingConfig": config}},
        phrase,
    )


def test_generation_config() -> None:
    out = chat(
        {
            "contents": [user({"text": "x"})],
            "generationConfig": {
                "temperature": 0.2,
                "topP": 0.9,
                "topK": 40,
                "maxOutputTokens": "100",
                "stopSequences": ["a", "b"],
                "candidateCount": 2,
                "presencePenalty": 0.5,
                "frequencyPenalty": -0.5,
                "seed": 7,
                "responseModalities": ["TEXT"],
                "mediaResolution": "MEDIA_RESOLUTION_LOW",
            },
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
            "labels": {"team": "a"},
            "serviceTier": "standard",
            "model": "models/other",
        }
    )
    assert {k: v for k, v in out.items() if k not in ("model", "messages")} == {
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "max_completion_tokens": 100,
        "stop": ["a", "b"],
        "n": 2,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "seed": 7,
        "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    }
    assert out["model"] == "m"  # the path names the model
    assert "n" not in chat({"contents": [user({"text": "x"})], "generationConfig": {"candidateCount": 1}})


def test_safety_settings_reach_the_canonical_request() -> None:
    settings = [
        {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"},
        {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "threshold": "BLOCK_NONE", "method": "PROBABILITY"},
    ]
    out = chat({"contents": [user({"text": "x"})], "safetySettings": settings})
    assert out["safety_settings"] == settings
    # An empty list asks for nothing; a null one is absent.
    assert "safety_settings" not in chat({"contents": [user({"text": "x"})], "safetySettings": []})
    assert "safety_settings" not in chat({"contents": [user({"text": "x"})], "safetySettings": None})
    # countTokens of a whole request carries them too (the request is the same).
    inner = {"contents": [user({"text": "x"})], "safetySettings": settings}
    whole = count_tokens_request(orjson.dumps({"generateContentRequest": inner}), "m").request
    assert whole["safety_settings"] == settings


@pytest.mark.parametrize(
    ("settings", "phrase"),
    [
        ({"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}, "safetySettings"),
        ([{"category": "HARM_CATEGORY_HARASSMENT"}], "safetySettings[0].threshold"),
        ([{"category": "", "threshold": "BLOCK_NONE"}], "safetySettings[0].category"),
        ([{"category": "HARM_CATEGORY_HARASSMENT", "threshold": 3}], "safetySettings[0].threshold"),
        ([{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE", "method": 1}],
         "safetySettings[0].method"),
        ([{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE", "level": "high"}], "level"),
        # Google's enum values only, by their exact names.
        ([{"category": "HARM_CATEGORY_NOPE", "threshold": "BLOCK_NONE"}],
         "Invalid value at 'safetySettings[0].category' (TYPE_ENUM)"),
        ([{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "block_none"}],
         "Invalid value at 'safetySettings[0].threshold' (TYPE_ENUM)"),
        ([{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE", "method": "LOUDNESS"}],
         "Invalid value at 'safetySettings[0].method' (TYPE_ENUM)"),
    ],
)
def test_bad_safety_settings(settings: Any, phrase: str) -> None:
    refused({"contents": [user({"text": "x"})], "safetySettings": settings}, phrase)


def test_response_formats() -> None:
    base = {"contents": [user({"text": "x"})]}
    json_only = chat({**base, "generationConfig": {"responseMimeType": "application/json"}})
    assert json_only["response_format"] == {"type": "json_object"}
    schema = chat(
        {
            **base,
            "generationConfig": {
                "responseMimeType": "application/json",
                "responseSchema": {"type": "OBJECT", "properties": {"a": {"type": "NUMBER"}}},
            },
        }
    )
    assert schema["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "response",
            "schema": {"type": "object", "properties": {"a": {"type": "number"}}},
            "strict": False,
        },
    }
    raw = chat(
        {
            **base,
            "generationConfig": {
                "response_mime_type": "application/json",
                "response_json_schema": {"type": "object", "$defs": {}},
            },
        }
    )
    assert raw["response_format"]["json_schema"]["schema"] == {"type": "object", "$defs": {}}
    assert "response_format" not in chat({**base, "generationConfig": {"responseMimeType": "text/plain"}})


@pytest.mark.parametrize(
    "config, phrase",
    [
        ({"responseSchema": {"type": "OBJECT"}}, "needs responseMimeType"),
        ({"responseMimeType": "text/x.enum"}, "text/x.enum"),
        ({"temperature": 2.5}, "out of range"),
        ({"temperature": True}, "TYPE_FLOAT"),
        ({"topK": 1.5}, "TYPE_INT32"),
        ({"candidateCount": 9}, "out of range"),
        ({"stopSequences": ["1", "2", "3", "4", "5", "6"]}, "at most 5"),
        ({"responseLogprobs": True}, "log probabilities"),
        ({"responseModalities": ["IMAGE"]}, "only TEXT"),
        ({"speechConfig": {}}, "audio and image output"),
        ({"thinkingConfig": {"thinkingBudget": 10, "thinkingLevel": "LOW"}}, "cannot both"),
        ({"thinkingConfig": {"thinkingLevel": "EXTREME"}}, "TYPE_ENUM"),
        ({"thinkingConfig": {"thinkingBudget": -2}}, "out of range"),
        ({"mediaResolution": "MEDIA_RESOLUTION_SHARP"}, "'generationConfig.mediaResolution' (TYPE_ENUM)"),
        ({"tempperature": 1}, "Unknown name \"tempperature\" at 'generationConfig'"),
    ],
)
def test_generation_config_refused(config: dict[str, Any], phrase: str) -> None:
    refused({"contents": [user({"text": "x"})], "generationConfig": config}, phrase)


@pytest.mark.parametrize(
    "thinking, canonical, include",
    [
        ({"thinkingBudget": 0}, {"thinking": {"type": "disabled"}}, False),
        ({"thinkingBudget": -1, "includeThoughts": True}, {}, True),
        ({"thinkingBudget": 512}, {"thinking": {"type": "enabled", "budget_tokens": 512}}, False),
        ({"thinkingLevel": "HIGH", "include_thoughts": True}, {"reasoning_effort": "high"}, True),
        ({"thinkingLevel": "low"}, {"reasoning_effort": "low"}, False),
    ],
)
def test_thinking_config(thinking: dict[str, Any], canonical: dict[str, Any], include: bool) -> None:
    decoded = generate_request(
        orjson.dumps({"contents": [user({"text": "x"})], "generationConfig": {"thinkingConfig": thinking}}),
        "m",
        False,
    )
    got = {k: v for k, v in decoded.request.items() if k in ("thinking", "reasoning_effort")}
    assert (got, decoded.include_thoughts) == (canonical, include)


@pytest.mark.parametrize(
    "body, phrase",
    [
        (b"{nope", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        ({}, "contents is not specified"),
        ({"contents": []}, "contents is not specified"),
        ({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, "valid role"),
        ({"contents": [{"role": "user", "parts": []}]}, "at least one part"),
        ({"contents": [user({"text": "x"})], "cachedContent": "cachedContents/1"}, "context caches"),
        (
            {"contents": [user({"text": "x"})], "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT"}]},
            "safetySettings[0].threshold",
        ),
        (
            {"contents": [user({"text": "x"})], "systemInstruction": {"parts": [{"inlineData": {}}]}},
            "only text parts",
        ),
        ({"contents": [user({"text": "x"})], "whatever": 1}, 'Unknown name "whatever"'),
        ({"contents": [user({"text": "x"})], "serviceTier": "gold"}, "'serviceTier' (TYPE_ENUM)"),
        (
            {"contents": [user({"text": "x", "mediaResolution": {"level": "MEDIA_RESOLUTION_TINY"}})]},
            "'contents[0].parts[0].mediaResolution.level' (TYPE_ENUM)",
        ),
        (
            {"contents": [user({"text": "x", "mediaResolution": {"level": "MEDIA_RESOLUTION_LOW", "x": 1}})]},
            'Unknown name "x"',
        ),
    ],
)
def test_bad_bodies(body: Any, phrase: str) -> None:
    refused(body, phrase)


def test_stream_asks_for_usage() -> None:
    out = chat({"contents": [user({"text": "x"})]}, stream=True)
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}


def test_count_tokens_requests() -> None:
    contents = [user({"text": "x"})]
    assert count_tokens_request(orjson.dumps({"contents": contents}), "m").request == {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
    }
    whole = count_tokens_request(
        orjson.dumps(
            {
                "generateContentRequest": {
                    "model": "models/m",
                    "contents": contents,
                    "systemInstruction": {"parts": [{"text": "s"}]},
                }
            }
        ),
        "m",
    ).request
    assert whole["messages"][0] == {"role": "system", "content": "s"}
    with pytest.raises(InvalidRequest, match="mutually exclusive"):
        count_tokens_request(
            orjson.dumps({"contents": contents, "generateContentRequest": {"contents": contents}}), "m"
        )


def test_embedding_requests() -> None:
    DOC = "RETRIEVAL_DOCUMENT"
    assert embed_request(
        orjson.dumps(
            {"content": {"parts": [{"text": "a"}, {"text": "b"}]}, "taskType": "RETRIEVAL_QUERY",
             "outputDimensionality": 8}
        ),
        "e",
    ) == {"model": "e", "input": ["a\nb"], "encoding_format": "float", "dimensions": 8,
          "task_type": "RETRIEVAL_QUERY"}
    batch = batch_embed_request(
        orjson.dumps(
            {
                "requests": [
                    {"model": "models/e", "content": {"parts": [{"text": "one"}]}, "taskType": DOC},
                    {"content": {"parts": [{"text": "two"}]}, "title": "t", "taskType": DOC},
                ]
            }
        ),
        "e",
    )
    assert batch == {"model": "e", "input": ["one", "two"], "encoding_format": "float",
                     "task_type": "RETRIEVAL_DOCUMENT", "title": [None, "t"]}
    # TASK_TYPE_UNSPECIFIED asks for nothing, as no taskType does.
    plain = batch_embed_request(
        orjson.dumps({"requests": [
            {"content": {"parts": [{"text": "a"}]}, "taskType": "TASK_TYPE_UNSPECIFIED"},
            {"content": {"parts": [{"text": "b"}]}},
        ]}),
        "e",
    )
    assert plain == {"model": "e", "input": ["a", "b"], "encoding_format": "float"}
    for body, phrase in [
        ({"requests": []}, "at least one request"),
        (
            {
                "requests": [
                    {"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 4},
                    {"content": {"parts": [{"text": "b"}]}},
                ]
            },
            "same outputDimensionality",
        ),
        ({"requests": [{"model": "models/x", "content": {"parts": [{"text": "a"}]}}]}, "not the model"),
        (
            {"requests": [{"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": PNG}}]}}]},
            "only text",
        ),
        ({"requests": [{"content": {"parts": [{"text": ""}]}}]}, "some text"),
        ({"requests": [{"content": {"parts": [{"text": "a"}]}, "taskType": "retrieval_query"}]},
         r"'requests\[0\].taskType' \(TYPE_ENUM\)"),
        (
            {
                "requests": [
                    {"content": {"parts": [{"text": "a"}]}, "taskType": "RETRIEVAL_QUERY"},
                    {"content": {"parts": [{"text": "b"}]}, "taskType": "RETRIEVAL_DOCUMENT"},
                ]
            },
            "same taskType",
        ),
        ({"requests": [{"content": {"parts": [{"text": "a"}]}, "title": "t"}]},
         r"'requests\[0\].title': a title is only taken with taskType RETRIEVAL_DOCUMENT"),
        ({"requests": [{"content": {"parts": [{"text": "a"}]}, "title": 5, "taskType": DOC}]},
         r"'requests\[0\].title'"),
    ]:
        with pytest.raises(InvalidRequest, match=phrase):
            batch_embed_request(orjson.dumps(body), "e")
    with pytest.raises(InvalidRequest, match="content is required"):
        embed_request(b"{}", "e")
