"""OpenAI embeddings <-> Gemini ``batchEmbedContents`` and Vertex AI ``predict``.

References: https://ai.google.dev/api/embeddings#method:-models.batchembedcontents and
https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/text-embeddings-api
(instances[].content, parameters.outputDimensionality, predictions[].embeddings.values and
statistics.token_count). Gemini's batch endpoint reports no token counts: usage is then 0.
The retrieval hints (providers/embedding_task.py) go with each text: ``taskType``/``title`` on
each Gemini request, ``task_type``/``title`` on each Vertex AI instance.

Each endpoint takes a bounded number of inputs per call (Gemini: 100 requests, "at most 100
requests can be in one batch"; Vertex AI: 250 instances, and one for ``gemini-embedding-001``,
which "supports one instance per request"). A longer ``input`` is refused before
the call, naming the limit, as the deployment's own refusal (providers/embedding_inputs.py):
another deployment of a mixed group that takes it (OpenAI: 2048) then serves.
"""

from __future__ import annotations

from typing import Any

from switchboard.providers.embedding_inputs import text_inputs
from switchboard.providers.embedding_task import hints
from switchboard.providers.errors import invalid_body
from switchboard.providers.target import Target

JSON = dict[str, Any]

# Inputs per upstream call: Gemini's batchEmbedContents and Vertex AI's predict.
GEMINI_MAX_INPUTS = 100
VERTEX_MAX_INPUTS = 250
# Vertex AI models that take one instance per predict call (Google's text embeddings docs).
VERTEX_SINGLE_INPUT = frozenset({"gemini-embedding-001"})


def vertex_max_inputs(model: str) -> int:
    """Inputs per predict call for the Vertex AI model ``model`` (an id, or a path ending in one)."""
    return 1 if model.rsplit("/", 1)[-1] in VERTEX_SINGLE_INPUT else VERTEX_MAX_INPUTS


def model_id(model: str) -> str:
    return model.removeprefix("models/")


def batch_embed_body(request: JSON, target: Target) -> JSON:
    name = f"models/{model_id(target.model)}"
    dims = request.get("dimensions")
    requests = []
    texts = text_inputs(request, target, GEMINI_MAX_INPUTS)
    for text, hint in zip(texts, hints(request, len(texts)), strict=True):
        item: JSON = {"model": name, "content": {"parts": [{"text": text}]}}
        if dims is not None:
            item["outputDimensionality"] = dims
        if "task_type" in hint:
            item["taskType"] = hint["task_type"]
        if "title" in hint:
            item["title"] = hint["title"]
        requests.append(item)
    return {"requests": requests}


def predict_body(request: JSON, target: Target) -> JSON:
    texts = text_inputs(request, target, vertex_max_inputs(target.model))
    # Vertex AI's instances take the hints under the canonical names.
    pairs = zip(texts, hints(request, len(texts)), strict=True)
    body: JSON = {"instances": [{"content": text, **hint} for text, hint in pairs]}
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
