"""Bedrock Converse response -> canonical chat.completion; usage and stop reasons shared with the stream.

Reference: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html
(ConverseOutput, StopReason, TokenUsage). ``inputTokens`` excludes cache reads and writes, so the
canonical ``prompt_tokens`` adds them back; ``cached_tokens`` is the cache reads,
``cache_creation_tokens`` the writes (of which ``cache_creation_1h_tokens`` the 1-hour ones,
from ``cacheDetails``, CacheDetail).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from switchboard.providers.base import JSON
from switchboard.providers.bedrock.reasoning import add_reasoning, thinking_block
from switchboard.providers.counts import TOKENS_MAX, count
from switchboard.providers.errors import invalid_body, loads_object
from switchboard.providers.target import Target

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}


def finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def _count(usage: JSON, key: str) -> int:
    return count(usage.get(key))  # providers/counts.py: whole, not negative, bounded


def canonical_usage(usage: Any) -> JSON | None:
    if not isinstance(usage, dict):
        return None
    cached = _count(usage, "cacheReadInputTokens")
    # The writes by TTL (cacheDetails: [{ttl: 5m | 1h, inputTokens}]), priced apart: an hour's
    # write costs more than five minutes'. Their sum is cacheWriteInputTokens.
    hour = five = 0
    by_ttl = usage.get("cacheDetails")
    for detail in by_ttl if isinstance(by_ttl, list) else ():
        if isinstance(detail, dict):
            if detail.get("ttl") == "1h":
                hour += _count(detail, "inputTokens")
            else:
                five += _count(detail, "inputTokens")
    written = max(_count(usage, "cacheWriteInputTokens"), min(five + hour, TOKENS_MAX))
    prompt = _count(usage, "inputTokens") + cached + written
    completion = _count(usage, "outputTokens")
    details: JSON = {"cached_tokens": cached}
    if written:  # priced as cache writes, not as plain input
        details["cache_creation_tokens"] = written
    if hour:
        details["cache_creation_1h_tokens"] = min(hour, written)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": details,
    }


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def tool_call(block: JSON) -> JSON:
    return {
        "id": block.get("toolUseId") or f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {
            "name": block.get("name") or "",
            "arguments": orjson.dumps(block.get("input", {})).decode(),
        },
    }


def mark_stop_sequence(choice: JSON, stop_reason: Any, fields: Any) -> None:
    """stopReason stop_sequence: the matched sequence on the choice. Claude reports it in
    additionalModelResponseFields when asked (the request adds the path); other families do not
    say which one matched, so null (named from the request when it sent one only:
    providers/stop_sequences.py)."""
    if stop_reason != "stop_sequence":
        return
    value = fields.get("stop_sequence") if isinstance(fields, dict) else None
    choice["stop_sequence"] = value if isinstance(value, str) else None


def _message(content: list[Any]) -> JSON:
    texts: list[str] = []
    calls: list[JSON] = []
    thinking: list[JSON] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block.get("toolUse"), dict):
            calls.append(tool_call(block["toolUse"]))
        elif (reasoning := thinking_block(block.get("reasoningContent"))) is not None:
            thinking.append(reasoning)
        # citations and other blocks have no Chat Completions equivalent.
    message: JSON = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    add_reasoning(message, thinking)
    return message


def chat_completion(body: bytes, target: Target) -> JSON:
    obj = loads_object(body)
    output = obj.get("output") if obj else None
    message = output.get("message") if isinstance(output, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if obj is None or not isinstance(content, list):
        raise invalid_body(target)
    choice: JSON = {
        "index": 0,
        "message": _message(content),
        "logprobs": None,
        "finish_reason": finish_reason(obj.get("stopReason")),
    }
    mark_stop_sequence(choice, obj.get("stopReason"), obj.get("additionalModelResponseFields"))
    result: JSON = {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": target.model,
        "choices": [choice],
    }
    if (usage := canonical_usage(obj.get("usage"))) is not None:
        result["usage"] = usage
    return result
