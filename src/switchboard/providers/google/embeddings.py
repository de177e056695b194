"""OpenAI embeddings <-> Gemini ``batchEmbedContents`` and Vertex AI ``predict``.

References: https://ai.google.dev/api/embeddings#method:-models.batchembedcontents and
https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/text-embeddings-api
(instances[].content, parameters.outputDimensionality, predictions[].embeddings.values and
statistics.token_count). Gemini's batch endpoint reports no token counts: usage is then 0.
"""

from __future__ import annotations

from typing import Any

from switchboard.errors import InvalidRequest
from switchboard.providers.errors import invalid_body
from switchboard.providers.target import Target

JSON = dict[str, Any]


def texts(request: JSON, target: Target) -> list[str]:
    value = request.get("input")
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    if not items or not all(isinstance(x, str) for x in items):
        raise InvalidRequest(
            f"provider type '{target.provider_type}' embeds text only: 'input' must be a string or an "
            "array of strings (token arrays are not supported)",
            param="input",
            code="invalid_value",
        )
    return items


def model_id(model: str) -> str:
    return model.removeprefix("models/")


def batch_embed_body(request: JSON, target: Target) -> JSON:
    name = f"models/{model_id(target.model)}"
    dims = request.get("dimensions")
    requests = []
    for text in texts(request, target):
        item: JSON = {"model": name, "content": {"parts": [{"text": text}]}}
        if dims is not None:
            item["outputDimensionality"] = dims
        requests.append(item)
    return {"requests": requests}


def predict_body(request: JSON, target: Target) -> JSON:
    body: JSON = {"instances": [{"content": text} for text in texts(request, target)]}
    if request.get("dimensions") is not None:
        body["parameters"] = {"outputDimensionality": request["dimensions"]}
    return body


def from_batch_embed(obj: JSON | None, target: Target) -> JSON:
    items = obj.get("embeddings") if obj else None
    if not isinstance(items, list):
        raise invalid_body(target)
    vectors = [_values(item, target) for item in items]
    meta = obj.get("usageMetadata") if obj else None
    tokens = meta.get("promptTokenCount", 0) if isinstance(meta, dict) else 0
    return embedding_list(vectors, target, tokens if isinstance(tokens, int) else 0)


def from_predict(obj: JSON | None, target: Target) -> JSON:
    predictions = obj.get("predictions") if obj else None
    if not isinstance(predictions, list):
        raise invalid_body(target)
    vectors, tokens = [], 0
    for p in predictions:
        embedding = p.get("embeddings") if isinstance(p, dict) else None
        vectors.append(_values(embedding, target))
        stats = embedding.get("statistics") if isinstance(embedding, dict) else None
        count = stats.get("token_count") if isinstance(stats, dict) else None
        tokens += int(count) if isinstance(count, int | float) else 0
    return embedding_list(vectors, target, tokens)


def _values(item: Any, target: Target) -> list[float]:
    values = item.get("values") if isinstance(item, dict) else None
    if not isinstance(values, list):
        raise invalid_body(target)
    return values


def embedding_list(vectors: list[list[float]], target: Target, tokens: int) -> JSON:
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "model": target.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
