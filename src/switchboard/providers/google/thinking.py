"""Canonical ``thinking`` and ``reasoning_effort`` -> Gemini ``generationConfig.thinkingConfig``.

Gemini 1.x/2.x models take a token budget (``thinkingBudget``; 0 turns thinking off where the
model allows it, 2.5 Pro's floor is 128); later models take a ``thinkingLevel`` (and still accept
a budget). ``includeThoughts`` is set whenever thinking is asked for, so the thought summaries come
back (as ``reasoning_content``); a Gemini API client's own ``includeThoughts`` (params.THOUGHTS)
is sent as given instead, alone too, as Google bills the summaries it writes whether or not the
reply keeps them. Reference: https://ai.google.dev/gemini-api/docs/thinking
"""

from __future__ import annotations

import re
from typing import Any

from switchboard.errors import InvalidRequest
from switchboard.providers.effort import EffortRefused
from switchboard.providers.params import THOUGHTS

JSON = dict[str, Any]

_LEGACY = re.compile(r"gemini-(1|2)\.")
EFFORTS = ("none", "minimal", "low", "medium", "high")
# Anthropic's levels above high (Claude Code's output_config.effort, the openai SDK's xhigh): sent
# as Gemini's highest, high, rather than refused; Gemini has nothing above it.
_ABOVE_HIGH = ("xhigh", "max")
# reasoning_effort -> thinkingBudget on budget models; "none"/"minimal" get the model's floor.
BUDGETS = {"low": 1024, "medium": 8192, "high": 24576}
# Models that take some thinking levels only (Google's thinking guide): Gemini 3 Pro takes low and
# high, 3.1 Pro adds medium; they refuse the others with a 400. An effort they lack is sent as the
# nearest level they take: medium up to high, minimal (and none) up to low.
_PRO_LEVELS = (
    ("gemini-3-pro", {"minimal": "low", "medium": "high"}),
    ("gemini-3.1-pro", {"minimal": "low"}),
)
_THINKING_SHAPE = '{"type": "enabled", "budget_tokens": <positive integer>} or {"type": "disabled"}'


def budget_model(model: str) -> bool:
    """Whether ``model`` is a Gemini 1.x/2.x model (thinking budgets, no thought-signature check)."""
    return _LEGACY.search(model) is not None


def thinking_config(request: JSON, model: str) -> JSON | None:
    """``thinking`` or ``reasoning_effort`` as a thinkingConfig. Adaptive thinking (Anthropic's:
    the model decides how much to think) is Gemini's dynamic thinking (``thinkingBudget: -1`` on
    budget models, the model's own dynamic level on later ones); an effort sent with it (Claude
    Code sends ``output_config.effort``) says how much instead."""
    config = _config(request, model)
    shown = request.get(THOUGHTS)
    if shown is False and config is not None:
        config.pop("includeThoughts", None)
    elif shown is True and config is None:  # summaries of the model's default thinking
        config = {"includeThoughts": True}
    return config


def _config(request: JSON, model: str) -> JSON | None:
    thinking, effort = request.get("thinking"), request.get("reasoning_effort")
    adaptive = isinstance(thinking, dict) and thinking.get("type") == "adaptive"
    if adaptive:
        if effort is not None:
            return _from_effort(effort, model)
        dynamic: JSON = {"thinkingBudget": -1} if budget_model(model) else {}
        return {**dynamic, "includeThoughts": True}
    if thinking is not None and effort is not None:
        raise InvalidRequest(
            "send either 'thinking' or 'reasoning_effort', not both: both set Gemini's thinkingConfig",
            param="reasoning_effort",
        )
    if thinking is not None:
        return _from_thinking(thinking)
    if effort is not None:
        return _from_effort(effort, model)
    return None


def _from_thinking(thinking: Any) -> JSON:
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind == "disabled":
        return {"thinkingBudget": 0}
    if kind != "enabled":
        raise InvalidRequest(f"thinking must be {_THINKING_SHAPE}", param="thinking", code="invalid_value")
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        raise InvalidRequest("thinking.budget_tokens must be a positive integer",
                             param="thinking.budget_tokens", code="invalid_value")
    return {"thinkingBudget": budget, "includeThoughts": True}


def _from_effort(effort: Any, model: str) -> JSON:
    if effort in _ABOVE_HIGH:
        effort = "high"
    if effort not in EFFORTS:
        raise EffortRefused(effort, "has no Gemini thinking level", (*EFFORTS, *_ABOVE_HIGH))
    if not budget_model(model):
        if effort == "none":  # the lowest level there is; Gemini 3 cannot turn thinking off
            return {"thinkingLevel": _level("minimal", model)}
        return {"thinkingLevel": _level(effort, model), "includeThoughts": True}
    budget = BUDGETS.get(effort, _floor(model))
    return {"thinkingBudget": budget, "includeThoughts": True} if budget else {"thinkingBudget": 0}


def _level(effort: str, model: str) -> str:
    for name, nearest in _PRO_LEVELS:
        if name in model:
            return nearest.get(effort, effort)
    return effort


def _floor(model: str) -> int:
    # 2.5 Pro cannot turn thinking off (its budget starts at 128); the others take 0.
    return 128 if "-pro" in model else 0
