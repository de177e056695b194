"""Image and audio units priced apart: the split of canonical usage into disjoint text, cache,
image and audio counts, their prices (with the text price as the fallback), and golden usage per
provider that reports such units (OpenAI and OpenAI-shaped hosts, Gemini and Vertex), complete
and streamed."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from switchboard.catalog import ModelInfo
from switchboard.config.catalog import ModelEntryInfo
from switchboard.config.schema import Timeouts
from switchboard.providers import gemini, openai_compatible, vertex
from switchboard.providers.azure import SPEC as AZURE
from switchboard.providers.azure import Options as AzureOptions
from switchboard.providers.openai import OpenAIAdapter, OpenAIOptions
from switchboard.providers.target import Target
from switchboard.spend.cost import Tokens, cost, split

# Round prices: $1 input, $0.10 cache read, $4 output, $2 image in, $10 audio in, $30 image out,
# $40 audio out, per million tokens.
MEDIA = ModelInfo(
    model="m",
    provider_types=("openai",),
    input_cost_per_mtok=1.0,
    output_cost_per_mtok=4.0,
    cached_input_cost_per_mtok=0.1,
    input_image_cost_per_mtok=2.0,
    input_audio_cost_per_mtok=10.0,
    output_image_cost_per_mtok=30.0,
    output_audio_cost_per_mtok=40.0,
)
TEXT_ONLY = ModelInfo(
    model="t", provider_types=("openai",), input_cost_per_mtok=1.0, output_cost_per_mtok=4.0
)
M = Decimal(1_000_000)


def usd(*parts: tuple[int, str]) -> Decimal:
    return sum((n * Decimal(price) for n, price in parts), Decimal(0)) / M


# -- the split ----------------------------------------------------------------------------------


def test_image_and_audio_units_are_split_from_the_text_counts() -> None:
    tokens = split(
        {
            "prompt_tokens": 1000,
            "completion_tokens": 500,
            "prompt_tokens_details": {"cached_tokens": 300, "image_tokens": 200, "audio_tokens": 100},
            "completion_tokens_details": {"reasoning_tokens": 50, "image_tokens": 250, "audio_tokens": 150},
        }
    )
    assert tokens == Tokens(
        input=400,
        cache_read=300,
        output=100,
        reasoning=50,
        image_input=200,
        audio_input=100,
        image_output=250,
        audio_output=150,
    )
    assert tokens.prompt == 1000 and tokens.completion == 500  # every token exactly once
    assert tokens.as_dict()["audio_output"] == 150


def test_cache_reads_are_taken_first_and_units_capped_by_what_is_left() -> None:
    # 100 prompt tokens, 80 read from a cache: at most 20 can be billed as image or audio units.
    tokens = split(
        {
            "prompt_tokens": 100,
            "completion_tokens": 10,
            "prompt_tokens_details": {"cached_tokens": 80, "image_tokens": 15, "audio_tokens": 50},
            "completion_tokens_details": {"image_tokens": 8, "audio_tokens": 8},
        }
    )
    assert tokens == Tokens(
        input=0, cache_read=80, image_input=15, audio_input=5, output=0, image_output=8, audio_output=2
    )
    assert tokens.prompt == 100 and tokens.completion == 10


@pytest.mark.parametrize(
    "details",
    [
        {"image_tokens": True, "audio_tokens": False},
        {"image_tokens": -5, "audio_tokens": -1},
        {"image_tokens": "7", "audio_tokens": 2.5},
        {"image_tokens": None, "audio_tokens": [3]},
    ],
)
def test_wrong_unit_values_count_as_none(details: dict[str, Any]) -> None:
    tokens = split(
        {
            "prompt_tokens": 10,
            "completion_tokens": 4,
            "prompt_tokens_details": details,
            "completion_tokens_details": details,
        }
    )
    assert tokens == Tokens(input=10, output=4)


def test_units_larger_than_their_totals_are_capped() -> None:
    tokens = split(
        {
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "prompt_tokens_details": {"image_tokens": 999, "audio_tokens": 999},
            "completion_tokens_details": {"audio_tokens": 999, "image_tokens": 999, "reasoning_tokens": 9},
        }
    )
    assert tokens == Tokens(input=0, image_input=10, output=0, image_output=5)
    assert (tokens.prompt, tokens.completion, tokens.reasoning) == (10, 5, 0)


def test_reasoning_is_text_output_never_more_than_it() -> None:
    tokens = split(
        {
            "prompt_tokens": 1,
            "completion_tokens": 10,
            "completion_tokens_details": {"reasoning_tokens": 9, "audio_tokens": 4},
        }
    )
    assert tokens == Tokens(input=1, output=6, reasoning=6, audio_output=4)


# -- the prices ---------------------------------------------------------------------------------


def test_each_unit_is_priced_at_its_own_rate_exactly() -> None:
    tokens = Tokens(
        input=400,
        cache_read=300,
        output=100,
        reasoning=50,
        image_input=200,
        audio_input=100,
        image_output=250,
        audio_output=150,
    )
    priced = cost(MEDIA, tokens)
    assert not priced.unpriced
    assert (
        priced.usd
        == usd((400, "1"), (300, "0.1"), (100, "4"), (200, "2"), (100, "10"), (250, "30"), (150, "40"))
        == Decimal("0.01573")
    )


def test_units_without_a_price_of_their_own_are_priced_as_text() -> None:
    tokens = Tokens(input=10, output=5, image_input=20, audio_input=30, image_output=40, audio_output=50)
    assert cost(TEXT_ONLY, tokens).usd == usd((60, "1"), (95, "4"))
    # Only some set: the others fall back, each to its own side's price.
    some = TEXT_ONLY.model_copy(update={"input_audio_cost_per_mtok": 0.7, "output_image_cost_per_mtok": 0.3})
    assert cost(some, tokens).usd == usd((30, "1"), (30, "0.7"), (55, "4"), (40, "0.3"))


def test_unpriced_units_are_flagged() -> None:
    no_output = ModelInfo(model="m", provider_types=("openai",), input_cost_per_mtok=1.0)
    assert cost(no_output, Tokens(input=5, audio_output=3)).unpriced
    assert cost(None, Tokens(image_output=1)).unpriced
    # An audio output price alone is enough for audio output.
    audio_priced = no_output.model_copy(update={"output_audio_cost_per_mtok": 2.0})
    priced = cost(audio_priced, Tokens(input=5, audio_output=3))
    assert not priced.unpriced and priced.usd == usd((5, "1"), (3, "2"))


def test_the_integer_cost_with_units_equals_the_decimal_cost() -> None:
    info = MEDIA.model_copy(
        update={"input_audio_cost_per_mtok": 0.0375, "output_image_cost_per_mtok": 7.123456789}
    )
    tokens = Tokens(
        input=7, cache_read=3, output=11, image_input=13, audio_input=17, image_output=19, audio_output=23
    )
    exact = usd((7, "1"), (3, "0.1"), (11, "4"), (13, "2"), (17, "0.0375"), (19, "7.123456789"), (23, "40"))
    priced = cost(info, tokens)
    assert priced.usd == exact
    assert priced.nano_usd == int((exact * 10**9).to_integral_value(rounding="ROUND_HALF_EVEN"))


def test_the_catalog_and_info_overrides_take_unit_prices() -> None:
    info = ModelEntryInfo.model_validate({"input_audio_cost_per_mtok": 1.0, "output_image_cost_per_mtok": 30})
    assert info.patch() == {"input_audio_cost_per_mtok": 1.0, "output_image_cost_per_mtok": 30}
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        ModelEntryInfo.model_validate({"input_image_cost_per_mtok": -1})
    with pytest.raises(ValueError, match="valid number"):
        ModelEntryInfo.model_validate({"output_audio_cost_per_mtok": "cheap"})
    pricing = MEDIA.pricing()
    units = ("input_image", "input_audio", "output_image", "output_audio")
    assert tuple(pricing[k] for k in units) == (2.0, 10.0, 30.0, 40.0)
    assert "input_audio" not in TEXT_ONLY.pricing()  # only where a price of its own is known


# -- golden usage per provider --------------------------------------------------------------------


def target(ptype: str, model: str, options: Any) -> Target:
    return Target("m", model, "p", ptype, "http://up", options, Timeouts())


def last_usage(chunks: list[dict[str, Any]]) -> Any:
    return [c["usage"] for c in chunks if c.get("usage")][-1]


def check(body_usage: Any, stream_usage: Any, expected: Tokens) -> None:
    """The same call's usage, complete and streamed: equal splits, each unit at its price."""
    tokens, streamed = split(body_usage), split(stream_usage)
    assert tokens == streamed == expected
    assert cost(MEDIA, streamed).usd == usd(
        (expected.input, "1"),
        (expected.cache_read, "0.1"),
        (expected.output, "4"),
        (expected.image_input, "2"),
        (expected.audio_input, "10"),
        (expected.image_output, "30"),
        (expected.audio_output, "40"),
    )


