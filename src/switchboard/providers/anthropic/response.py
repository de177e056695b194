"""Anthropic Message (and error) -> canonical chat.completion (and gateway error).

References (https://platform.claude.com/docs/en/): api/messages/create (the Message object and
its usage), build-with-claude/handling-stop-reasons, build-with-claude/prompt-caching (usage
fields: input_tokens excludes cached tokens), api/errors (error body and types).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from switchboard.errors import GatewayError
from switchboard.providers.anthropic.request import JSON_TOOL
from switchboard.providers.base import JSON
from switchboard.providers.counts import count
from switchboard.providers.errors import invalid_body, loads_object, text_message, upstream_error
from switchboard.providers.target import Target

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Anthropic error type -> the HTTP status it comes with (https://platform.claude.com/docs/en/api/errors);
# used for errors that arrive inside a stream, which have no status of their own.
STATUS_BY_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

# Anthropic has no error code for an over-long prompt; these are the messages it uses.
_CONTEXT_MESSAGES = ("prompt is too long", "exceed context limit", "context window")


def finish_reason(stop_reason: Any, json_mode: bool = False) -> str:
    if json_mode and stop_reason == "tool_use":
        return "stop"  # the forced JSON tool call is the answer, not a call for the client
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


_count = count  # providers/counts.py: whole, not negative, bounded


def usage(raw: Any) -> JSON:
    """Anthropic's input_tokens excludes cache reads and writes; OpenAI's prompt_tokens includes them."""
    u = raw if isinstance(raw, dict) else {}
    read = _count(u.get("cache_read_input_tokens"))
    created = _count(u.get("cache_creation_input_tokens"))
    # The write tiers (5-minute, 1-hour), priced apart; their sum is cache_creation_input_tokens.
    raw_tiers = u.get("cache_creation")
    tiers: JSON = raw_tiers if isinstance(raw_tiers, dict) else {}
    hour = _count(tiers.get("ephemeral_1h_input_tokens"))
    created = max(created, _count(tiers.get("ephemeral_5m_input_tokens")) + hour)
    prompt = _count(u.get("input_tokens")) + read + created
    completion = _count(u.get("output_tokens"))
    details: JSON = {"cached_tokens": read, "cache_creation_tokens": created}
    if hour:
        details["cache_creation_1h_tokens"] = hour
    out: JSON = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": details,
    }
    thinking = u.get("output_tokens_details")
    if isinstance(thinking, dict) and "thinking_tokens" in thinking:
        out["completion_tokens_details"] = {"reasoning_tokens": _count(thinking["thinking_tokens"])}
    # Server tools: each web search is billed on top of the tokens (spend/units.py). Web fetches
    # are not (their content is billed as input tokens).
    tools = u.get("server_tool_use")
    if isinstance(tools, dict) and (searches := _count(tools.get("web_search_requests"))):
        out["units"] = {"web_search_requests": searches}
    return out


def _dumps(value: Any) -> str:
    return orjson.dumps(value if value is not None else {}).decode()


def chat_completion(body: bytes, target: Target) -> JSON:
    obj = loads_object(body)
    if obj is None or not isinstance(obj.get("content"), list):
        raise invalid_body(target)
    texts: list[str] = []
    calls: list[JSON] = []
    thoughts: list[JSON] = []
    json_text: str | None = None
    for block in obj["content"]:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind in ("thinking", "redacted_thinking") and (thought := thinking_block(block)) is not None:
            thoughts.append(thought)
        elif kind == "tool_use" and block.get("name") == JSON_TOOL:
            json_text = _dumps(block.get("input"))
        elif kind == "tool_use":
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": block.get("name"), "arguments": _dumps(block.get("input"))}})
        # server-tool blocks have no Chat Completions equivalent
    content = json_text if json_text is not None else ("".join(texts) if texts or not calls else None)
    message: JSON = {"role": "assistant", "content": content, "refusal": None}
    if thoughts:
        message["reasoning_content"] = "".join(t.get("thinking", "") for t in thoughts)
        message["thinking_blocks"] = thoughts
    if calls:
        message["tool_calls"] = calls
    choice: JSON = {"index": 0, "message": message, "logprobs": None,
                    "finish_reason": finish_reason(obj.get("stop_reason"), json_text is not None)}
    if (sequence := stop_sequence(obj)) is not None:
        choice["stop_sequence"] = sequence
    return {
        "id": obj.get("id") or "msg_unknown",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": obj.get("model") or target.model,
        "choices": [choice],
        "usage": usage(obj.get("usage")),
    }


def thinking_block(block: JSON) -> JSON | None:
    """A thinking or redacted_thinking block in the canonical ``thinking_blocks`` shape, the
    signature (or the encrypted data) unchanged so the block can be sent back next turn."""
    if block.get("type") == "redacted_thinking":
        data = block.get("data")
        return {"type": "redacted_thinking", "data": data} if isinstance(data, str) else None
    text, signature = block.get("thinking"), block.get("signature")
    if not isinstance(text, str):
        return None
    signature = signature if isinstance(signature, str) else ""
    return {"type": "thinking", "thinking": text, "signature": signature}


def stop_sequence(obj: Mapping[str, Any]) -> str | None:
    """The stop sequence that ended the reply (stop_reason "stop_sequence"), else None."""
    value = obj.get("stop_sequence")
    return value if obj.get("stop_reason") == "stop_sequence" and isinstance(value, str) else None


def count_tokens(body: bytes, target: Target) -> JSON:
    obj = loads_object(body)
    if obj is None or not isinstance(obj.get("input_tokens"), int):
        raise invalid_body(target)
    return {"input_tokens": obj["input_tokens"]}


# -- errors -------------------------------------------------------------------------------------


def _error_fields(obj: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    err = obj.get("error") if obj else None
    if not isinstance(err, dict):
        return None, None
    kind, message = err.get("type"), err.get("message")
    kind = kind if isinstance(kind, str) else None
    return kind, (message if isinstance(message, str) and message else None)


def _gateway_error(
    status: int, headers: Mapping[str, str], kind: str | None, message: str | None, target: Target
) -> GatewayError:
    if kind == "overloaded_error":
        status = 529  # whatever status carried it, this is the provider being overloaded
    code = None
    if status == 400 and message and any(m in message.lower() for m in _CONTEXT_MESSAGES):
        code = "context_length_exceeded"
    elif kind in ("request_too_large", "billing_error"):
        code = kind
    elif status == 404 and message and message.startswith("model:"):
        code = "model_not_found"
    openai_type = "invalid_request_error" if kind in ("invalid_request_error", "request_too_large") else None
    return upstream_error(status, headers, target, message, type=openai_type, code=code)


def error(status: int, headers: Mapping[str, str], body: bytes, target: Target) -> GatewayError:
    """An error answer: ``{"type": "error", "error": {"type", "message"}, "request_id"}``, or a
    page in plain text or HTML (a proxy's, Cloudflare's in front of the API), whose text it is."""
    obj = loads_object(body)
    if obj is None:
        return _gateway_error(status, headers, None, text_message(body), target)
    kind, message = _error_fields(obj)
    return _gateway_error(status, headers, kind, message, target)


def answer_error(headers: Mapping[str, str], body: bytes, target: Target) -> GatewayError | None:
    """An error body answered with status 200: mapped at the status its type stands for."""
    kind, message = _error_fields(loads_object(body))
    if kind is None and message is None:
        return None
    return _gateway_error(STATUS_BY_TYPE.get(kind or "", 502), headers, kind, message, target)


def stream_error(obj: Mapping[str, Any], target: Target) -> GatewayError:
    """An ``event: error`` inside a stream that had started with HTTP 200."""
    kind, message = _error_fields(obj)
    status = STATUS_BY_TYPE.get(kind or "", 500)
    return _gateway_error(status, {}, kind, message or "the stream failed", target)
