"""Small helpers the end-to-end tests share for building requests and reading SDK streams."""

from __future__ import annotations

from typing import Any


def ask(text: str) -> list[dict[str, Any]]:
    """A one-message conversation."""
    return [{"role": "user", "content": text}]


def stream_text(chunks: list[Any]) -> str:
    """The assistant text of a streamed chat completion."""
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def finish_reasons(chunks: list[Any]) -> list[str]:
    return [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
