"""Embeddings through Bedrock InvokeModel (``POST /model/{id}/invoke``), by model family.

- Amazon Titan text embeddings (``amazon.titan-embed-*``): ``{"inputText", "dimensions"?}`` ->
  ``{"embedding", "inputTextTokenCount"}``. One text per call, so a request with several inputs is
  refused (400, as the deployment's own refusal: another deployment of a group serves it) rather
  than fanned out (adapters do no I/O).
  https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-embed-text.html
- Cohere Embed (``cohere.embed-*``): ``{"texts", "input_type", "embedding_types"?, "truncate"?,
  "output_dimension"?}`` (Embed v4 only) ->
  ``{"embeddings"}`` (a list of vectors, or ``{"<type>": [...]}`` when embedding types were
  requested); up to 96 texts per call. The input tokens are counted only in the
  ``X-Amzn-Bedrock-Input-Token-Count`` response header.
  https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-embed.html
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from switchboard.errors import InvalidRequest
from switchboard.providers.base import JSON
from switchboard.providers.cohere.input_type import input_type
from switchboard.providers.cohere.request import EMBED_MAX_TEXTS as COHERE_MAX_TEXTS
from switchboard.providers.cohere.request import embedding_type
from switchboard.providers.cohere.response import typed_vectors
from switchboard.providers.embedding_inputs import text_inputs
from switchboard.providers.errors import invalid_body, loads_object
from switchboard.providers.params import check_supported
from switchboard.providers.target import Target

EMBEDDING_PARAMS = frozenset({"model", "input", "encoding_format", "dimensions", "user"})
_KNOWN = frozenset({"model", "input", "encoding_format", "dimensions", "user"})


def family(target: Target) -> str:
    model = target.model.lower()
    if "titan-embed" in model:
        return "titan"
    if "cohere.embed" in model:
        return "cohere"
    raise InvalidRequest(
        f"model '{target.name}' ('{target.model}') is not a Bedrock embedding model this gateway knows "
        "(amazon.titan-embed-*, cohere.embed-*)",
        param="model",
    )


def invoke_body(request: JSON, target: Target) -> JSON:
    kind = family(target)
    # Of Cohere's models only Embed v4 takes an output dimension (256, 512, 1024 or 1536).
    sized = kind == "titan" or "embed-v4" in target.model.lower()
    supported = EMBEDDING_PARAMS if sized else EMBEDDING_PARAMS - {"dimensions"}
    request = check_supported(request, supported, target, known=_KNOWN)
    texts = text_inputs(request, target, 1 if kind == "titan" else COHERE_MAX_TEXTS)
    if kind == "titan":
        body: JSON = {"inputText": texts[0]}
        if request.get("dimensions") is not None:
            body["dimensions"] = request["dimensions"]
        return body
    body = {"texts": texts, "input_type": input_type(request, "search_document")}
    if request.get("dimensions") is not None:  # Bedrock judges the value, as Cohere does
        body["output_dimension"] = request["dimensions"]
    if request.get("embedding_types") is not None:  # Cohere's own field, judged as for its type
        body["embedding_types"] = [embedding_type(request)]
    if isinstance(request.get("truncate"), str):  # as for the cohere type; Bedrock judges the value
        body["truncate"] = request["truncate"]
    return body


def _vectors(obj: JSON, target: Target) -> tuple[list[Any], int]:
    """(vectors, prompt tokens) from a Titan or Cohere InvokeModel answer."""
    if isinstance(obj.get("embedding"), list):
        tokens = obj.get("inputTextTokenCount")
        return [obj["embedding"]], tokens if isinstance(tokens, int) else 0
    embeddings = obj.get("embeddings")
    if isinstance(embeddings, dict):  # Cohere with embedding_types: the one type asked for
        embeddings = typed_vectors(embeddings)
    if isinstance(embeddings, list) and all(isinstance(v, list) for v in embeddings):
        return embeddings, 0  # Cohere's count is only in the response headers (embeddings_list)
    raise invalid_body(target)


# InvokeModel's count of the input tokens, the only one a Cohere model's answer has.
INPUT_TOKENS_HEADER = "x-amzn-bedrock-input-token-count"


def embeddings_list(body: bytes, target: Target, headers: Mapping[str, str] | None = None) -> JSON:
    obj = loads_object(body)
    if obj is None:
        raise invalid_body(target)
    vectors, tokens = _vectors(obj, target)
    header = (headers or {}).get(INPUT_TOKENS_HEADER, "")
    if not tokens and header.isascii() and header.isdigit():
        tokens = int(header)
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "model": target.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
