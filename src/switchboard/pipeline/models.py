"""Terminals of ``models`` and ``model``: the models this gateway serves, in OpenAI's list shape.

The entries are built once at start-up (name, owner and the catalog's public fields). A caller
whose key allows only some models sees only those; another model is "not found" to it.
"""

from __future__ import annotations

from typing import Any

from switchboard.access.rules import model_allowed
from switchboard.context import Reply, RequestContext, Result
from switchboard.errors import ModelNotFound

ModelEntry = dict[str, Any]


class ModelDirectory:
    def __init__(self, entries: list[ModelEntry]) -> None:
        self._entries = entries
        self._by_id = {entry["id"]: entry for entry in entries}
        self._list = {"object": "list", "data": entries}

    async def list(self, ctx: RequestContext) -> Result:
        allowed = ctx.principal.allowed_models if ctx.principal else None
        if allowed is None:
            return Reply(self._list)
        mine = [entry for entry in self._entries if model_allowed(entry["id"], allowed)]
        return Reply({"object": "list", "data": mine})

    async def get(self, ctx: RequestContext) -> Result:
        """``GET /v1/models/{id}``; the id may contain slashes (``org/model``)."""
        name = ctx.path.split("/models/", 1)[1]
        entry = self._by_id.get(name)
        allowed = ctx.principal.allowed_models if ctx.principal else None
        if entry is None or not model_allowed(name, allowed):
            shown = name if len(name) <= 200 else name[:200] + "..."
            raise ModelNotFound(f"the model '{shown}' does not exist or you do not have access to it")
        return Reply(entry)
