"""OpenAI's wire format: chat (non-stream and SSE), legacy completions, embeddings, models.

Follows https://platform.openai.com/docs/api-reference: chunk shapes, the usage chunk with
empty ``choices`` when ``stream_options.include_usage`` is set, and error bodies. Besides the
directives of ``mock/controls.py``, chat usage takes ``mock:audio_tokens=N`` and
``mock:image_tokens=N`` (units added to the prompt, in ``prompt_tokens_details``) and
``mock:audio_output_tokens=N`` and ``mock:image_output_tokens=N`` (added to the completion, in
``completion_tokens_details``), as an audio or image model reports them. ``mock:refuse`` in the
last user text answers a refusal (``message.refusal``, no content; streamed as refusal deltas).
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchboard.mock import responses as native_responses
from switchboard.mock import text as T
from switchboard.mock.common import (
    before_answer,
    error_as_json,
    in_parallel,
    json_response,
    new_id,
    now,
    read_json,
    request_controls,
    served_tier,
    stream_response,
)
from switchboard.mock.controls import Controls, text_of

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    429: "requests",
    500: "server_error",
    503: "server_error",
}
REFUSE = "mock:refuse"  # in the last user text: the model declines
REFUSAL = "I'm sorry, I can't help with that request."
MODELS = ["mock-gpt", "gpt-4o-mini", "gpt-4o", "mock-embedding", "text-embedding-3-small"]


def error_body(
    status: int, message: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": _ERROR_TYPES.get(status, "server_error"),
            "param": param,
            "code": code,
        }
    }


def error(
    status: int, message: str, code: str | None = None, param: str | None = None, retry_after: str = "",
    retry_after_ms: str = "",
) -> Response:
    headers = {"retry-after": retry_after} if retry_after else {}
    if retry_after_ms:
        headers["retry-after-ms"] = retry_after_ms
    return json_response(error_body(status, message, code, param), status, headers or None)


def injected(c: Controls) -> Response | None:
    if not c.status:
        return None
    retry = c.retry_after or ("1" if c.status == 429 else "")
    code = c.error_code or ("rate_limit_exceeded" if c.status == 429 else None)
    message = c.error_message or f"mock: injected error {c.status}"
    return error(c.status, message, code, c.error_param or None,
                 retry_after=retry, retry_after_ms=c.retry_after_ms)


def check_key(request: Request) -> Response | None:
    key = request.app.state.api_key
    if key and request.headers.get("authorization") != f"Bearer {key}":
        return error(401, "Incorrect API key provided.", "invalid_api_key")
    return None


def _last_user_text(messages: list[Any]) -> str:
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            return T.text_of(msg.get("content"))
    return ""


def _refuses(body: dict[str, Any]) -> bool:
    """``mock:refuse`` in the last user text: the model declines, as OpenAI's models answer a
    request they refuse (structured outputs' ``refusal``, no content)."""
    return REFUSE in _last_user_text(body["messages"])


def _tool_to_call(body: dict[str, Any], c: Controls) -> dict[str, Any] | None:
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
    choice = body.get("tool_choice", "auto")
    last = body["messages"][-1]
    if not tools or choice == "none" or (last.get("role") == "tool" and not c.tool_call):
        return None
    wanted = c.tool_call or (choice.get("function", {}).get("name") if isinstance(choice, dict) else None)
    for tool in tools:
        if wanted in (None, tool["function"]["name"]):
            return tool["function"]
    return tools[0]["function"]


def _answer(body: dict[str, Any], c: Controls) -> tuple[str, bool]:
    messages = body["messages"]
    if messages[-1].get("role") == "tool":
        text = c.reply or f"The tool returned: {T.text_of(messages[-1].get('content'))[:200]}"
    else:
        text = T.reply_text(_last_user_text(messages), c.reply)
    fmt = (body.get("response_format") or {}).get("type")
    if fmt in ("json_object", "json_schema"):
        text = orjson.dumps({"answer": text}).decode()
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    return T.truncate(text, limit)


def validate_chat(body: Any) -> Response | None:
    if not isinstance(body, dict):
        return error(400, "We could not parse the JSON body of your request.")
    if not isinstance(body.get("model"), str):
        return error(400, "you must provide a model parameter", param="model")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) for m in msgs):
        return error(400, "'messages' must be a non-empty array of objects", param="messages")
    stop = body.get("stop")
    if isinstance(stop, list) and len(stop) > 4:  # OpenAI's (and Azure's) maximum
        message = (f"Invalid 'stop': array too long. Expected an array with maximum length 4, but got an "
                   f"array with length {len(stop)} instead.")
        return error(400, message, code="array_above_max_length", param="stop")
    return None


