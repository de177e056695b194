"""Cost per request: canonical usage split the way providers bill it, priced exactly.

The golden tests per provider parse the provider's own usage (non-stream and stream) through its
adapter, then split and price it: cache reads are not billed at the full input rate, cache tokens
are not counted twice, streamed usage is not 0, and reasoning is billed as output and reported."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from switchboard.catalog import ModelInfo, lookup
from switchboard.config.schema import Timeouts
from switchboard.providers import bedrock, cohere, gemini, openai_compatible
from switchboard.providers.anthropic import SPEC as ANTHROPIC
from switchboard.providers.anthropic import AnthropicOptions
from switchboard.providers.bedrock import BedrockOptions
from switchboard.providers.openai import OpenAIAdapter, OpenAIOptions
from switchboard.providers.target import Target
from switchboard.spend.cost import Cost, Tokens, cost, format_usd, is_unpriced, split
from switchboard.upstream.eventstream import encode_message

# Round prices so expected costs are easy to read: $1 input, $0.10 cache read, $1.25 and $2 cache
# writes, $4 output, per million tokens.
INFO = ModelInfo(
    model="m",
    provider_types=("openai",),
    input_cost_per_mtok=1.0,
    output_cost_per_mtok=4.0,
    cached_input_cost_per_mtok=0.1,
    cache_write_5m_cost_per_mtok=1.25,
    cache_write_1h_cost_per_mtok=2.0,
)
M = Decimal(1_000_000)


def usd(*parts: tuple[int, str]) -> Decimal:
    return sum((n * Decimal(price) for n, price in parts), Decimal(0)) / M


# -- the split and the arithmetic -----------------------------------------------------------------


def test_split_makes_disjoint_counts_from_canonical_usage() -> None:
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 300,
        "prompt_tokens_details": {
            "cached_tokens": 600,
            "cache_creation_tokens": 150,
            "cache_creation_1h_tokens": 50,
        },
        "completion_tokens_details": {"reasoning_tokens": 120},
    }
    tokens = split(usage)
    assert tokens == Tokens(
        input=250, cache_read=600, cache_write_5m=100, cache_write_1h=50, output=300, reasoning=120
    )
    assert tokens.prompt == 1000  # every prompt token exactly once


@pytest.mark.parametrize(
    "usage",
    [
        None,
        {},
        {"prompt_tokens": "12"},
        {"prompt_tokens": -4, "completion_tokens": True},
        {"prompt_tokens": 10, "prompt_tokens_details": "x", "completion_tokens_details": [1]},
    ],
)
def test_split_tolerates_missing_and_wrong_values(usage: Any) -> None:
    tokens = split(usage)
    assert tokens.cache_read == tokens.output == tokens.reasoning == 0
    assert tokens.input in (0, 10)


def test_details_larger_than_their_total_are_capped() -> None:
    tokens = split(
        {
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 50, "cache_creation_tokens": 9},
            "completion_tokens_details": {"reasoning_tokens": 99},
        }
    )
    assert tokens == Tokens(input=0, cache_read=10, output=5, reasoning=5)


def test_cost_is_exact_decimal_at_each_rate() -> None:
    tokens = Tokens(
        input=250, cache_read=600, cache_write_5m=100, cache_write_1h=50, output=300, reasoning=120
    )
    priced = cost(INFO, tokens)
    assert not priced.unpriced
    assert (
        priced.usd
        == usd((250, "1"), (600, "0.1"), (100, "1.25"), (50, "2"), (300, "4"))
        == Decimal("0.001735")
    )
    # Float prices are taken as written: 0.15 and 0.6 are exact, not binary approximations.
    mini = ModelInfo(
        model="gpt-4o-mini", provider_types=("openai",), input_cost_per_mtok=0.15, output_cost_per_mtok=0.6
    )
    assert cost(mini, Tokens(input=7, output=3)).usd == Decimal("0.00000285")


def test_missing_cache_prices_fall_back_to_the_input_price() -> None:
    plain = ModelInfo(
        model="m", provider_types=("openai",), input_cost_per_mtok=2.0, output_cost_per_mtok=8.0
    )
    priced = cost(plain, Tokens(input=10, cache_read=20, cache_write_5m=30, cache_write_1h=40, output=5))
    assert priced.usd == usd((100, "2"), (5, "8")) and not priced.unpriced


def test_a_service_tier_with_prices_replaces_the_standard_token_prices() -> None:
    tiered = INFO.model_copy(update={
        "flex_input_cost_per_mtok": 0.5, "flex_output_cost_per_mtok": 2.0,
        "flex_cached_input_cost_per_mtok": 0.05,
        "priority_input_cost_per_mtok": 1.5, "priority_output_cost_per_mtok": 6.0})
    tokens = Tokens(input=100, cache_read=200, cache_write_5m=10, output=50)
    # Cache writes keep their own price; a tier without a cached price bills reads at its input.
    assert cost(tiered, tokens, "flex").usd == usd((100, "0.5"), (200, "0.05"), (10, "1.25"), (50, "2"))
    assert cost(tiered, tokens, "priority").usd == usd((300, "1.5"), (10, "1.25"), (50, "6"))
    standard = usd((100, "1"), (200, "0.1"), (10, "1.25"), (50, "4"))
    for tier in (None, "default", "scale", "auto"):
        assert cost(tiered, tokens, tier).usd == standard
    # A tier without both an input and an output price: the standard prices.
    half = INFO.model_copy(update={"flex_input_cost_per_mtok": 0.5})
    assert cost(half, tokens, "flex").usd == standard
    assert tiered.pricing()["priority"] == {"input": 1.5, "output": 6.0, "cached_input": None}
    assert "flex" not in half.pricing()


LONG = INFO.model_copy(update={
    "long_context_threshold_tokens": 1000, "long_context_input_cost_per_mtok": 2.0,
    "long_context_output_cost_per_mtok": 6.0, "long_context_cached_input_cost_per_mtok": 0.2})


def test_a_prompt_over_the_long_context_threshold_is_priced_at_the_long_prices_all_its_tokens() -> None:
    at = Tokens(input=1000, output=10)
    assert cost(LONG, at).usd == usd((1000, "1"), (10, "4"))  # at the threshold: not over it
    over = Tokens(input=1001, output=10)
    assert cost(LONG, over).usd == usd((1001, "2"), (10, "6"))
    # Cache reads and writes count toward the prompt (as Google and Anthropic count it); writes
    # without a long-context price of their own at the long-context input price.
    cached = Tokens(input=400, cache_read=500, cache_write_5m=101, output=10)
    assert cost(LONG, cached).usd == usd((400, "2"), (500, "0.2"), (101, "2"), (10, "6"))
    assert cost(LONG, cached._replace(cache_write_5m=100)).usd == usd(
        (400, "1"), (500, "0.1"), (100, "1.25"), (10, "4"))
    # Without both a long-context input and output price, or without a threshold: not modelled.
    for partial in ({"long_context_output_cost_per_mtok": None}, {"long_context_threshold_tokens": None}):
        assert cost(LONG.model_copy(update=partial), over).usd == usd((1001, "1"), (10, "4"))
    assert LONG.pricing()["long_context"] == {
        "above_prompt_tokens": 1000, "input": 2.0, "output": 6.0, "cached_input": 0.2}
    assert "long_context" not in INFO.pricing()


def test_the_long_context_prices_take_the_place_of_a_service_tier() -> None:
    both = LONG.model_copy(update={"priority_input_cost_per_mtok": 1.5, "priority_output_cost_per_mtok": 5.0})
    assert cost(both, Tokens(input=100, output=10), "priority").usd == usd((100, "1.5"), (10, "5"))
    assert cost(both, Tokens(input=1001, output=10), "priority").usd == usd((1001, "2"), (10, "6"))


@pytest.mark.parametrize(("provider", "model", "short", "long"), [
    ("gemini", "gemini-2.5-pro", ("1.25", "10", "0.125"), ("2.5", "15", "0.25")),
    ("gemini", "gemini-3.1-pro-preview", ("2", "12", "0.2"), ("4", "18", "0.4")),
    ("anthropic", "claude-sonnet-4-5-20250929", ("3", "15", "0.3"), ("6", "22.5", "0.6")),
    ("anthropic", "claude-sonnet-4-20250514", ("3", "15", "0.3"), ("6", "22.5", "0.6")),
])
def test_the_shipped_long_context_prices(provider: str, model: str, short: tuple[str, ...],
                                         long: tuple[str, ...]) -> None:
    info = lookup(provider, model)
    assert info is not None
    tokens = Tokens(input=150_000, cache_read=50_000, output=1000)
    assert cost(info, tokens).usd == usd((150_000, short[0]), (50_000, short[2]), (1000, short[1]))
    tokens = tokens._replace(input=150_001)
    assert cost(info, tokens).usd == usd((150_001, long[0]), (50_000, long[2]), (1000, long[1]))


def test_a_model_without_a_price_is_unpriced_never_a_silent_zero() -> None:
    assert cost(None, Tokens(input=10)).unpriced
    assert not cost(None, Tokens()).unpriced  # nothing was billed: nothing is missing
    no_output = ModelInfo(model="m", provider_types=("openai",), input_cost_per_mtok=1.0)
    partial = cost(no_output, Tokens(input=1000, output=10))
    assert partial.unpriced and partial.usd == Decimal("0.001")
    assert is_unpriced(None) and is_unpriced(no_output) and not is_unpriced(INFO)
    embedder = ModelInfo(model="e", provider_types=("openai",), mode="embedding", input_cost_per_mtok=0.02)
    assert not is_unpriced(embedder)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0.00015"), "0.000150"),
        (Decimal(0), "0.000000"),
        (Decimal("1.5"), "1.500000"),
        (Decimal("0.000000123"), "0.000000123"),
        (Decimal("0.0000001234"), "0.000000123"),
        (Decimal("1234567.1"), "1234567.100000"),
        (Decimal("1E-7"), "0.0000001"),
    ],
)
def test_the_header_value_is_a_plain_decimal(value: Decimal, text: str) -> None:
    assert format_usd(value) == text


@pytest.mark.parametrize(
    "prices",
    [
        (0.15, 0.6, None),  # common catalog prices
        (0.0375, 1.5, 0.01875),  # more decimals than a billionth of a dollar per token
        (3e-05, 7.123456789123, 1e-10),  # tiny and long prices
        (2.5, 10.0, 1.25),
        (1234.5, 0.0, None),
    ],
)
def test_the_integer_cost_equals_the_decimal_cost_exactly(prices: tuple[float, float, float | None]) -> None:
    """Prices are turned into integers once; the cost, its billionths and its header are those of
    the exact decimal arithmetic (rounded half-even where a billionth is cut)."""
    inp, out, read = prices
    info = ModelInfo(model="x", provider_types=("openai",), input_cost_per_mtok=inp, output_cost_per_mtok=out,
                     cached_input_cost_per_mtok=read)
    for tokens in (Tokens(input=1, output=1), Tokens(input=7, cache_read=333, output=12_345), Tokens(),
                   Tokens(input=123_456_789, cache_write_5m=5, cache_write_1h=9, output=1), Tokens(input=3)):
        d_read = Decimal(repr(read)) if read is not None else Decimal(repr(inp))
        exact = (tokens.input * Decimal(repr(inp)) + tokens.cache_read * d_read
                 + (tokens.cache_write_5m + tokens.cache_write_1h) * Decimal(repr(inp))
                 + tokens.output * Decimal(repr(out))) / M
        priced = cost(info, tokens)
        assert priced.usd == exact and not priced.unpriced
        nano = int((exact * 10**9).to_integral_value(rounding="ROUND_HALF_EVEN"))
        assert priced.nano_usd == nano
        assert priced.header() == format_usd(exact)


@pytest.mark.parametrize(("units", "exponent", "nano"), [
    (15, 10, 2), (25, 10, 2), (35, 10, 4), (251, 11, 3), (249, 11, 2), (3, 6, 3000), (0, 20, 0),
])
def test_billionths_are_rounded_half_even(units: int, exponent: int, nano: int) -> None:
    priced = Cost(units, exponent, unpriced=False)
    assert priced.nano_usd == nano and priced.header() == format_usd(priced.usd)


# -- golden usage per provider ------------------------------------------------------------------------


def target(ptype: str, model: str, options: Any) -> Target:
    return Target("m", model, "p", ptype, "http://up", options, Timeouts())


def check(body_usage: Any, stream_usage: Any, expected: Tokens) -> None:
    """The same call's usage, complete and streamed: equal splits, priced once per token."""
    tokens, streamed = split(body_usage), split(stream_usage)
    assert tokens == streamed == expected
    assert streamed.prompt > 0 and streamed.output > 0  # streamed usage is not 0
    priced = cost(INFO, tokens)
    # Cache reads at the cache-read rate, not the input rate; nothing counted twice.
    assert priced.usd == usd(
        (expected.input, "1"),
        (expected.cache_read, "0.1"),
        (expected.cache_write_5m, "1.25"),
        (expected.cache_write_1h, "2"),
        (expected.output, "4"),
    )
    assert priced.usd < cost(INFO, Tokens(input=tokens.prompt, output=tokens.output)).usd


