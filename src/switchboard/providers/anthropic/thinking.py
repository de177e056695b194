"""Extended thinking for provider type 'anthropic': the canonical ``thinking`` or
``reasoning_effort`` -> Anthropic ``thinking`` (with ``max_tokens`` made to fit), and assistant
``thinking_blocks`` -> the thinking blocks that open that assistant turn.

Reference: https://platform.claude.com/docs/en/build-with-claude/extended-thinking.
``budget_tokens`` must be at least 1024 and below ``max_tokens``; while thinking, ``temperature``
may only be 1 (or unset), ``top_p`` between 0.95 and 1, and ``top_k`` is not allowed.
"""

from __future__ import annotations

from typing import Any

from switchboard.errors import InvalidRequest, UnsupportedParameter
from switchboard.providers.base import JSON
from switchboard.providers.effort import EffortRefused
from switchboard.providers.params import drop_advice, drops
from switchboard.providers.target import Target

MIN_BUDGET = 1024
# reasoning_effort -> budget_tokens. "none" turns thinking off (nothing is sent).
EFFORT_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}
# reasoning_effort levels above high: Anthropic's own effort levels of the same names
# (output_config.effort, https://platform.claude.com/docs/en/build-with-claude/effort), with
# adaptive thinking (the model sets its own budget), as Anthropic pairs them on the models that
# have these levels. Without a max_tokens, the answer keeps the room "high" gives it.
EFFORT_LEVELS = ("xhigh", "max")
_EFFORTS = ("none", *EFFORT_BUDGETS, *EFFORT_LEVELS)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def thinking(request: JSON, max_tokens: int, explicit: bool) -> tuple[JSON | None, int]:
    """The Anthropic ``thinking`` for ``request`` (None: none asked for) and the ``max_tokens`` to
    send with it. ``thinking`` wins over ``reasoning_effort`` when both are sent. When the client
    set no max_tokens, the budget is added to the default so the answer keeps its room."""
    given = request.get("thinking")
    if given is not None:
        return _given(given, max_tokens, explicit)
    effort = request.get("reasoning_effort")
    if effort is None:
        return None, max_tokens
    if effort not in _EFFORTS:
        raise EffortRefused(effort, "is no level of provider type 'anthropic'", _EFFORTS)
    if effort == "none":
        return None, max_tokens
    if effort in EFFORT_LEVELS:
        return {"type": "adaptive"}, max_tokens if explicit else max_tokens + EFFORT_BUDGETS["high"]
    budget = EFFORT_BUDGETS[effort]
    if not explicit:
        return {"type": "enabled", "budget_tokens": budget}, max_tokens + budget
    budget = min(budget, max_tokens - 1)  # Anthropic wants budget_tokens < max_tokens
    if budget < MIN_BUDGET:
        raise InvalidRequest(
            f"'reasoning_effort' needs max_tokens above {MIN_BUDGET} on provider type 'anthropic' (thinking "
            f"budgets start at {MIN_BUDGET} tokens)", param="reasoning_effort")
    return {"type": "enabled", "budget_tokens": budget}, max_tokens


def effort_level(request: JSON) -> str | None:
    """Anthropic's ``output_config.effort`` for ``request``: its ``reasoning_effort`` when that is
    one of Anthropic's levels above high and no ``thinking`` (which wins) was sent, else None."""
    effort = request.get("reasoning_effort")
    if request.get("thinking") is None and effort in EFFORT_LEVELS:
        return str(effort)
    return None


def _given(value: Any, max_tokens: int, explicit: bool) -> tuple[JSON | None, int]:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind in ("disabled", "adaptive"):
        return {"type": kind}, max_tokens
    if kind != "enabled":
        raise InvalidRequest("thinking must be {'type': 'enabled', 'budget_tokens': N} or "
                             "{'type': 'disabled'}", param="thinking", code="invalid_value")
    budget = value.get("budget_tokens")
    if not _int(budget) or budget < MIN_BUDGET:
        raise InvalidRequest(f"thinking.budget_tokens must be an integer of at least {MIN_BUDGET}",
                             param="thinking.budget_tokens", code="invalid_value")
    if not explicit:
        return {"type": "enabled", "budget_tokens": budget}, max_tokens + budget
    if budget >= max_tokens:
        raise InvalidRequest("max_tokens must be greater than thinking.budget_tokens", param="max_tokens",
                             code="invalid_value")
    return {"type": "enabled", "budget_tokens": budget}, max_tokens


def _conflicts(request: JSON) -> list[str]:
    """The sampling settings of ``request`` Anthropic refuses while thinking. Only numbers
    conflict: a value of another type (``true``, text) is invalid whether or not the model thinks,
    and is left to the validation that answers it (Anthropic's own 400 on a pass-through)."""
    return [
        key for key, ok in (
            ("temperature", lambda v: v == 1),
            ("top_p", lambda v: 0.95 <= v <= 1),
            ("top_k", lambda v: False),
        )
        if _number(request.get(key)) and not ok(request[key])
    ]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _without(request: JSON, keys: list[str]) -> JSON:
    return {k: v for k, v in request.items() if k not in keys} if keys else request