_UNITS = re.compile(r"mock:(audio_tokens|image_tokens|audio_output_tokens|image_output_tokens)=(\d+)")


def _usage(body: dict[str, Any], completion: int) -> dict[str, Any]:
    prompt = T.count_tokens(body.get("messages"))
    prompt_details: dict[str, int] = {"cached_tokens": 0}
    completion_details: dict[str, int] = {"reasoning_tokens": 0}
    scanned = text_of(body.get("messages"))
    if "mock:" in scanned:
        for name, value in _UNITS.findall(scanned):
            count = int(value)
            if name.endswith("_output_tokens"):
                completion_details[name.replace("_output", "")] = count
                completion += count
            else:
                prompt_details[name] = count
                prompt += count
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": completion_details,
    }


async def chat(request: Request) -> Response:
    body = await read_json(request)
    problem = check_key(request) or validate_chat(body)
    if problem:
        return problem
    c = request_controls(request, body)
    if (fault := injected(c)) is not None:
        return error_as_json(c, body, fault)
    await before_answer(c)
    tool = _tool_to_call(body, c)
    n = body.get("n") or 1
    if body.get("stream") and not c.stream_json:
        return _chat_stream(body, c, tool, n)
    choices, completion = [], 0
    for i in range(n):
        if tool:
            args = orjson.dumps(T.arguments_for(tool.get("parameters"))).decode()
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [
                    {
                        "id": new_id("call_"),
                        "type": "function",
                        "function": {"name": tool["name"], "arguments": args},
                    }
                ],
            }
            finish, completion = "tool_calls", completion + T.count_tokens(args)
        elif _refuses(body):
            message = {"role": "assistant", "content": None, "refusal": REFUSAL}
            finish, completion = "stop", completion + len(T.words(REFUSAL))
        else:
            text, cut = _answer(body, c)
            message = {"role": "assistant", "content": text, "refusal": None}
            finish, completion = ("length" if cut else "stop"), completion + len(T.words(text))
        choice: dict[str, Any] = {"index": i, "message": message, "logprobs": None, "finish_reason": finish}
        if body.get("logprobs") and message.get("content"):
            choice["logprobs"] = {
                "content": [
                    {"token": w, "logprob": -0.01, "bytes": list(w.encode()), "top_logprobs": []}
                    for w in T.words(message["content"])
                ]
            }
        choices.append(choice)
    return json_response(
        {
            "id": new_id("chatcmpl-"),
            "object": "chat.completion",
            "created": now(),
            "model": body["model"],
            "choices": choices,
            "usage": _usage(body, completion),
            "system_fingerprint": "fp_mock",
            **served_tier(body),
        }
    )


def _chat_stream(body: dict[str, Any], c: Controls, tool: dict[str, Any] | None, n: int) -> Response:
    cid, created, model = new_id("chatcmpl-"), now(), body["model"]
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    tier = served_tier(body)

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        data: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_mock",
            "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}],
            **tier,
        }
        if include_usage:
            data["usage"] = None
        return b"data: " + orjson.dumps(data) + b"\n\n"

    events: list[bytes] = []
    completion = 0
    declared = [t["function"] for t in body.get("tools") or []
                if isinstance(t, dict) and t.get("type") == "function"]
    for i in range(n):
        if tool:
            per_call: list[list[bytes]] = []
            for position, called in enumerate(in_parallel(tool, declared, c)):
                # same_tool_index=1: every call numbered 0, as Ollama's OpenAI-compatible API does.
                index = 0 if c.same_tool_index else position
                args = orjson.dumps(T.arguments_for(called.get("parameters"))).decode()
                call_id = new_id("call_")
                start: dict[str, Any] = {"index": index, "type": "function",
                                         "function": {"name": called["name"], "arguments": ""}}
                if not c.late_call_id:
                    start["id"] = call_id
                head: dict[str, Any] = {"role": "assistant", "content": None} if position == 0 else {}
                own = [chunk(i, {**head, "tool_calls": [start]})]
                for k in range(0, len(args), 8):
                    piece: dict[str, Any] = {"index": index, "function": {"arguments": args[k : k + 8]}}
                    if c.late_call_id and k == 0:
                        piece["id"] = call_id
                    own.append(chunk(i, {"tool_calls": [piece]}))
                per_call.append(own)
                completion += T.count_tokens(args)
            if c.interleaved_calls:  # each call's first chunk, then one piece of each in turn
                events.extend(own[0] for own in per_call)
                longest = max(len(own) for own in per_call)
                events.extend(own[k] for k in range(1, longest) for own in per_call if k < len(own))
            else:
                events.extend(data for own in per_call for data in own)
            events.append(chunk(i, {}, "tool_calls"))
        elif _refuses(body):  # as OpenAI streams a refusal: refusal deltas, no content
            events.append(chunk(i, {"role": "assistant", "content": None, "refusal": ""}))
            events.extend(chunk(i, {"refusal": w}) for w in T.words(REFUSAL))
            events.append(chunk(i, {}, "stop"))
            completion += len(T.words(REFUSAL))
        else:
            text, cut = _answer(body, c)
            events.append(chunk(i, {"role": "assistant", "content": "", "refusal": None}))
            events.extend(chunk(i, {"content": w}) for w in T.words(text))
            events.append(chunk(i, {}, "length" if cut else "stop"))
            completion += len(T.words(text))
    if include_usage:
        usage = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_mock",
            "choices": [],
            "usage": _usage(body, completion),
            **tier,
        }
        events.append(b"data: " + orjson.dumps(usage) + b"\n\n")
    events.append(b"data: [DONE]\n\n")

    def fail() -> bytes:
        return b"data: " + orjson.dumps(error_body(500, "mock: injected mid-stream failure")) + b"\n\n"

    return stream_response(c, events, fail)


