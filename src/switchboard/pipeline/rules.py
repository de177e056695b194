"""Conditional routing, splits and semantic routing (router.rules, router.splits,
router.semantic), tried in that order: choose the group a request goes to from what it carries,
before the route stage chooses the group's deployment.

A request for a name no rule or semantic router mentions costs one set lookup. The group chosen
must be one the caller may use (403 model_not_allowed otherwise, as if asked for by name); the
response says which rule chose it in ``x-switchboard-route``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from switchboard.access.rules import model_allowed
from switchboard.config.schema import RouterConfig
from switchboard.context import RequestContext, Result
from switchboard.errors import GatewayError, PermissionDenied, UnsupportedParameter
from switchboard.pipeline.attempts import AttemptAbandoned
from switchboard.pipeline.chain import Handler
from switchboard.routing.pinning import PIN_DEPLOYMENT, PIN_STRATEGY
from switchboard.routing.router import ANYWHERE, Needs, Router, Table
from switchboard.routing.rules import Rules, last_user_text
from switchboard.routing.semantic import Embed, SemanticChooser
from switchboard.routing.splits import SplitChooser
from switchboard.routing.table import Route
from switchboard.upstream.client import UpstreamReply
from switchboard.upstream.request import UpstreamRequest

ROUTE_HEADER = "x-switchboard-route"
SPLIT_HEADER = "x-switchboard-split"


class RulesStage:
    name = "rules"

    def __init__(self, config: RouterConfig, embed: Embed, table: Table) -> None:
        self._rules = Rules(config.rules)
        self._table = table  # splits live in the model table: their percents change at run time
        self._semantic = {s.model: SemanticChooser(s, embed) for s in config.semantic}

    def targets(self, model: str, every_arm: bool = False) -> list[str]:
        """Every group a request for ``model`` may be sent to, by the rules, the split or the
        semantic router of that name, or the name itself when none of them chooses.
        ``every_arm``: a split's arms at 0% too (their shares change at run time)."""
        out = self._chosen(model, every_arm)
        # Every arm's reach: the requested name too, where a request pinning its group stays
        # (_stays; a virtual name is no group, and reaches nothing more). Each name once.
        return list(dict.fromkeys([*out, model] if every_arm else out))

    def _chosen(self, model: str, every_arm: bool) -> list[str]:
        groups, final = self._rules.targets(model)
        if final:
            return groups
        split = self._table.current.splits.get(model)
        if split is not None:  # a split always chooses an arm: a group, or a deployment of its own
            # (An arm to the split's own group keeps a request through an alias as asked: _split.)
            return [*groups, *(model if arm.group in (None, split.model) else arm.group
                               for arm in split.arms if every_arm or split.percents[arm.label] > 0)]
        semantic = self._semantic.get(model)
        if semantic is not None:
            config = semantic.config
            return [*groups, *(route.to for route in config.routes), config.default or model]
        return [*groups, model]

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        model = ctx.request.get("model")
        if not isinstance(model, str):
            return await call_next(ctx)
        chosen: str | None = None
        why = ""
        if self._rules.applies(model) and not _stays(ctx, model, self._table):
            tags = ctx.principal.tags if ctx.principal is not None else ()
            count: Callable[[], int] = ctx.prompt_tokens_estimate
            if self._rules.counts_tokens and ctx.prompt_tokens is None and ctx.large():
                count = _kept_if_read(ctx, await ctx.count_prompt_tokens())
                ctx.prompt_tokens = None
            rule = self._rules.choose(model, ctx.headers, ctx.request, tags, count, ctx.request_metadata)
            if rule is not None:
                chosen, why = rule.to, f"rule {rule.name}"
        if chosen is None:
            current = self._table.current
            split = current.splits.get(model)
            if split is not None and not _pinned_out(ctx, split, model, self._table):
                chosen, why = _split(ctx, split, model)
        if chosen is None:
            semantic = self._semantic.get(model)
            if semantic is not None and not _stays(ctx, model, self._table):
                regions = ctx.principal.allowed_regions if ctx.principal is not None else None
                group, score = await semantic.choose(last_user_text(ctx.request), regions)
                if group is not None:
                    chosen = group
                    why = "default" if score is None else f"semantic {score:.3f}"
        if chosen is not None and chosen != model:
            _check_access(ctx, chosen)
            ctx.requested_model = model
            ctx.request["model"] = chosen
            ctx.response_headers[ROUTE_HEADER] = f"{chosen} ({why})"
        return await call_next(ctx)