def dropped_while_thinking(body: JSON) -> JSON:
    """A Messages body passed through as sent (providers/anthropic/native.py) whose ``drop_params``
    is on: without the sampling settings Anthropic refuses while thinking, when it thinks (the
    same rule as :func:`sampling_conflicts`). Without ``drop_params`` the body goes as sent, and
    Anthropic's own 400 comes back."""
    given = body.get("thinking")
    if isinstance(given, dict) and given.get("type") in ("enabled", "adaptive"):
        return _without(body, _conflicts(body))
    return body


def sampling_conflicts(request: JSON, target: Target) -> JSON:
    """``request`` without the sampling settings Anthropic refuses while thinking, when
    ``drop_params`` asks for that; else a 400 naming the first one. Shared with Bedrock's Claude
    models, which have the same rule."""
    conflicts = _conflicts(request)
    if not conflicts:
        return request
    if drops(request, target):
        return _without(request, conflicts)
    name = conflicts[0]
    raise UnsupportedParameter(
        f"parameter '{name}' cannot be combined with thinking on provider type '{target.provider_type}' "
        f"(model '{target.name}'): temperature must be 1 or unset, top_p 0.95-1, top_k unset; "
        + drop_advice(), param=name)


# A turn's blocks in either form Claude is sent: Anthropic's Messages API ({"type": "tool_result"})
# and Bedrock's Converse ({"toolResult": {...}}: one member per block, no "type").
_TOOL_RESULTS = ("tool_result", "toolResult")
# Thinking that opens an assistant turn: only signed (or redacted) blocks are ever sent back.
_THINKING = ("thinking", "redacted_thinking", "reasoningContent")


def _kind(block: JSON) -> Any:
    return block.get("type") or next(iter(block), None)


def fits_tool_loop(messages: list[JSON]) -> bool:
    """Whether thinking may be on for these turns, Claude's rule on Anthropic and on Bedrock
    alike (Anthropic messages or Converse turns): when the last turn answers tool calls, the
    assistant turn that made them must open with a (signed) thinking block."""
    if len(messages) < 2 or messages[-1]["role"] != "user":
        return True
    if not any(_kind(b) in _TOOL_RESULTS for b in messages[-1]["content"]):
        return True
    opening = messages[-2]["content"][0] if messages[-2]["content"] else {}
    return messages[-2]["role"] != "assistant" or _kind(opening) in _THINKING


def check_tool_choice(kind: Any, request: JSON, target: Target) -> None:
    """While thinking, Claude lets the model choose its tools (auto or none) and refuses a forced
    one: tool_choice required or naming a function, or JSON mode emulated with a tool. ``kind``
    is the choice as sent upstream: Anthropic's ``tool_choice.type``, or the key of Converse's
    ``toolChoice`` on Bedrock's Claude models (the same names: auto, any, tool)."""
    if kind not in ("any", "tool"):
        return
    param = "tool_choice" if request.get("tool_choice") not in (None, "auto", "none") else "response_format"
    raise InvalidRequest(
        f"{param} forces a tool call, which provider type '{target.provider_type}' does not allow with "
        "thinking; let the model choose (tool_choice auto), or for JSON send a strict json_schema",
        param=param)


def gathered(value: Any, reasoning: Any) -> Any:
    """An assistant message's ``thinking_blocks`` with the text of a block gathered from a stream
    put back. A stream sends a block's text as ``reasoning_content`` deltas and its signature in a
    ``thinking_blocks`` delta whose ``thinking`` is "" (docs/providers.md), so a message a client
    gathered from one holds the text beside the block; Anthropic (and Bedrock) refuse a signed block
    whose text differs from what was signed. With one thinking block, signed and without text, and
    the message's ``reasoning_content`` holding text, that text is the block's. Several such blocks
    cannot be told apart in the joined text: they go as they came."""
    if not isinstance(value, list) or not isinstance(reasoning, str) or not reasoning:
        return value
    thoughts = [b for b in value if isinstance(b, dict) and b.get("type") == "thinking"]
    if len(thoughts) != 1 or thoughts[0].get("thinking") != "" or not thoughts[0].get("signature"):
        return value
    return [{**b, "thinking": reasoning} if b is thoughts[0] else b for b in value]


def blocks(value: Any, param: str) -> list[JSON]:
    """An assistant message's ``thinking_blocks`` as Anthropic blocks, signatures unchanged.
    Unsigned blocks (reasoning another provider produced) are left out: Anthropic accepts only
    thinking it signed itself."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest("thinking_blocks must be a list", param=param)
    out: list[JSON] = []
    for i, block in enumerate(value):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "thinking" and isinstance(block.get("thinking"), str) and isinstance(
            block.get("signature"), str
        ):
            if block["signature"]:
                out.append({k: block[k] for k in ("type", "thinking", "signature")})
        elif kind == "redacted_thinking" and isinstance(block.get("data"), str) and block["data"]:
            out.append({"type": "redacted_thinking", "data": block["data"]})
        else:
            raise InvalidRequest(
                "thinking blocks must be {type: thinking, thinking, signature} or "
                "{type: redacted_thinking, data}",
                param=f"{param}[{i}]")
    return out
