"""A third-party module imported on first use, then held: for libraries only some configurations
need (jsonschema for prompts, prompt APIs and MCP tools), which would otherwise cost every
``switchboard serve`` their import at start. The first call imports (as ``import`` would, once per
process); later calls return the module held, with no import machinery on the request path.

Only for third-party modules: the gateway's own are imported by name where needed, so that
``lint-imports`` sees the edge."""

from __future__ import annotations

import importlib
from typing import Any


class Lazy:
    __slots__ = ("_module", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: Any = None

    def __call__(self) -> Any:
        """The module (typed Any: its attributes are read as the library documents them)."""
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return module
