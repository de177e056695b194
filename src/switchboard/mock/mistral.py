"""Mistral AI's wire format, served under ``/mistral/v1`` (its paths are otherwise OpenAI's).

As strict as La Plateforme (https://docs.mistral.ai/api/, request models of mistralai/client-python):

- unknown fields anywhere in the body are a 422 ``extra_forbidden`` in pydantic's shape (so
  ``seed``, ``max_completion_tokens``, ``stream_options``, ``logprobs`` or ``name`` on a user
  message are refused; Mistral wants ``random_seed`` and ``max_tokens``);
- tool call ids must be 9 characters of ``[A-Za-z0-9]`` (400, code "3280"), and a tool result must
  answer a call of an earlier assistant message (400 ``invalid_request_message_order``, "3230");
- ``tool_choice`` is auto, none, any, required or ``{"type": "function", "function": {"name"}}``;
- functions need ``parameters``; images are ``data:`` or http(s) URLs;
- streams put ``usage`` on the last chunk (the one with the finish_reason) and tool calls whole,
  in one delta; errors are ``{"object": "error", "message", "type", "param", "code"}``;
- ``guardrails`` (GuardrailConfig entries) are checked as Mistral's models check them, and one
  whose moderation ``action`` is ``block`` refuses a last user text holding ``mock:refuse``
  with Mistral's 403 ``guardrail_violation`` body (:func:`guardrail_block`).

Replies say how many images the last user message carried (``[1 image]``), so tests can see
that an image arrived.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchboard.mock import text as T
from switchboard.mock.common import (
    before_answer,
    json_response,
    new_id,
    now,
    read_json,
    request_controls,
    stream_response,
)
from switchboard.mock.controls import Controls

MODELS = ["mistral-small-latest", "mistral-large-latest", "pixtral-12b-2409", "mistral-embed"]
_TOP = frozenset({
    "model", "messages", "temperature", "top_p", "max_tokens", "stream", "stop", "random_seed",
    "response_format", "tools", "tool_choice", "presence_penalty", "frequency_penalty", "n", "prediction",
    "parallel_tool_calls", "safe_prompt", "prompt_mode", "reasoning_effort", "prompt_cache_key", "metadata",
    "guardrails",
})
_MESSAGE_FIELDS = {
    "system": frozenset({"role", "content"}),
    "user": frozenset({"role", "content"}),
    "assistant": frozenset({"role", "content", "tool_calls", "prefix"}),
    "tool": frozenset({"role", "content", "tool_call_id", "name"}),
}
_EMBED_FIELDS = frozenset({
    "model", "input", "output_dimension", "output_dtype", "encoding_format", "metadata",
})
_DTYPES = ("float", "int8", "uint8", "binary", "ubinary")
_TOOL_ID = re.compile(r"[A-Za-z0-9]{9}")
# GuardrailConfig and ModerationLlmv1Config / ModerationLlmv2Config (mistralai/client-python).
_GUARDRAIL_FIELDS = frozenset({"block_on_error", "moderation_llm_v1", "moderation_llm_v2"})
_MODERATION_FIELDS = frozenset({
    "model_name", "custom_category_thresholds", "ignore_other_categories", "action",
})
# In the last user text of a request whose guardrails block: the input is found unsafe.
GUARDRAIL_TRIGGER = "mock:refuse"
_ERRORS = {
    400: ("invalid_request_error", "Invalid request"),
    404: ("invalid_request_error", "Not found"),
    429: ("rate_limited", "Requests rate limit exceeded"),
    500: ("internal_server_error", "Internal server error"),
    503: ("service_unavailable", "Service unavailable, please retry later"),
}


class Invalid(Exception):
    """A request Mistral would refuse: status and body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def error_body(message: Any, type: str = "invalid_request_error", code: str | None = None) -> dict[str, Any]:
    return {"object": "error", "message": message, "type": type, "param": None, "code": code}


def _extra(loc: list[Any], value: Any) -> Invalid:
    detail = [{"type": "extra_forbidden", "loc": ["body", *loc], "msg": "Extra inputs are not permitted",
               "input": value}]
    return Invalid(422, error_body({"detail": detail}))


def _invalid(loc: list[Any], msg: str, value: Any = None) -> Invalid:
    detail = [{"type": "value_error", "loc": ["body", *loc], "msg": msg, "input": value}]
    return Invalid(422, error_body({"detail": detail}))


def _bad_tool_id(value: Any) -> Invalid:
    return Invalid(400, error_body(f"Tool call id was {value} but must be a-z, A-Z, 0-9, with a length of 9.",
                                   "invalid_function_call", "3280"))


