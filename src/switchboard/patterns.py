"""Regular expressions the gateway did not write (an operator's routing rule or redaction
pattern, a tenant's JSON schema, an MCP server's), run against text a caller sent.

Python's ``re`` can backtrack for hours on such a pair (``.*(urgent|asap).*`` over a long line
holding neither is quadratic, ``^(a|a)*$`` exponential) while it holds the interpreter lock, so
neither a thread nor a deadline around it would help. The ``regex`` engine avoids most of those
blow-ups and stops at a timeout; :func:`bounded` makes the matches inside it share one bound, so
a hundred patterns cost no more time than one (only the matching counts: a validation of ten
thousand rows, each matched at once, is not refused for the work between the matches). The bound
counts the thread's CPU time, not the clock's: what it guards is the interpreter held by matching,
and on a busy host the time the process waits for a core would otherwise refuse valid input.
"""

from __future__ import annotations

import functools
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
    began = time.thread_time()
    try:
        return match(min(left[0], default))
    finally:
        left[0] -= time.thread_time() - began
