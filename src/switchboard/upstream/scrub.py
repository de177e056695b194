"""Credential scrubbing: upstream error text never carries a credential to a client or a log.

A provider may echo what it was sent ("Incorrect API key provided: Bearer sk-…"). Before any
adapter parses an upstream error body, every credential the gateway holds for that provider is
replaced by :data:`MARKER`, in its common forms: as is (with or without its ``Bearer`` scheme),
URL-encoded, JSON-escaped, HTML-escaped (a proxy's error page, whose entities are decoded when
its words become the message: providers/errors.py), and any run of at least :data:`ANCHOR`
characters from its start or its end (a provider that shortens the key it echoes).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus

import orjson

MARKER = b"[redacted]"
MIN_SECRET = 8  # shorter values are not treated as secrets (they would match ordinary words)
ANCHOR = 12  # fragments: this many characters of a secret's start or end, and what follows
_FRAGMENTS_FROM = 16  # secrets at least this long are also matched by their start or end

# Header names whose values are credentials; values that look like tokens count too.
_SECRET_NAME = re.compile(r"auth|key|token|secret|passw|signature|cookie|session|credential", re.I)
_SCHEME = re.compile(r"^(?:bearer|basic|token|apikey|key)\s+", re.I)
_TOKEN_LIKE = re.compile(r"^(?=.*[A-Za-z])(?=.*[0-9])\S{20,}$")


def header_secrets(headers: Mapping[str, str]) -> list[str]:
    """The values of ``headers`` that are, or look like, credentials, without a scheme such as
    ``Bearer`` (the bare value is what matters; matching it covers the prefixed form)."""
    found = []
    for name, value in headers.items():
        bare = _SCHEME.sub("", value.strip())
        if _SECRET_NAME.search(name) or _TOKEN_LIKE.match(bare):
            found.append(bare)
    return found


def forms(secrets: Iterable[str]) -> list[bytes]:
    """Every form of every secret to look for, longest first."""
    out: set[bytes] = set()
    for secret in secrets:
        if len(secret) < MIN_SECRET:
            continue
        out.update(
            {
                secret.encode(),
                quote(secret, safe="").encode(),
                quote_plus(secret).encode(),
                orjson.dumps(secret)[1:-1],
                secret.replace("/", "\\/").encode(),
                html.escape(secret).encode(),
                html.escape(secret, quote=False).encode(),
            }
        )
    return sorted(out, key=len, reverse=True)


def redact(body: bytes, needles: list[bytes]) -> bytes:
    """``body`` with every occurrence of a needle, or of a long start or end of one, replaced."""
    if not needles or not body:
        return body
    spans: list[tuple[int, int]] = []
    for needle in needles:
        if len(needle) < _FRAGMENTS_FROM:
            spans.extend(_exact(body, needle))
        else:
            spans.extend(_from_start(body, needle))
            spans.extend(_from_end(body, needle))
    if not spans:
        return body
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out = bytearray()
    pos = 0
    for start, end in merged:
        out += body[pos:start]
        out += MARKER
        pos = end
    out += body[pos:]
    return bytes(out)


def _exact(body: bytes, needle: bytes) -> Iterable[tuple[int, int]]:
    i = body.find(needle)
    while i != -1:
        yield i, i + len(needle)
        i = body.find(needle, i + len(needle))


def _from_start(body: bytes, needle: bytes) -> Iterable[tuple[int, int]]:
    head = needle[:ANCHOR]
    i = body.find(head)
    while i != -1:
        end, k = i + ANCHOR, ANCHOR
        while end < len(body) and k < len(needle) and body[end] == needle[k]:
            end, k = end + 1, k + 1
        yield i, end
        i = body.find(head, end)


def _from_end(body: bytes, needle: bytes) -> Iterable[tuple[int, int]]:
    tail = needle[-ANCHOR:]
    i = body.find(tail)
    while i != -1:
        start, k = i, len(needle) - ANCHOR
        while start > 0 and k > 0 and body[start - 1] == needle[k - 1]:
            start, k = start - 1, k - 1
        yield start, i + ANCHOR
        i = body.find(tail, i + ANCHOR)
