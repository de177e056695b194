"""Terminals of ``models`` and ``model``: the models this gateway serves, in OpenAI's list shape.

The entries come from the live model table's snapshot (name, owner and the catalog's public
fields), so a model added or removed at run time shows at once. A caller whose key allows only
some models sees only those; another model is "not found" to it.
"""

from __future__ import annotations

from switchboard.access.rules import model_allowed
from switchboard.context import Reply, RequestContext, Result
from switchboard.errors import ModelNotFound
from switchboard.routing.live import ModelEntry
from switchboard.routing.router import Table

__all__ = ["ModelDirectory", "ModelEntry"]


class ModelDirectory:
    def __init__(self, table: Table) -> None:
        self._table = table

    async def list(self, ctx: RequestContext) -> Result:
        snapshot = self._table.current
        allowed = ctx.principal.allowed_models if ctx.principal else None
        if allowed is None:
            return Reply(snapshot.listing)
        mine = [entry for entry in snapshot.directory if model_allowed(entry["id"], allowed)]
        return Reply({"object": "list", "data": mine})

    async def get(self, ctx: RequestContext) -> Result:
        """``GET /v1/models/{id}``; the id may contain slashes (``org/model``)."""
        name = ctx.path.split("/models/", 1)[1]
        entry = self._table.current.by_id.get(name)
        allowed = ctx.principal.allowed_models if ctx.principal else None
        if entry is None or not model_allowed(name, allowed):
            shown = name if len(name) <= 200 else name[:200] + "..."
            raise ModelNotFound(f"the model '{shown}' does not exist or you do not have access to it")
        return Reply(entry)
