"""The canonical extensions (docs/providers.md, "Canonical extensions") turned into what OpenAI's
own API takes, so none reaches it raw (OpenAI rejects fields it does not know):

- ``thinking`` -> ``reasoning_effort`` (budget_tokens <= 1024: low, <= 8192: medium, else high;
  adaptive: high, Anthropic's default effort).
  ``{"type": "disabled"}`` sends nothing: no single off value is valid for every model
  ("minimal" is gpt-5 only, "none" gpt-5.1 only) and models without reasoning reject the field
  altogether. A ``reasoning_effort`` the caller sent wins over ``thinking``.
- ``cache_control`` on content parts and tools: removed. OpenAI caches prompt prefixes by itself
  (no breakpoints exist); ``prompt_cache_key`` is its only control.
- assistant ``reasoning_content`` / ``thinking_blocks``: removed. They are another provider's
  reasoning; OpenAI's Chat API takes no reasoning back (its own stays server-side).
- assistant ``tool_calls[].extra_content`` (a Gemini call's thought signature, Google's
  OpenAI-compatible extension): removed, for the same reason.
- ``image_url.format`` and ``file.format`` (the media type of a URL, LiteLLM's field; Gemini's
  fileData needs it): removed. A ``file`` part whose ``file_data`` is a URL is a 400.
- tool ``is_error: true``: the content is prefixed "Error: " (OpenAI has no such flag).
- ``document`` parts: base64 sources (PDF) become ``file`` parts (``file_data`` as a data URL),
  plain-text ones (text, content, base64 text/*) text parts (title first); URL sources are a 400.
- ``safety_settings`` (Gemini's safety thresholds): removed (:func:`without_safety_settings`).
  OpenAI has no per-request thresholds; its own policies apply.
- ``image_url`` URLs and ``file`` parts' ``file_data`` data URLs: the scheme in lower case, data
  URLs checked (a 400 naming the part when they are not base64) and sent in canonical form
  (media_urls.py); ``input_audio`` data checked as base64 the same way and its ``format``
  required, sent as written.

OpenAI-compatible servers get only the last four (:func:`documents_and_errors` and
:func:`without_safety_settings`).

``top_k`` has no OpenAI equivalent and is refused through the capability table.
"""

from __future__ import annotations

from typing import Any

from switchboard import media_urls
from switchboard.errors import InvalidRequest
from switchboard.providers import documents
from switchboard.providers.base import JSON

_EFFORTS = ((1024, "low"), (8192, "medium"))


def effort(thinking: Any) -> str | None:
    """The OpenAI ``reasoning_effort`` for a canonical ``thinking`` value (None: send none).
    Adaptive thinking is "high": Anthropic's default effort, at which the model thinks on most
    requests (an effort sent with it, as Claude Code sends ``output_config.effort``, wins)."""
    if isinstance(thinking, dict) and thinking.get("type") == "adaptive":
        return "high"
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        if isinstance(thinking, dict) and thinking.get("type") == "disabled":
            return None
        raise InvalidRequest(
            "thinking must be {\"type\": \"enabled\", \"budget_tokens\": N} or {\"type\": \"disabled\"}",
            param="thinking", code="invalid_value",
        )
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        raise InvalidRequest("thinking.budget_tokens must be a positive integer",
                             param="thinking.budget_tokens", code="invalid_value")
    return next((name for limit, name in _EFFORTS if budget <= limit), "high")


def _without_cache(item: Any) -> Any:
    if isinstance(item, dict) and "cache_control" in item:
        return {k: v for k, v in item.items() if k != "cache_control"}
    return item


def _document(part: JSON, where: str, provider_type: str) -> JSON:
    doc = documents.read(part, where, provider_type)
    if doc.text is not None:
        return {"type": "text", "text": documents.as_text(doc)}
    return {"type": "file", "file": {"file_data": f"data:{doc.media_type};base64,{doc.data}",
                                     "filename": doc.title or "document.pdf"}}


