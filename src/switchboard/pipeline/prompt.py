"""Prompts from chat: a request naming a registry prompt gets its messages (docs/prompts.md).

``/v1/chat/completions`` and ``/v1/messages`` accept ``{"prompt": {"id": name, "label": L |
"version": N, "variables": {...}}, "messages": [...extra...], ...}``. Right after decoding, this
stage resolves the prompt in the caller's tenant (cached: no database query per request,
prompts/cache.py), checks the variables against the prompt's schema (400 naming each invalid
field), renders its messages in the sandbox and puts them before the caller's messages, sets the
bound model when the caller named none, and applies the prompt's default parameters the caller
did not set. The inbound API may merge in its own terms (``with_prompt``: the Anthropic Messages
API rewrites its body, so a pass-through exchange sends the same). The call then goes through
the usual stages; its usage record names the prompt and version (``metadata.prompt``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from switchboard.config.prompts import PromptsConfig
from switchboard.context import RequestContext, Result
from switchboard.errors import InvalidRequest, NotFound
from switchboard.pipeline.chain import Handler
from switchboard.prompts import bounds
from switchboard.prompts.cache import PromptCache
from switchboard.prompts.reference import PromptRef, check_variables_size, parse_reference
from switchboard.prompts.sandbox import templates
from switchboard.stores import Stores
from switchboard.stores.protocols import PromptVersion

DEFAULT_TENANT = "default"
OUTPUT_LIMITS = ("max_tokens", "max_completion_tokens")


def invalid_variables(invalid: list[tuple[str, str]], prefix: str = "prompt.variables") -> InvalidRequest:
    """400 ``invalid_variables`` naming each invalid variable (``param``: the first)."""
    named = "; ".join(f"{path or '(variables)'}: {message}" for path, message in invalid)
    first = invalid[0][0]
    return InvalidRequest(f"invalid variables: {named}", param=f"{prefix}.{first}" if first else prefix,
                          code="invalid_variables")


class PromptStage:
    name = "prompt"

    def __init__(self, settings: PromptsConfig, stores: Callable[[], Stores | None],
                 max_variables_bytes: int) -> None:
        self._settings = settings
        # apis.max_body_bytes: what a prompt API's call may send as its variables.
        self._max_variables_bytes = max_variables_bytes
        self._stores = stores
        self._cache: PromptCache | None = None
        self._lock = asyncio.Lock()
        bounds.configure(settings.max_rendered_chars, settings.max_loop_iterations,
                         settings.max_render_seconds)

    async def cache(self) -> PromptCache:
        """The cache, started on the first request naming a prompt."""
        if self._cache is None:
            async with self._lock:
                if self._cache is None:
                    stores = self._stores()
                    if stores is None or stores.prompts is None:
                        raise NotFound("this gateway has no prompt registry", param="prompt.id",
                                       code="prompt_not_found")
                    cache = PromptCache(stores.prompts, stores.feed, ttl=self._settings.cache_seconds)
                    await cache.start()
                    self._cache = cache
        return self._cache

    async def close(self) -> None:
        if self._cache is not None:
            await self._cache.close()
            self._cache = None

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        # Chat only: the legacy completions API has a ``prompt`` of its own (the text).
        ref = ctx.request.pop("prompt", None) if ctx.operation == "chat" else None
        if ref is not None:
            await self.apply(ctx, ref if isinstance(ref, PromptRef) else parse_reference(ref))
        return await call_next(ctx)

    async def resolve(self, tenant: str, ref: PromptRef) -> PromptVersion:
        found = await (await self.cache()).resolve(tenant, ref.name, version=ref.version, label=ref.label)
        if found is None:
            what = (f" version {ref.version}" if ref.version is not None
                    else f" label '{ref.label}'" if ref.label is not None else "")
            raise NotFound(f"no prompt '{ref.name}'{what}", param="prompt.id", code="prompt_not_found")
        return found

    async def apply(self, ctx: RequestContext, ref: PromptRef) -> None:
        principal = ctx.principal
        tenant = (principal.tenant_id if principal is not None else None) or DEFAULT_TENANT
        if ref.variables:
            check_variables_size(ref.variables, self._max_variables_bytes, "prompt.variables")
        version = await self.resolve(tenant, ref)
        sandbox = templates()  # imported on the first prompt named (prompts/sandbox.py)
        invalid = sandbox.validate_variables(version.variables, ref.variables)
        if invalid:
            raise invalid_variables(invalid)
        rendered = await sandbox.render_async(version, ref.variables)
        ctx.expanded = True
        merge = getattr(ctx.inbound, "with_prompt", None)
        if merge is not None:
            merge(ctx, rendered, version.model, dict(version.params))
        else:
            merged(ctx.request, rendered, version)
        ctx.usage_metadata = {**(ctx.usage_metadata or {}),
                              "prompt": {"name": version.name, "version": version.version}}


def merged(request: dict[str, Any], rendered: list[dict[str, Any]], version: PromptVersion) -> None:
    """A canonical (chat completions) request with the prompt in it, in place."""
    request["messages"] = [*rendered, *(request.get("messages") or [])]
    if not request.get("model"):
        request["model"] = version.model
    # max_tokens and max_completion_tokens are one limit under two names (the adapters read
    # either, max_completion_tokens first): a caller that set it under one name has set it.
    caller_limit = any(request.get(k) is not None for k in OUTPUT_LIMITS)
    for key, value in version.params.items():
        if request.get(key) is None and not (caller_limit and key in OUTPUT_LIMITS):
            request[key] = value
