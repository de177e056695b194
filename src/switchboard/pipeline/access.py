"""Access rules: may this caller use the model it asked for?

Runs after decoding and before routing, so a model the caller may not use is refused (403
``model_not_allowed``) whether or not it exists, and nothing is routed for it.
"""

from __future__ import annotations

from switchboard.access.rules import model_allowed
from switchboard.context import RequestContext, Result
from switchboard.errors import PermissionDenied
from switchboard.pipeline.chain import Handler


class ModelAccessStage:
    name = "model_access"

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        principal = ctx.principal
        if principal is not None and principal.allowed_models is not None:
            refuse_unless_allowed(ctx.request.get("model"), principal.allowed_models)
        return await call_next(ctx)


def refuse_unless_allowed(model: object, allowed: tuple[str, ...]) -> None:
    """403 ``model_not_allowed`` unless ``model`` is one of the key's ``allowed`` models."""
    if not isinstance(model, str) or not model_allowed(model, allowed):
        shown = model if isinstance(model, str) and len(model) <= 200 else "(invalid)"
        raise PermissionDenied(
            f"you may not use the model '{shown}'", param="model", code="model_not_allowed"
        )