def openai_chunks(adapter: Any, t: Target, raw: dict[str, Any]) -> list[dict[str, Any]]:
    events = [
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": t.model,
            "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}],
        },
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": t.model,
            "choices": [],
            "usage": raw,
        },
    ]
    decoder = adapter.chat_stream({"stream": True}, t)
    data = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    return decoder.feed(data) + decoder.close()


def openai_body(model: str, raw: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "id": "c",
            "object": "chat.completion",
            "created": 1,
            "model": model,
            "usage": raw,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
            ],
        }
    )


# gpt-4o-audio-preview: audio in, audio and text out.
OPENAI_AUDIO = {
    "prompt_tokens": 1200,
    "completion_tokens": 900,
    "total_tokens": 2100,
    "prompt_tokens_details": {"cached_tokens": 256, "audio_tokens": 800},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 850,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}


def test_openai_golden_audio_in_and_out() -> None:
    t = target("openai", "gpt-4o-audio-preview", OpenAIOptions())
    parsed = OpenAIAdapter().chat_response(openai_body(t.model, OPENAI_AUDIO), t)
    check(
        parsed["usage"],
        last_usage(openai_chunks(OpenAIAdapter(), t, OPENAI_AUDIO)),
        Tokens(input=144, cache_read=256, audio_input=800, output=50, audio_output=850),
    )


