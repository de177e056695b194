"""Validation of inbound OpenAI-shaped request bodies.

Hand-written instead of pydantic models because it runs on every request: checking a few known
fields in place is several times cheaper than building and dumping models, and the body is
forwarded as-is (unknown fields pass through to OpenAI-type upstreams). Each error names the
offending param the way OpenAI does (``messages[0].role``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from switchboard.errors import InvalidRequest
from switchboard.prompts.reference import parse_reference
from switchboard.providers import embedding_task

Check = Callable[[Any], str | None]

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


def _fail(param: str, problem: str) -> InvalidRequest:
    sep = "" if problem.startswith((".", "[")) else " "
    return InvalidRequest(f"'{param}'{sep}{problem}", param=param, code="invalid_value")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def integer(minimum: int | None = None, maximum: int | None = None) -> Check:
    def check(v: Any) -> str | None:
        if not _is_int(v):
            return "must be an integer"
        if minimum is not None and v < minimum:
            return f"must be at least {minimum}"
        if maximum is not None and v > maximum:
            return f"must be at most {maximum}"
        return None

    return check


def number(minimum: float, maximum: float) -> Check:
    def check(v: Any) -> str | None:
        if not _is_number(v):
            return "must be a number"
        if not minimum <= v <= maximum:
            return f"must be between {minimum:g} and {maximum:g}"
        return None

    return check


def boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be a boolean"


def string(v: Any) -> str | None:
    return None if isinstance(v, str) else "must be a string"


def obj(v: Any) -> str | None:
    return None if isinstance(v, dict) else "must be an object"


def one_of(*values: str) -> Check:
    allowed = ", ".join(repr(x) for x in values)

    def check(v: Any) -> str | None:
        return None if v in values else f"must be one of {allowed}"

    return check


def stop(v: Any) -> str | None:
    if isinstance(v, str):
        return None
    if isinstance(v, list) and all(isinstance(s, str) for s in v):
        return None if len(v) <= 4 else "must hold at most 4 sequences"
    return "must be a string or an array of strings"


def tools(v: Any) -> str | None:
    if not isinstance(v, list):
        return "must be an array"
    for i, tool in enumerate(v):
        # A bad tool is refused naming its own place (tools[3].function.name), as OpenAI does, so
        # the caller can tell which of many tools to fix: raised here, not returned for 'tools'.
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise _fail(f"tools[{i}]", "must be an object with a 'type'")
        if tool["type"] == "function":
            fn = tool.get("function")
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise _fail(f"tools[{i}].function.name", "is required")
            if not _FUNCTION_NAME.match(fn["name"]):
                raise _fail(f"tools[{i}].function.name",
                            "must be 1-128 letters, digits, '_', '-', '.' or ':'")
            if "parameters" in fn and not isinstance(fn["parameters"], dict):
                raise _fail(f"tools[{i}].function.parameters", "must be an object")
    return None


def tool_choice(v: Any) -> str | None:
    if isinstance(v, str):
        return (
            None if v in ("none", "auto", "required") else "must be 'none', 'auto', 'required' or an object"
        )
    if isinstance(v, dict) and isinstance(v.get("type"), str):
        return None
    return "must be 'none', 'auto', 'required' or an object"


def response_format(v: Any) -> str | None:
    if not isinstance(v, dict):
        return "must be an object"
    # A bad part is refused naming its own path (response_format.json_schema.name), as OpenAI
    # does: raised here, not returned for 'response_format'.
    kind = v.get("type")
    if kind not in ("text", "json_object", "json_schema"):
        raise _fail("response_format.type", "must be 'text', 'json_object' or 'json_schema'")
    if kind == "json_schema":
        schema = v.get("json_schema")
        if not isinstance(schema, dict):
            raise _fail("response_format.json_schema", "is required (an object) when 'type' is 'json_schema'")
        if not isinstance(schema.get("name"), str):
            raise _fail("response_format.json_schema.name", "is required (a string)")
    return None


def stream_options(v: Any) -> str | None:
    if not isinstance(v, dict):
        return "must be an object"
    if "include_usage" in v and not isinstance(v["include_usage"], bool):
        raise _fail("stream_options.include_usage", "must be a boolean")  # its own path, as above
    return None


CHAT_FIELDS: dict[str, Check] = {
    "stream": boolean,
    "stream_options": stream_options,
    "max_tokens": integer(1),
    "max_completion_tokens": integer(1),
    "temperature": number(0, 2),
    "top_p": number(0, 1),
    "presence_penalty": number(-2, 2),
    "frequency_penalty": number(-2, 2),
    "n": integer(1, 128),
    "stop": stop,
    "seed": integer(),
    "tools": tools,
    "tool_choice": tool_choice,
    "parallel_tool_calls": boolean,
    "response_format": response_format,
    "logprobs": boolean,
    "top_logprobs": integer(0, 20),
    "logit_bias": obj,
    "user": string,
    "metadata": obj,
    "store": boolean,
}


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object", code="invalid_json")
    return body


def model_name(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise InvalidRequest(
            "you must provide a model parameter", param="model", code="missing_required_parameter"
        )
    if not isinstance(model, str) or not model:
        raise _fail("model", "must be a non-empty string")
    return model


def check_fields(body: dict[str, Any], fields: dict[str, Check]) -> None:
    for name, value in body.items():
        check = fields.get(name)
        if check is not None and value is not None and (problem := check(value)) is not None:
            raise _fail(name, problem)


def _content(i: int, role: str, content: Any, msg: dict[str, Any]) -> None:
    param = f"messages[{i}].content"
    if content is None:
        # As on OpenAI: an assistant turn may be only tool calls, only an earlier audio reply
        # named by its id (messages[i].audio), or only an earlier reply's refusal text (a refused
        # reply has content null; translated types send the refusal as text, providers/turns.py).
        if role == "assistant" and (msg.get("tool_calls") or msg.get("function_call") or msg.get("audio")
                                    or isinstance(msg.get("refusal"), str)):
            return
        raise _fail(param, "is required for this role")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _fail(param, "must be a string or an array of content parts")
    if not content and role != "assistant":
        raise _fail(param, "must not be empty")
    for j, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise _fail(f"{param}[{j}]", "must be an object with a 'type'")
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise _fail(f"{param}[{j}].text", "must be a string")
        if part["type"] == "image_url":
            image = part.get("image_url")
            if not isinstance(image, dict) or not isinstance(image.get("url"), str):
                raise _fail(f"{param}[{j}].image_url.url", "must be a string")


def _tool_calls(i: int, calls: Any) -> None:
    param = f"messages[{i}].tool_calls"
    if not isinstance(calls, list):
        raise _fail(param, "must be an array")
    for j, call in enumerate(calls):
        if isinstance(call, dict) and call.get("type") == "custom":
            _custom_call(f"{param}[{j}]", call)
            continue
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _fail(f"{param}[{j}].function.name", "is required")
        if not isinstance(fn.get("arguments", ""), str):
            raise _fail(f"{param}[{j}].function.arguments", "must be a JSON-encoded string")
        if not isinstance(call.get("id", ""), str):
            raise _fail(f"{param}[{j}].id", "must be a string")


def _custom_call(param: str, call: dict[str, Any]) -> None:
    """A call of an OpenAI custom (free-form) tool: its input is text, not JSON arguments. Passed
    to the OpenAI family; the translated types refuse it (capability row
    ``messages.tool_calls:custom``)."""
    custom = call.get("custom")
    if not isinstance(custom, dict) or not isinstance(custom.get("name"), str):
        raise _fail(f"{param}.custom.name", "is required")
    if not isinstance(custom.get("input"), str):
        raise _fail(f"{param}.custom.input", "must be a string")
    if not isinstance(call.get("id", ""), str):
        raise _fail(f"{param}.id", "must be a string")


def _audio(i: int, audio: Any) -> None:
    # An earlier audio reply, named by the id the reply carried (message.audio.id).
    if not isinstance(audio, dict) or not isinstance(audio.get("id"), str) or not audio["id"]:
        raise _fail(f"messages[{i}].audio.id", "is required (the id of an earlier audio reply)")


def messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    msgs = body.get("messages")
    if msgs is None:
        raise InvalidRequest(
            "'messages' is a required property", param="messages", code="missing_required_parameter"
        )
    if not isinstance(msgs, list):
        raise _fail("messages", "must be an array")
    if not msgs:
        raise _fail("messages", "must contain at least one message")
    for i, msg in enumerate(msgs):
        if not isinstance(msg, dict):
            raise _fail(f"messages[{i}]", "must be an object")
        role = msg.get("role")
        if not isinstance(role, str) or role not in ROLES:  # an array or object cannot be looked up
            raise _fail(f"messages[{i}].role", f"must be one of {', '.join(sorted(ROLES))}")
        content = msg.get("content")
        if not isinstance(content, str):  # text needs no further look: no call for it
            _content(i, role, content, msg)
        if role == "tool" and not isinstance(msg.get("tool_call_id"), str):
            raise _fail(f"messages[{i}].tool_call_id", "is required for tool messages")
        if msg.get("tool_calls") is not None:
            _tool_calls(i, msg["tool_calls"])
        if "name" in msg and not isinstance(msg["name"], str):
            raise _fail(f"messages[{i}].name", "must be a string")
        if msg.get("audio") is not None and role == "assistant":
            _audio(i, msg["audio"])
    return msgs


def chat_request(body: Any) -> dict[str, Any]:
    body = require_object(body)
    if body.get("prompt") is not None:
        return prompted_chat_request(body)
    model_name(body)
    messages(body)
    check_fields(body, CHAT_FIELDS)
    if body.get("stream_options") is not None and not body.get("stream"):
        raise _fail("stream_options", "is only allowed when 'stream' is true")
    return body


def prompted_chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """A chat request naming a registry prompt (docs/prompts.md): ``model`` and ``messages`` are
    optional (an empty model is none; the messages given follow the prompt's); the prompt stage
    (pipeline/prompt.py) completes the request. ``prompt`` becomes the parsed reference."""
    body["prompt"] = parse_reference(body["prompt"])
    if body.get("model") in (None, ""):
        body.pop("model", None)
    else:
        model_name(body)
    if body.get("messages") in (None, []):
        body["messages"] = []
    else:
        messages(body)
    check_fields(body, CHAT_FIELDS)
    if body.get("stream_options") is not None and not body.get("stream"):
        raise _fail("stream_options", "is only allowed when 'stream' is true")
    return body


EMBEDDING_FIELDS: dict[str, Check] = {
    "encoding_format": one_of("float", "base64"),
    "dimensions": integer(1),
    "user": string,
}


def _embedding_input(value: Any) -> str | None:
    if isinstance(value, str):
        return None if value else "must not be empty"
    if not isinstance(value, list) or not value:
        return "must be a string or a non-empty array"
    if all(isinstance(x, str) for x in value):
        return None if all(value) else "must not contain empty strings"
    if all(_is_int(x) for x in value):
        return None
    if all(isinstance(x, list) and x and all(_is_int(t) for t in x) for x in value):
        return None
    return "must be a string, an array of strings, or token arrays"


def embeddings_request(body: Any) -> dict[str, Any]:
    body = require_object(body)
    model_name(body)
    if "input" not in body:
        raise InvalidRequest(
            "'input' is a required property", param="input", code="missing_required_parameter"
        )
    if (problem := _embedding_input(body["input"])) is not None:
        raise _fail("input", problem)
    check_fields(body, EMBEDDING_FIELDS)
    # The retrieval hints are checked whichever provider serves (some only take them as a hint).
    embedding_task.check(body)
    return body


COMPLETION_FIELDS: dict[str, Check] = {
    "stream": boolean,
    "stream_options": stream_options,
    "max_tokens": integer(0),
    "temperature": number(0, 2),
    "top_p": number(0, 1),
    "n": integer(1, 128),
    "stop": stop,
    "seed": integer(),
    "logprobs": integer(0, 5),
    "echo": boolean,
    "best_of": integer(1, 20),
    "suffix": string,
    "user": string,
}


def completions_request(body: Any) -> dict[str, Any]:
    body = require_object(body)
    model_name(body)
    prompt = body.get("prompt")
    if prompt is None:
        raise InvalidRequest(
            "'prompt' is a required property", param="prompt", code="missing_required_parameter"
        )
    if not isinstance(prompt, str | list):
        raise _fail("prompt", "must be a string or an array")
    check_fields(body, COMPLETION_FIELDS)
    return body
