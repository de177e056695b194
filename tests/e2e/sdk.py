"""Small helpers the end-to-end tests share for building requests and reading SDK streams."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


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


def served_during(slow: Callable[[], T], url: str, key: str, after: float = 0.3) -> tuple[T, float, int]:
    """Run ``slow`` (a request) in a thread while polling ``GET {url}/v1/models``: its result, how
    long it took, and how many ``/v1/models`` answers asked at least ``after`` seconds into it
    (well into its work) came back while it was still running."""
    timing: list[float] = []

    def timed() -> T:
        began = time.monotonic()
        try:
            return slow()
        finally:
            timing.append(time.monotonic() - began)

    served = 0
    with ThreadPoolExecutor(1) as pool:
        start = time.monotonic()
        future = pool.submit(timed)
        while not future.done():
            asked = time.monotonic()
            models = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=120)
            assert models.status_code == 200, models.text
            if asked - start >= after and not future.done():
                served += 1
            time.sleep(0.02)  # the poll's pace
        result = future.result()
    return result, timing[0], served
