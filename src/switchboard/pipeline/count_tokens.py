"""The terminal of ``count_tokens``: an offline estimate of a request's input tokens.

Reference: https://docs.anthropic.com/en/api/messages-count-tokens (request: the Messages
parameters without max_tokens and sampling; response: ``{"input_tokens": N}``).

No tokenizer is shipped yet, so the count is an estimate: one token per 4 characters of the
text in system, messages (text, tool calls and results) and tool definitions, plus 3 tokens per
message and a flat 1,600 tokens per image (Anthropic's figure for an image of about 1.15
megapixels). Expect it to be within tens of percent for English text.
"""

from __future__ import annotations

from typing import Any

import orjson

from switchboard.context import Reply, RequestContext, Result

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 3
TOKENS_PER_IMAGE = 1600


def _content_size(content: Any) -> tuple[int, int]:
    """(characters of text, number of images) in a canonical message content."""
    if isinstance(content, str):
        return len(content), 0
    chars = images = 0
    for part in content if isinstance(content, list) else ():
        if part.get("type") == "image_url":
            images += 1
        else:
            chars += len(part.get("text") or "")
    return chars, images


def estimate_tokens(request: dict[str, Any]) -> int:
    chars = images = 0
    messages = request.get("messages") or []
    for msg in messages:
        c, i = _content_size(msg.get("content"))
        chars, images = chars + c, images + i
        for call in msg.get("tool_calls") or ():
            chars += len(call["function"]["name"]) + len(call["function"]["arguments"])
    for tool in request.get("tools") or ():
        chars += len(orjson.dumps(tool["function"]))
    text_tokens = -(-chars // CHARS_PER_TOKEN)  # ceiling division
    return text_tokens + TOKENS_PER_MESSAGE * len(messages) + TOKENS_PER_IMAGE * images


async def count_tokens(ctx: RequestContext) -> Result:
    """Terminal handler; the route stage has already checked that the model exists."""
    return Reply({"input_tokens": estimate_tokens(ctx.request)})
