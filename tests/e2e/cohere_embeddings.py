"""Cohere's embedding_types, the same through every provider type that serves Cohere's embed
models (``cohere``, and Cohere's models on ``bedrock``): shared checks of the end-to-end tests."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.servers import Mock, captured, new_marker

# What the refusal of embedding_types names: several types, none, base64, another name, no list.
REFUSED_TYPES: list[Any] = [["int8", "float"], [], ["base64"], ["int4"], "int8"]


def check_compressed_embeddings(client: openai.OpenAI, model: str, mock: Mock) -> None:
    """The one type asked for is sent and its vectors come back (they used to be replaced by float
    vectors without a word), as numbers or packed as OpenAI packs vectors."""
    marker = new_marker()
    text = f"squeeze mock:capture={marker}"
    ints = client.embeddings.create(model=model, input=text, encoding_format="float",
                                    extra_body={"embedding_types": ["int8"]})
    [record] = captured(mock, marker)
    assert record["body"]["embedding_types"] == ["int8"]
    floats = client.embeddings.create(model=model, input=text, encoding_format="float").data[0].embedding
    vector = ints.data[0].embedding
    assert vector != floats and all(v == int(v) and -128 <= v <= 127 for v in vector)
    assert vector == [max(-128, min(127, round(x * 127))) for x in floats]
    # The SDK's default base64: the same integers, packed as OpenAI packs vectors.
    packed = client.embeddings.create(model=model, input=text, extra_body={"embedding_types": ["int8"]})
    assert packed.data[0].embedding == vector
    binary = client.embeddings.create(model=model, input=[text, "more"], encoding_format="float",
                                      extra_body={"embedding_types": ["ubinary"]})
    assert [len(d.embedding) for d in binary.data] == [-(-len(floats) // 8)] * 2  # a bit a dimension


def check_refused_embedding_types(client: openai.OpenAI, model: str, mock: Mock, types: Any) -> None:
    """Refused before the call: an answer would hold several vectors per input, or none."""
    marker = new_marker()
    with pytest.raises(openai.BadRequestError) as exc:
        client.embeddings.create(model=model, input=f"squeeze mock:capture={marker}",
                                 extra_body={"embedding_types": types})
    assert (exc.value.param, exc.value.code) == ("embedding_types", "invalid_value")
    assert "exactly one of float, int8, uint8, binary, ubinary" in exc.value.message
    assert captured(mock, marker, timeout=0.2) == []