@pytest.mark.parametrize(
    ("ptype", "options", "spec"),
    [
        ("azure", AzureOptions(api_version="2025-04-01-preview"), AZURE),
        ("openai-compatible", openai_compatible.Options(preset="openrouter"), openai_compatible.SPEC),
    ],
)
def test_openai_shaped_hosts_keep_the_units(ptype: str, options: Any, spec: Any) -> None:
    t = target(ptype, "gpt-4o-audio-preview", options)
    details = {**OPENAI_AUDIO["prompt_tokens_details"], "image_tokens": 64}
    raw = {**OPENAI_AUDIO, "prompt_tokens_details": details}
    parsed = spec.adapter.chat_response(openai_body(t.model, raw), t)
    assert parsed["usage"]["prompt_tokens_details"] == {
        "cached_tokens": 256,
        "image_tokens": 64,
        "audio_tokens": 800,
    }
    check(
        parsed["usage"],
        last_usage(openai_chunks(spec.adapter, t, raw)),
        Tokens(input=80, cache_read=256, image_input=64, audio_input=800, output=50, audio_output=850),
    )


def gemini_meta() -> dict[str, Any]:
    """An image-generating Gemini call: text, an image and audio in (one image cached), an image out."""
    return {
        "promptTokenCount": 2100,
        "cachedContentTokenCount": 1300,
        "candidatesTokenCount": 1310,
        "thoughtsTokenCount": 40,
        "totalTokenCount": 3450,
        "promptTokensDetails": [
            {"modality": "TEXT", "tokenCount": 242},
            {"modality": "IMAGE", "tokenCount": 1548},
            {"modality": "AUDIO", "tokenCount": 310},
        ],
        "cacheTokensDetails": [
            {"modality": "TEXT", "tokenCount": 26},
            {"modality": "IMAGE", "tokenCount": 1274},
        ],
        "candidatesTokensDetails": [
            {"modality": "TEXT", "tokenCount": 20},
            {"modality": "IMAGE", "tokenCount": 1290},
        ],
    }


@pytest.mark.parametrize("ptype", ["gemini", "vertex"])
def test_gemini_golden_units_by_modality(ptype: str) -> None:
    spec = gemini.SPEC if ptype == "gemini" else vertex.SPEC
    options = (
        gemini.GeminiOptions()
        if ptype == "gemini"
        else vertex.VertexOptions.model_construct(vertex_project="p", vertex_location="us-central1")
    )
    t = target(ptype, "gemini-2.5-flash-image", options)
    body = {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": "hi"}]}, "finishReason": "STOP", "index": 0},
        ],
        "usageMetadata": gemini_meta(),
        "modelVersion": "gemini-2.5-flash-image",
    }
    parsed = spec.adapter.chat_response(orjson.dumps(body), t)
    # Cached tokens are cache reads whatever their modality: the image units are those not cached.
    assert parsed["usage"]["prompt_tokens_details"] == {
        "cached_tokens": 1300,
        "image_tokens": 274,
        "audio_tokens": 310,
    }
    assert parsed["usage"]["completion_tokens_details"] == {"reasoning_tokens": 40, "image_tokens": 1290}
    first = {
        **body,
        "usageMetadata": {"promptTokenCount": 2100, "totalTokenCount": 2100},
        "candidates": [{"content": {"role": "model", "parts": [{"text": "h"}]}, "index": 0}],
    }
    decoder = spec.adapter.chat_stream({"stream": True}, t)
    stream = b"".join(b"data: " + orjson.dumps(e) + b"\r\n\r\n" for e in (first, body))
    chunks = decoder.feed(stream) + decoder.close()
    check(
        parsed["usage"],
        last_usage(chunks),
        Tokens(
            input=216,
            cache_read=1300,
            image_input=274,
            audio_input=310,
            output=60,
            reasoning=40,
            image_output=1290,
        ),
    )


@pytest.mark.parametrize(
    "details",
    [
        "not a list",
        [{"modality": "IMAGE", "tokenCount": -5}, {"modality": 3, "tokenCount": 9}, "x", {"tokenCount": 4}],
        [{"modality": "IMAGE", "tokenCount": True}, {"modality": "VIDEO", "tokenCount": 50}],
    ],
)
def test_gemini_modality_lists_that_are_wrong_or_video_leave_the_text_counts(details: Any) -> None:
    t = target("gemini", "gemini-2.5-flash", gemini.GeminiOptions())
    meta = {
        "promptTokenCount": 60,
        "candidatesTokenCount": 5,
        "promptTokensDetails": details,
        "candidatesTokensDetails": details,
    }
    body = {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": "hi"}]}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": meta,
    }
    usage = gemini.SPEC.adapter.chat_response(orjson.dumps(body), t)["usage"]
    assert split(usage) == Tokens(input=60, output=5)
