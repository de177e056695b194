"""Cohere's rerank: ``POST /v2/rerank`` (https://docs.cohere.com/reference/rerank).

v2 takes ``documents`` as strings and no longer returns them (``return_documents`` is gone):
the gateway sends the texts and adds ``document.text`` itself when the client asked for it.
``max_tokens_per_doc`` and ``top_n`` pass through; search units come from
``meta.billed_units.search_units``.
"""

from __future__ import annotations

from typing import Any

import orjson

from switchboard.providers.errors import invalid_body, loads_object
from switchboard.providers.media import JSON, MediaReply, document_texts, rerank_reply
from switchboard.providers.target import Target
from switchboard.upstream.request import UpstreamRequest

RERANK_PATH = "/v2/rerank"
_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


def rerank_request(request: JSON, target: Target) -> UpstreamRequest:
    body: JSON = {"model": target.model, "query": request["query"], "documents": document_texts(request)}
    for key in ("top_n", "max_tokens_per_doc"):
        if request.get(key) is not None:
            body[key] = request[key]
    return UpstreamRequest("POST", target.api_base + RERANK_PATH, orjson.dumps(body), dict(_HEADERS))


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def rerank_response(body: bytes, request: JSON, target: Target) -> MediaReply:
    obj = loads_object(body)
    results = obj.get("results") if obj is not None else None
    if obj is None or not isinstance(results, list):
        raise invalid_body(target)
    pairs = []
    for item in results:
        if not isinstance(item, dict) or _int(item.get("index")) is None:
            raise invalid_body(target)
        score = item.get("relevance_score")
        if not isinstance(score, int | float) or isinstance(score, bool):
            raise invalid_body(target)
        pairs.append((item["index"], float(score)))
    billed = (obj.get("meta") or {}).get("billed_units") or {}
    units = _int(billed.get("search_units")) if isinstance(billed, dict) else None
    rid = obj.get("id") if isinstance(obj.get("id"), str) else None
    return rerank_reply(request, pairs, rid=rid, search_units=units, tokens=None)
