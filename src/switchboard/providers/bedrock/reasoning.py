"""Extended thinking on Bedrock: the canonical ``thinking`` / ``reasoning_effort`` -> the model
family's own control in ``additionalModelRequestFields``, and ``reasoningContent`` blocks -> the
canonical ``reasoning_content`` / ``thinking_blocks``.

- Claude: ``thinking: {type: enabled, budget_tokens}``. ``reasoning_effort`` picks the budget
  (minimal and low 1024, medium 4096, high 16384), kept below ``max_tokens`` (Claude's rule); an
  explicit budget at or above ``max_tokens`` is a 400. Without ``max_tokens``, ``maxTokens`` is
  set to the budget plus 4096 so the answer has room.
  ``reasoning_effort`` xhigh and max are Anthropic's effort levels of the same names:
  ``thinking: {type: adaptive}`` with ``output_config: {effort}`` (the model sets its own budget),
  as the Anthropic adapter sends them and as Bedrock documents them for Claude (Messages API
  fields, no beta flag: https://docs.aws.amazon.com/bedrock/latest/userguide/
  claude-messages-adaptive-thinking.html); without ``max_tokens`` the answer keeps the room
  "high" gives it. Claude models without these levels answer Bedrock's own 400. A canonical
  ``thinking: {type: adaptive}`` is sent as it is (no effort: the model's default), with the
  same room.
- Nova 2: ``reasoningConfig: {type: enabled, maxReasoningEffort: low|medium|high}``; minimal is
  low, and a ``thinking`` budget picks the effort (below 4096 low, below 16384 medium, else high).
- Other families have no reasoning control in Converse: refused unless ``drop_params``, whatever
  the level (xhigh and max as high).

``thinking`` wins over ``reasoning_effort`` when both are sent; ``thinking: {type: disabled}``
and ``reasoning_effort: "none"`` ask for the default (no thinking) and send nothing.
"""

from __future__ import annotations

from typing import Any

from switchboard.errors import InvalidRequest, UnsupportedParameter
from switchboard.providers.base import JSON
from switchboard.providers.bedrock.models import is_claude, is_nova_reasoner
from switchboard.providers.effort import EffortRefused
from switchboard.providers.params import drop_advice, drops
from switchboard.providers.target import Target

EFFORT_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}
# Levels above high: Claude's own effort control (output_config.effort), no budget of ours.
EFFORT_LEVELS = ("xhigh", "max")
MIN_BUDGET = 1024  # Claude's smallest thinking budget
ANSWER_ROOM = 4096  # maxTokens beyond the budget when the caller set no max_tokens


def _budget(request: JSON) -> tuple[int, str] | None:
    """(budget, the parameter that asked for it), or None when no thinking is asked for."""
    thinking = request.get("thinking")
    if thinking is not None:
        kind = thinking.get("type") if isinstance(thinking, dict) else None
        if kind == "disabled":
            return None
        if kind != "enabled":
            raise InvalidRequest("thinking.type must be 'enabled' or 'disabled' ('adaptive': Claude models "
                                 "only)", param="thinking.type", code="invalid_value")
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < MIN_BUDGET:
            raise InvalidRequest(f"thinking.budget_tokens must be an integer >= {MIN_BUDGET}",
                                 param="thinking.budget_tokens", code="invalid_value")
        return budget, "thinking"
    effort = request.get("reasoning_effort")
    if effort in (None, "none"):
        return None
    if not isinstance(effort, str) or effort not in EFFORT_BUDGETS:  # an array cannot be looked up
        raise EffortRefused(effort, "has no Converse thinking budget", ("none", *EFFORT_BUDGETS),
                            "xhigh, max: Claude models only")
    return EFFORT_BUDGETS[effort], "reasoning_effort"


