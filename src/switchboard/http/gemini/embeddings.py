"""Gemini ``embedContent`` / ``batchEmbedContents`` <-> the canonical embeddings operation.

Reference: https://ai.google.dev/api/embeddings.

    content.parts[].text          -> input (the parts of one content joined by a newline)
    requests[] (batch)            -> input, one string per request, in order
    outputDimensionality          -> dimensions (the same for every request of a batch)
    taskType                      -> task_type (the same for every request of a batch)
    title                         -> title (one per request; only with RETRIEVAL_DOCUMENT, as Google)
    mimeType, autoTruncate        -> checked, not sent (Vertex AI's; see _one)
    data[i].embedding             -> embedding.values / embeddings[i].values
A request's ``model`` must name the model in the path, as Gemini requires. The hints are the
canonical ``task_type``/``title`` extension (providers/embedding_task.py), which says where each
provider type sends them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from switchboard.errors import InvalidRequest
from switchboard.http.gemini import fields as wire
from switchboard.http.gemini.enums import TASK_TYPES
from switchboard.http.gemini.fields import JSON, array, enum, fail, fields, integer, string, unsupported
from switchboard.http.openai_api import parse_object
from switchboard.providers.embedding_task import TITLED

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


@dataclass(frozen=True)
class _Embed:
    """One request's text and options."""

    text: str
    dims: int | None
    task_type: str | None
    title: str | None


def _one(value: Any, path: str, model: str) -> _Embed:
    request = fields(value, path, _EMBED, "EmbedContentRequest")

    def at(key: str) -> str:
        return f"{path}.{key}" if path else key

    given = request.get("model")
    if given is not None:
        name = string(given, at("model"))
        if name.removeprefix("models/") != model:
            raise fail(at("model"), f"'{name[:100]}' is not the model of the URL (models/{model[:100]})")
    if request.get("content") is None:
        raise InvalidRequest(f"{at('content')} is required", param=at("content"))
    text = _text(request["content"], at("content"))
    # Vertex AI's, checked and not sent (docs/api-gemini.md): the content's type (only text is
    # embedded here), and whether an over-long text is cut rather than refused (the serving
    # provider's own limit applies).
    if request.get("mimeType") is not None:
        string(request["mimeType"], at("mimeType"))
    if request.get("autoTruncate") is not None:
        wire.boolean(request["autoTruncate"], at("autoTruncate"))
    task = None
    if request.get("taskType") is not None:
        task = enum(request["taskType"], at("taskType"), TASK_TYPES)
        task = None if task == "TASK_TYPE_UNSPECIFIED" else task  # asks for nothing
    title = None
    if request.get("title") is not None:
        title = string(request["title"], at("title"))
        if task != TITLED:  # Google reads a title with this task type only
            raise fail(at("title"), f"a title is only taken with taskType {TITLED}")
    dims = None
    if request.get("outputDimensionality") is not None:
        dims = integer(request["outputDimensionality"], at("outputDimensionality"), 1)
    return _Embed(text, dims, task, title)


def _canonical(model: str, embeds: list[_Embed]) -> JSON:
    out: JSON = {"model": model, "input": [e.text for e in embeds], "encoding_format": "float"}
    if embeds[0].dims is not None:
        out["dimensions"] = embeds[0].dims
    if embeds[0].task_type is not None:
        out["task_type"] = embeds[0].task_type
    if any(e.title is not None for e in embeds):
        out["title"] = [e.title for e in embeds]
    return out


def embed_request(raw: bytes, model: str) -> JSON:
    return _canonical(model, [_one(parse_object(raw), "", model)])


def batch_embed_request(raw: bytes, model: str) -> JSON:
    body = fields(parse_object(raw), "", _BATCH, "BatchEmbedContentsRequest")
    requests = array(body.get("requests") if body.get("requests") is not None else [], "requests")
    if not requests:
        raise fail("requests", "must hold at least one request")
    if len(requests) > MAX_BATCH:
        raise fail("requests", f"at most {MAX_BATCH} requests per batch")
    embeds = [_one(item, f"requests[{i}]", model) for i, item in enumerate(requests)]
    # One canonical request carries one value of each for all its inputs.
    if len({e.dims for e in embeds}) > 1:
        raise unsupported("requests", "every request of a batch must ask for the same outputDimensionality")
    if len({e.task_type for e in embeds}) > 1:
        raise unsupported("requests", "every request of a batch must ask for the same taskType")
    return _canonical(model, embeds)


def vectors(body: JSON) -> list[JSON]:
    items = [d for d in body.get("data") or () if isinstance(d, dict)]
    items.sort(key=lambda d: d.get("index", 0) if isinstance(d.get("index"), int) else 0)
    return [{"values": d.get("embedding") if isinstance(d.get("embedding"), list) else []} for d in items]


def embed_response(body: JSON) -> JSON:
    found = vectors(body)
    return {"embedding": found[0] if found else {"values": []}}


def batch_embed_response(body: JSON) -> JSON:
    return {"embeddings": vectors(body)}
