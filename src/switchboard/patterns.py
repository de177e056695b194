"""Regular expressions the gateway did not write (an operator's routing rule or redaction
pattern, a tenant's JSON schema, an MCP server's), run against text a caller sent.

Python's ``re`` can backtrack for hours on such a pair (``.*(urgent|asap).*`` over a long line
holding neither is quadratic, ``^(a|a)*$`` exponential) while it holds the interpreter lock, so
neither a thread nor a deadline around it would help. The ``regex`` engine avoids most of those
blow-ups and stops at a timeout; :func:`bounded` makes the matches inside it share one bound, so
a hundred patterns cost no more time than one (only the matching counts: a validation of ten
thousand rows, each matched at once, is not refused for the work between the matches).
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

import regex

T = TypeVar("T")
# The seconds left to the matches of the running bound (a list: the matches inside subtract
# what they took); None outside one.
_left: ContextVar[list[float] | None] = ContextVar("_left", default=None)


@contextmanager
def bounded(seconds: float) -> Iterator[None]:
    """The matches inside share ``seconds`` of matching in all (only the time spent matching
    counts, not the work between matches; an outer bound already running is kept)."""
    if _left.get() is not None:
        yield
        return
    token = _left.set([seconds])
    try:
        yield
    finally:
        _left.reset(token)


def search(pattern: str | regex.Pattern[str], text: str, default: float) -> regex.Match[str] | None:
    """``regex.search`` for at most ``default`` seconds and within what is left of the bound;
    TimeoutError past either, ``regex.error`` for a pattern that is not one."""
    compiled = pattern if isinstance(pattern, regex.Pattern) else _compiled(pattern)
    return timed(lambda timeout: compiled.search(text, timeout=timeout), default)


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> regex.Pattern[str]:
    # regex.search(str) looks its compiled form up at about twice a compiled search's cost.
    return regex.compile(pattern)


def timed(match: Callable[[float], T], default: float) -> T:
    """``match(timeout)``, the timeout ``default`` or what is left of the running bound if less,
    the time it took taken from the bound; TimeoutError once the bound is spent."""
    left = _left.get()
    if left is None:
        return match(default)
    if left[0] <= 0:
        raise TimeoutError
    began = time.monotonic()
    try:
        return match(min(left[0], default))
    finally:
        left[0] -= time.monotonic() - began


# A count as Python's re reads one (``{3}``, ``{2,}``, ``{,5}``, ``{,}``); any other ``{`` it
# reads as the character, where the regex engine would read fuzzy matching (``ticket{s}``).
_COUNT = re.compile(r"\{(?:\d+|\d*,\d*)\}")


def compile_as_re(pattern: str) -> regex.Pattern[str]:
    """``pattern`` with the meaning Python's ``re`` gives it (the syntax operators write, and
    that their configuration was checked with), compiled by the ``regex`` engine. re.error for
    what re refuses; regex.error for the little re accepts and regex cannot run."""
    re.compile(pattern)
    return regex.compile(_braces_as_re(pattern))


def _braces_as_re(pattern: str) -> str:
    """``pattern`` with each ``{`` that re reads as the character escaped (outside character
    classes and escapes, where both engines read braces alike)."""
    if "{" not in pattern:
        return pattern
    out: list[str] = []
    i, n, in_class = 0, len(pattern), False
    while i < n:
        c = pattern[i]
        if c == "\\":
            end = pattern.find("}", i) + 1 if pattern.startswith("N{", i + 1) else i + 2
            out.append(pattern[i:end or n])
            i = end or n
        elif in_class:
            in_class = c != "]"
            out.append(c)
            i += 1
        elif c == "[":
            start = i + 1 + pattern.startswith("^", i + 1)
            start += pattern.startswith("]", start)  # a ] first in a class is the character
            out.append(pattern[i:start])
            in_class, i = True, start
        elif c == "{" and _COUNT.match(pattern, i) is None:
            out.append("\\{")
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)