def reached(model: str, rules: RulesStage | None, router: Router) -> list[tuple[str, str]]:
    """Every group a chat request for ``model`` may be served by, as (name, how): the groups the
    rules, a split (every arm) or the semantic router may send it to, each named as the request
    path checks a key's models against it (a rule's target as written), then each one's
    fallbacks and context-window fallbacks by their group's name, as ``GroupGate`` checks them
    (only the chain of the group routed to is followed, as in pipeline/attempts.py)."""
    out: list[tuple[str, str]] = []
    for target in rules.targets(model, every_arm=True) if rules is not None else [model]:
        if target != model:
            out.append((target, f"routing may send a request for '{model}' to '{target}'"))
        group = router.group(target)
        if group is None:
            continue
        for name in (*group.fallbacks, *group.context_window_fallbacks):
            fallback = router.group(name)
            if fallback is not None and fallback is not group:
                out.append((fallback.name, f"'{group.name}' falls back to '{fallback.name}'"))
    return out


def _stays(ctx: RequestContext, model: str, table: Table) -> bool:
    """Whether a request stays on the group it names, whatever the rules or a semantic router on
    that name would choose: it pins one of its deployments or a strategy (a pin applies to the
    group named: docs/routing.md#pinning). Sent to another group, the pin was judged there and
    refused (pinning not allowed, no such deployment), though the caller named this group's. A
    virtual name (no group) is routed as usual: the pin applies to the group chosen."""
    return (PIN_DEPLOYMENT in ctx.headers or PIN_STRATEGY in ctx.headers) and model in table.current.groups


def _pinned_out(ctx: RequestContext, split: SplitChooser, model: str, table: Table) -> bool:
    """Whether a request's pin keeps it out of the split on ``model`` (_stays). A pinned
    deployment serves it: drawn to another deployment, its answer would be counted as that
    arm's. A pinned strategy still takes part in a split between deployments (the drawn one
    first, the strategy orders the rest), not in one to other groups."""
    return _stays(ctx, model, table) and (PIN_DEPLOYMENT in ctx.headers or split.elsewhere)


def _split(ctx: RequestContext, split: SplitChooser, model: str) -> tuple[str, str]:
    """Draw the request's arm: tag it, and either route to its group or prefer its deployment."""
    p = ctx.principal
    identity = split.identity(p.key_id or p.id if p else None, p.user_id if p else None, ctx.headers)
    arm = split.choose(identity)
    ctx.route_tags = (*(ctx.route_tags or ()), f"split:{split.name}={arm.label}")
    ctx.response_headers[SPLIT_HEADER] = f"{split.name}={arm.label}"
    if arm.deployment is not None:
        ctx.prefer_deployment = arm.deployment
        return model, ""
    if arm.group == split.model:  # the split's own group, reached through an alias: stays as asked
        return model, ""
    return str(arm.group), f"split {split.name}"


def _kept_if_read(ctx: RequestContext, counted: int) -> Callable[[], int]:
    """A large prompt's count, made off the loop before the rules run, kept as the request's
    estimate only if a rule reads it, as a small prompt's is: otherwise the later stages count
    it with the route's tokenizer (pipeline/limits.py), as they would have."""
    def read() -> int:
        if ctx.prompt_tokens is None:
            ctx.prompt_tokens = counted
        return ctx.prompt_tokens

    return read


def _check_access(ctx: RequestContext, model: str) -> None:
    principal = ctx.principal
    if principal is not None and not model_allowed(model, principal.allowed_models):
        raise PermissionDenied(f"you may not use the model '{model}' this request is routed to",
                               param="model", code="model_not_allowed")


