"""What Claude refuses while it thinks, one rule for every mock that serves Claude: Anthropic's
Messages API answers it as a 400 invalid_request_error, Bedrock relays the same text inside a
ValidationException.

Reference: https://platform.claude.com/docs/en/build-with-claude/extended-thinking (feature
compatibility): with thinking on (a budget or adaptive), ``temperature`` may only be 1,
``top_p`` only 0.95 to 1, ``top_k`` not at all, and a tool choice that forces tool use
(``any``, ``tool``) is refused.
"""

from __future__ import annotations

from typing import Any


def conflict(temperature: Any, top_p: Any, top_k: Any, tool_choice: Any) -> str | None:
    """The upstream's message for the first setting Claude refuses while thinking (None: all fine).
    ``tool_choice`` is the choice's kind (auto, any, tool, none), None when not sent."""
    if temperature is not None and temperature != 1:
        return "`temperature` may only be set to 1 when thinking is enabled."
    if top_p is not None and not (isinstance(top_p, int | float) and top_p >= 0.95):
        return "`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled."
    if top_k is not None:
        return "`top_k` must be unset when thinking is enabled."
    if tool_choice in ("any", "tool"):
        return "Thinking may not be enabled when tool_choice forces tool use."
    return None
