"""The terminal of ``count_tokens``: the request's input tokens, counted offline.

Reference: https://docs.anthropic.com/en/api/messages-count-tokens (request: the Messages
parameters without max_tokens and sampling; response: ``{"input_tokens": N}``). The Responses
API's ``POST /v1/responses/input_tokens`` and the Gemini API's ``countTokens`` end here too, each
inbound API shaping the answer.

The count is the gateway's own (``switchboard.tokens``, docs/tokens.md), the same estimate the
rate-limit and budget stages use: exact for OpenAI models (o200k_base / cl100k_base, OpenAI's
counting rules for messages, tools, tool calls and images), and for other models the o200k count
times a documented factor. No provider's count endpoint is called: the answer never waits on an
upstream.
"""

from __future__ import annotations

from switchboard.context import Reply, RequestContext, Result


async def count_tokens(ctx: RequestContext) -> Result:
    """Terminal handler; the route stage has already checked that the model exists."""
    return Reply({"input_tokens": await ctx.count_prompt_tokens()})
