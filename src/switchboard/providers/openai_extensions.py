"""The canonical extensions (docs/providers.md, "Canonical extensions") turned into what OpenAI's
own API takes, so none reaches it raw (OpenAI rejects fields it does not know):

- ``thinking`` -> ``reasoning_effort`` (budget_tokens <= 1024: low, <= 8192: medium, else high).
  ``{"type": "disabled"}`` sends nothing: no single off value is valid for every model
  ("minimal" is gpt-5 only, "none" gpt-5.1 only) and models without reasoning reject the field
  altogether. A ``reasoning_effort`` the caller sent wins over ``thinking``.
- ``cache_control`` on content parts and tools: removed. OpenAI caches prompt prefixes by itself
  (no breakpoints exist); ``prompt_cache_key`` is its only control.
- assistant ``reasoning_content`` / ``thinking_blocks``: removed. They are another provider's
  reasoning; OpenAI's Chat API takes no reasoning back (its own stays server-side).
- tool ``is_error: true``: the content is prefixed "Error: " (OpenAI has no such flag).
- ``document`` parts: base64 PDF sources become ``file`` parts (``file_data`` as a data URL),
  plain-text sources become text parts (title first); other sources are a 400.

``top_k`` has no OpenAI equivalent and is refused through the capability table.
"""

from __future__ import annotations

from typing import Any

from switchboard.errors import InvalidRequest
from switchboard.providers.base import JSON

_EFFORTS = ((1024, "low"), (8192, "medium"))


def effort(thinking: Any) -> str | None:
    """The OpenAI ``reasoning_effort`` for a canonical ``thinking`` value (None: send none)."""
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        if isinstance(thinking, dict) and thinking.get("type") == "disabled":
            return None
        raise InvalidRequest(
            "thinking must be {\"type\": \"enabled\", \"budget_tokens\": N} or {\"type\": \"disabled\"}",
            param="thinking",
        )
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        raise InvalidRequest("thinking.budget_tokens must be a positive integer",
                             param="thinking.budget_tokens")
    return next((name for limit, name in _EFFORTS if budget <= limit), "high")


def _without_cache(item: Any) -> Any:
    if isinstance(item, dict) and "cache_control" in item:
        return {k: v for k, v in item.items() if k != "cache_control"}
    return item


def _document(part: JSON, where: str) -> JSON:
    doc: JSON = part["document"] if isinstance(part.get("document"), dict) else {}
    source: JSON = doc["source"] if isinstance(doc.get("source"), dict) else {}
    kind, data = source.get("type"), source.get("data")
    title = doc.get("title") if isinstance(doc.get("title"), str) and doc.get("title") else None
    if kind == "base64" and isinstance(data, str):
        media = source.get("media_type") or "application/pdf"
        return {"type": "file", "file": {"file_data": f"data:{media};base64,{data}",
                                         "filename": title or "document.pdf"}}
    if kind == "text" and isinstance(data, str):
        return {"type": "text", "text": f"{title}\n\n{data}" if title else data}
    raise InvalidRequest(
        f"document source type {kind!r} is not supported by OpenAI-format upstreams (send base64 or text)",
        param=where,
    )


def _parts(content: Any, where: str) -> Any:
    if not isinstance(content, list):
        return content
    out = []
    for j, part in enumerate(content):
        part = _without_cache(part)
        if isinstance(part, dict) and part.get("type") == "document":
            part = _document(part, f"{where}[{j}].document")
        out.append(part)
    return out


def _error_text(content: Any) -> Any:
    if isinstance(content, str):
        return f"Error: {content}"
    if isinstance(content, list):
        return [{"type": "text", "text": "Error: "}, *content]
    return "Error:"


def _message(msg: Any, i: int) -> Any:
    if not isinstance(msg, dict):
        return msg
    out = {k: v for k, v in msg.items() if k not in ("reasoning_content", "thinking_blocks", "is_error")}
    if "content" in out:
        out["content"] = _parts(out["content"], f"messages[{i}].content")
    if msg.get("role") == "tool" and msg.get("is_error") is True:
        out["content"] = _error_text(out.get("content"))
    return out


def with_effort(request: JSON) -> JSON:
    """``request`` with ``thinking`` turned into ``reasoning_effort`` (the caller's own one wins)."""
    if "thinking" not in request:
        return request
    body = dict(request)
    thinking = body.pop("thinking")
    chosen = effort(thinking) if thinking is not None else None
    if chosen is not None and body.get("reasoning_effort") is None:
        body["reasoning_effort"] = chosen
    return body


def to_openai(request: JSON) -> JSON:
    """``request`` (a canonical chat request) with the extensions turned into OpenAI's fields."""
    body = dict(with_effort(request))  # a copy: the caller's request stays as it was
    if isinstance(body.get("messages"), list):
        body["messages"] = [_message(m, i) for i, m in enumerate(body["messages"])]
    if isinstance(body.get("tools"), list):
        body["tools"] = [_without_cache(t) for t in body["tools"]]
    return body
