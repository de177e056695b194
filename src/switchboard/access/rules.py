"""Which models a caller may use: model names and ``*`` patterns (``gpt-4o*``, ``*``)."""

from __future__ import annotations

from fnmatch import fnmatchcase
from functools import lru_cache


@lru_cache(maxsize=4096)
def _rule(allowed: tuple[str, ...]) -> tuple[frozenset[str], tuple[str, ...]]:
    """(exact names, patterns), worked out once per distinct list (keys share few lists)."""
    return frozenset(p for p in allowed if "*" not in p), tuple(p for p in allowed if "*" in p)


def model_allowed(model: str, allowed: tuple[str, ...] | None) -> bool:
    """None allows every model; otherwise a name must equal or match one of the patterns."""
    if allowed is None:
        return True
    exact, patterns = _rule(allowed)
    if model in exact:
        return True
    # Most lists have no pattern: no generator for them.
    return bool(patterns) and _matches(model, patterns)


def _matches(model: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``model`` matches one of ``patterns``. A function of its own: the generator made
    ``model`` a cell of ``model_allowed`` on every call."""
    return any(fnmatchcase(model, pattern) for pattern in patterns)


def within(entry: str, allowed: tuple[str, ...] | None) -> bool:
    """Whether every model the name or pattern ``entry`` allows is also allowed by ``allowed``:
    what a caller may grant is at most what it may use. A pattern is within a pattern only when
    that is certain: the same pattern, or ``<prefix>*`` where ``entry`` starts with that prefix
    (``gpt-4o*`` is within ``gpt-*``; ``*-mini`` is within ``*`` only)."""
    if allowed is None:
        return True
    if "*" not in entry:
        return model_allowed(entry, allowed)
    if entry in allowed:
        return True
    for pattern in allowed:
        prefix = pattern[:-1]
        if pattern.endswith("*") and not any(c in prefix for c in "*?[") and entry.startswith(prefix):
            return True
    return False
