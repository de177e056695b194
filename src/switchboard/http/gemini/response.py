"""Canonical ``chat.completion`` -> Gemini ``GenerateContentResponse``.

Reference: https://ai.google.dev/api/generate-content#generatecontentresponse.

    choices[i]                      -> candidates[i] (index i), content role "model"
    message.reasoning_content       -> a text part with thought: true, first (only when the
                                       request's thinkingConfig.includeThoughts was true)
    message.content, .refusal       -> a text part
    message.tool_calls              -> functionCall parts {id, name, args}; a Gemini
                                       thought_signature comes back as thoughtSignature
    finish_reason stop, tool_calls  -> STOP; length -> MAX_TOKENS; content_filter -> SAFETY;
                                       arguments that are not a JSON object -> MALFORMED_FUNCTION_CALL
    usage                           -> usageMetadata: promptTokenCount, candidatesTokenCount
                                       (completion less reasoning), thoughtsTokenCount,
                                       cachedContentTokenCount, totalTokenCount
    model                           -> modelVersion; id -> responseId
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

JSON = dict[str, Any]

FINISH = {
    "stop": "STOP",
    "tool_calls": "STOP",
    "function_call": "STOP",
    "length": "MAX_TOKENS",
    "content_filter": "SAFETY",
}


def obj(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def finish_reason(reason: Any) -> str | None:
    if not isinstance(reason, str) or not reason:
        return None
    return FINISH.get(reason, "OTHER")


def response_id(value: Any) -> str:
    if isinstance(value, str) and value:
        return value.removeprefix("chatcmpl-")
    return uuid.uuid4().hex[:24]


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_metadata(usage: Any) -> JSON | None:
    if not isinstance(usage, dict):
        return None
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    details = usage.get("completion_tokens_details")
    thoughts = _count(details.get("reasoning_tokens")) if isinstance(details, dict) else 0
    thoughts = min(thoughts, completion)
    meta: JSON = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": completion - thoughts,
        "totalTokenCount": _count(usage.get("total_tokens")) or prompt + completion,
    }
    cached = usage.get("prompt_tokens_details")
    if isinstance(cached, dict) and (count := _count(cached.get("cached_tokens"))):
        meta["cachedContentTokenCount"] = count
    if thoughts:
        meta["thoughtsTokenCount"] = thoughts
    return meta


def function_call(call: Any) -> JSON | None:
    """A canonical tool call -> a functionCall part; None when its arguments are not an object."""
    if not isinstance(call, dict):
        return None
    function = obj(call.get("function"))
    raw = function.get("arguments")
    try:
        args = orjson.loads(raw) if isinstance(raw, str) and raw.strip() else {}
    except orjson.JSONDecodeError:
        return None
    if not isinstance(args, dict):
        return None
    body: JSON = {"name": function.get("name") or "", "args": args}
    if isinstance(call.get("id"), str) and call["id"]:
        body = {"id": call["id"], **body}
    part: JSON = {"functionCall": body}
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    if isinstance(signature, str) and signature:
        part["thoughtSignature"] = signature
    return part


def candidate(choice: JSON, include_thoughts: bool) -> JSON:
    message = obj(choice.get("message"))
    parts: list[JSON] = []
    reasoning = message.get("reasoning_content")
    if include_thoughts and isinstance(reasoning, str) and reasoning:
        parts.append({"text": reasoning, "thought": True})
    for key in ("content", "refusal"):
        text = message.get(key)
        if isinstance(text, str) and text:
            parts.append({"text": text})
    finish = finish_reason(choice.get("finish_reason"))
    for call in message.get("tool_calls") or ():
        part = function_call(call)
        if part is None:
            finish = "MALFORMED_FUNCTION_CALL"
        else:
            parts.append(part)
    content: JSON = {"parts": parts, "role": "model"} if parts else {"role": "model"}
    out: JSON = {"content": content}
    if finish is not None:
        out["finishReason"] = finish
    out["index"] = choice.get("index", 0)
    return out


def generate_content_response(body: JSON, model: str, include_thoughts: bool) -> JSON:
    choices = [c for c in body.get("choices") or () if isinstance(c, dict)]
    out: JSON = {"candidates": [candidate(c, include_thoughts) for c in choices]}
    meta = usage_metadata(body.get("usage"))
    if meta is not None:
        out["usageMetadata"] = meta
    out["modelVersion"] = model
    out["responseId"] = response_id(body.get("id"))
    return out


def count_tokens_response(body: JSON) -> JSON:
    tokens = body.get("input_tokens")
    return {"totalTokens": tokens if isinstance(tokens, int) else 0}
