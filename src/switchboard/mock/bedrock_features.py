"""The Bedrock mock's model-specific behaviour: extended thinking (Claude ``thinking``, Nova 2
``reasoningConfig``) with signed reasoning blocks, Claude's ``tool_choice`` extra field and
matched stop sequence, prompt caching at ``cachePoint`` blocks, and ``requestMetadata`` bounds.

Strict like the real service: a replayed reasoning block whose signature does not match its text
is a ValidationException, as is a malformed cachePoint or requestMetadata entry.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections import OrderedDict
from typing import Any

import orjson

from switchboard.mock import claude_thinking
from switchboard.mock import text as T


class Invalid(Exception):
    """A request the real service would refuse with a ValidationException."""


def require(condition: object, message: str) -> None:
    if not condition:
        raise Invalid(message)


def is_claude(model: str) -> bool:
    return "anthropic.claude" in model.lower()


# ---- thinking ----

def signature(text: str) -> str:
    """The mock's signature of a reasoning text: replayed text must come back with it unchanged."""
    return base64.b64encode(hashlib.sha256(b"mock-thinking:" + text.encode()).digest()).decode()


def thinking_asked(model: str, extra: dict[str, Any]) -> bool:
    """Whether the request asks for reasoning; the model-specific fields are checked on the way."""
    thinking = extra.get("thinking")
    reasoning = extra.get("reasoningConfig")
    if thinking is not None:
        require(is_claude(model), f"The model {model} does not accept the additionalModelRequestFields key "
                "thinking.")
        require(isinstance(thinking, dict) and thinking.get("type") in ("enabled", "disabled", "adaptive"),
                "thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'")
        if thinking["type"] == "enabled":
            budget = thinking.get("budget_tokens")
            require(isinstance(budget, int) and budget >= 1024, "thinking.budget_tokens: Input should be "
                    "greater than or equal to 1024")
        _effort(extra.get("output_config"))
        return bool(thinking["type"] in ("enabled", "adaptive"))
    _effort(extra.get("output_config"))
    if reasoning is not None:
        require("nova-2" in model, f"The model {model} does not accept the additionalModelRequestFields key "
                "reasoningConfig.")
        effort = reasoning.get("maxReasoningEffort") if isinstance(reasoning, dict) else None
        require(effort in ("low", "medium", "high"),
                "reasoningConfig.maxReasoningEffort must be low, medium or high.")
        return bool(reasoning.get("type") == "enabled")
    return False


def _effort(config: Any) -> None:
    """Claude's ``output_config`` (its effort levels), as the Messages API checks it."""
    if config is None:
        return
    require(isinstance(config, dict) and set(config) <= {"effort", "format"}, "output_config: Extra inputs "
            "are not permitted")
    require(config.get("effort") in (None, "low", "medium", "high", "xhigh", "max"),
            "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'")


def check_while_thinking(body: dict[str, Any]) -> None:
    """What Claude refuses while it thinks (a budget or adaptive), as Bedrock relays it: sampling
    settings other than its own, a forced tool, and a tool loop whose assistant turn lost its
    thinking (the last turn's tool results answer a turn that does not open with reasoning)."""
    inference = body.get("inferenceConfig") or {}
    choice = ((body.get("toolConfig") or {}).get("toolChoice")) or {"auto": {}}
    refused = claude_thinking.conflict(inference.get("temperature"), inference.get("topP"),
                                       (body.get("additionalModelRequestFields") or {}).get("top_k"),
                                       next(iter(choice)))
    require(refused is None, f"The model returned the following errors: {refused}")
    messages = body["messages"]
    if len(messages) < 2 or not any("toolResult" in b for b in messages[-1]["content"]):
        return
    first, at = next(iter(messages[-2]["content"][0])), len(messages) - 2
    require(first == "reasoningContent", f"The model returned the following errors: messages.{at}"
            f".content.0.type: Expected `thinking` or `redacted_thinking`, but found `{first}`. When "
            "`thinking` is enabled, a final `assistant` message must start with a thinking block.")


def check_budget(extra: dict[str, Any], inference: dict[str, Any]) -> None:
    budget = (extra.get("thinking") or {}).get("budget_tokens")
    max_tokens = inference.get("maxTokens")
    if isinstance(budget, int) and max_tokens is not None:
        require(max_tokens > budget, "`max_tokens` must be greater than `thinking.budget_tokens`.")


def reasoning_block(model: str, prompt: str) -> dict[str, Any]:
    text = f"The user wrote: {' '.join(prompt.split())[:120]}. A short friendly answer fits."
    block: dict[str, Any] = {"text": text}
    if is_claude(model):  # Claude signs its thinking; Nova does not
        block["signature"] = signature(text)
    return {"reasoningContent": {"reasoningText": block}}


