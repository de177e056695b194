"""Every adapter reads an upstream's token counts as whole, non-negative and at most TOKENS_MAX
(providers/counts.py), so no count can make a cost too large to record or a sum too large to
encode; the usage stage's ``split`` bounds a canonical usage read as it came the same way."""

from __future__ import annotations

import contextvars
import math
from typing import Any

import orjson
import pytest

from switchboard.limits.estimate import used_tokens
from switchboard.providers import counts
from switchboard.providers.anthropic.response import usage as anthropic_usage
from switchboard.providers.bedrock.response import canonical_usage as bedrock_usage
from switchboard.providers.cohere.response import usage as cohere_usage
from switchboard.providers.counts import TOKENS_MAX, count, position, reading
from switchboard.providers.google.response import usage as gemini_usage
from switchboard.providers.openai_compatible import normalise_usage
from switchboard.providers.openai_responses import chat_usage
from switchboard.spend.cost import split
from switchboard.spend.units import units_of

HUGE = 2**64 - 1


@pytest.mark.parametrize(("value", "expected"), [
    (0, 0), (12, 12), (TOKENS_MAX, TOKENS_MAX), (TOKENS_MAX + 1, TOKENS_MAX), (HUGE, TOKENS_MAX),
    (18.0, 18), (1.8446744073709552e19, TOKENS_MAX), (1e300, TOKENS_MAX),
    (-5, 0), (-5.0, 0), (12.5, 0), (math.nan, 0), (math.inf, 0), (-math.inf, 0),
    ("12", 0), (None, 0), (True, 0), ([3], 0),
])
def test_a_count_is_whole_not_negative_and_bounded(value: Any, expected: int) -> None:
    assert count(value) == expected


@pytest.mark.parametrize(("value", "invalid"), [
    (0, False), (12, False), (18.0, False), (HUGE, False), (1e300, False), (None, False),
    (-5, True), (-5.0, True), (12.5, True), (math.nan, True), (math.inf, True), ("12", True),
    (True, True), ([3], True),
])
def test_a_value_that_is_no_count_marks_the_calls_reading(value: Any, invalid: bool) -> None:
    """Counted as none, and the call's reading marked (``metadata.usage_invalid``); a missing
    count (None) and one past the bound (``usage_clamped``) are no such mark."""

    def read() -> bool:
        found = reading()
        count(value)
        return found.invalid

    assert contextvars.copy_context().run(read) is invalid
    assert count(value) in (0, 12, 18, TOKENS_MAX)  # outside a call: nothing to mark, no error


def test_a_missing_count_is_none_without_the_invalid_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """None (a real OpenAI usage block's details have several) is 0 at once: the path that marks
    a value that is no count is for those alone."""

    def invalid() -> int:
        raise AssertionError("a missing count took the invalid path")

    monkeypatch.setattr(counts, "_invalid", invalid)
    assert contextvars.copy_context().run(lambda: (reading(), count(None))[1]) == 0


@pytest.mark.parametrize("value", [HUGE, 1e300, -5, 12.5, math.nan, "12", "many", None])
def test_every_adapter_bounds_what_it_reads(value: Any) -> None:
    usages = [
        anthropic_usage({"input_tokens": value, "output_tokens": value, "cache_read_input_tokens": value,
                         "cache_creation_input_tokens": value}),
        gemini_usage({"promptTokenCount": value, "toolUsePromptTokenCount": value,
                      "candidatesTokenCount": value, "thoughtsTokenCount": value, "totalTokenCount": value}),
        normalise_usage({"prompt_tokens": value, "completion_tokens": value, "total_tokens": value}),
        chat_usage({"input_tokens": value, "output_tokens": value, "total_tokens": value,
                    "input_tokens_details": {"cached_tokens": value}}),
        bedrock_usage({"inputTokens": value, "outputTokens": value, "cacheReadInputTokens": value}),
        cohere_usage({"billed_units": {"input_tokens": value, "output_tokens": value}}),
    ]
    for usage in usages:
        if usage is None:  # cohere: no numeric count at all
            continue
        orjson.dumps(usage)  # what the client is sent encodes: no sum past 64 bits
        tokens = split(usage)
        assert 0 <= tokens.prompt <= TOKENS_MAX and 0 <= tokens.completion <= TOKENS_MAX
        huge = isinstance(value, int | float) and value > TOKENS_MAX
        assert (tokens.prompt == TOKENS_MAX) is huge, usage


def test_a_canonical_usage_read_as_it_came_is_bounded() -> None:
    tokens = split({"prompt_tokens": HUGE, "completion_tokens": HUGE,
                    "prompt_tokens_details": {"cached_tokens": HUGE},
                    "completion_tokens_details": {"reasoning_tokens": HUGE}})
    assert (tokens.prompt, tokens.completion, tokens.cache_read) == (TOKENS_MAX, TOKENS_MAX, TOKENS_MAX)
    assert used_tokens({"total_tokens": HUGE}) == 2 * TOKENS_MAX
    assert used_tokens({"prompt_tokens": HUGE, "completion_tokens": -5}) == 2 * TOKENS_MAX
    assert units_of({"units": {"images": HUGE, "audio_seconds": math.inf, "characters": math.nan}}) == {
        "images": TOKENS_MAX, "audio_seconds": TOKENS_MAX}


@pytest.mark.parametrize(("value", "expected"), [
    (0, 0), (3, 3), (2**63, 2**63), (1.0, 1), (0.0, 0), (-0.0, 0), (2.0**53, 2**53),
    (-1, None), (1.5, None), (-1.0, None), (2.0**60, None), (math.inf, None), (math.nan, None),
    (True, None), (False, None), ("1", None), (None, None), ([0], None), ({"i": 0}, None),
])
def test_a_position_is_a_whole_number_not_below_0(value: Any, expected: int | None) -> None:
    found = position(value)
    assert found == expected and (found is None or found.__class__ is int)
