"""Capabilities of provider type ``gemini`` (see the package docstring).

``gemini`` and ``vertex`` share one translation (``providers/google/``); the cells common to both
are here, and ``vertex`` replaces the ones its API can carry (``labels``)."""

from __future__ import annotations

from typing import Any

from switchboard.providers.capabilities import ENFORCED, NOT_SENT_USER, Cell, Table, refused, seed, translated

_CONFIG = "generationConfig"
_FCC = "toolConfig.functionCallingConfig"

CELLS: dict[str, Cell] = {
    "stream_options": translated(note="not sent: usageMetadata comes on every stream event"),
    "max_tokens": translated(f"{_CONFIG}.maxOutputTokens"),
    "max_completion_tokens": translated(f"{_CONFIG}.maxOutputTokens"),
    "temperature": translated(f"{_CONFIG}.temperature"),
    "top_p": translated(f"{_CONFIG}.topP"),
    "top_k": translated(f"{_CONFIG}.topK"),
    "n": translated(f"{_CONFIG}.candidateCount"),
    "stop": translated(f"{_CONFIG}.stopSequences"),
    "stop:more_than_4": translated(f"{_CONFIG}.stopSequences"),
    # GenerationConfig.stopSequences: "up to 5" (the mock refuses more, as does the inbound API).
    "stop:more_than_5": refused("the Gemini API documents at most 5; drop_params keeps the first 5"),
    "seed": translated(f"{_CONFIG}.seed"),
    "presence_penalty": translated(f"{_CONFIG}.presencePenalty"),
    "frequency_penalty": translated(f"{_CONFIG}.frequencyPenalty"),
    "logprobs": translated(f"{_CONFIG}.responseLogprobs"),
    "top_logprobs": translated(f"{_CONFIG}.logprobs", "also turns responseLogprobs on"),
    "response_format": translated(f"{_CONFIG}.responseMimeType", "json_schema adds responseSchema"),
    "response_format.json_schema.description": translated(
        f"{_CONFIG}.responseSchema.description", "the schema's description (after its own)"
    ),
    "messages.tool_calls:custom": refused("no custom (free-form) tools"),
    "reasoning_effort": translated(
        f"{_CONFIG}.thinkingConfig",
        "thinkingBudget (gemini-1.x/2.x) or thinkingLevel, includeThoughts; xhigh, max: as high",
    ),
    "thinking": translated(f"{_CONFIG}.thinkingConfig", "thinkingBudget, includeThoughts; adaptive: dynamic"),
    "tools": translated("tools", "functionDeclarations, schema rewritten to Gemini's subset"),
    "tool_choice": translated(_FCC, "mode AUTO / ANY (+ allowedFunctionNames) / NONE"),
    "tool_choice:none": translated(_FCC, "mode NONE"),
    "tool_choice:allowed_tools": translated(
        f"{_FCC}.allowedFunctionNames",
        "mode required: ANY + allowedFunctionNames; auto: AUTO; only the allowed declarations sent",
    ),
    "parallel_tool_calls": translated(note="Gemini's own behaviour: calls may come in parallel"),
    # No control upstream: the gateway keeps the first call of each reply (providers/tool_calls.py).
    "parallel_tool_calls:false": translated(note=ENFORCED),
    "tools.strict": translated(
        _FCC, "mode VALIDATED when every tool is strict (ANY already validates); mixed strictness refused"
    ),
    "cache_control": translated(
        note="no breakpoints: Gemini 2.5+ caches repeated prefixes itself (implicit caching)"
    ),
    "prompt_cache_breakpoint": translated(note="not sent: Gemini 2.5+ caches repeated prefixes itself"),
    "image_url.detail:low": translated(
        f"{_CONFIG}.mediaResolution", "MEDIA_RESOLUTION_LOW when every image asks for 'low'"
    ),
    "document": translated("contents.0.parts.0.text", "text documents as text (title first); base64 (PDF): "
                           "inlineData"),
    "tool.is_error": translated("contents.2.parts.0.functionResponse.response.result",
                                "the result text prefixed 'Error: '"),
    # An end-user id does not change the output, and clients send it unasked (Claude Code's
    # metadata.user_id): accepted, not sent. Vertex sends it as a label.
    "user": NOT_SENT_USER,
    "metadata": refused("the Gemini API has no metadata field"),
    "safety_identifier": refused("no equivalent"),
    "prompt_cache_key": refused("no equivalent (caching is implicit)"),
    "safety_settings": translated("safetySettings"),
    "enable_enhanced_civic_answers": translated(f"{_CONFIG}.enableEnhancedCivicAnswers"),
    # Response features.
    "reasoning": translated("choices.0.message.reasoning_content", "thought parts"),
    "reasoning.signature": translated(
        "choices.0.message.tool_calls.0.extra_content.google.thought_signature",
        "thoughtSignature of functionCall parts, written back on the next turn",
    ),
    "usage.cache_read": translated(
        "usage.prompt_tokens_details.cached_tokens", "cachedContentTokenCount"
    ),
    "usage.cache_write": refused("not reported"),
    "stop_sequence": refused("not reported (finishReason STOP says which stop only implicitly)"),
    "refusal": translated("choices.0.finish_reason", "safety stops and blocked prompts -> content_filter"),
}



def table(cells: dict[str, Cell]) -> Table:
    """Every row refused but those ``cells`` name (a name that is not a row is a mistake)."""
    base = seed(())
    unknown = set(cells) - set(base)
    assert not unknown, f"not capability rows: {sorted(unknown)}"
    return {**base, **cells}


TABLE: Table = table(CELLS)


def _reply(*parts: dict[str, Any], finish: str = "STOP", **usage: int) -> dict[str, Any]:
    return {"candidates": [{"content": {"role": "model", "parts": list(parts)}, "finishReason": finish,
                            "index": 0}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 1, "totalTokenCount": 11,
                              **usage},
            "modelVersion": "gemini-2.5-flash"}


SAMPLES: dict[str, dict[str, Any]] = {
    "reasoning": _reply({"text": "2 + 2 = 4", "thought": True}, {"text": "4"}),
    "reasoning.signature": _reply({"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "sig"}),
    "usage.cache_read": _reply({"text": "hi"}, cachedContentTokenCount=8),
    "refusal": _reply(finish="SAFETY"),
}
