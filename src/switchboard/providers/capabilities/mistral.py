"""Capabilities of provider type ``mistral`` (see the package docstring and ``providers/mistral.py``).

Mistral rejects fields it does not know (422), so what it lacks is refused here rather than sent.
"""

from __future__ import annotations

from typing import Any

from switchboard.providers.capabilities import (
    NOT_SENT_SAFETY,
    NOT_SENT_USER,
    Table,
    passed,
    refused,
    seed,
    translated,
)

_PASSED = (
    "max_tokens", "temperature", "top_p", "n", "stop", "stop:more_than_4", "stop:more_than_5", "tools",
    "parallel_tool_calls", "response_format",
    "presence_penalty", "frequency_penalty", "prediction", "prompt_cache_key", "metadata",
    "tool_choice:none", "parallel_tool_calls:false", "tools.strict",
    "response_format.json_schema.description",
)

TABLE: Table = seed(
    (),
    **{name: passed() for name in _PASSED},
    stream_options=translated(note="not sent: Mistral streams usage on the last chunk"),
    user=NOT_SENT_USER,
    max_completion_tokens=translated("max_tokens"),
    seed=translated("random_seed"),
    tool_choice=translated("tool_choice", "'required' → 'any'"),
    tool_choice_is_allowed_tools=translated("tool_choice", "mode required → 'any', auto → 'auto'; only the "
                                            "allowed tools sent"),
    reasoning_effort=passed("none and high only; other levels a 400"),
    thinking=refused("send reasoning_effort"),
    messages__tool_calls_is_custom=refused("no custom (free-form) tools"),
    cache_control=translated(note="Mistral has no breakpoints (it caches prefixes itself); removed"),
    document=translated("messages.0.content.0.text", "text documents as text (title first); PDF refused "
                        "(a 400)"),
    **{"tool.is_error": translated(note="content prefixed 'Error: '")},
    prompt_cache_breakpoint=refused("Mistral rejects fields it does not know"),
    image_url__detail_is_low=translated("messages.0.content.0.image_url.detail"),
    safety_settings=NOT_SENT_SAFETY,
    reasoning=translated("choices.0.message.reasoning_content", "thinking chunks"),
    usage__cache_read=translated("usage.prompt_tokens_details.cached_tokens"),
)

# Mistral takes reasoning_effort "none" and "high" only (providers/mistral.py).
EXAMPLES: dict[str, dict[str, Any]] = {"reasoning_effort": {"reasoning_effort": "high"}}

_REPLY = {"id": "c", "object": "chat.completion", "created": 1, "model": "mistral-medium-latest"}
_CHOICE = {"index": 0, "finish_reason": "stop"}
_HI = {"role": "assistant", "content": "hi"}
SAMPLES: dict[str, dict[str, Any]] = {
    "reasoning": {**_REPLY, "choices": [{**_CHOICE, "message": {"role": "assistant", "content": [
        {"type": "thinking", "thinking": [{"type": "text", "text": "2 + 2 = 4"}]},
        {"type": "text", "text": "4"},
    ]}}]},
    "usage.cache_read": {**_REPLY, "choices": [{**_CHOICE, "message": _HI}],
                         "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11,
                                   "num_cached_tokens": 8}},
}
