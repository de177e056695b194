"""Environment variables read in place of a setting (the embedded default's master key): one set
but empty stops the command with one line, rather than being taken for one left unset. Light,
so the command line's entry point catches its error without loading the settings' schema."""

from __future__ import annotations

from collections.abc import Mapping


class VariableError(Exception):
    """A variable set to what cannot be used; the message names it, never its value."""


def set_value(env: Mapping[str, str], name: str, otherwise: str) -> str | None:
    """``env[name]``, None when unset; a VariableError when it is empty or only whitespace,
    most likely a deployment that meant to give it (``otherwise``: what unsetting it gives)."""
    value = env.get(name)
    if value is not None and not value.strip():
        raise VariableError(f"{name}: empty or only whitespace; set it, or unset it for {otherwise}")
    return value