def last_usage(chunks: list[dict[str, Any]]) -> Any:
    return [c["usage"] for c in chunks if c.get("usage")][-1]


def test_openai_golden() -> None:
    t = target("openai", "o4-mini", OpenAIOptions())
    raw = {
        "prompt_tokens": 2006,
        "completion_tokens": 300,
        "total_tokens": 2306,
        "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 192, "audio_tokens": 0},
    }
    body = {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "o4-mini",
        "usage": raw,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    }
    parsed = OpenAIAdapter().chat_response(orjson.dumps(body), t)
    events = [
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}],
        },
        {"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": raw},
    ]
    decoder = OpenAIAdapter().chat_stream({"stream": True}, t)
    chunks = decoder.feed(
        b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    )
    check(
        parsed["usage"],
        last_usage(chunks + decoder.close()),
        Tokens(input=86, cache_read=1920, output=300, reasoning=192),
    )


def test_anthropic_golden_with_both_cache_write_tiers_and_thinking() -> None:
    t = target("anthropic", "claude-sonnet-4-5", AnthropicOptions())
    raw = {
        "input_tokens": 50,
        "cache_read_input_tokens": 3000,
        "cache_creation_input_tokens": 1500,
        "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 500},
        "output_tokens": 400,
        "output_tokens_details": {"thinking_tokens": 250},
    }
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "end_turn",
        "usage": raw,
    }
    parsed = ANTHROPIC.adapter.chat_response(orjson.dumps(body), t)

    def ev(data: dict[str, Any]) -> bytes:
        return b"event: " + data["type"].encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    start = {
        k: raw[k]
        for k in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "cache_creation")
    }
    stream = b"".join(
        [
            ev(
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_1",
                        "type": "message",
                        "role": "assistant",
                        "content": [],
                        "model": "claude-sonnet-4-5",
                        "usage": {**start, "output_tokens": 1},
                    },
                }
            ),
            ev({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ev({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}}),
            ev({"type": "content_block_stop", "index": 0}),
            ev(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": 400, "output_tokens_details": {"thinking_tokens": 250}},
                }
            ),
            ev({"type": "message_stop"}),
        ]
    )
    decoder = ANTHROPIC.adapter.chat_stream({"stream": True}, t)
    chunks = decoder.feed(stream) + decoder.close()
    check(
        parsed["usage"],
        last_usage(chunks),
        Tokens(input=50, cache_read=3000, cache_write_5m=1000, cache_write_1h=500, output=400, reasoning=250),
    )


