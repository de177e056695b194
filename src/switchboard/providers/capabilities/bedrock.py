"""Capabilities of provider type ``bedrock`` (see the package docstring).

Paths are where a feature lands in the Converse body (lists are walked through). Some cells
depend on the model family, which the table cannot see: the adapter refuses those values itself
(with the same 400, or drops them under ``drop_params``), as the notes say.
"""

from __future__ import annotations

from switchboard.providers.capabilities import Table, refused, seed, translated

_EXTRA = "additionalModelRequestFields"

TABLE: Table = seed(
    (),
    stream_options=translated(note="not sent: usage always comes in the stream's metadata event"),
    max_tokens=translated("inferenceConfig.maxTokens"),
    max_completion_tokens=translated("inferenceConfig.maxTokens"),
    temperature=translated("inferenceConfig.temperature"),
    top_p=translated("inferenceConfig.topP"),
    stop=translated("inferenceConfig.stopSequences", "Claude: also asks for additionalModelResponseFields"
                    ".stop_sequence"),
    tools=translated("toolConfig.tools.toolSpec"),
    tool_choice=translated("toolConfig.toolChoice"),
    parallel_tool_calls=translated(note="true is Converse's default"),
    response_format=translated("outputConfig.textFormat", "json_schema only; json_object refused"),
    user=translated("requestMetadata.user", "a 400 when it does not fit requestMetadata"),
    metadata=translated("requestMetadata", "at most 16 entries of <= 256 characters; a 400 otherwise"),
    reasoning_effort=translated(f"{_EXTRA}.thinking", "Claude: thinking budget; Nova 2: reasoningConfig; "
                                "other models refused"),
    thinking=translated(f"{_EXTRA}.thinking", "Claude: as sent; Nova 2: reasoningConfig; other models "
                        "refused"),
    top_k=translated(f"{_EXTRA}.top_k"),
    tool_choice_is_none=translated(note="toolConfig left out; tool calls and results in the history sent as "
                                   "text"),
    parallel_tool_calls_is_false=translated(f"{_EXTRA}.tool_choice.disable_parallel_tool_use",
                                            "Claude models; other models refused"),
    tools__strict=translated("toolConfig.tools.toolSpec.strict", "per tool"),
    cache_control=translated("messages.content.cachePoint", "a cachePoint block after the part (also in "
                             "system and toolConfig.tools)"),
    image_url__detail_is_low=refused("Converse has no image resolution control"),
    # Response features.
    reasoning=translated("choices.message.reasoning_content", "from reasoningContent blocks"),
    reasoning__signature=translated("choices.message.thinking_blocks", "reasoningText.signature kept; "
                                    "redactedContent as redacted_thinking"),
    usage__cache_read=translated("usage.prompt_tokens_details.cached_tokens", "cacheReadInputTokens"),
    usage__cache_write=translated("usage.prompt_tokens_details.cache_creation_tokens",
                                  "cacheWriteInputTokens"),
    stop_sequence=translated("choices.stop_sequence", "Claude models (additionalModelResponseFields"
                             ".stop_sequence); not reported for others"),
    refusal=refused("not reported: a filtered answer is finish_reason content_filter, with no refusal text"),
)
