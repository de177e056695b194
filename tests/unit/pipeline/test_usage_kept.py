"""A stream's relayed output is kept for an estimate only up to KEPT_MAX (pipeline/usage.py):
memory and the counting done on the event loop when the stream is cut stay bounded, and the
estimate of a longer stream scales from what was kept."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from switchboard import tokens
from switchboard.pipeline.usage import KEPT_MAX, _Call, _estimated_output, _relayed_text


def chunk(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}}]}


def relay(call: _Call, pieces: list[str]) -> None:
    for piece in pieces:  # one piece a batch, as the usage stage's relay hands them over
        call.collect([chunk(piece)], _relayed_text)


def estimate(call: _Call) -> int:
    ctx = SimpleNamespace(route=None)
    return _estimated_output(ctx, call)  # type: ignore[arg-type]


def test_a_short_stream_is_kept_whole_and_counted_exactly() -> None:
    call = _Call(SimpleNamespace(model="gpt-4o-mini"))  # type: ignore[arg-type]
    pieces = ["Hello", " there", ", how", " are", " you?"] * 20
    relay(call, pieces)
    assert estimate(call) == tokens.count_text("".join(pieces), "o200k_base")
    assert call.dropped == 0


def test_a_long_stream_keeps_at_most_kept_max_and_scales_the_rest() -> None:
    call = _Call(SimpleNamespace(model="gpt-4o-mini"))  # type: ignore[arg-type]
    piece = "the quick brown fox jumps over the lazy dog. " * 20  # 900 characters
    pieces = [piece] * (4 * KEPT_MAX // len(piece))
    relay(call, pieces)
    got = estimate(call)
    assert sum(len(t) for t in call.text) <= KEPT_MAX
    assert call.kept + call.dropped == sum(len(p) for p in pieces)
    exact = tokens.count_text("".join(pieces), "o200k_base")
    assert abs(got - exact) <= exact * 0.01, (got, exact)


def test_text_that_counts_slowly_is_not_kept_past_the_bound() -> None:
    # Long runs without spaces are the offline counter's slowest input (~0.3 s a million
    # characters): a 20-million-character stream cut short counts only what was kept.
    call = _Call(SimpleNamespace(model="claude-sonnet-4"))  # type: ignore[arg-type]
    relay(call, ["x" * 10_000] * 2_000)
    assert sum(len(t) for t in call.text) <= KEPT_MAX and len(call.text) <= KEPT_MAX // 10_000 + 1
    assert call.kept + call.dropped == 20_000_000
    kept = tokens.count_text("x" * call.kept, "o200k_base")
    scaled = -(-kept * 20_000_000 // call.kept)
    assert estimate(call) == -(-scaled * tokens.OTHER_PROVIDER_FACTOR // 1)


def test_the_relayed_text_is_read_from_every_field_in_order() -> None:
    # Content, reasoning, the tool calls' names and arguments, a completions choice's text: in
    # that order within a choice; empty, missing and non-text values are passed over.
    batch: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"index": 0, "delta": {"reasoning_content": "think", "content": "say"}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"name": "f", "arguments": "{\"a\""}},
            {"index": 1, "function": {"arguments": ": 1}"}}, {"index": 2}]}}]},
        {"choices": [{"index": 0, "delta": {"content": None, "reasoning_content": 3}},
                     {"index": 1, "delta": {}}]},
        {"choices": [{"index": 0, "text": "plain"}, {"index": 1, "text": ""}, {"index": 2, "delta": None}]},
        {"choices": [{"index": 0, "delta": {"content": "both"}, "text": "too"}]},
        {"choices": [], "usage": {"prompt_tokens": 1}},
        {"id": "no choices"},
    ]
    out: list[str | bytes] = []
    _relayed_text(batch, out)
    assert out == ["say", "think", "f", "{\"a\"", ": 1}", "plain", "both", "too"]
