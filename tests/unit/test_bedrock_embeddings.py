"""Embeddings through Bedrock InvokeModel: Titan (one input per call) and Cohere (batches)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchboard.config.schema import Timeouts
from switchboard.errors import InvalidRequest, UnsupportedParameter, UpstreamBadGateway
from switchboard.providers.bedrock import SPEC, BedrockOptions
from switchboard.providers.target import Target


def target(model: str) -> Target:
    return Target("emb", model, "aws", "bedrock", "https://bedrock-runtime.us-east-1.amazonaws.com",
                  BedrockOptions(aws_region="us-east-1"), Timeouts())


TITAN = target("amazon.titan-embed-text-v2:0")
COHERE = target("cohere.embed-english-v3")


def build(request: dict[str, Any], t: Target) -> tuple[str, dict[str, Any]]:
    req = SPEC.adapter.embeddings_request({"model": "emb", **request}, t)
    return req.url, orjson.loads(req.body or b"")


def test_titan_single_input() -> None:
    url, body = build({"input": "hello", "dimensions": 256, "encoding_format": "float"}, TITAN)
    assert url == "https://bedrock-runtime.us-east-1.amazonaws.com/model/amazon.titan-embed-text-v2%3A0/invoke"
    assert body == {"inputText": "hello", "dimensions": 256}
    assert build({"input": ["only one"]}, TITAN)[1] == {"inputText": "only one"}


def test_titan_rejects_several_inputs_with_a_clear_400() -> None:
    with pytest.raises(InvalidRequest, match="one input per request") as err:
        build({"input": ["a", "b"]}, TITAN)
    assert err.value.param == "input"


def test_token_arrays_are_rejected() -> None:
    with pytest.raises(InvalidRequest, match="token arrays") as refused:
        build({"input": [1, 2, 3]}, TITAN)
    assert refused.value.code == "invalid_value"


def test_cohere_batches_and_input_type() -> None:
    _, body = build({"input": ["a", "b"]}, COHERE)
    assert body == {"texts": ["a", "b"], "input_type": "search_document"}
    _, body = build({"input": "q", "input_type": "search_query"}, COHERE)
    assert body == {"texts": ["q"], "input_type": "search_query"}
    for wrong in ("poetry", ["search_query"], 5):  # as the cohere provider type refuses them
        with pytest.raises(InvalidRequest) as refused:
            build({"input": "q", "input_type": wrong}, COHERE)
        assert (refused.value.param, refused.value.code) == ("input_type", "invalid_value")
    with pytest.raises(UnsupportedParameter):
        build({"input": "q", "dimensions": 256}, COHERE)
    # A task type with Cohere's meaning is its input_type; Titan has no such hint: not sent.
    assert build({"input": "q", "task_type": "RETRIEVAL_QUERY"}, COHERE)[1]["input_type"] == "search_query"
    assert build({"input": "q", "task_type": "CLUSTERING", "input_type": "search_query"}, COHERE)[1] == {
        "texts": ["q"], "input_type": "search_query"
    }
    titled = {"input": "d", "task_type": "RETRIEVAL_DOCUMENT", "title": "T"}
    assert build(titled, TITAN)[1] == {"inputText": "d"}


def test_unknown_embedding_model_is_a_400() -> None:
    with pytest.raises(InvalidRequest, match="not a Bedrock embedding model"):
        build({"input": "x"}, target("anthropic.claude-3-haiku-20240307-v1:0"))


def test_titan_response() -> None:
    body = orjson.dumps({"embedding": [0.1, -0.2], "inputTextTokenCount": 3,
                         "embeddingsByType": {"float": [0.1, -0.2]}})
    assert SPEC.adapter.embeddings_response(body, TITAN) == {
        "object": "list", "model": "amazon.titan-embed-text-v2:0",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, -0.2]}],
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }


@pytest.mark.parametrize("embeddings", [[[1.0], [2.0]], {"float": [[1.0], [2.0]]}])
def test_cohere_responses_in_both_shapes(embeddings: Any) -> None:
    body = orjson.dumps({"id": "x", "texts": ["a", "b"], "embeddings": embeddings})
    out = SPEC.adapter.embeddings_response(body, COHERE)
    assert [d["embedding"] for d in out["data"]] == [[1.0], [2.0]]
    assert [d["index"] for d in out["data"]] == [0, 1]


@pytest.mark.parametrize("body", [b"nope", b"{}", b'{"embeddings": "x"}'])
def test_invalid_embedding_bodies_are_a_502(body: bytes) -> None:
    with pytest.raises(UpstreamBadGateway):
        SPEC.adapter.embeddings_response(body, TITAN)


@pytest.mark.parametrize(("headers", "tokens"), [
    ({"x-amzn-bedrock-input-token-count": "7"}, 7),
    ({"x-amzn-bedrock-input-token-count": "-1"}, 0),  # no count: the usage stage estimates
    ({"x-amzn-bedrock-input-token-count": "\uff17"}, 0),
    ({}, 0),
])
def test_cohere_usage_is_the_input_token_count_header(headers: dict[str, str], tokens: int) -> None:
    body = orjson.dumps({"embeddings": {"int8": [[1, -2]]}, "response_type": "embeddings_by_type"})
    out = SPEC.adapter.embeddings_reply(body, headers, COHERE)
    assert out["data"][0]["embedding"] == [1, -2]
    assert out["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