def _check_fields(obj: dict[str, Any], allowed: frozenset[str], loc: list[Any]) -> None:
    for key, value in obj.items():
        if key not in allowed:
            raise _extra([*loc, key], value)


def _check_image(part: dict[str, Any], loc: list[Any]) -> None:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise _invalid([*loc, "image_url"], "Input should be a valid string")
    if url.startswith("data:"):
        head, _, data = url.partition(",")
        if not head.endswith(";base64") or not data:
            raise Invalid(400, error_body("Image data URL must be base64 encoded"))
        try:
            base64.b64decode(data, validate=True)
        except ValueError:
            raise Invalid(400, error_body("Invalid base64 image data")) from None
    elif not url.startswith(("http://", "https://")):
        raise Invalid(400, error_body(f"Invalid image URL: {url[:50]}"))


def _check_content(content: Any, loc: list[Any]) -> None:
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _invalid(loc, "Input should be a valid string or list")
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            _check_fields(part, frozenset({"type", "text"}), [*loc, j])
        elif kind == "image_url":
            _check_fields(part, frozenset({"type", "image_url"}), [*loc, j])
            _check_image(part, [*loc, j])
        else:
            raise _invalid([*loc, j], f"Input tag '{kind}' found using 'type' does not match any tag")


def _check_message(msg: Any, i: int) -> None:
    role = msg.get("role") if isinstance(msg, dict) else None
    if role not in _MESSAGE_FIELDS:
        raise _invalid(["messages", i], f"Input tag '{role}' found using 'role' does not match any of the "
                       "expected tags: 'assistant', 'system', 'tool', 'user'")
    _check_fields(msg, _MESSAGE_FIELDS[role], ["messages", i, role])
    _check_content(msg.get("content"), ["messages", i, role, "content"])
    for call in msg.get("tool_calls") or ():
        if not isinstance(call, dict) or not _TOOL_ID.fullmatch(str(call.get("id"))):
            raise _bad_tool_id(call.get("id") if isinstance(call, dict) else call)
    if role == "tool" and not _TOOL_ID.fullmatch(str(msg.get("tool_call_id"))):
        raise _bad_tool_id(msg.get("tool_call_id"))


def _check_tools(body: dict[str, Any]) -> None:
    for i, tool in enumerate(body.get("tools") or ()):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _invalid(["tools", i, "function", "name"], "Field required")
        if not isinstance(fn.get("parameters"), dict):
            raise _invalid(["tools", i, "function", "parameters"], "Field required")
    choice = body.get("tool_choice")
    if isinstance(choice, str) and choice not in ("auto", "none", "any", "required"):
        raise _invalid(["tool_choice"], "Input should be 'auto', 'none', 'any' or 'required'", choice)
    # ToolChoice {type: "function", function: {name}}: OpenAI's allowed_tools or custom forms fail
    # its validation.
    if isinstance(choice, dict) and (
        choice.get("type", "function") != "function" or set(choice) - {"type", "function"}
        or not isinstance((choice.get("function") or {}).get("name"), str)
    ):
        raise _invalid(["tool_choice", "ToolChoice"], "Input should be a valid ToolChoice", choice)