def _by_url(file: JSON) -> bool:
    """``file_data`` naming a URL (https://, gs://...), not a data URL (nor bare base64, which
    holds no colon)."""
    data = file.get("file_data")
    return isinstance(data, str) and "://" in data[:40]


def _formatted(part: Any) -> bool:
    """An ``image_url`` or ``file`` part carrying ``format`` (the media type of a URL), or a
    ``file`` part naming a URL."""
    if not isinstance(part, dict):
        return False
    kind = part.get("type")
    inner = part.get(kind) if kind in ("image_url", "file") else None
    return isinstance(inner, dict) and ("format" in inner or (kind == "file" and _by_url(inner)))


def _unformatted(part: JSON, where: str, provider_type: str) -> JSON:
    """``part`` without ``format``: OpenAI's image_url has only url and detail, its file part
    file_data, file_id and filename, and it refuses other fields. The type is the data URL's,
    or what the server of an image URL says. A file by URL (OpenAI takes data URLs or file ids)
    is a 400 here, naming the field, rather than OpenAI's."""
    kind = part["type"]
    inner = {k: v for k, v in part[kind].items() if k != "format"}
    if kind == "file" and _by_url(inner):
        raise InvalidRequest(
            f"{where}.file.file_data: provider type '{provider_type}' takes files only inline (a data "
            "URL) or by file_id, not by URL; send the file's bytes",
            param=f"{where}.file.file_data",
        )
    return {**part, kind: inner}


# The part types whose media the gateway reads before they are sent: the field holding a URL.
_URL_FIELDS = {"image_url": "url", "file": "file_data"}


