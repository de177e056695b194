"""OpenAI's Responses API on the mock (``POST /v1/responses``; Azure's ``/openai/responses``), for
deployments that receive Responses requests natively.

Follows https://platform.openai.com/docs/api-reference/responses: a Response object with a
message (or a function call when function tools are given and the last input item is not a
function_call_output), usage, and the typed event stream with sequence numbers. Directives of
``mock/controls.py`` apply (injected errors, pacing, ``fail_after``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from switchboard.mock import text as T
from switchboard.mock.common import (
    before_answer,
    json_response,
    new_id,
    now,
    read_json,
    request_controls,
    served_tier,
    stream_response,
)
from switchboard.mock.controls import Controls

Check = Callable[[Request], Response | None]
ErrorFn = Callable[..., Response]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _last_user_text(items: Any) -> str:
    if isinstance(items, str):
        return items
    for item in reversed(items if isinstance(items, list) else []):
        if isinstance(item, dict) and item.get("type", "message") == "message" and item.get("role") == "user":
            return _text_of(item.get("content"))
    return ""


def _refused_input(items: Any) -> str | None:
    """What OpenAI refuses (400, param ``input``) in the input items, or None: a
    ``function_call_output`` with no ``function_call`` before it (unless an ``item_reference``
    may name the call: an item stored upstream, which the mock does not keep), or an output part
    of another type than ``input_text``, ``input_image`` and ``input_file``."""
    calls: set[Any] = set()
    orphans: list[str] = []
    referenced = False
    for item in items if isinstance(items, list) else ():
        kind = item.get("type") if isinstance(item, dict) else None
        referenced = referenced or kind == "item_reference"
        if kind == "function_call":
            calls.add(item.get("call_id"))
        elif kind == "function_call_output":
            if item.get("call_id") not in calls:
                orphans.append(str(item.get("call_id")))
            for part in item.get("output") if isinstance(item.get("output"), list) else ():
                part_type = part.get("type") if isinstance(part, dict) else None
                if part_type not in ("input_text", "input_image", "input_file"):
                    return (f"Invalid value: '{part_type}'. Supported values are: 'input_text', "
                            "'input_image', and 'input_file'.")
    if orphans and not referenced:
        return f"No tool call found for function call output with call_id {orphans[0]}."
    return None


def _tool(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
    items = body.get("input")
    last = items[-1] if isinstance(items, list) and items else {}
    if not tools or body.get("tool_choice") == "none" or last.get("type") == "function_call_output":
        return None
    choice = body.get("tool_choice")
    wanted = choice.get("name") if isinstance(choice, dict) else None
    return next((t for t in tools if wanted in (None, t.get("name"))), tools[0])


def _output(body: dict[str, Any], c: Controls) -> tuple[list[dict[str, Any]], int, bool]:
    tool = _tool(body)
    if tool is not None:
        args = orjson.dumps(T.arguments_for(tool.get("parameters"))).decode()
        item = {
            "id": new_id("fc_"),
            "type": "function_call",
            "status": "completed",
            "call_id": new_id("call_"),
            "name": tool.get("name", ""),
            "arguments": args,
        }
        return [item], T.count_tokens(args), False
    items = body.get("input")
    last = items[-1] if isinstance(items, list) and items else {}
    if isinstance(last, dict) and last.get("type") == "function_call_output":
        text = c.reply or f"The tool returned: {_text_of(last.get('output'))[:200]}"
    else:
        text = T.reply_text(_last_user_text(items), c.reply)
    if ((body.get("text") or {}).get("format") or {}).get("type") in ("json_schema", "json_object"):
        text = orjson.dumps({"answer": text}).decode()
    text, cut = T.truncate(text, body.get("max_output_tokens"))
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    message = {
        "id": new_id("msg_"),
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [part],
    }
    return [message], len(T.words(text)), cut


def _response(
    body: dict[str, Any], rid: str, output: list[dict[str, Any]], completion: int, cut: bool
) -> dict[str, Any]:
    prompt = T.count_tokens(orjson.dumps(body.get("input")).decode()) + T.count_tokens(
        body.get("instructions") or ""
    )
    return {
        "id": rid,
        "object": "response",
        "created_at": now(),
        "status": "incomplete" if cut else "completed",
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "instructions": body.get("instructions"),
        "model": body.get("model"),
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "temperature": body.get("temperature", 1.0),
        "top_p": body.get("top_p", 1.0),
        "store": body.get("store", True),
        "metadata": body.get("metadata") or {},
        "text": body.get("text") or {"format": {"type": "text"}},
        "usage": {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion,
        },
        **served_tier(body),
    }


def _events(final: dict[str, Any]) -> list[bytes]:
    seq = 0
    out: list[bytes] = []

    def emit(kind: str, **fields: Any) -> None:
        nonlocal seq
        out.append(
            b"event: "
            + kind.encode()
            + b"\ndata: "
            + orjson.dumps({"type": kind, "sequence_number": seq, **fields})
            + b"\n\n"
        )
        seq += 1

    start = {**final, "status": "in_progress", "output": [], "usage": None}
    emit("response.created", response=start)
    emit("response.in_progress", response=start)
    for i, item in enumerate(final["output"]):
        if item["type"] == "message":
            text = item["content"][0]["text"]
            emit(
                "response.output_item.added",
                output_index=i,
                item={**item, "status": "in_progress", "content": []},
            )
            emit(
                "response.content_part.added",
                item_id=item["id"],
                output_index=i,
                content_index=0,
                part={**item["content"][0], "text": ""},
            )
            for word in T.words(text):
                emit(
                    "response.output_text.delta",
                    item_id=item["id"],
                    output_index=i,
                    content_index=0,
                    delta=word,
                    logprobs=[],
                )
            emit(
                "response.output_text.done",
                item_id=item["id"],
                output_index=i,
                content_index=0,
                text=text,
                logprobs=[],
            )
            emit(
                "response.content_part.done",
                item_id=item["id"],
                output_index=i,
                content_index=0,
                part=item["content"][0],
            )
        else:
            emit(
                "response.output_item.added",
                output_index=i,
                item={**item, "status": "in_progress", "arguments": ""},
            )
            args = item["arguments"]
            for k in range(0, len(args), 8):
                emit(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=i,
                    delta=args[k : k + 8],
                )
            emit("response.function_call_arguments.done", item_id=item["id"], output_index=i, arguments=args)
        emit("response.output_item.done", output_index=i, item=item)
    emit("response.completed" if final["status"] == "completed" else "response.incomplete", response=final)
    return out


def _failed(final: dict[str, Any], c: Controls, said: str) -> dict[str, Any]:
    """``final`` as OpenAI answers a response that failed: status failed, its error (code
    ``error_code``'s, else server_error), no output."""
    error = {"code": c.error_code or "server_error", "message": said}
    return {**final, "status": "failed", "output": [], "usage": None, "error": error,
            "incomplete_details": None}


async def answer(
    request: Request, check: Check, injected: Callable[[Controls], Response | None], error: ErrorFn
) -> Response:
    if (problem := check(request)) is not None:
        return problem
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or body.get("input") is None:
        return error(400, "'model' and 'input' are required")
    if (refused := _refused_input(body.get("input"))) is not None:
        return error(400, refused)
    c = request_controls(request, body)
    if (fault := injected(c)) is not None:
        return fault
    await before_answer(c)
    output, completion, cut = _output(body, c)
    final = _response(body, new_id("resp_"), output, completion, cut)
    if not body.get("stream"):
        return json_response(_failed(final, c, "mock: injected failure") if c.failed_event else final)

    def fail() -> bytes:
        if c.failed_event:  # as OpenAI ends a stream whose response failed
            failed = _failed(final, c, "mock: injected mid-stream failure")
            event = {"type": "response.failed", "sequence_number": 0, "response": failed}
            return b"event: response.failed\ndata: " + orjson.dumps(event) + b"\n\n"
        data = {
            "type": "error",
            "code": c.error_code or "server_error",
            "message": "mock: injected mid-stream failure",
            "param": None,
            "sequence_number": 0,
        }
        return b"event: error\ndata: " + orjson.dumps(data) + b"\n\n"

    return stream_response(c, _events(final), fail)