def _check_guardrails(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        raise _invalid(["guardrails"], "Input should be a valid list", value)
    for i, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise _invalid(["guardrails", i], "Input should be a valid dictionary", entry)
        _check_fields(entry, _GUARDRAIL_FIELDS, ["guardrails", i])
        for name in ("moderation_llm_v1", "moderation_llm_v2"):
            moderation = entry.get(name)
            if moderation is None:
                continue
            if not isinstance(moderation, dict):
                raise _invalid(["guardrails", i, name], "Input should be a valid dictionary", moderation)
            _check_fields(moderation, _MODERATION_FIELDS, ["guardrails", i, name])
            if moderation.get("action", "none") not in ("none", "block"):
                raise _invalid(["guardrails", i, name, "action"], "Input should be 'none' or 'block'",
                               moderation["action"])


def guardrail_block(body: dict[str, Any]) -> Response | None:
    """Mistral's guardrails moderate the input before the model sees it: a moderation entry
    whose action is ``block`` refuses a last user text holding ``mock:refuse``, as Mistral
    refuses one (403, ``type: guardrail_violation``, each moderator's categories with
    ``violated``: the first of its thresholds, or ``dangerous``)."""
    users = [m for m in body["messages"] if m["role"] == "user"]
    if not users or GUARDRAIL_TRIGGER not in _text(users[-1].get("content")):
        return None
    verdicts = []
    for entry in body.get("guardrails") or ():
        for name in ("moderation_llm_v1", "moderation_llm_v2"):
            moderation = entry.get(name)
            if isinstance(moderation, dict) and moderation.get("action") == "block":
                names = list(moderation.get("custom_category_thresholds") or {}) or ["dangerous"]
                categories = {c: {"violated": i == 0} for i, c in enumerate(names)}
                verdicts.append({name: {"action": "block", "categories": categories}})
    if not verdicts:
        return None
    refusal = {**error_body("Request blocked by guardrail policy", "guardrail_violation", "1920"),
               "raw_status_code": 403, "guardrails": verdicts}
    return json_response(refusal, 403)


def validate_chat(body: Any) -> None:
    if not isinstance(body, dict):
        raise Invalid(400, error_body("Invalid JSON body"))
    _check_fields(body, _TOP, [])
    if not isinstance(body.get("model"), str):
        raise _invalid(["model"], "Field required")
    if body.get("prompt_mode") not in (None, "reasoning"):  # MistralPromptMode
        raise _invalid(["prompt_mode"], "Input should be 'reasoning'", body["prompt_mode"])
    prediction = body.get("prediction")  # Prediction {type: "content", content: str}
    if prediction is not None and not (
        isinstance(prediction, dict) and prediction.get("type", "content") == "content"
        and isinstance(prediction.get("content", ""), str)
    ):
        raise _invalid(["prediction", "content"], "Input should be a valid string", prediction)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid(["messages"], "Field required")
    for i, msg in enumerate(messages):
        _check_message(msg, i)
    _check_answers(messages)
    _check_tools(body)
    _check_guardrails(body.get("guardrails"))


def _check_answers(messages: list[dict[str, Any]]) -> None:
    calls: set[str] = set()
    for msg in messages:
        calls.update(str(c.get("id")) for c in msg.get("tool_calls") or () if isinstance(c, dict))
        if msg["role"] == "tool" and msg.get("tool_call_id") not in calls:
            message = f"Unexpected tool call id {msg.get('tool_call_id')} in tool results"
            raise Invalid(400, error_body(message, "invalid_request_message_order", "3230"))


def check_key(request: Request) -> Response | None:
    key = request.app.state.api_key
    if key and request.headers.get("authorization") != f"Bearer {key}":
        return json_response({"message": "Unauthorized", "request_id": new_id("")}, 401)
    return None


def injected(c: Controls) -> Response | None:
    if not c.status:
        return None
    if c.status == 400 and c.error_code == "context_length_exceeded":
        message = ("Prompt contains 40960 tokens and 0 draft tokens, too large for model with 32768 maximum "
                   "context length")
        return json_response(error_body(message), 400)
    kind, message = _ERRORS.get(c.status, ("invalid_request_error", f"mock: injected error {c.status}"))
    headers = {"retry-after": c.retry_after or "1"} if c.status == 429 else None
    return json_response(error_body(message, kind, c.error_code or None), c.status, headers)


# --------------------------------------------------------------------------- answers


def _images(msg: dict[str, Any]) -> int:
    content = msg.get("content")
    return sum(1 for p in content if p.get("type") == "image_url") if isinstance(content, list) else 0


def _text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
    return str(content or "")


def _answer(body: dict[str, Any], c: Controls) -> tuple[str, bool]:
    messages = body["messages"]
    last = messages[-1]
    if last["role"] == "tool":
        text = c.reply or f"The tool returned: {_text(last.get('content'))[:200]}"
    else:
        user: dict[str, Any] = next((m for m in reversed(messages) if m["role"] == "user"), {})
        text = T.reply_text(_text(user.get("content")), c.reply)
        if images := _images(user):
            text += f" [{images} image{'s' if images > 1 else ''}]"
    if (body.get("response_format") or {}).get("type") in ("json_object", "json_schema"):
        text = orjson.dumps({"answer": text}).decode()
    return T.truncate(text, body.get("max_tokens"))


def _tool(body: dict[str, Any], c: Controls) -> dict[str, Any] | None:
    tools = [t["function"] for t in body.get("tools") or ()]
    choice = body.get("tool_choice", "auto")
    if not tools or choice == "none" or (body["messages"][-1]["role"] == "tool" and not c.tool_call):
        return None
    wanted = c.tool_call or (choice.get("function", {}).get("name") if isinstance(choice, dict) else None)
    return next((t for t in tools if t["name"] == wanted), tools[0])


def _tool_call(tool: dict[str, Any]) -> dict[str, Any]:
    args = orjson.dumps(T.arguments_for(tool.get("parameters"))).decode()
    function = {"name": tool["name"], "arguments": args}
    return {"id": new_id("")[:9], "type": "function", "index": 0, "function": function}


def _usage(body: dict[str, Any], completion: int) -> dict[str, Any]:
    prompt = T.count_tokens(body["messages"])
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _choice_parts(body: dict[str, Any], c: Controls) -> tuple[dict[str, Any], str, int]:
    tool = _tool(body, c)
    if tool:
        call = _tool_call(tool)
        return {"role": "assistant", "content": "", "tool_calls": [call]}, "tool_calls", 10
    text, cut = _answer(body, c)
    message = {"role": "assistant", "content": text, "tool_calls": None}
    return message, ("length" if cut else "stop"), len(T.words(text))


async def chat(request: Request) -> Response:
    body = await read_json(request)
    if (problem := check_key(request)) is not None:
        return problem
    try:
        validate_chat(body)
    except Invalid as exc:
        return json_response(exc.body, exc.status)
    if body.get("guardrails") and (blocked := guardrail_block(body)) is not None:
        return blocked
    c = request_controls(request, body)
    if (fault := injected(c)) is not None:
        return fault
    await before_answer(c)
    n = body.get("n") or 1
    parts = [_choice_parts(body, c) for _ in range(n)]
    if body.get("stream"):
        return _stream(body, c, parts)
    choices = [{"index": i, "message": m, "finish_reason": f} for i, (m, f, _) in enumerate(parts)]
    usage = _usage(body, sum(p[2] for p in parts))
    return json_response({"id": new_id(""), "object": "chat.completion", "created": now(),
                          "model": body["model"], "choices": choices, "usage": usage})


def _stream(body: dict[str, Any], c: Controls, parts: list[tuple[dict[str, Any], str, int]]) -> Response:
    cid, created, model = new_id(""), now(), body["model"]

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> bytes:
        data: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created,
                                "model": model,
                                "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}
        if usage is not None:
            data["usage"] = usage
        return b"data: " + orjson.dumps(data) + b"\n\n"

    events = []
    for i, (message, finish, _) in enumerate(parts):
        events.append(chunk(i, {"role": "assistant", "content": ""}))
        if message.get("tool_calls"):
            events.append(chunk(i, {"tool_calls": message["tool_calls"]}))
        else:
            events.extend(chunk(i, {"content": w}) for w in T.words(message["content"]))
        last = i == len(parts) - 1
        usage = _usage(body, sum(p[2] for p in parts)) if last else None
        events.append(chunk(i, {"content": ""}, finish, usage))
    events.append(b"data: [DONE]\n\n")

    def fail() -> bytes:
        body = error_body("mock: injected mid-stream failure", "internal_server_error")
        return b"data: " + orjson.dumps(body) + b"\n\n"

    return stream_response(c, events, fail)


async def embeddings(request: Request) -> Response:
    body = await read_json(request)
    if (problem := check_key(request)) is not None:
        return problem
    try:
        if not isinstance(body, dict):
            raise Invalid(400, error_body("Invalid JSON body"))
        _check_fields(body, _EMBED_FIELDS, [])
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not all(isinstance(x, str) for x in inputs):
            raise _invalid(["input"], "Input should be a valid string or list of strings", inputs)
        dims = T.dimensions(body.get("output_dimension"))
        if dims is None:
            raise _invalid(["output_dimension"], f"Input should be an integer from 1 to {T.MAX_DIMENSIONS}",
                           body.get("output_dimension"))
        dtype = body.get("output_dtype", "float")
        if dtype not in _DTYPES:
            allowed = "'float', 'int8', 'uint8', 'binary' or 'ubinary'"
            raise _invalid(["output_dtype"], f"Input should be {allowed}", dtype)
    except Invalid as exc:
        return json_response(exc.body, exc.status)
    c = request_controls(request, body)
    if (fault := injected(c)) is not None:
        return fault
    await before_answer(c)
    vectors = [T.typed_embedding(T.embedding(x, dims), dtype) for x in inputs]
    b64 = body.get("encoding_format") == "base64"
    data = [{"object": "embedding", "embedding": T.embedding_b64(v) if b64 else v, "index": i}
            for i, v in enumerate(vectors)]
    tokens = sum(T.count_tokens(x) for x in inputs)
    return json_response({"id": new_id(""), "object": "list", "data": data, "model": body.get("model"),
                          "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}})


async def models(request: Request) -> Response:
    if (problem := check_key(request)) is not None:
        return problem
    return json_response({"object": "list", "data": [
        {"id": m, "object": "model", "created": 1700000000, "owned_by": "mistralai"} for m in MODELS]})


def routes() -> list[Route]:
    return [
        Route("/mistral/v1/chat/completions", chat, methods=["POST"]),
        Route("/mistral/v1/embeddings", embeddings, methods=["POST"]),
        Route("/mistral/v1/models", models, methods=["GET"]),
    ]