async def completions(request: Request) -> Response:
    body = await read_json(request)
    if problem := check_key(request):
        return problem
    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or body.get("prompt") is None:
        return error(400, "'model' and 'prompt' are required", param="prompt")
    c = request_controls(request, body)
    if (fault := injected(c)) is not None:
        return fault
    await before_answer(c)
    text, cut = T.truncate(T.reply_text(T.text_of(body["prompt"]), c.reply), body.get("max_tokens"))
    cid, created, finish = new_id("cmpl-"), now(), "length" if cut else "stop"
    prompt_tokens = T.count_tokens(body["prompt"])
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(T.words(text)),
        "total_tokens": prompt_tokens + len(T.words(text)),
    }
    if not body.get("stream"):
        return json_response(
            {
                "id": cid,
                "object": "text_completion",
                "created": created,
                "model": body["model"],
                "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
                "usage": usage,
            }
        )

    def chunk(piece: str, finish_reason: str | None) -> bytes:
        data = {
            "id": cid,
            "object": "text_completion",
            "created": created,
            "model": body["model"],
            "choices": [{"text": piece, "index": 0, "logprobs": None, "finish_reason": finish_reason}],
        }
        return b"data: " + orjson.dumps(data) + b"\n\n"

    events = [chunk(w, None) for w in T.words(text)] + [chunk("", finish)]
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append(
            b"data: "
            + orjson.dumps(
                {
                    "id": cid,
                    "object": "text_completion",
                    "created": created,
                    "model": body["model"],
                    "choices": [],
                    "usage": usage,
                }
            )
            + b"\n\n"
        )
    events.append(b"data: [DONE]\n\n")
    return stream_response(
        c, events, lambda: b"data: " + orjson.dumps(error_body(500, "mock failure")) + b"\n\n"
    )


async def embeddings(request: Request) -> Response:
    body = await read_json(request)
    if problem := check_key(request):
        return problem
    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or "input" not in body:
        return error(400, "'model' and 'input' are required", param="input")
    dims = T.dimensions(body.get("dimensions"))
    if dims is None:
        return error(400, f"Invalid 'dimensions': expected an integer from 1 to {T.MAX_DIMENSIONS}.",
                     "invalid_value", param="dimensions")
    c = request_controls(request, body)
    if (fault := injected(c)) is not None:
        return fault
    await before_answer(c)
    inputs = body["input"]
    if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
        inputs = [inputs]
    if len(inputs) > T.MAX_EMBEDDING_INPUTS:  # as OpenAI answers an array longer than it takes
        return error(400, "'$.input' is invalid. Please check the API reference.", param="input")
    data = []
    for i, item in enumerate(inputs):
        vector = T.embedding(T.text_of(item) if not isinstance(item, list) else str(item), dims)
        value: Any = T.embedding_b64(vector) if body.get("encoding_format") == "base64" else vector
        data.append({"object": "embedding", "index": i, "embedding": value})
    tokens = sum(T.count_tokens(x) if not isinstance(x, list) else len(x) for x in inputs)
    return json_response(
        {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


async def models(request: Request) -> Response:
    if problem := check_key(request):
        return problem
    return json_response(
        {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": 1700000000, "owned_by": "switchboard-mock"}
                for m in MODELS
            ],
        }
    )


async def responses(request: Request) -> Response:
    """The Responses API, natively (mock/responses.py)."""
    return await native_responses.answer(request, check_key, injected, error)


def routes() -> list[Route]:
    return [
        Route("/v1/responses", responses, methods=["POST"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
    ]