def reasoning_fields(request: JSON, target: Target, max_tokens: int | None) -> tuple[JSON, int | None]:
    """(fields for additionalModelRequestFields, the maxTokens to send)."""
    if is_claude(target.model) and (adaptive := _adaptive(request)) is not None:
        room = max_tokens if max_tokens is not None else EFFORT_BUDGETS["high"] + ANSWER_ROOM
        return adaptive, room
    if not is_claude(target.model) and not is_nova_reasoner(target.model):
        return _no_control(request, target), max_tokens
    asked = _budget(request)
    if asked is None:
        return {}, max_tokens
    budget, param = asked
    if is_claude(target.model):
        return _claude(budget, param, max_tokens)
    effort = "low" if budget < 4096 else "medium" if budget < 16384 else "high"
    return {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": effort}}, max_tokens


def _adaptive(request: JSON) -> JSON | None:
    """Claude's adaptive thinking fields for ``request``, else None: ``thinking: {type: adaptive}``
    as sent, or ``reasoning_effort`` xhigh or max (with that effort) when no ``thinking`` was."""
    thinking = request.get("thinking")
    if thinking is not None:
        adaptive = isinstance(thinking, dict) and thinking.get("type") == "adaptive"
        return {"thinking": {"type": "adaptive"}} if adaptive else None
    effort = request.get("reasoning_effort")
    if effort in EFFORT_LEVELS:
        return {"thinking": {"type": "adaptive"}, "output_config": {"effort": effort}}
    return None


def _no_control(request: JSON, target: Target) -> JSON:
    """A family without a reasoning control: whatever thinking is asked for, whatever its level,
    is dropped with ``drop_params`` and refused without it (the value is not judged first, so
    xhigh is treated as high is)."""
    thinking = request.get("thinking")
    if thinking is not None and not (isinstance(thinking, dict) and thinking.get("type") == "disabled"):
        param = "thinking"
    elif request.get("reasoning_effort") not in (None, "none"):
        param = "reasoning_effort"
    else:
        return {}
    if drops(request, target):
        return {}
    raise UnsupportedParameter(
        f"parameter '{param}' is not supported by provider type 'bedrock' for model '{target.name}' "
        f"({target.model}): Converse has a reasoning control only for Claude and Nova 2 models; "
        + drop_advice(),
        param=param,
    )


def _claude(budget: int, param: str, max_tokens: int | None) -> tuple[JSON, int | None]:
    if max_tokens is None:
        max_tokens = budget + ANSWER_ROOM
    elif budget >= max_tokens:
        if param == "thinking" or max_tokens <= MIN_BUDGET:
            least = budget if param == "thinking" else MIN_BUDGET
            raise InvalidRequest(
                f"max_tokens must be greater than the thinking budget ({least} tokens) on Claude models",
                param="max_tokens", code="invalid_value",
            )
        budget = max_tokens - 1
    return {"thinking": {"type": "enabled", "budget_tokens": budget}}, max_tokens


# ---- response ----

def thinking_block(reasoning: Any) -> JSON | None:
    """A ReasoningContentBlock -> a canonical thinking block (None for an unknown shape)."""
    if not isinstance(reasoning, dict):
        return None
    if isinstance(reasoning.get("redactedContent"), str):
        return {"type": "redacted_thinking", "data": reasoning["redactedContent"]}
    text = reasoning.get("reasoningText")
    if not isinstance(text, dict) or not isinstance(text.get("text"), str):
        return None
    block: JSON = {"type": "thinking", "thinking": text["text"]}
    if isinstance(text.get("signature"), str):
        block["signature"] = text["signature"]
    return block


def add_reasoning(message: JSON, blocks: list[JSON]) -> None:
    """Set ``reasoning_content`` (the text) and, when the provider signed or redacted any block,
    ``thinking_blocks`` (whole blocks, to send back next turn)."""
    if not blocks:
        return
    message["reasoning_content"] = "".join(b.get("thinking", "") for b in blocks)
    if any("signature" in b or b["type"] == "redacted_thinking" for b in blocks):
        message["thinking_blocks"] = blocks


def reasoning_delta(delta: Any) -> JSON | None:
    """A ReasoningContentBlockDelta -> a canonical chunk delta."""
    if not isinstance(delta, dict):
        return None
    if isinstance(delta.get("text"), str):
        return {"reasoning_content": delta["text"]}
    if isinstance(delta.get("signature"), str):
        return {"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": delta["signature"]}]}
    if isinstance(delta.get("redactedContent"), str):
        return {"thinking_blocks": [{"type": "redacted_thinking", "data": delta["redactedContent"]}]}
    return None
