"""Documents in a request, for the token estimate: Anthropic ``document`` blocks (carried as
canonical ``document`` parts) and ``file`` parts with inline ``file_data`` (OpenAI's, and Gemini's
inline PDFs). A text document counts as its text, a PDF by its pages (docs/tokens.md, "Documents").

Pages are the PDF's page objects, ``/Type /Page`` (not ``/Pages``, the nodes of the page tree), in
the decoded bytes, and in its compressed object streams (PDF 1.5 and later keep most objects
there). At most SCAN_BYTES are decoded and read, only when a PDF is in the request: a longer file
is read at its start and its end, and its count scaled to its whole size.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from switchboard import media_urls

# Anthropic's PDF support guide ("Estimate your costs"): a page costs its extracted text, typically
# 1,500 to 3,000 tokens, plus the page as an image (the vision rule: up to 1,568 at the standard
# resolution). 3,000 is the low end of the text plus a full-size page image, rounded down: above
# what users measure for dense text pages (2,100 to 2,800), below the sum of the two upper ends
# (4,600), which would hold a token limit twice over for most documents.
PDF_PAGE_TOKENS = 3000
# How much of a PDF is decoded and read looking for pages (and decompressed from object streams).
SCAN_BYTES = 8 * 1024 * 1024

# A page object's type; a PDF name ends at whitespace or a delimiter, so /Pages does not match.
_PAGE = re.compile(rb"/Type\s{0,8}/Page(?![^\s/<>\[\]()%{}])")
_OBJECT_STREAM = re.compile(rb"/Type\s{0,8}/ObjStm(?![^\s/<>\[\]()%{}])")
_STREAM = re.compile(rb"stream\r?\n")


@dataclass(frozen=True, slots=True)
class Pdf:
    data: str  # base64, from ``start`` on
    start: int = 0


Found = tuple[list[str], Pdf | None]


def read_document(part: Mapping[str, Any]) -> Found | None:
    """The texts (title, context, body) and the PDF of a ``document`` part; None when its content
    is not in the request (a URL or file source) or the part is malformed (the adapter refuses it)."""
    doc = part.get("document")
    source = doc.get("source") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or not isinstance(source, dict):
        return None
    texts = [value for key in ("title", "context") if isinstance(value := doc.get(key), str)]
    kind, data = source.get("type"), source.get("data")
    if kind == "text" and isinstance(data, str):
        return [*texts, data], None
    if kind == "content":
        content = source.get("content")
        if isinstance(content, str):
            return [*texts, content], None
        blocks = content if isinstance(content, list) else ()
        texts += (b["text"] for b in blocks if isinstance(b, dict) and isinstance(b.get("text"), str))
        return texts, None
    if kind == "base64" and isinstance(data, str):
        given = source.get("media_type")
        media = media_urls.media_type(given) if isinstance(given, str) and given else "application/pdf"
        return _inline(texts, media, data, 0)
    return None


def read_file(part: Mapping[str, Any]) -> Found | None:
    """The text or PDF of a ``file`` part's inline ``file_data`` (a data URL); None for a file id,
    a URL, or another type of file."""
    file = part.get("file")
    url = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(url, str):
        return None
    found = media_urls.data_type(url)
    return None if found is None else _inline([], found[0], url, found[1])


def _inline(texts: list[str], media: str, data: str, start: int) -> Found | None:
    if media.startswith("text/"):
        try:
            return [*texts, base64.b64decode(data[start:]).decode("utf-8", "replace")], None
        except (binascii.Error, ValueError):
            return None
    if media == "application/pdf":
        return texts, Pdf(data, start)
    return None


def pdf_tokens(pdf: Pdf) -> int:
    return pdf_pages(pdf) * PDF_PAGE_TOKENS


def pdf_pages(pdf: Pdf) -> int:
    """The pages of a base64 PDF; at least 1 (a PDF whose pages cannot be found counts as one).

    A PDF over SCAN_BYTES is read at its start and its end (where writers put the object streams
    and the page tree), and the page objects found outside object streams are scaled to its whole
    size; those inside object streams are all of them already."""
    encoded = len(pdf.data) - pdf.start
    half = SCAN_BYTES // 2 // 3 * 4  # base64 characters of half the bytes read
    end = len(pdf.data)
    spans = [(pdf.start, end)] if encoded <= 2 * half else [(pdf.start, pdf.start + half), (end - half, end)]
    plain = packed = 0
    for begin, stop in spans:
        try:
            raw = base64.b64decode(pdf.data[begin:stop])
        except (binascii.Error, ValueError):
            return 1
        plain += len(_PAGE.findall(raw))
        packed += _packed_pages(raw, SCAN_BYTES // len(spans))
    read = sum(stop - begin for begin, stop in spans)
    if read < encoded:
        plain = math.ceil(plain * encoded / read)
    return max(1, plain + packed)


def _packed_pages(raw: bytes, left: int) -> int:
    """Page objects inside the compressed object streams (Flate) of ``raw``, decompressing at
    most ``left`` bytes in all."""
    pages = 0
    for found in _OBJECT_STREAM.finditer(raw):
        begin = _STREAM.search(raw, found.end())
        end = raw.find(b"endstream", begin.end()) if begin is not None else -1
        if begin is None or end < 0 or left <= 0:
            continue
        try:
            text = zlib.decompressobj().decompress(raw[begin.end() : end], left)
        except zlib.error:
            continue
        left -= len(text)
        pages += len(_PAGE.findall(text))
    return pages
