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


def tool_calls_seen(client: Any, stream: bool, **kwargs: Any) -> tuple[list[tuple[int, str]], str | None]:
    """(tool_calls index, function name) of each call the client received in choice 0, and the
    finish_reason; a stream is read to its end (names come in the first delta of each call)."""
    if not stream:
        choice = client.chat.completions.create(**kwargs).choices[0]
        calls = choice.message.tool_calls or []
        return [(i, c.function.name) for i, c in enumerate(calls)], choice.finish_reason
    chunks = list(client.chat.completions.create(stream=True, **kwargs))
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    named = [(tc.index, tc.function.name) for tc in deltas if tc.function and tc.function.name]
    return named, (finish_reasons(chunks) or [None])[-1]
