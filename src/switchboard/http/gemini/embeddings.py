"""Gemini ``embedContent`` / ``batchEmbedContents`` <-> the canonical embeddings operation.

Reference: https://ai.google.dev/api/embeddings.

    content.parts[].text          -> input (the parts of one content joined by a newline)
    requests[] (batch)            -> input, one string per request, in order
    outputDimensionality          -> dimensions (the same for every request of a batch)
    taskType, title               -> checked, not sent: no other provider takes retrieval hints
    data[i].embedding             -> embedding.values / embeddings[i].values
A request's ``model`` must name the model in the path, as Gemini requires.
"""

from __future__ import annotations

from typing import Any

from switchboard.errors import InvalidRequest
from switchboard.http.gemini.enums import TASK_TYPES
from switchboard.http.gemini.fields import JSON, array, enum, fail, fields, integer, string, unsupported
from switchboard.http.openai_api import parse_object

_EMBED = frozenset({
    "model", "content", "taskType", "title", "outputDimensionality", "autoTruncate", "mimeType",
})
_BATCH = frozenset({"requests"})
_CONTENT = frozenset({"role", "parts"})
_PART = frozenset({"text", "inlineData", "fileData"})
MAX_BATCH = 2048


def _text(value: Any, path: str) -> str:
    content = fields(value, path, _CONTENT, "Content")
    texts = []
    for j, item in enumerate(array(content.get("parts") or [], f"{path}.parts")):
        part = fields(item, f"{path}.parts[{j}]", _PART, "Part")
        if part.get("text") is None:
            raise unsupported(f"{path}.parts[{j}]", "only text is embedded through this gateway")
        texts.append(string(part["text"], f"{path}.parts[{j}].text"))
    text = "\n".join(t for t in texts if t)
    if not text:
        raise fail(f"{path}.parts", "must hold some text to embed")
    return text


def _one(value: Any, path: str, model: str) -> tuple[str, int | None]:
    request = fields(value, path, _EMBED, "EmbedContentRequest")
    given = request.get("model")
    if given is not None:
        name = string(given, f"{path}.model")
        if name.removeprefix("models/") != model:
            raise fail(f"{path}.model", f"'{name[:100]}' is not the model of the URL (models/{model[:100]})")
    if request.get("content") is None:
        raise InvalidRequest(f"{path}.content is required" if path else "content is required",
                             param=f"{path}.content" if path else "content")
    text = _text(request["content"], f"{path}.content" if path else "content")
    for key in ("title", "mimeType"):
        if request.get(key) is not None:
            string(request[key], f"{path}.{key}" if path else key)
    if request.get("taskType") is not None:
        enum(request["taskType"], f"{path}.taskType" if path else "taskType", TASK_TYPES)
    dims = None
    if request.get("outputDimensionality") is not None:
        key = f"{path}.outputDimensionality" if path else "outputDimensionality"
        dims = integer(request["outputDimensionality"], key, 1)
    return text, dims


def _canonical(model: str, texts: list[str], dims: int | None) -> JSON:
    out: JSON = {"model": model, "input": texts, "encoding_format": "float"}
    if dims is not None:
        out["dimensions"] = dims
    return out


def embed_request(raw: bytes, model: str) -> JSON:
    text, dims = _one(parse_object(raw), "", model)
    return _canonical(model, [text], dims)


def batch_embed_request(raw: bytes, model: str) -> JSON:
    body = fields(parse_object(raw), "", _BATCH, "BatchEmbedContentsRequest")
    requests = array(body.get("requests") if body.get("requests") is not None else [], "requests")
    if not requests:
        raise fail("requests", "must hold at least one request")
    if len(requests) > MAX_BATCH:
        raise fail("requests", f"at most {MAX_BATCH} requests per batch")
    texts: list[str] = []
    dimensions: set[int | None] = set()
    for i, item in enumerate(requests):
        text, dims = _one(item, f"requests[{i}]", model)
        texts.append(text)
        dimensions.add(dims)
    if len(dimensions) > 1:
        raise unsupported("requests", "every request of a batch must ask for the same outputDimensionality")
    return _canonical(model, texts, dimensions.pop())


def vectors(body: JSON) -> list[JSON]:
    items = [d for d in body.get("data") or () if isinstance(d, dict)]
    items.sort(key=lambda d: d.get("index", 0) if isinstance(d.get("index"), int) else 0)
    return [{"values": d.get("embedding") if isinstance(d.get("embedding"), list) else []} for d in items]


def embed_response(body: JSON) -> JSON:
    found = vectors(body)
    return {"embedding": found[0] if found else {"values": []}}


def batch_embed_response(body: JSON) -> JSON:
    return {"embeddings": vectors(body)}
