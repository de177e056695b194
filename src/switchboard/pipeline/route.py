"""Resolve the requested model to its group and the order in which its deployments are tried.

The model table is the live snapshot (routing/live.py): one attribute read per request, and the
request keeps the group and routes it got even if the table is swapped meanwhile. The attempts
stage (pipeline/attempts.py) tries ``ctx.candidates`` in order; ``ctx.route`` is the first
until then, so the stages in between (limits, budgets) see the deployment most likely to serve.
"""

from __future__ import annotations

import asyncio

from switchboard.context import RequestContext, Result
from switchboard.errors import ModelNotFound
from switchboard.limits.estimate import max_output_tokens
from switchboard.pipeline.chain import Handler
from switchboard.routing.groups import TOKEN_STRATEGIES, Group
from switchboard.routing.pinning import PIN_DEPLOYMENT, PIN_STRATEGY, pinned, unfit_pin
from switchboard.routing.router import ANYWHERE, Needs, Router
from switchboard.routing.table import Route
from switchboard.tokens import largest_input


class RouteStage:
    name = "route"

    def __init__(self, router: Router) -> None:
        self._router = router

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        model = ctx.request.get("model")
        group = self._router.group(model) if isinstance(model, str) else None
        if group is None:
            shown = model if isinstance(model, str) and len(model) <= 200 else "(invalid)"
            raise ModelNotFound(
                f"the model '{shown}' does not exist or you do not have access to it", param="model"
            )
        ctx.group = group
        # A deployment whose cooldown has just ended, in a cluster: its probe claimed in Redis
        # first, so this request may be the probe (None when nothing is out: no wait).
        claims = self._router.claims(group)
        if claims is not None:
            await claims
        # A large body's tokens (a long prompt, thousands of messages, an embeddings batch) take
        # from milliseconds to seconds to count: that runs in a worker thread (tiktoken releases
        # the GIL, and the walk over the messages is preempted), not on the loop serving every
        # other request. A small body's stays inline: no thread hop on the common path.
        if not ctx.large():
            ctx.needs = self._needs(ctx, group)
        else:
            ctx.needs = await asyncio.to_thread(self._needs, ctx, group)
        headers = ctx.headers
        if PIN_DEPLOYMENT in headers or PIN_STRATEGY in headers:
            candidates = pinned(self._router, group, ctx.needs, headers)
            if not candidates:  # refused outright, without fallbacks, when it may never serve
                ctx.refusal = unfit_pin(self._router, group, ctx.needs, headers)
        else:
            candidates = self._router.plan(group, ctx.needs)
        if ctx.prefer_deployment is not None:
            candidates = _first(candidates, ctx.prefer_deployment)
        ctx.candidates = candidates
        # No candidate (all cooling down, none in region...): the attempts stage turns to the
        # group's fallbacks or refuses; the stages in between price the group's first.
        ctx.route = candidates[0] if candidates else group.deployments[0]
        return await call_next(ctx)

    def _needs(self, ctx: RequestContext, group: Group) -> Needs:
        """The caller's allowed regions, and the tokens the request needs: counted when some
        deployment of the group has a known context window, or when the strategy ranks by them
        (cost, headroom); a group without either pays nothing for this."""
        principal = ctx.principal
        regions = principal.allowed_regions if principal is not None else None
        windows = self._router.windows
        smallest = windows.smallest(group) if windows is not None else None
        if smallest is None:
            if not _ranks_by_tokens(ctx, group):
                return ANYWHERE if regions is None else Needs(regions)
            prompt, output = self._count(ctx, group)
            return Needs(regions, None, prompt, output)  # no window to check
        if _fits_uncounted(ctx, group, smallest):
            return ANYWHERE if regions is None else Needs(regions)
        prompt, output = self._count(ctx, group)
        if ctx.operation == "embeddings":
            model = ctx.route.target.model if ctx.route is not None else None
            return Needs(regions, largest_input(ctx.request, model=model), prompt, output, per_input=True)
        return Needs(regions, prompt + (output or 0), prompt, output)

    @staticmethod
    def _count(ctx: RequestContext, group: Group) -> tuple[int, int | None]:
        """The prompt estimate and the output bound (None: the request gives none)."""
        ctx.route = group.deployments[0]  # the prompt is counted with its encoding
        return ctx.prompt_tokens_estimate(), max_output_tokens(ctx) or None


def _ranks_by_tokens(ctx: RequestContext, group: Group) -> bool:
    """Whether the strategy that will order ``group`` for this request needs the token count:
    cost or headroom, the group's or a caller's pin (where the group allows pins), over more
    than one deployment (a group of one is never ordered)."""
    if group.ranks_by_tokens:
        return True
    return (group.allow_pinning and len(group.deployments) > 1
            and ctx.headers.get(PIN_STRATEGY) in TOKEN_STRATEGIES)


def _fits_uncounted(ctx: RequestContext, group: Group, smallest: int) -> bool:
    """Whether the request surely fits every known window without counting its tokens: a text
    token is at least one byte of the body, whose JSON also outweighs the per-message tokens;
    images, audio, files and documents stand for more tokens than their bytes, so are counted.
    Only when the body is the whole prompt: not once the gateway added to it (a stored
    conversation, a registry prompt). Not for strategies that need the count (cost, headroom)
    nor for a strategy pin."""
    body = ctx.body
    if (ctx.expanded or len(body) + max_output_tokens(ctx) > smallest
            or group.strategy in TOKEN_STRATEGIES):
        return False
    headers = ctx.headers
    # find() rather than ``in``: bytes ``in`` bytes first tries its operand as an integer.
    return (PIN_STRATEGY not in headers and body.find(b"image") < 0 and body.find(b"audio") < 0
            and body.find(b"file") < 0 and body.find(b"document") < 0)


def _first(candidates: list[Route], deployment: str) -> list[Route]:
    """``deployment`` moved to the front, if it may serve the request at all."""
    for i, route in enumerate(candidates):
        if route.deployment == deployment:
            return [route, *candidates[:i], *candidates[i + 1:]] if i else candidates
    return candidates
