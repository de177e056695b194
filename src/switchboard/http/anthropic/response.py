"""Canonical (OpenAI) chat completion -> Anthropic Message.

Reference: https://docs.anthropic.com/en/api/messages (the response object).

    choices[0].message.thinking_blocks      -> thinking / redacted_thinking blocks first, signatures
                                               unchanged; reasoning_content without blocks -> one
                                               thinking block with an empty signature (the
                                               upstream signs nothing)
    choices[0].message.content (or refusal) -> one text block
    choices[0].message.tool_calls           -> tool_use blocks {id, name, input}; arguments that are
                                               not a JSON object are kept as {"_raw_arguments": "..."};
                                               a Gemini thought signature rides in the id (tool_ids.py)
    finish_reason stop / length / tool_calls / content_filter
                                            -> stop_reason end_turn / max_tokens / tool_use / refusal;
                                               message.refusal (with no content) -> refusal
    choices[0].stop_sequence                -> stop_reason stop_sequence + stop_sequence (null when
                                               the upstream said a stop sequence matched but not
                                               which: Cohere, Bedrock other than Claude, with several
                                               sent); upstreams that do not report a stop-sequence
                                               stop (OpenAI-shaped ones) give end_turn and null
    usage prompt_tokens (cache included)    -> input_tokens (cache reads and writes excluded) +
                                               cache_read_input_tokens + cache_creation_input_tokens
    usage completion_tokens                 -> output_tokens
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson

from switchboard.http.anthropic import tool_ids

JSON = dict[str, Any]

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def tool_use_id() -> str:
    return "toolu_" + secrets.token_hex(12)


def stop_reason(finish_reason: Any, has_tool_use: bool, refused: bool = False,
                at_stop_sequence: bool = False) -> str:
    """The Anthropic stop_reason, read the same way for a message and a stream (``refused``: the
    reply carried a refusal; ``at_stop_sequence``: :func:`at_stop_sequence` of its choice)."""
    if refused:
        return "refusal"
    reason = _STOP_REASONS.get(finish_reason, "end_turn") if isinstance(finish_reason, str) else "end_turn"
    # Some upstreams report "stop" although the turn ends in tool calls; the client must run them.
    if has_tool_use and reason == "end_turn":
        return "tool_use"
    if reason == "end_turn" and at_stop_sequence:
        return "stop_sequence"
    return reason


def at_stop_sequence(choice: JSON) -> bool:
    """Whether the canonical choice says a stop sequence ended it: ``stop_sequence`` is the
    matched string, or null when the upstream did not say which (providers/stop_sequences.py)."""
    if "stop_sequence" not in choice:
        return False
    return choice["stop_sequence"] is None or isinstance(choice["stop_sequence"], str)


def matched_sequence(choice: JSON, reason: str) -> str | None:
    value = choice.get("stop_sequence")
    return value if reason == "stop_sequence" and isinstance(value, str) else None


def obj(value: Any) -> JSON:
    """``value`` when it is a JSON object, else an empty one: upstream shapes are not trusted."""
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage(canonical: Any) -> JSON:
    """Anthropic usage; its input_tokens excludes the tokens read from (or written to) the cache."""
    u = obj(canonical)
    details = obj(u.get("prompt_tokens_details"))
    cached = _int(details.get("cached_tokens"))
    created = _int(details.get("cache_creation_tokens"))
    return {
        "input_tokens": max(0, _int(u.get("prompt_tokens")) - cached - created),
        "output_tokens": _int(u.get("completion_tokens")),
        "cache_creation_input_tokens": created,
        "cache_read_input_tokens": cached,
    }


def tool_input(arguments: Any) -> JSON:
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"_raw_arguments": arguments}


def _text(message: JSON) -> str:
    content = message.get("content")
    if isinstance(content, list):
        # Some adapters return content parts; only text parts have a place in a text block.
        texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        content = "".join(t for t in texts if isinstance(t, str))
    if isinstance(content, str) and content:
        return content
    refusal = message.get("refusal")
    return refusal if isinstance(refusal, str) else ""


def block_id(call: JSON) -> str:
    """The tool_use id of a canonical call (a new one when it has none), carrying its signature."""
    call_id = call.get("id")
    return tool_ids.outbound(call_id if isinstance(call_id, str) and call_id else tool_use_id(), call)


def tool_use_block(call: JSON) -> JSON:
    function = obj(call.get("function"))
    return {
        "type": "tool_use",
        "id": block_id(call),
        "name": function.get("name") or "",
        "input": tool_input(function.get("arguments")),
    }


def thinking_block(block: Any) -> JSON | None:
    """A canonical thinking block as Anthropic's (None when it is not one)."""
    b = obj(block)
    if b.get("type") == "redacted_thinking" and isinstance(b.get("data"), str):
        return {"type": "redacted_thinking", "data": b["data"]}
    if b.get("type") == "thinking" and isinstance(b.get("thinking"), str):
        signature = b.get("signature")
        signature = signature if isinstance(signature, str) else ""
        return {"type": "thinking", "thinking": b["thinking"], "signature": signature}
    return None


def _thinking(msg: JSON) -> list[JSON]:
    blocks = [b for b in map(thinking_block, msg.get("thinking_blocks") or ()) if b is not None]
    reasoning = msg.get("reasoning_content")
    if not blocks and isinstance(reasoning, str) and reasoning:
        blocks.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    return blocks


def refused(msg: JSON) -> bool:
    refusal = msg.get("refusal")
    return isinstance(refusal, str) and bool(refusal) and not msg.get("content")


def message(body: JSON, model: str) -> JSON:
    choices = body.get("choices")
    choice = obj(choices[0]) if isinstance(choices, list) and choices else {}
    msg = obj(choice.get("message"))
    content: list[JSON] = _thinking(msg)
    if text := _text(msg):
        content.append({"type": "text", "text": text})
    calls = msg.get("tool_calls")
    if isinstance(calls, list):
        content.extend(tool_use_block(c) for c in calls if isinstance(c, dict))
    has_tools = any(block["type"] == "tool_use" for block in content)
    reason = stop_reason(choice.get("finish_reason"), has_tools, refused(msg), at_stop_sequence(choice))
    return {
        "id": message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": matched_sequence(choice, reason),
        "usage": usage(body.get("usage")),
    }
