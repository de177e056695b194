"""Capabilities of provider type ``openai-compatible``: one table per preset (``VARIANTS``, key
``"openai-compatible:<preset>"``), the base table being the ``custom`` preset's.

The body is OpenAI's, so OpenAI parameters and the vendor extension ``top_k`` are passed and the
server judges; ``thinking`` becomes ``reasoning_effort``. Each preset refuses what its server
rejects or silently ignores although it changes the output (sources in
``providers/openai_compatible.py``), and names what the adapter reshapes for it (``PRESETS``
there: renames, response-format dialects, stream usage).
"""

from __future__ import annotations

from typing import Any

from switchboard.providers.capabilities import Cell, Table, passed, refused, translated
from switchboard.providers.capabilities.openai import THINKING_NOTE, table

VARIANT_LABEL = "preset"

_BASE: dict[str, Cell] = {
    "top_k": passed("vendor extension; the server judges"),
    "cache_control": passed("the server judges; OpenRouter forwards breakpoints"),
    "thinking": translated("reasoning_effort", THINKING_NOTE),
    "reasoning": translated("choices.0.message.reasoning_content", "from reasoning_content or reasoning"),
    "stop_sequence": translated("choices.0.stop_sequence", "TGI's finish_reason stop_sequence → stop; TGI "
                                "names none: the request's only stop sequence, else null"),
    # OpenAI's limit of 4 is not every server's: vLLM, Ollama, ... take more.
    "stop:more_than_4": passed("the server judges"),
    "stop:more_than_5": passed("the server judges"),
    "messages.audio": passed("the server judges"),
    "messages.name": passed("the server judges"),
    "messages.function_call": passed("the server judges"),
}

_MAX_TOKENS = {"max_completion_tokens": translated("max_tokens")}
_NO_STREAM_USAGE = {"stream_options": translated(note="removed when streaming: the server rejects it")}


# Neither Ollama's OpenAI API (openai.ChatCompletionRequest) nor TGI's Messages API (ChatRequest)
# has top_k, and both ignore unknown fields: the model would sample as if it had not been asked.
_NO_TOP_K = refused("the server's OpenAI API has no top_k and ignores it")


def _refused(*names: str) -> dict[str, Cell]:
    return {name: refused() for name in names}


_PRESETS: dict[str, dict[str, Cell]] = {
    "custom": {},
    "vllm": {},
    "openrouter": {},
    "ollama": {
        **_refused("n", "logit_bias", "tool_choice:none", "tool_choice:allowed_tools"), **_MAX_TOKENS,
        "top_k": _NO_TOP_K,
        # "auto" is removed before the check (the server's default); any other choice is refused.
        "tool_choice": refused("only 'auto'"),
    },
    "tgi": {
        **_refused("n", "logit_bias"), **_MAX_TOKENS,
        "top_k": _NO_TOP_K,
        "response_format.json_schema.description": translated(
            "response_format.value.schema.description", "the schema's description (after its own)"
        ),
        "response_format": translated("response_format.value", "as {type, value}"),
        "stop": passed("a string becomes a list"),
    },
    "groq": {**_refused("n", "logprobs", "top_logprobs", "logit_bias"), **_NO_STREAM_USAGE,
             # Groq rejects the key; a tool message's name (not OpenAI's) is removed as well.
             "messages.name": refused("Groq rejects message names"),
             # Groq answers 400 "property '...' is unsupported" for fields its API does not have.
             "prompt_cache_key": refused("Groq rejects it; its prompt caching is automatic"),
             "verbosity": refused("not in Groq's API")},
    "together": {**_refused("logprobs", "top_logprobs"), **_NO_STREAM_USAGE},
    "deepseek": {**_refused("n", "seed", "logit_bias"), **_MAX_TOKENS,
                 "response_format.json_schema.description": refused("json_schema is refused")},
    "lmstudio": {
        **_refused("n"), **_MAX_TOKENS, **_NO_STREAM_USAGE,
        "response_format": translated("response_format.json_schema", "json_object as a json_schema"),
    },
}

VARIANTS: dict[str, Table] = {name: table(**{**_BASE, **cells}) for name, cells in _PRESETS.items()}
VARIANTS["none"] = VARIANTS["custom"]
TABLE: Table = VARIANTS["custom"]

_REPLY = {"id": "c", "object": "chat.completion", "created": 1, "model": "m"}
_CHOICE = {"index": 0, "logprobs": None, "finish_reason": "stop"}
_HI = {"role": "assistant", "content": "hi"}
SAMPLES: dict[str, dict[str, Any]] = {
    "reasoning": {**_REPLY, "choices": [{**_CHOICE, "message": {  # OpenRouter's and Ollama's name
        "role": "assistant", "content": "4", "reasoning": "2 + 2 = 4"}}]},
    "usage.cache_read": {**_REPLY, "choices": [{**_CHOICE, "message": _HI}],  # DeepSeek's field
                         "usage": {"prompt_tokens": 10, "completion_tokens": 1,
                                   "prompt_cache_hit_tokens": 8}},
    "stop_sequence": {**_REPLY, "choices": [{**_CHOICE, "message": _HI,  # TGI's finish reason
                                             "finish_reason": "stop_sequence"}]},
    "refusal": {**_REPLY, "choices": [{**_CHOICE, "message": {
        "role": "assistant", "content": None, "refusal": "I can't."}}]},
}
