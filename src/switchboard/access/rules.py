"""Which models a caller may use: model names and ``*`` patterns (``gpt-4o*``, ``*``)."""

from __future__ import annotations

from fnmatch import fnmatchcase


def model_allowed(model: str, allowed: tuple[str, ...] | None) -> bool:
    """None allows every model; otherwise a name must equal or match one of the patterns."""
    if allowed is None:
        return True
    return any(model == pattern or ("*" in pattern and fnmatchcase(model, pattern)) for pattern in allowed)