def router_embed(router: Router) -> Embed:
    """Embeddings from a group this gateway serves, through its own router and adapters (no
    limits, budgets or ledger: the gateway's own work, not a caller's)."""

    async def embed(model: str, texts: list[str], dimensions: int | None,
                    regions: frozenset[str] | None = None) -> list[list[float]]:
        group = router.group(model)
        if group is None:
            raise LookupError(f"the embedding model {model!r} is not served")
        needs = ANYWHERE if regions is None else Needs(regions)  # a caller's text stays in region
        if (claims := router.claims(group)) is not None:
            await claims  # cluster: a half-open deployment may be this call's probe, as a request's
        # Taken as the attempts stage takes each deployment: a half-open one's probe goes to this
        # call (and its outcome, reported, decides the deployment's health), one whose probe
        # another request holds is passed over.
        for route in router.plan(group, needs):
            probe = router.take(route)
            if probe is not False:
                break
        else:
            raise router.refusal(group, needs)
        router.started(route, 0, probe)
        began = time.perf_counter()
        try:
            replies = await _send_all(route, _embedding_batches(route, model, texts, dimensions))
        except GatewayError as error:
            router.finished(route, error, time.perf_counter() - began, probe=probe)
            raise
        except BaseException:  # cancelled (the semantic router's timeout): says nothing of it
            router.finished(route, AttemptAbandoned("the embedding call was cancelled"),
                            time.perf_counter() - began, probe=probe)
            raise
        router.finished(route, None, time.perf_counter() - began, probe=probe)
        vectors: list[list[float]] = []
        for reply in replies:
            body: dict[str, Any] = route.adapter.embeddings_response(reply.body, route.target)
            data = sorted(body.get("data") or [], key=lambda d: d.get("index", 0))
            vectors += [list(d["embedding"]) for d in data]
        return vectors

    return embed


# Upstream calls at once when a semantic router's examples take several (routing/semantic.py).
EMBED_CONCURRENCY = 8
# Texts sent in one embeddings call at most: OpenAI's (and Azure's) array limit, larger than any
# other provider's, whose adapters refuse fewer (handled below). Above it OpenAI answers 400.
EMBED_BATCH_MOST = 2048


def _embedding_batches(route: Route, model: str, texts: list[str],
                       dimensions: int | None) -> list[UpstreamRequest]:
    """The upstream requests embedding ``texts`` on ``route``, in order: one, or as many as its
    provider needs when it takes fewer inputs per call than there are texts (Titan one, Cohere
    96, Gemini 100: its adapter refuses more, ``too_many_inputs``, before anything is sent), and
    never more than ``EMBED_BATCH_MOST``. A semantic router's examples are all embedded at once,
    and a caller never sees these calls, so they are split here rather than refused (a caller's
    own embeddings request is not)."""
    size = min(len(texts), EMBED_BATCH_MOST)
    while True:
        try:
            return [route.adapter.embeddings_request(_embeddings_body(model, texts[i:i + size], dimensions),
                                                     route.target)
                    for i in range(0, len(texts), size)]
        except UnsupportedParameter as refused:
            if refused.code != "too_many_inputs" or size == 1:
                raise
            size = (size + 1) // 2


def _embeddings_body(model: str, texts: list[str], dimensions: int | None) -> dict[str, Any]:
    request: dict[str, Any] = {"model": model, "input": texts}
    if dimensions is not None:
        request["dimensions"] = dimensions
    return request


async def _send_all(route: Route, batches: list[UpstreamRequest]) -> list[UpstreamReply]:
    """Each batch's reply, in order; the first failure raised, the other calls stopped. Several
    batches go a few at a time: one text per call (Titan) stays within the semantic router's
    timeout for a few dozen examples."""
    if len(batches) == 1:  # the common case (a request's own text): no task
        return [await _send(route, batches[0])]
    slots = asyncio.Semaphore(EMBED_CONCURRENCY)
    tasks = [asyncio.ensure_future(_send(route, upstream, slots)) for upstream in batches]
    try:
        return await asyncio.gather(*tasks)
    finally:
        for task in tasks:  # after a failure, the calls still out are not waited for
            task.cancel()


async def _send(route: Route, upstream: UpstreamRequest,
                slots: asyncio.Semaphore | None = None) -> UpstreamReply:
    if slots is None:
        reply = await route.client.send(upstream, route.timeout)
    else:
        async with slots:
            reply = await route.client.send(upstream, route.timeout)
    if reply.status >= 400:
        raise route.adapter.error(reply.status, reply.headers, reply.body, route.target)
    return reply