def test_anthropic_cache_writes_without_tiers_are_five_minute_writes() -> None:
    t = target("anthropic", "claude-sonnet-4-5", AnthropicOptions())
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 5, "cache_creation_input_tokens": 200, "output_tokens": 7},
    }
    tokens = split(ANTHROPIC.adapter.chat_response(orjson.dumps(body), t)["usage"])
    assert tokens == Tokens(input=5, cache_write_5m=200, output=7)


def test_gemini_golden_with_thoughts_and_cached_content() -> None:
    t = target("gemini", "gemini-2.5-flash", gemini.GeminiOptions())
    meta = {
        "promptTokenCount": 1200,
        "cachedContentTokenCount": 1024,
        "candidatesTokenCount": 80,
        "thoughtsTokenCount": 300,
        "totalTokenCount": 1580,
    }
    body = {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": "hi"}]}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": meta,
        "modelVersion": "gemini-2.5-flash",
    }
    parsed = gemini.SPEC.adapter.chat_response(orjson.dumps(body), t)
    decoder = gemini.SPEC.adapter.chat_stream({"stream": True}, t)
    chunks = decoder.feed(b"data: " + orjson.dumps(body) + b"\r\n\r\n") + decoder.close()
    check(parsed["usage"], last_usage(chunks), Tokens(input=176, cache_read=1024, output=380, reasoning=300))


