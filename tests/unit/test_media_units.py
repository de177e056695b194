"""Media units priced from the catalog (spend/units.py), the mode check of the media terminal,
and the adapters' media translations (Cohere rerank, OpenAI-compatible rerank, OpenAI images)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from switchboard.catalog import ModelInfo
from switchboard.config.schema import Timeouts
from switchboard.errors import GatewayError
from switchboard.pipeline.media import WrongModelMode, check_mode
from switchboard.providers import openai_media
from switchboard.providers.cohere import rerank as cohere_rerank
from switchboard.providers.target import Target
from switchboard.spend.cost import Tokens, cost, is_unpriced, split
from switchboard.spend.units import estimate_nano_usd, units_of, with_units


def info(**fields: Any) -> ModelInfo:
    return ModelInfo.model_validate({"model": "m", "provider_types": ("openai",), **fields})


def target(provider_type: str = "openai", api_base: str = "http://up/v1") -> Target:
    return Target("name", "upstream-model", "prov", provider_type, api_base, None, Timeouts())


def priced(model: ModelInfo | None, usage: dict[str, Any]) -> tuple[Decimal, bool]:
    tokens = split(usage)
    price = with_units(cost(model, tokens), model, tokens, usage)
    return price.usd, price.unpriced


@pytest.mark.parametrize(("fields", "usage", "usd", "unpriced"), [
    ({"search_unit_cost": 0.002}, {"units": {"search_units": 3}}, Decimal("0.006"), False),
    ({"output_cost_per_image": 0.04}, {"units": {"images": 2}}, Decimal("0.08"), False),
    ({"input_cost_per_audio_second": 0.0001}, {"units": {"audio_seconds": 2.5}}, Decimal("0.00025"), False),
    ({"input_cost_per_mchar": 15}, {"units": {"characters": 100}}, Decimal("0.0015"), False),
    ({}, {"units": {"images": 1}}, Decimal(0), True),  # a unit without a price: never a silent 0
    # tokens priced, images not: the tokens are the bill (gpt-image-1)
    ({"input_cost_per_mtok": 5, "output_cost_per_mtok": 40},
     {"prompt_tokens": 10, "completion_tokens": 100, "units": {"images": 1}}, Decimal("0.00405"), False),
    ({"search_unit_cost": 0.002}, {"units": {"search_units": True}}, Decimal(0), False),  # not a count
    ({"input_cost_per_audio_second": 0.0001}, {"unmeasured": "audio_seconds"}, Decimal(0), True),
])
def test_units_are_priced_by_their_own_catalog_field(
    fields: dict[str, Any], usage: dict[str, Any], usd: Decimal, unpriced: bool
) -> None:
    assert priced(info(**fields), usage) == (usd, unpriced)


def test_without_units_the_token_cost_is_unchanged() -> None:
    model = info(input_cost_per_mtok=1, output_cost_per_mtok=2)
    base = cost(model, Tokens(input=1000, output=1000))
    assert with_units(base, model, Tokens(input=1000, output=1000), {"prompt_tokens": 1000}) is base
    assert units_of(None) == {} and units_of({"units": "x"}) == {}


def test_a_unit_priced_model_is_not_unpriced() -> None:
    assert not is_unpriced(info(search_unit_cost=0.001))
    assert is_unpriced(info())
    assert info(output_cost_per_image=0.04).pricing()["image"] == 0.04


def test_the_mode_check_refuses_another_mode_only_when_the_mode_is_known() -> None:
    check_mode("rerank", None, "x")  # unknown to the catalog: tried
    check_mode("rerank", info(search_unit_cost=0.001), "x")  # mode not set: tried
    check_mode("rerank", info(mode="rerank"), "x")
    with pytest.raises(WrongModelMode) as refused:
        check_mode("rerank", info(mode="chat"), "gpt")
    assert refused.value.status == 400 and "chat model" in str(refused.value)


def test_cohere_rerank_translation() -> None:
    request = {"model": "r", "query": "q", "documents": ["a", {"text": "b"}], "top_n": 1,
               "return_documents": True, "max_tokens_per_doc": 100}
    up = cohere_rerank.rerank_request(request, target("cohere", "https://api.cohere.com"))
    assert up.url == "https://api.cohere.com/v2/rerank"
    assert orjson.loads(up.body or b"") == {"model": "upstream-model", "query": "q", "documents": ["a", "b"],
                                            "top_n": 1, "max_tokens_per_doc": 100}
    answer = {"id": "x", "results": [{"index": 1, "relevance_score": 0.9}],
              "meta": {"billed_units": {"search_units": 1}}}
    reply = cohere_rerank.rerank_response(orjson.dumps(answer), request, target("cohere"))
    assert reply.body == {
        "id": "x", "results": [{"index": 1, "relevance_score": 0.9, "document": {"text": "b"}}],
        "meta": {"billed_units": {"search_units": 1}},
    }
    assert reply.usage == {"units": {"search_units": 1}}
    with pytest.raises(GatewayError):
        cohere_rerank.rerank_response(b'{"results": [{"index": "0"}]}', request, target("cohere"))


def test_compatible_rerank_vllm_and_tgi() -> None:
    request = {"model": "r", "query": "q", "documents": ["a", "b", "c"], "top_n": 2}
    up = openai_media.compatible_rerank_request(request, target(), tgi=False)
    assert up.url == "http://up/v1/rerank"
    tgi = openai_media.compatible_rerank_request(request, target(), tgi=True)
    assert tgi.url == "http://up/rerank" and orjson.loads(tgi.body or b"")["texts"] == ["a", "b", "c"]
    scores = b'[{"index": 2, "score": 0.1}, {"index": 0, "score": 0.7}, {"index": 1, "score": 0.5}]'
    reply = openai_media.compatible_rerank_response(scores, request, target())
    assert reply.body is not None
    assert [r["index"] for r in reply.body["results"]] == [0, 1]  # sorted, cut at top_n
    assert reply.usage == {"units": {"search_units": 1}}  # one query, up to 100 documents
    vllm = openai_media.compatible_rerank_response(
        b'{"id": "r1", "results": [{"index": 0, "relevance_score": 0.3}], "usage": {"total_tokens": 12}}',
        request, target())
    assert vllm.usage is not None and vllm.usage["prompt_tokens"] == 12


def test_openai_image_usage_becomes_canonical() -> None:
    body = {"data": [{"b64_json": "x"}], "usage": {"input_tokens": 10, "output_tokens": 272,
                                                   "input_tokens_details": {"image_tokens": 4}}}
    reply = openai_media.parse("image_generations", orjson.dumps(body), {}, {}, target())
    assert reply.body == body  # passed through unchanged
    assert reply.usage == {"prompt_tokens": 10, "completion_tokens": 272, "total_tokens": 282,
                           "prompt_tokens_details": {"image_tokens": 4},
                           "completion_tokens_details": {"image_tokens": 272}, "units": {"images": 1}}


def test_transcription_token_usage_keeps_its_audio_tokens() -> None:
    # OpenAI's transcription usage spells it input_token_details (images: input_tokens_details).
    usage = {"type": "tokens", "input_tokens": 30, "output_tokens": 4, "total_tokens": 34,
             "input_token_details": {"text_tokens": 0, "audio_tokens": 30}}
    body = orjson.dumps({"text": "hi", "usage": usage})
    reply = openai_media.parse("transcriptions", body, {}, {"_audio_seconds": 3.0}, target())
    assert reply.usage is not None and reply.usage["prompt_tokens_details"] == {"audio_tokens": 30}
    stream = openai_media.StreamUsage({}, target())
    done = {"type": "transcript.text.done", "text": "hi", "usage": usage}
    stream.feed(b"data: " + orjson.dumps(done) + b"\n\n")
    assert stream.usage("transcriptions") == {"prompt_tokens": 30, "completion_tokens": 4, "total_tokens": 34,
                                              "prompt_tokens_details": {"audio_tokens": 30}}


def test_private_request_notes_are_not_sent_upstream() -> None:
    up = openai_media.build("moderations", {"input": "x", "_audio_seconds": 3}, target(), "http://up/v1/m")
    assert orjson.loads(up.body or b"") == {"input": "x", "model": "upstream-model"}


def test_imagen_translation() -> None:
    from switchboard.providers import google_images
    from switchboard.providers.vertex import SPEC as VERTEX
    from switchboard.providers.vertex import VertexOptions

    options = VertexOptions.model_construct(credentials_file="-", vertex_project="p",
                                            vertex_location="us-central1")
    vertex = Target("imagen", "imagen-4.0-generate-001", "vx", "vertex", "https://v", options, Timeouts())
    up = VERTEX.adapter.media_request("image_generations", {"prompt": "a cat", "n": 3, "size": "1024x1536",
                                                            "output_format": "jpeg"}, vertex)
    assert up.url.endswith("/publishers/google/models/imagen-4.0-generate-001:predict")
    assert orjson.loads(up.body or b"") == {
        "instances": [{"prompt": "a cat"}],
        "parameters": {"sampleCount": 3, "aspectRatio": "3:4", "outputOptions": {"mimeType": "image/jpeg"}},
    }
    with pytest.raises(GatewayError, match="quality"):
        google_images.imagen_request({"prompt": "x", "quality": "hd"}, vertex, VERTEX.adapter.model_url)
    for field, value in (("n", 5), ("response_format", "url"), ("output_format", "gif"), ("size", "big"),
                         ("size", "0x10")):
        with pytest.raises(GatewayError) as refused:
            google_images.imagen_request({"prompt": "x", field: value}, vertex, VERTEX.adapter.model_url)
        assert (refused.value.param, refused.value.code) == (field, "invalid_value")
    with pytest.raises(GatewayError):  # not an Imagen model: no image generation on Vertex
        gemini = Target("g", "gemini-2.5-pro", "vx", "vertex", "https://v", options, Timeouts())
        VERTEX.adapter.media_request("image_generations", {"prompt": "x"}, gemini)
    reply = google_images.imagen_response(b'{"predictions": [{"bytesBase64Encoded": "QQ=="}]}', vertex)
    assert reply.body is not None and reply.body["data"] == [{"b64_json": "QQ=="}]
    assert reply.usage == {"units": {"images": 1}}


@pytest.mark.parametrize(("operation", "request_", "fields", "nano"), [
    ("rerank", {"documents": ["a"] * 250}, {"search_unit_cost": 0.002}, 6_000_000),
    ("image_generations", {"n": 3}, {"output_cost_per_image": 0.04}, 120_000_000),
    ("image_edits", {}, {"output_cost_per_image": 0.04}, 40_000_000),
    ("speech", {"input": "x" * 3}, {"input_cost_per_mchar": 15}, 45_000),
    ("transcriptions", {"_audio_seconds": 2.5}, {"input_cost_per_audio_second": 0.0001}, 250_000),
    ("transcriptions", {}, {"input_cost_per_audio_second": 0.0001}, 0),  # not measured
    ("speech", {"input": "x"}, {"input_cost_per_mchar": 0.0001}, 1),  # 0.1 nano-USD, rounded up
    ("chat", {"n": 3}, {"output_cost_per_image": 0.04}, 0),
    ("image_generations", {"n": 3}, {}, 0),
])
def test_budget_reservations_include_media_units(
    operation: str, request_: dict[str, Any], fields: dict[str, Any], nano: int
) -> None:
    assert estimate_nano_usd(operation, request_, info(**fields)) == nano


def test_stream_usage_of_images_and_transcripts() -> None:
    def event(obj: dict[str, Any]) -> bytes:
        return b"event: x\ndata: " + orjson.dumps(obj) + b"\n\n"

    usage = {"input_tokens": 10, "output_tokens": 272, "input_tokens_details": {"image_tokens": 4}}
    images = openai_media.StreamUsage({}, target())
    raw = (event({"type": "image_generation.partial_image", "b64_json": "x"})
           + event({"type": "image_generation.completed", "usage": usage}) * 2)
    for i in range(0, len(raw), 7):  # events split across reads
        images.feed(raw[i:i + 7])
    assert images.usage("image_generations") == {
        "prompt_tokens": 20, "completion_tokens": 544, "total_tokens": 564,
        "prompt_tokens_details": {"image_tokens": 8}, "completion_tokens_details": {"image_tokens": 544},
        "units": {"images": 2},
    }
    cut = openai_media.StreamUsage({"_audio_seconds": 2.0}, target())
    cut.feed(event({"type": "transcript.text.delta", "delta": "hel"}))
    assert cut.usage("transcriptions") == {"units": {"audio_seconds": 2.0}}  # no usage came: the upload's
    done = openai_media.StreamUsage({}, target())
    done.feed(event({"type": "transcript.text.done", "text": "hi",
                     "usage": {"type": "tokens", "input_tokens": 7, "output_tokens": 2}}))
    assert done.usage("transcriptions") == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    assert openai_media.StreamUsage({}, target()).usage("transcriptions") == {"unmeasured": "audio_seconds"}
