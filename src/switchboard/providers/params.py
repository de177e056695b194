"""Parameters a provider cannot honour: a clear 400 naming the parameter and the provider, or
silently dropped when the model entry (``drop_params: true``) or the request (``"drop_params":
true``) asks for it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from switchboard.errors import GatewayError, UnsupportedParameter
from switchboard.providers.target import Target

# Every OpenAI Chat Completions request parameter, so adapters can name what they lack.
CHAT_PARAMS = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "n",
        "stop",
        "seed",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "presence_penalty",
        "frequency_penalty",
        "user",
        "metadata",
        "store",
        "service_tier",
        "modalities",
        "audio",
        "prediction",
        "reasoning_effort",
        "web_search_options",
        "functions",
        "function_call",
        "verbosity",
        "prompt_cache_key",
        "safety_identifier",
        # Moderation of the input and output by an OpenAI moderation model ("block" changes the
        # answer): OpenAI-shaped providers pass it, the others refuse it.
        "moderation",
        # Prompt caching policy (breakpoint mode and minimum lifetime; the older maximum retention):
        # no translated provider has an equivalent, so they refuse it rather than cache otherwise.
        "prompt_cache_options",
        "prompt_cache_retention",
    }
)

# The canonical request's list of its fields that are hints (``capabilities.check``): set by an
# inbound translation (the Responses API's ``text.verbosity``, ``service_tier``, ``prompt_cache_key``)
# for fields its callers send as hints, and never sent upstream.
HINTS = "switchboard_hints"  # named for the gateway: no API has such a field

# Whether the caller wants the model's thought summaries back, where its API says so apart from
# how much to think: set by the Gemini API's translation (``thinkingConfig.includeThoughts``), read
# by the gemini and vertex types (``includeThoughts`` sent as given: Google bills the summaries it
# writes); absent: thinking asked for brings its summaries. Never sent upstream.
THOUGHTS = "switchboard_thoughts"

GATEWAY_PARAMS = frozenset({"drop_params", HINTS, THOUGHTS})

# A refusal's way out, told in the words of the OpenAI-shaped APIs, whose callers can send the
# field. The Anthropic and Gemini APIs have no such field (an unknown one is their 400): their
# errors say the model entry's key only (without_request_drop).
_SEND_DROP = ', or send "drop_params": true,'
_ENTRY_ONLY = " in the gateway's config (this API's requests have no drop_params field),"


def drop_advice(outcome: str = "drop it instead") -> str:
    """How a refused feature is dropped rather than refused: what follows it in the 400."""
    return f"set drop_params: true on the model{_SEND_DROP} to {outcome}"


def without_request_drop(error: GatewayError) -> None:
    """``error``'s advice for a caller whose API has no ``drop_params`` field: the model entry's key
    alone. Only error paths call it."""
    error.message = error.message.replace(_SEND_DROP, _ENTRY_ONLY)


def drops(request: dict[str, Any], target: Target) -> bool:
    return target.drop_params or request.get("drop_params") is True


def check_supported(
    request: dict[str, Any], supported: Iterable[str], target: Target, known: frozenset[str] = CHAT_PARAMS
) -> dict[str, Any]:
    """Return ``request`` without the known-but-unsupported params (when dropping), else raise.

    ``n`` equal to 1 and ``false``/``null``/``0`` values are not treated as requests for a feature.
    """
    allowed = set(supported) | GATEWAY_PARAMS
    offending = [
        k
        for k, v in request.items()
        if k in known and k not in allowed and v not in (None, False, 0) and not (k == "n" and v == 1)
    ]
    if not offending:
        return request
    if drops(request, target):
        return {k: v for k, v in request.items() if k not in offending}
    name = offending[0]
    raise UnsupportedParameter(
        f"parameter '{name}' is not supported by provider type '{target.provider_type}' "
        f"(model '{target.name}'); {drop_advice()}",
        param=name,
    )
