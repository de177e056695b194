"""The pre-call token estimate a request reserves against token limits.

The prompt is counted by the shared offline counter (``switchboard.tokens``, through
``RequestContext.count_prompt_tokens``: exact for OpenAI's encodings, a documented estimate for
other providers, counted once per request and shared with the other stages).
"""

from __future__ import annotations

from typing import Any

from switchboard.context import RequestContext
from switchboard.providers.counts import TOKENS_MAX


def max_output_tokens(ctx: RequestContext) -> int:
    """The output the caller allows (``max_completion_tokens`` or ``max_tokens``, times ``n``
    choices), 0 if unset: like OpenAI, a request counts prompt + max_tokens x n against its token
    limits until its real usage is known."""
    request = ctx.request
    if "max_completion_tokens" not in request and "max_tokens" not in request:
        return 0  # most requests set neither: two look-ups, not the loop's two calls and checks
    for name in ("max_completion_tokens", "max_tokens"):
        value = request.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            n = request.get("n")
            return value * n if type(n) is int and n > 1 else value
    return 0


async def estimate_request_tokens(ctx: RequestContext) -> int:
    """Prompt tokens plus the output the caller allows."""
    return await ctx.count_prompt_tokens() + max_output_tokens(ctx)


def used_tokens(usage: dict[str, Any] | None) -> int | None:
    """The tokens a response reports (prompt + completion), None when it reports none; at most
    twice TOKENS_MAX, as the usage record counts them (providers/counts.py), so an upstream's
    count near 2**64 cannot overflow a limit's counter."""
    if not isinstance(usage, dict):
        return None
    total = usage.get("total_tokens")
    if isinstance(total, int) and total >= 0:
        return min(total, _USED_MAX)
    return _parts_used(usage)


def _parts_used(usage: dict[str, Any]) -> int | None:
    """``used_tokens`` of a usage without a total: its prompt and completion counts. A function
    of its own: its comprehension made ``usage`` a cell of ``used_tokens`` on every request."""
    parts = [usage.get(k) for k in ("prompt_tokens", "completion_tokens")]
    if not any(isinstance(p, int) for p in parts):
        return None
    return min(sum(p for p in parts if isinstance(p, int) and p > 0), _USED_MAX)


_USED_MAX = 2 * TOKENS_MAX
