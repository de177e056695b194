"""Redaction of what the request log keeps: header values, JSON fields and text patterns.

Built once from ``request_log.redact`` (patterns compiled at start) and applied to a body before
it leaves the request, so the write queue and the database only ever hold redacted text:

- headers: the value of every listed header (case-insensitive), and always of the credential
  headers (``ALWAYS_REDACTED_HEADERS`` and the header of callers' own provider credentials),
  becomes ``[REDACTED]``; the patterns apply to the rest;
- fields: a name without a dot is a JSON key at any depth (``ssn``); a dotted name is a path from
  the top (``messages.content``), lists walked through; the whole value becomes ``[REDACTED]``;
- patterns: searched in every string value left (keys are kept); each match becomes
  ``[REDACTED]``. Each pattern runs on its own, as ``config check`` compiled it (inline flags,
  group numbers and names are the pattern's own); matches of several that overlap become one
  ``[REDACTED]``. They run with the ``regex`` engine under ``REDACT_SECONDS`` for a whole body (or
  the headers) in all (switchboard/patterns.py): a string not searched in time is kept out whole.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

import regex

from switchboard import patterns
from switchboard.config.schema import ALWAYS_REDACTED_HEADERS, RedactConfig, compile_pattern
from switchboard.upstream.request import header_text

REDACTED = "[REDACTED]"
# The patterns' time for one body (or one request's headers) in all: an operator's
# ``.*password.*`` over a long line of JSON text was quadratic in Python's re.
REDACT_SECONDS = 0.25


class Redactor:
    def __init__(self, config: RedactConfig, credential_headers: Iterable[str] = ()) -> None:
        """``credential_headers``: more headers that always carry a credential (the header of
        callers' own provider credentials, ``auth.caller_credentials.header``)."""
        self._headers = frozenset(h.lower() for h in (*ALWAYS_REDACTED_HEADERS, *credential_headers,
                                                      *config.headers))
        self._keys = frozenset(f for f in config.fields if "." not in f)
        # Dotted paths as a tree: {"messages": {"content": {"": True}}}; "" marks a path's end.
        self._paths: dict[str, Any] = {}
        for name in config.fields:
            if "." in name:
                node = self._paths
                for part in name.split("."):
                    node = node.setdefault(part, {})
                node[""] = True
        # Not joined into one alternation: a pattern's (?i) or \1 would mean something else there.
        self._patterns: tuple[regex.Pattern[str], ...] = tuple(compile_pattern(p) for p in config.patterns)

    @property
    def fields(self) -> bool:
        """Whether any JSON field is redacted (``fields``)."""
        return bool(self._keys or self._paths)

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        # Values as their senders wrote them (UTF-8), not the edge's latin-1 reading: what the
        # log shows and what the patterns search.
        with patterns.bounded(REDACT_SECONDS):
            return {name: REDACTED if name.lower() in self._headers else self._text(header_text(value))
                    for name, value in headers.items()}

    def text(self, value: str) -> str:
        if not self._patterns:
            return value
        with patterns.bounded(REDACT_SECONDS):
            return self._text(value)

    def _text(self, value: str) -> str:
        if not self._patterns:
            return value
        # Every pattern's matches in the original text (one pass each; an empty match hides
        # nothing), merged where they overlap, then replaced in one rebuild.
        spans: list[tuple[int, int]] = []
        try:
            for pattern in self._patterns:
                spans += patterns.timed(functools.partial(_spans, pattern, value), REDACT_SECONDS)
        except TimeoutError:
            return REDACTED  # not searched in time: kept out whole, never kept with what it may hold
        if not spans:
            return value
        spans.sort()
        out: list[str] = []
        pos = 0
        for start, end in spans:
            if start < pos:  # overlaps the previous replacement: extend it
                pos = max(pos, end)
                continue
            out += (value[pos:start], REDACTED)
            pos = end
        out.append(value[pos:])
        return "".join(out)

    def json(self, value: Any) -> Any:
        """A redacted copy of a parsed JSON value (the input is left as it was)."""
        if not self._patterns:
            return self._walk(value, self._paths)
        with patterns.bounded(REDACT_SECONDS):
            return self._walk(value, self._paths)

    def _walk(self, value: Any, paths: dict[str, Any] | None) -> Any:
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, list):
            return [self._walk(item, paths) for item in value]  # a path walks through lists
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                below = paths.get(key) if paths else None
                if key in self._keys or (below is not None and "" in below):  # listed key or path
                    out[key] = REDACTED
                else:
                    out[key] = self._walk(item, below)
            return out
        return value


def _spans(pattern: regex.Pattern[str], value: str, timeout: float) -> list[tuple[int, int]]:
    """Where ``pattern`` matches ``value`` (not empty matches). The GIL is let go while it runs
    (a large body is redacted in a worker thread)."""
    found = pattern.finditer(value, concurrent=True, timeout=timeout)
    return [m.span() for m in found if m.end() > m.start()]