def _unread_media(part: Any) -> bool:
    """A part whose media is read before it is sent (media_urls.py): ``input_audio`` (its data
    checked as base64, its format required), or an ``image_url`` or ``file`` part whose URL is a
    data URL or has a scheme not in lower case."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "input_audio":
        return True
    field = _URL_FIELDS.get(kind) if isinstance(kind, str) else None
    inner = part.get(kind) if field is not None else None
    return isinstance(inner, dict) and media_urls.needs_reading(inner.get(field))


def _read_media(part: JSON, where: str) -> JSON:
    kind = part["type"]
    inner = part[kind]
    if kind == "input_audio":
        media_urls.input_audio(inner, where)  # checked, sent as written
        return part
    field = _URL_FIELDS[kind]
    url = media_urls.canonical(inner[field], f"{where}.{kind}.{field}")
    return {**part, kind: {**inner, field: url}}


def _parts(content: Any, where: str, provider_type: str, own: bool) -> Any:
    if not isinstance(content, list):
        return content
    out = []
    for j, part in enumerate(content):
        if own:
            part = _without_cache(part)
            if _formatted(part):
                part = _unformatted(part, f"{where}[{j}]", provider_type)
        if documents.is_document(part):
            part = _document(part, f"{where}[{j}]", provider_type)
        elif _unread_media(part):
            part = _read_media(part, f"{where}[{j}]")
        out.append(part)
    return out


def _error_text(content: Any) -> Any:
    if isinstance(content, str):
        return f"Error: {content}"
    if isinstance(content, list):
        return [{"type": "text", "text": "Error: "}, *content]
    return "Error:"


def _message(msg: Any, i: int, provider_type: str, own: bool) -> Any:
    if not isinstance(msg, dict):
        return msg
    dropped = ("reasoning_content", "thinking_blocks", "is_error") if own else ("is_error",)
    out = {k: v for k, v in msg.items() if k not in dropped}
    if own and _signed(out.get("tool_calls")):
        out["tool_calls"] = [
            {k: v for k, v in c.items() if k != "extra_content"} if isinstance(c, dict) else c
            for c in out["tool_calls"]
        ]
    if "content" in out:
        out["content"] = _parts(out["content"], f"messages[{i}].content", provider_type, own)
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


def without_safety_settings(request: JSON) -> JSON:
    """``request`` without ``safety_settings``: thresholds of Google's filters, which no
    OpenAI-shaped API takes (OpenAI rejects unknown fields; other servers would ignore them)."""
    if "safety_settings" not in request:
        return request
    return {k: v for k, v in request.items() if k != "safety_settings"}


def _signed(calls: Any) -> bool:
    """Tool calls that carry ``extra_content`` (Gemini's thought signatures)."""
    return isinstance(calls, list) and any(isinstance(c, dict) and "extra_content" in c for c in calls)


# Part types that may need rewriting: a text part costs one look here, not two calls.
_REWRITTEN_PARTS = frozenset({"document", "image_url", "file", "input_audio"})
_MEDIA_PARTS = frozenset({"image_url", "file", "input_audio"})
# A set: a message's few keys are looked up in it in C (isdisjoint), not by a generator.
_MESSAGE_EXTENSIONS = frozenset({"reasoning_content", "thinking_blocks", "is_error"})


def _plain(request: JSON) -> bool:
    """No canonical extension anywhere (the common case): the request goes as it is, uncopied."""
    if "thinking" in request or "safety_settings" in request:
        return False
    tools = request.get("tools")
    if isinstance(tools, list) and any(isinstance(t, dict) and "cache_control" in t for t in tools):
        return False
    for msg in request.get("messages") or ():
        if not isinstance(msg, dict):
            continue
        if not _MESSAGE_EXTENSIONS.isdisjoint(msg) or ("tool_calls" in msg and _signed(msg["tool_calls"])):
            return False
        content = msg.get("content")
        if isinstance(content, list) and any(
            isinstance(p, dict) and ("cache_control" in p or (
                p.get("type") in _REWRITTEN_PARTS
                and (documents.is_document(p) or _formatted(p) or _unread_media(p))))
            for p in content
        ):
            return False
    return True


def to_openai(request: JSON, provider_type: str = "openai") -> JSON:
    """``request`` (a canonical chat request) with the extensions turned into OpenAI's fields."""
    if _plain(request):
        return request
    return _translated(request, provider_type)


def _translated(request: JSON, provider_type: str) -> JSON:
    """``to_openai`` of a request carrying extensions. A function of its own: its comprehension
    made ``provider_type`` a cell of ``to_openai`` on every call, most of which return at once."""
    body = dict(without_safety_settings(with_effort(request)))  # a copy: the caller's stays as it was
    if isinstance(body.get("messages"), list):
        body["messages"] = [_message(m, i, provider_type, own=True) for i, m in enumerate(body["messages"])]
    if isinstance(body.get("tools"), list):
        body["tools"] = [_without_cache(t) for t in body["tools"]]
    return body


def documents_and_errors(request: JSON, provider_type: str) -> JSON:
    """``request`` with only ``document`` parts, media (image and file URLs, audio data) and tool
    ``is_error`` in OpenAI's form (for OpenAI-compatible servers, which may take the other
    extensions: cache breakpoints, history reasoning). No such server reads the extensions, and
    an ignored ``is_error`` would make a failed call read as a success."""
    messages = request.get("messages")
    if not isinstance(messages, list) or not any(_has_extension(m) for m in messages):
        return request
    return {**request, "messages": [_message(m, i, provider_type, own=False) for i, m in enumerate(messages)]}


def _has_extension(msg: Any) -> bool:
    if not isinstance(msg, dict):
        return False
    content = msg.get("content")
    return "is_error" in msg or (isinstance(content, list) and any(_compat_rewritten(p) for p in content))


def _compat_rewritten(part: Any) -> bool:
    """A part an OpenAI-compatible server gets rewritten or checked: a document, or media to read."""
    kind = part.get("type") if isinstance(part, dict) else None
    return kind == "document" or (kind in _MEDIA_PARTS and _unread_media(part))
