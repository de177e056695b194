"""Capabilities of provider type ``cohere`` (Cohere API v2 chat; see ``providers/cohere/``).

Cohere's chat request has no ``user`` or ``metadata`` field (``user`` is accepted and not sent:
an end-user id does not change the output; ``metadata`` is refused) and no control over parallel
tool calls (``parallel_tool_calls: false`` is enforced by the gateway, which keeps the first call of
a reply); its ``strict_tools`` covers every tool of a request (mixed strictness is refused by the
adapter, a value-level check). ``thinking`` and ``reasoning_effort`` become Cohere's ``thinking``.
"""

from __future__ import annotations

from typing import Any

from switchboard.providers.capabilities import (
    ENFORCED,
    NOT_SENT_SAFETY,
    NOT_SENT_USER,
    Table,
    refused,
    seed,
    translated,
)

TABLE: Table = seed(
    ("max_tokens", "temperature", "seed", "tools", "tool_choice", "response_format", "logprobs",
     "presence_penalty", "frequency_penalty", "thinking"),
    response_format__json_schema__description=translated(
        "response_format.json_schema.description", "the schema's description (after its own)"
    ),
    messages__tool_calls_is_custom=refused("no custom (free-form) tools"),
    stream_options=translated(note="not sent: usage comes in message-end"),
    user=NOT_SENT_USER,
    max_completion_tokens=translated("max_tokens"),
    top_p=translated("p", "clamped to 0.01-0.99"),
    top_k=translated("k"),
    stop=translated("stop_sequences"),
    stop_is_more_than_4=translated("stop_sequences"),
    stop_is_more_than_5=refused("Cohere documents at most 5; drop_params keeps the first 5"),
    parallel_tool_calls=translated(note="true is Cohere's own behaviour: not sent"),
    parallel_tool_calls_is_false=translated(note=ENFORCED),
    reasoning_effort=translated(
        "thinking", "none: disabled; minimal 512, low 1024, medium 8192 tokens; high: the model's budget; "
        "xhigh, max: refused"
    ),
    thinking=translated("thinking", "budget_tokens → token_budget"),
    tool_choice_is_none=translated("tool_choice", "NONE"),
    tool_choice_is_allowed_tools=translated("tool_choice", "mode required → REQUIRED, auto → omitted; only "
                                            "the allowed tools sent"),
    tools__strict=translated("strict_tools", "only when every tool is strict; mixed: 400"),
    cache_control=translated(note="Cohere has no prompt caching control; breakpoints removed"),
    document=translated("messages.0.content.0.text", "text documents as text (title first); PDF refused "
                        "(a 400: no file part)"),
    **{"tool.is_error": translated(note="content prefixed 'Error: '")},
    prompt_cache_breakpoint=translated(note="Cohere has no prompt caching control: not sent"),
    image_url__detail_is_low=translated("messages.0.content.0.image_url.detail"),
    safety_settings=NOT_SENT_SAFETY,
    reasoning=translated("choices.0.message.reasoning_content", "thinking content blocks"),
    usage__cache_read=translated("usage.prompt_tokens_details.cached_tokens"),
    stop_sequence=translated("choices.0.stop_sequence", "finish_reason STOP_SEQUENCE names none: the "
                             "request's only stop sequence, else null"),
)

_REPLY = {"id": "c", "finish_reason": "COMPLETE"}
SAMPLES: dict[str, dict[str, Any]] = {
    "reasoning": {**_REPLY, "message": {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "2 + 2 = 4"}, {"type": "text", "text": "4"},
    ]}},
    "usage.cache_read": {**_REPLY, "message": {"role": "assistant", "content": "hi"},
                         "usage": {"billed_units": {"input_tokens": 10, "output_tokens": 1},
                                   "tokens": {"input_tokens": 15, "output_tokens": 1}, "cached_tokens": 8}},
    "stop_sequence": {**_REPLY, "finish_reason": "STOP_SEQUENCE",
                      "message": {"role": "assistant", "content": "hi"}},
}
