"""``GET /v1/models`` and ``GET /v1/models/{id}`` in Anthropic's Models API shape.

The Anthropic SDKs call the same paths as OpenAI's (``client.models.list()``), always with an
``anthropic-version`` header: that header picks this shape (:class:`ByDialect`). The entries are
the model directory's (pipeline/models.py: the caller's allowed models only), rewritten here as
``ModelInfo`` objects and paged with Anthropic's ``after_id`` / ``before_id`` / ``limit``.
Errors use Anthropic's error body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from switchboard.context import Reply, RequestContext, Result
from switchboard.errors import InvalidRequest
from switchboard.http.anthropic.json_inbound import AnthropicJson
from switchboard.http.asgi import Receive, Scope, Send
from switchboard.pipeline.chain import Handler

DEFAULT_LIMIT = 20  # Anthropic's default page and its bounds
MAX_LIMIT = 1000
_PARAMS = ("limit", "after_id", "before_id")

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The catalog's capabilities (catalog.yaml) that mean one of Anthropic's; the others say nothing.
_CAPABILITIES = {"vision": "image_input", "json_schema": "structured_outputs"}


def model_info(entry: dict[str, Any]) -> dict[str, Any]:
    """One directory entry (OpenAI's model object plus catalog fields) as a ``ModelInfo``."""
    created = entry.get("created")
    known = entry.get("capabilities")
    return {
        "type": "model",
        "id": entry["id"],
        "display_name": entry["id"],
        # RFC 3339; Anthropic sends the epoch when a release date is unknown.
        "created_at": datetime.fromtimestamp(created if isinstance(created, int) else 0, UTC)
        .isoformat().replace("+00:00", "Z"),
        "max_input_tokens": entry.get("context_window"),
        "max_tokens": entry.get("max_output_tokens"),
        "capabilities": None if not isinstance(known, dict)
        else {name: {"supported": bool(known.get(ours))} for ours, name in _CAPABILITIES.items()},
    }


def page_query(raw: str) -> dict[str, Any]:
    """The list's query string checked: ``limit`` 1-1000, at most one cursor. Other parameters
    are ignored, as Anthropic does (Claude Code adds ``?beta=true`` to its calls)."""
    try:
        fields = parse_qs(raw, keep_blank_values=True, max_num_fields=20) if raw else {}
    except ValueError:
        raise InvalidRequest("too many query parameters (at most 20)", code="invalid_value") from None
    query: dict[str, Any] = {}
    for name in _PARAMS:
        if len(values := fields.get(name, ())) > 1:
            raise InvalidRequest(f"the query parameter '{name}' is given twice", param=name,
                                 code="duplicate_parameter")  # the admin lists' code for it
        if values:
            query[name] = values[0]
    text = query.get("limit", str(DEFAULT_LIMIT))
    # At most 9 digits: int() refuses more than 4300 (sys.get_int_max_str_digits).
    if not (text.isascii() and text.isdigit() and len(text) <= 9) or not 1 <= int(text) <= MAX_LIMIT:
        raise InvalidRequest(f"limit: must be an integer from 1 to {MAX_LIMIT}", param="limit",
                             code="invalid_value")
    if "after_id" in query and "before_id" in query:
        raise InvalidRequest("give after_id or before_id, not both", param="before_id", code="invalid_value")
    return {**query, "limit": int(text)}


def page(entries: list[dict[str, Any]], query: dict[str, Any]) -> dict[str, Any]:
    """One page of ``entries`` (the directory's order) after or before the cursor's model."""
    ids = [e["id"] for e in entries]
    limit = query["limit"]
    if (cursor := query.get("after_id")) is not None:
        start = _position(ids, cursor, "after_id") + 1
        chosen, more = entries[start:start + limit], start + limit < len(entries)
    elif (cursor := query.get("before_id")) is not None:
        end = _position(ids, cursor, "before_id")
        chosen, more = entries[max(0, end - limit):end], end - limit > 0
    else:
        chosen, more = entries[:limit], limit < len(entries)
    data = [model_info(e) for e in chosen]
    return {"data": data, "has_more": more, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}


def _position(ids: list[str], cursor: str, param: str) -> int:
    try:
        return ids.index(cursor)
    except ValueError:
        raise InvalidRequest(f"{param}: no model '{cursor[:200]}' in the list", param=param,
                             code="invalid_value") from None


class AnthropicDirectory:
    """Terminals of both routes around the model directory's (pipeline/models.py): its answer,
    the caller's models only, rewritten. The query is checked first, so a bad one is a 400."""

    def __init__(self, listing: Handler, one: Handler) -> None:
        self._listing = listing
        self._one = one

    async def list(self, ctx: RequestContext) -> Result:
        query = page_query(ctx.query)
        result = await self._listing(ctx)
        assert isinstance(result, Reply)  # the directory answers in full
        return Reply(page(result.body["data"], query))

    async def get(self, ctx: RequestContext) -> Result:
        result = await self._one(ctx)
        assert isinstance(result, Reply)
        return Reply(model_info(result.body))


MODELS = AnthropicJson("models")
MODEL = AnthropicJson("model")


class ByDialect:
    """One path, two APIs: the Anthropic endpoint for a request with ``anthropic-version`` (the
    Anthropic SDKs always send it), the OpenAI one otherwise."""

    def __init__(self, openai: ASGIApp, anthropic: ASGIApp) -> None:
        self._openai = openai
        self._anthropic = anthropic

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        for name, _ in scope["headers"]:
            if name == b"anthropic-version":
                await self._anthropic(scope, receive, send)
                return
        await self._openai(scope, receive, send)
