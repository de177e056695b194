"""The pre-call token estimate a request reserves against token limits.

``estimate_prompt_tokens`` is the one place the prompt is estimated: a rough count (the bytes of
what the model reads, divided by 4) until the exact offline counter is wired in here.
"""

from __future__ import annotations

from typing import Any

import orjson

from switchboard.context import RequestContext

# What the model reads, per operation: chat messages and tools, completion prompts, inputs.
_PROMPT_FIELDS = ("messages", "tools", "functions", "prompt", "input", "suffix")


def estimate_prompt_tokens(ctx: RequestContext) -> int:
    """Roughly how many tokens the request's prompt holds: UTF-8 bytes / 4, at least 1."""
    request = ctx.request
    size = 0
    for name in _PROMPT_FIELDS:
        value = request.get(name)
        if value is not None:
            size += len(value.encode()) if isinstance(value, str) else len(_dumps(value))
    return max(1, (size + 3) // 4)


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return str(value).encode()


def max_output_tokens(ctx: RequestContext) -> int:
    """The output the caller allows (``max_completion_tokens`` or ``max_tokens``), 0 if unset:
    like OpenAI, a request counts prompt + max_tokens against its token limits until its real
    usage is known."""
    request = ctx.request
    for name in ("max_completion_tokens", "max_tokens"):
        value = request.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


def estimate_request_tokens(ctx: RequestContext) -> int:
    return estimate_prompt_tokens(ctx) + max_output_tokens(ctx)


def used_tokens(usage: dict[str, Any] | None) -> int | None:
    """The tokens a response reports (prompt + completion), None when it reports none."""
    if not isinstance(usage, dict):
        return None
    total = usage.get("total_tokens")
    if isinstance(total, int) and total >= 0:
        return total
    parts = [usage.get(k) for k in ("prompt_tokens", "completion_tokens")]
    if not any(isinstance(p, int) for p in parts):
        return None
    return sum(p for p in parts if isinstance(p, int))
