"""The template sandbox (prompts/templates.py), imported on first use: it loads Jinja2 (tens of
milliseconds), which a gateway whose callers never use a prompt need not pay at every start.
The request path and the admin API reach it through :func:`templates`, which imports it once
and then returns the module held."""

from __future__ import annotations

from typing import Any

# Imported here, at start, for the metrics' code labels (see prompts/errors.py).
from switchboard.prompts import errors as errors

_templates: Any = None


def templates() -> Any:
    """prompts/templates.py (typed Any: its functions are called as that module defines them)."""
    global _templates
    if _templates is None:
        from switchboard.prompts import templates as module  # first use only (see above)

        _templates = module
    return _templates
