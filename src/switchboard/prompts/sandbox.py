"""The template sandbox (prompts/templates.py), imported on first use: it loads Jinja2 (tens of
milliseconds), which a gateway whose callers never use a prompt need not pay at every start.
The request path and the admin API reach it through :func:`templates`, which imports it once
and then returns the module held; :func:`preload` imports it ahead of the first use."""

from __future__ import annotations

from typing import Any

# Light, and imported at start anyway (mcp/toolbox.py): its libraries are held in Lazy names.
from switchboard.apis import schemas

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


def preload() -> None:
    """Import the sandbox (Jinja2) and the schema libraries its variables are checked with now.
    The gateway calls it in a worker thread once it has started, when prompts are stored
    (gateway.py, ``warm_imports``). A call of :func:`templates` on the event loop meanwhile
    waits on Python's import lock for this import to finish; it never imports a second time."""
    templates()
    schemas.preload()