def test_bedrock_golden_with_cache_reads_and_writes() -> None:
    t = target("bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0", BedrockOptions(aws_region="us-east-1"))
    raw = {
        "inputTokens": 40,
        "outputTokens": 90,
        "totalTokens": 2330,
        "cacheReadInputTokens": 2000,
        "cacheWriteInputTokens": 200,
    }
    body = {
        "output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}},
        "stopReason": "end_turn",
        "usage": raw,
        "metrics": {"latencyMs": 10},
    }
    parsed = bedrock.SPEC.adapter.chat_response(orjson.dumps(body), t)

    def event(kind: str, payload: dict[str, Any]) -> bytes:
        headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
        return encode_message(headers, orjson.dumps(payload))

    stream = b"".join(
        [
            event("messageStart", {"role": "assistant"}),
            event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hi"}}),
            event("contentBlockStop", {"contentBlockIndex": 0}),
            event("messageStop", {"stopReason": "end_turn"}),
            event("metadata", {"usage": raw, "metrics": {"latencyMs": 10}}),
        ]
    )
    decoder = bedrock.SPEC.adapter.chat_stream({"stream": True}, t)
    chunks = decoder.feed(stream) + decoder.close()
    check(
        parsed["usage"], last_usage(chunks), Tokens(input=40, cache_read=2000, cache_write_5m=200, output=90)
    )


