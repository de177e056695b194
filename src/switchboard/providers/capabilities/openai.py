"""Capabilities of provider type ``openai`` (see the package docstring).

The canonical form is OpenAI's own, so every OpenAI parameter is passed; the canonical extensions
are turned into OpenAI's fields (``providers/openai_extensions.py``) or refused (``top_k``).
"""

from __future__ import annotations

from typing import Any

from switchboard.providers.capabilities import NOT_SENT_SAFETY, Table, passed, refused, translated
from switchboard.providers.capabilities.rows import REQUEST_ROWS, RESPONSE_ROWS

CACHE_NOTE = "OpenAI caches prefixes automatically; breakpoints removed"
STOP_NOTE = "OpenAI takes at most 4; drop_params keeps the first 4"
THINKING_NOTE = "budget ≤1024 low, ≤8192 medium, else high; adaptive: high; disabled: not sent"

# Cells that are not "passed" (the rest of the request rows) or "not reported" (response rows).
_CELLS = {
    "top_k": refused("no equivalent"),
    # OpenAI's documented maximum (Azure's too); /v1/chat/completions refuses more at the edge.
    "stop:more_than_4": refused(STOP_NOTE),
    "stop:more_than_5": refused(STOP_NOTE),
    "thinking": translated("reasoning_effort", THINKING_NOTE),
    "cache_control": translated(note=CACHE_NOTE),
    "document": translated("messages.0.content.0.text", "text documents as text parts (title first); "
                           "base64 (PDF): file parts"),
    "tool.is_error": translated(note="content prefixed 'Error: '"),
    "safety_settings": NOT_SENT_SAFETY,
    "enable_enhanced_civic_answers": refused("the Gemini API's own answers"),
    "messages.audio": passed("on a shared provider account only with the caller's own credential "
                             "(docs/access.md)"),
    "usage.cache_read": translated("usage.prompt_tokens_details.cached_tokens"),
    "refusal": translated("choices.0.message.refusal"),
}


def table(**cells: Any) -> Table:
    """The OpenAI table, with ``cells`` (keyed by row name) changed: shared by OpenAI-shaped types."""
    given = {**_CELLS, **cells}
    out: Table = {row.name: given.get(row.name, passed()) for row in REQUEST_ROWS}
    out.update({name: given.get(name, refused("not reported")) for name in RESPONSE_ROWS})
    return out


TABLE: Table = table()

_HI = {"index": 0, "logprobs": None, "finish_reason": "stop"}
SAMPLES: dict[str, dict[str, Any]] = {
    "usage.cache_read": {
        "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{**_HI, "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 2048, "completion_tokens": 1, "total_tokens": 2049,
                  "prompt_tokens_details": {"cached_tokens": 1024}},
    },
    "refusal": {
        "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{**_HI, "message": {"role": "assistant", "content": None, "refusal": "I can't."}}],
    },
}