def check_reasoning(value: Any, where: str, role: str, model: str) -> None:
    """A reasoningContent block sent back in the history."""
    require(role == "assistant", f"{where}: reasoningContent blocks are only allowed in assistant messages.")
    if isinstance(value, dict) and "redactedContent" in value:
        require(isinstance(value["redactedContent"], str) and value["redactedContent"],
                f"{where}.reasoningContent.redactedContent must be base64 data.")
        return
    text = value.get("reasoningText") if isinstance(value, dict) else None
    if not isinstance(text, dict) or not isinstance(text.get("text"), str):
        raise Invalid(f"{where}.reasoningContent must hold reasoningText {{text, signature}} or "
                      "redactedContent.")
    sig = text.get("signature")
    if sig is None and not is_claude(model):
        return
    require(sig == signature(text["text"]), f"The signature of the reasoning block at {where} is invalid: "
            "reasoning blocks must be passed back unmodified.")


# ---- Claude's tool_choice extra ----

def check_tool_choice(extra: dict[str, Any], config: Any, model: str) -> None:
    choice = extra.get("tool_choice")
    if choice is None:
        return
    require(is_claude(model), f"The model {model} does not accept the additionalModelRequestFields key "
            "tool_choice.")
    require(isinstance(choice, dict) and choice.get("type") in ("auto", "any", "tool"),
            "tool_choice.type: Input should be 'auto', 'any' or 'tool'")
    require(isinstance(choice.get("disable_parallel_tool_use", False), bool),
            "tool_choice.disable_parallel_tool_use: Input should be a valid boolean")
    set_choice = (config or {}).get("toolChoice") or {"auto": {}}
    require(next(iter(set_choice)) == choice["type"], "tool_choice in additionalModelRequestFields conflicts "
            "with toolConfig.toolChoice.")


# ---- prompt caching ----

_TTLS = ("5m", "1h")
_CACHE_SIZE = 4096
_written: OrderedDict[str, None] = OrderedDict()  # digests of cached prefixes, oldest first


def check_cache_point(value: Any, where: str) -> None:
    require(isinstance(value, dict) and value.get("type") == "default"
            and set(value) <= {"type", "ttl"} and value.get("ttl", "5m") in _TTLS,
            f"{where}.cachePoint must be {{type: default}} with an optional ttl of 5m or 1h.")


def cache_ttl(body: dict[str, Any]) -> str:
    """The TTL of the request's last cachePoint (the one whose prefix a write stores): 5m unless
    it says 1h."""
    tools = ((body.get("toolConfig") or {}).get("tools")) or []
    blocks = [*tools, *(body.get("system") or []), *(b for m in body["messages"] for b in m["content"])]
    points = [b["cachePoint"] for b in blocks if isinstance(b, dict) and "cachePoint" in b]
    return str(points[-1].get("ttl", "5m")) if points else "5m"


def cache_usage(model: str, body: dict[str, Any]) -> tuple[int, int]:
    """(tokens read from the cache, tokens written to it): the prompt up to each cachePoint, in
    Converse's order (tools, system, messages), is a prefix; one seen before is read, and the
    prefix up to the last cachePoint is written when it was not."""
    tools = ((body.get("toolConfig") or {}).get("tools")) or []
    parts = [("tools", b) for b in tools] + [("system", b) for b in body.get("system") or []]
    parts += [(m["role"], b) for m in body["messages"] for b in m["content"]]
    seen: list[Any] = []
    points: list[tuple[str, int]] = []
    for role, block in parts:
        if isinstance(block, dict) and "cachePoint" in block:
            digest = hashlib.sha256(orjson.dumps([model, seen])).hexdigest()
            points.append((digest, T.count_tokens([b for _, b in seen])))
        else:
            seen.append((role, block))
    if not points:
        return 0, 0
    read = max((tokens for digest, tokens in points if digest in _written), default=0)
    last, last_tokens = points[-1]
    written = 0 if last in _written else last_tokens - read
    for digest, _ in points:
        _written[digest] = None
        _written.move_to_end(digest)
    while len(_written) > _CACHE_SIZE:
        _written.popitem(last=False)
    return read, written


# ---- requestMetadata ----

_METADATA = re.compile(r"^[a-zA-Z0-9\s:_@$#=/+,.\-]*$")
_PATTERN = "regular expression pattern: [a-zA-Z0-9\\s:_@$#=/+,-.]"


def check_metadata(metadata: Any) -> None:
    if metadata is None:
        return
    require(isinstance(metadata, dict) and len(metadata) <= 16,
            "requestMetadata must be a map of at most 16 entries.")
    for key, value in metadata.items():
        require(1 <= len(key) <= 256 and _METADATA.match(key), f"Value '{key}' at 'requestMetadata' failed "
                f"to satisfy constraint: Map keys must have length 1 to 256 and satisfy {_PATTERN}")
        require(isinstance(value, str) and len(value) <= 256 and _METADATA.match(value),
                f"Value at 'requestMetadata.{key}' failed to satisfy constraint: Member must have length "
                f"less than or equal to 256 and satisfy {_PATTERN}")


def check_response_paths(paths: Any) -> None:
    if paths is None:
        return
    require(isinstance(paths, list) and all(isinstance(p, str) and p.startswith("/") for p in paths),
            "additionalModelResponseFieldPaths must be a list of JSON pointers.")
