"""Credential references: ``env:NAME`` (an environment variable) or ``file:/path`` (a file's
content, surrounding whitespace removed), resolved when a provider's client is built. Errors
name the reference, never a value."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

_ENV = re.compile(r"^env:([A-Za-z_][A-Za-z0-9_]*)$")
MAX_FILE_BYTES = 64 * 1024


class RefError(Exception):
    """A reference that cannot be resolved; the message names it, never a secret."""


class BlankRef(RefError):
    """A reference that resolves, but to nothing or only whitespace: no credential to send."""


def is_ref(value: str) -> bool:
    return value.startswith(("env:", "file:"))


def check_ref(value: str) -> str | None:
    """Why ``value`` is not a well-formed reference (None when it is)."""
    if value.startswith("env:"):
        return None if _ENV.match(value) else "env: references name a variable: env:NAME"
    if value.startswith("file:"):
        path = value[5:]
        if path.startswith("/") and "\x00" not in path:
            return None
        return "file: references need an absolute path"
    return "a reference is env:NAME or file:/path"


def resolve(value: str, env: Mapping[str, str] | None = None) -> str:
    """The secret ``value`` stands for: itself unless it is a reference."""
    if not is_ref(value):
        return value
    problem = check_ref(value)
    if problem:
        raise RefError(problem)
    if value.startswith("env:"):
        name = value[4:]
        found = (os.environ if env is None else env).get(name)
        if found is None:
            raise RefError(f"environment variable {name} is not set")
        if not found.strip():
            raise BlankRef(f"environment variable {name} is empty or only whitespace")
        return found
    path = Path(value[5:])
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise RefError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    if len(data) > MAX_FILE_BYTES:
        raise RefError(f"{path} is larger than {MAX_FILE_BYTES} bytes")
    text = data.decode("utf-8", "replace").strip()
    if not text:
        raise BlankRef(f"{path} is empty or only whitespace")
    return text


def mask(secret: str) -> str:
    """How a stored credential is shown: ``sk-…abcd`` (never enough to use or guess it)."""
    if len(secret) < 12:
        return "…" if len(secret) < 6 else "…" + secret[-2:]
    head = secret[:3] if len(secret) >= 20 else ""
    return f"{head}…{secret[-4:]}"
