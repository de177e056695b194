"""Capabilities of provider type ``bedrock`` (see the package docstring).

Paths are where a feature lands in the Converse body (digit segments index lists). Some cells
depend on the model family, which the table cannot see: the adapter refuses those values itself
(with the same 400, or drops them under ``drop_params``), as the notes say.
"""

from __future__ import annotations

from typing import Any

from switchboard.providers.capabilities import ENFORCED, NOT_SENT_SAFETY, Table, refused, seed, translated

_EXTRA = "additionalModelRequestFields"

TABLE: Table = seed(
    (),
    response_format__json_schema__description=translated(
        "outputConfig.textFormat.structure.jsonSchema.description"
    ),
    messages__tool_calls_is_custom=refused("no custom (free-form) tools"),
    stream_options=translated(note="not sent: usage always comes in the stream's metadata event"),
    max_tokens=translated("inferenceConfig.maxTokens"),
    max_completion_tokens=translated("inferenceConfig.maxTokens"),
    temperature=translated("inferenceConfig.temperature"),
    top_p=translated("inferenceConfig.topP"),
    stop=translated("inferenceConfig.stopSequences", "Claude: also asks for additionalModelResponseFields"
                    ".stop_sequence"),
    stop_is_more_than_4=translated("inferenceConfig.stopSequences"),
    stop_is_more_than_5=translated("inferenceConfig.stopSequences"),
    tools=translated("toolConfig.tools.0.toolSpec"),
    tool_choice=translated("toolConfig.toolChoice"),
    parallel_tool_calls=translated(note="true is Converse's default"),
    response_format=translated("outputConfig.textFormat", "json_schema only; json_object refused"),
    user=translated("requestMetadata.user", "when it fits requestMetadata; otherwise not sent"),
    metadata=translated("requestMetadata", "at most 16 entries of <= 256 characters; a 400 otherwise"),
    reasoning_effort=translated(f"{_EXTRA}.thinking", "Claude: thinking budget (xhigh, max: adaptive "
                                "thinking and output_config.effort); Nova 2: reasoningConfig; other models "
                                "refused"),
    thinking=translated(f"{_EXTRA}.thinking", "Claude: as sent; Nova 2: reasoningConfig; other models "
                        "refused"),
    top_k=translated(f"{_EXTRA}.top_k", "Nova: additionalModelRequestFields.inferenceConfig.topK; "
                     "Cohere Command R: additionalModelRequestFields.k; Meta Llama, AI21, DeepSeek, "
                     "Titan: refused (no top-k control)"),
    tool_choice_is_allowed_tools=translated("toolConfig.toolChoice", "mode required → any, auto → auto; "
                                            "only the allowed tools sent"),
    tool_choice_is_none=translated(note="toolConfig left out; tool calls and results in the history sent as "
                                   "text"),
    parallel_tool_calls_is_false=translated(f"{_EXTRA}.tool_choice.disable_parallel_tool_use",
                                            "Claude models; other models: " + ENFORCED),
    tools__strict=translated("toolConfig.tools.0.toolSpec.strict", "per tool"),
    cache_control=translated("messages.0.content.1.cachePoint", "a cachePoint block after the part (also in "
                             "system and toolConfig.tools)"),
    prompt_cache_breakpoint=refused("no breakpoint of that lifetime: send cache_control (a cachePoint)"),
    document=translated("messages.0.content.0.text", "text documents as text (title first); base64 PDF, "
                        "Word, Excel: a document block (format, name, source.bytes)"),
    **{"tool.is_error": translated("messages.2.content.0.toolResult.status", "status: error")},
    image_url__detail_is_low=refused("Converse has no image resolution control"),
    safety_settings=NOT_SENT_SAFETY,
    # Response features.
    reasoning=translated("choices.0.message.reasoning_content", "from reasoningContent blocks"),
    reasoning__signature=translated("choices.0.message.thinking_blocks", "reasoningText.signature kept; "
                                    "redactedContent as redacted_thinking"),
    usage__cache_read=translated("usage.prompt_tokens_details.cached_tokens", "cacheReadInputTokens"),
    usage__cache_write=translated("usage.prompt_tokens_details.cache_creation_tokens",
                                  "cacheWriteInputTokens (1 h part apart, from cacheDetails)"),
    stop_sequence=translated("choices.0.stop_sequence", "Claude models (additionalModelResponseFields"
                             ".stop_sequence); others name none: the request's only stop sequence, "
                             "else null"),
    refusal=refused("not reported: a filtered answer is finish_reason content_filter, with no refusal text"),
)

# Probes the generic examples cannot make: json_object is a value Converse refuses (json_schema is
# the translated one), and a tool_choice is sent only with the tools it chooses among.
_TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
EXAMPLES: dict[str, dict[str, Any]] = {
    "response_format": {"response_format": {"type": "json_schema", "json_schema": {
        "name": "answer", "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
    }}},
    "tool_choice": {"tools": _TOOLS, "tool_choice": "required"},
}


def _reply(*content: dict[str, Any], stop: str = "end_turn", **extra: Any) -> dict[str, Any]:
    usage = {"inputTokens": 10, "outputTokens": 1, "totalTokens": 11}
    return {"output": {"message": {"role": "assistant", "content": list(content)}}, "stopReason": stop,
            "usage": usage, **extra}


_SIGNED = {"reasoningContent": {"reasoningText": {"text": "2 + 2 = 4", "signature": "sig"}}}
SAMPLES: dict[str, dict[str, Any]] = {
    "reasoning": _reply(_SIGNED, {"text": "4"}),
    "reasoning.signature": _reply(_SIGNED, {"text": "4"}),
    "usage.cache_read": _reply({"text": "hi"}, usage={"inputTokens": 2, "outputTokens": 1, "totalTokens": 11,
                                                      "cacheReadInputTokens": 8}),
    "usage.cache_write": _reply({"text": "hi"}, usage={"inputTokens": 2, "outputTokens": 1, "totalTokens": 11,
                                                       "cacheWriteInputTokens": 8}),
    "stop_sequence": _reply({"text": "hi"}, stop="stop_sequence",
                            additionalModelResponseFields={"stop_sequence": "END"}),
}
