"""Capabilities of provider type ``anthropic`` (see the package docstring).

The adapter (``providers/anthropic/request.py``) calls :func:`check` with this table, so a row
refused here is the 400 (or the drop, under ``drop_params``) the adapter gives."""

from __future__ import annotations

from typing import Any

from switchboard.providers.capabilities import NOT_SENT_SAFETY, Table, refused, seed, translated

TABLE: Table = seed(
    ("max_tokens", "temperature", "top_p", "top_k", "tools", "thinking"),
    response_format__json_schema__description=translated(
        "tools.0.description", "the JSON tool's description; native structured output: the schema's"
    ),
    messages__tool_calls_is_custom=refused("no custom (free-form) tools"),
    max_completion_tokens=translated("max_tokens"),
    stream_options=translated("", "not sent: Anthropic streams always carry usage"),
    stop=translated("stop_sequences"),
    stop_is_more_than_4=translated("stop_sequences"),
    stop_is_more_than_5=translated("stop_sequences"),
    tool_choice=translated("tool_choice.type", "auto (omitted), required → any, a function → tool"),
    parallel_tool_calls=translated("", "true is the default; false → tool_choice.disable_parallel_tool_use"),
    response_format=translated(
        "tools",
        "json_object and non-strict json_schema: a forced tool; strict json_schema: output_config.format",
    ),
    user=translated("metadata.user_id"),
    safety_identifier=translated("metadata.user_id", "when no user is sent"),
    reasoning_effort=translated(
        "thinking.budget_tokens",
        "minimal/low 1024, medium 4096, high 16384 (below max_tokens); none: off; xhigh, max: "
        "output_config.effort with adaptive thinking",
    ),
    metadata=refused("Anthropic's metadata holds only user_id"),
    service_tier=refused("Anthropic's tiers (auto, standard_only) are not OpenAI's"),
    moderation=refused("no moderation step upstream"),
    prompt_cache_options=refused("lifetimes are per breakpoint (cache_control.ttl 5m / 1h)"),
    prompt_cache_retention=refused("lifetimes are per breakpoint (cache_control.ttl 5m / 1h)"),
    tool_choice_is_none=translated("tool_choice.type", "{type: none}"),
    tool_choice_is_allowed_tools=translated("tool_choice.type", "mode required → any, auto → omitted; only "
                                            "the allowed tools sent"),
    parallel_tool_calls_is_false=translated("tool_choice.disable_parallel_tool_use"),
    tools__strict=translated("tools.0.strict"),
    cache_control=translated(
        "messages.0.content.0.cache_control",
        "on the block made from the part (system parts: system blocks; tools[i]: the tool)",
    ),
    prompt_cache_breakpoint=refused("no breakpoint of that lifetime: send cache_control (5m / 1h)"),
    document=translated("messages.0.content.0.source",
                        "a document block as written (citations, context kept)"),
    **{"tool.is_error": translated("messages.2.content.0.is_error", "tool_result.is_error")},
    image_url__detail_is_low=refused("no resolution control; 'high' and 'auto' are the normal handling"),
    safety_settings=NOT_SENT_SAFETY,
    reasoning=translated("choices.0.message.reasoning_content", "thinking blocks (stream: thinking_delta)"),
    reasoning__signature=translated(
        "choices.0.message.thinking_blocks", "signatures and redacted_thinking kept (stream: signature_delta)"
    ),
    usage__cache_read=translated("usage.prompt_tokens_details.cached_tokens", "cache_read_input_tokens"),
    usage__cache_write=translated(
        "usage.prompt_tokens_details.cache_creation_tokens", "cache_creation_input_tokens (1 h part apart)"
    ),
    stop_sequence=translated("choices.0.stop_sequence", "stop_reason stop_sequence → finish_reason stop"),
    refusal=translated("choices.0.finish_reason", "stop_reason refusal → content_filter"),
)

# A forced tool_choice is sent only with the tools it chooses among (without them: a 400,
# providers/forced_choice.py).
_TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
EXAMPLES: dict[str, dict[str, Any]] = {"tool_choice": {"tools": _TOOLS, "tool_choice": "required"}}


def _reply(*content: dict[str, Any], stop: str = "end_turn", **usage: int) -> dict[str, Any]:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": list(content), "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 1, **usage}}


_THOUGHT = {"type": "thinking", "thinking": "2 + 2 = 4", "signature": "sig"}
_HI = {"type": "text", "text": "hi"}
SAMPLES: dict[str, dict[str, Any]] = {
    "reasoning": _reply(_THOUGHT, _HI),
    "reasoning.signature": _reply(_THOUGHT, _HI),
    "usage.cache_read": _reply(_HI, cache_read_input_tokens=8),
    "usage.cache_write": _reply(_HI, cache_creation_input_tokens=8),
    "stop_sequence": {**_reply(_HI, stop="stop_sequence"), "stop_sequence": "END"},
    "refusal": _reply(stop="refusal"),
}