def test_cohere_golden_bills_the_billed_units() -> None:
    t = target("cohere", "command-a-03-2025", cohere.CohereOptions())
    raw = {
        "billed_units": {"input_tokens": 18.0, "output_tokens": 6.0},
        "tokens": {"input_tokens": 1661.0, "output_tokens": 19.0},
        "cached_tokens": 12,
    }
    body = {
        "id": "c",
        "finish_reason": "COMPLETE",
        "usage": raw,
        "message": {"role": "assistant", "content": [{"type": "text", "text": "hi"}]},
    }
    parsed = cohere.SPEC.adapter.chat_response(orjson.dumps(body), t)
    tokens = split(parsed["usage"])
    assert tokens == Tokens(input=6, cache_read=12, output=6)
    assert cost(INFO, tokens).usd == usd((6, "1"), (12, "0.1"), (6, "4"))


def test_openai_compatible_golden_deepseek_cache_hits_and_reasoning() -> None:
    t = target("openai-compatible", "deepseek-reasoner", openai_compatible.Options(preset="deepseek"))
    raw = {
        "prompt_tokens": 1500,
        "completion_tokens": 700,
        "total_tokens": 2200,
        "prompt_cache_hit_tokens": 1200,
        "prompt_cache_miss_tokens": 300,
        "completion_tokens_details": {"reasoning_tokens": 500},
    }
    body = {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "deepseek-reasoner",
        "usage": raw,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    }
    parsed = openai_compatible.SPEC.adapter.chat_response(orjson.dumps(body), t)
    events = [
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "deepseek-reasoner",
            "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}],
        },
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "deepseek-reasoner",
            "choices": [],
            "usage": raw,
        },
    ]
    decoder = openai_compatible.SPEC.adapter.chat_stream({"stream": True}, t)
    chunks = decoder.feed(
        b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    )
    check(
        parsed["usage"],
        last_usage(chunks + decoder.close()),
        Tokens(input=300, cache_read=1200, output=700, reasoning=500),
    )
