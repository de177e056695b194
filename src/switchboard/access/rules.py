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
    return model in exact or any(fnmatchcase(model, pattern) for pattern in patterns)
