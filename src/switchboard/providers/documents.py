"""Canonical ``document`` parts (docs/providers.md, "Canonical extensions": an Anthropic document
block carried as written) read for the adapters whose provider has no such block.

A document is either plain text (source ``text``, ``content`` made of text blocks, or ``base64``
with a ``text/*`` media type, decoded) or binary (other ``base64`` sources: a media type and the
base64 data, e.g. a PDF). Adapters send text documents as text (:func:`as_text`: the title, then
the text) and binary ones in the provider's own file block, or refuse them. ``url`` sources (and
anything else) are a 400: the gateway does not fetch documents. ``context`` and ``citations`` have
no equivalent outside Anthropic: the text is sent without them (documented per provider).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from switchboard import media_urls
from switchboard.errors import InvalidRequest
from switchboard.providers.base import JSON


@dataclass(frozen=True, slots=True)
class Document:
    title: str | None
    text: str | None = None  # plain-text documents
    media_type: str = ""  # binary documents: the media type and the base64 data
    data: str = ""


def is_document(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") == "document"


def read(part: JSON, where: str, provider_type: str) -> Document:
    """The document of a canonical ``{"type": "document", "document": {...}}`` part at ``where``
    (e.g. ``messages[0].content[1]``); a 400 naming it when it is malformed or not usable."""
    doc = part.get("document")
    source = doc.get("source") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or not isinstance(source, dict):
        raise InvalidRequest("a document part needs 'document': {'source': {...}}", param=f"{where}.document")
    title = doc.get("title") if isinstance(doc.get("title"), str) and doc.get("title") else None
    kind, data, param = source.get("type"), source.get("data"), f"{where}.document.source"
    if kind == "text":
        if not isinstance(data, str):
            raise InvalidRequest("a text document's data must be a string", param=f"{param}.data")
        return Document(title, text=data)
    if kind == "content":
        return Document(title, text=_content_text(source.get("content"), f"{param}.content"))
    if kind == "base64":
        if not isinstance(data, str) or not data:
            raise InvalidRequest("a base64 document's data must be a non-empty string of base64",
                                 param=f"{param}.data")
        return _base64(title, source, data, param)
    raise InvalidRequest(
        f"document source type {kind!r} is not supported by provider type '{provider_type}' "
        "(send base64 data or text)",
        param=f"{param}.type",
    )


def as_text(doc: Document) -> str:
    text = doc.text or ""
    return f"{doc.title}\n\n{text}" if doc.title else text


def text_of(part: JSON, where: str, provider_type: str) -> str:
    """A document part as text; a binary document is a 400 (for providers that take text only)."""
    doc = read(part, where, provider_type)
    if doc.text is None:
        raise InvalidRequest(
            f"{doc.media_type} documents are not supported by provider type '{provider_type}'; "
            "send plain-text documents",
            param=f"{where}.document.source",
        )
    return as_text(doc)


def _content_text(content: Any, param: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(b, dict) and b.get("type") == "text"
                                         and isinstance(b.get("text"), str) for b in content):
        return "\n".join(b["text"] for b in content)
    raise InvalidRequest("a content document holds a string or text blocks only", param=param)


def _base64(title: str | None, source: JSON, data: str, param: str) -> Document:
    given = source.get("media_type")
    media = given if isinstance(given, str) and given else "application/pdf"  # Anthropic's one binary type
    # The rule every provider's media is held to, read without decoding: only text is decoded.
    if not media_urls.is_base64(data):
        raise InvalidRequest("document data is not valid base64", param=f"{param}.data")
    if media.startswith("text/"):
        try:
            return Document(title, text=base64.b64decode(data).decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidRequest(f"a {media} document must be UTF-8 text", param=f"{param}.data") from None
    return Document(title, media_type=media, data=data)
