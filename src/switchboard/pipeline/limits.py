"""Rate limits: requests and tokens per minute (and tokens per day) at every scope in force.

Runs after routing, so a request refused for another reason (no such model, not allowed) takes
nothing; a request a later stage refuses before it is sent (a budget, or the attempts stage
when no deployment may be sent to: ``spares_limits`` on the error) gives back what it took here.
One call to the limiter checks and takes from every applicable bucket at once (all or nothing):
the request counts 1 against each requests limit and its estimate (prompt estimate +
``max_tokens``) against each token limit. After the response, a post-response callback corrects
the token buckets to the usage the provider reported (a failed call with no usage gives its
tokens back). The OpenAI-style headers of the most restrictive
limits go on every response (streams: on the response start); a refusal is 429
``rate_limit_exceeded`` with ``Retry-After`` and the scope in the message and in
``x-ratelimit-scope``.

The limits are those of the model the request is sent to. When the budget stage (after this
one) sends it to a cheaper model, it raises ``Rerouted``: this stage gives back what it took for
the requested model and takes the cheaper model's limits instead, then runs the rest again. A
request that is not rerouted pays nothing for this (a ``try`` costs nothing until it catches).

The next stage may send its own check-and-take with this one's (a ``Rider``): in cluster mode
the budget stage's reservation goes in the limiter's Redis script, made only when the limits
admit the request, so a request waits for one round trip before its upstream call, not two.
What each stage decides, and in which order, is the same either way.

The deployment these limits were planned for is the route stage's first pick. An attempt the
attempts stage sends elsewhere (a retry on another deployment of the group, a fallback group,
the next deployment when the first cannot be taken) first takes that deployment's own limits and,
for a model whose limits this request has not taken (a fallback group), the caller's limits on
that model (``take``): one limiter call, all or nothing, without waiting; refused, that
deployment is passed over. The caller-wide limits count a request once, whatever it is sent to.
Each deployment's limits are taken once per request. A failed attempt gives its tokens there back
at once (an attempt sent there again takes them again, its request counted already); the
answering one's are corrected with the rest after the response. When no deployment of the group
has room under its provider's limits and the group has fallbacks, only the caller's limits are
taken here and the attempts stage goes to the fallbacks (``_fallbacks``), each taking its own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from switchboard.access.rules import model_allowed
from switchboard.config.schema import LimitsConfig, LimitValues
from switchboard.context import Principal, RequestContext, Result
from switchboard.errors import GatewayError, InvalidRequest, RateLimited
from switchboard.limits.cache import LimitCache
from switchboard.limits.estimate import max_output_tokens
from switchboard.limits.headers import (
    HeaderPlan,
    clear_rate_headers,
    header_plan,
    write_rate_headers,
    write_refused,
)
from switchboard.limits.plan import TOKENS, UPSTREAM, Limit, Stored, plan, upstream
from switchboard.pipeline.chain import Handler
from switchboard.pipeline.settle import Reservation, Settlement
from switchboard.providers.target import Target
from switchboard.stores.protocols import Acquired, Bucket, BucketState, RateLimiter

if TYPE_CHECKING:
    from switchboard.routing.table import Route

log = logging.getLogger("switchboard.limits")

_EMPTY: Stored = {}
_WARN_EVERY = 10.0  # seconds between two warnings about an unreachable limiter
_PLANS_MAX = 10_000  # (caller, model) plans kept; cleared when full
_UNAVAILABLE = "rate limits cannot be checked right now; try again shortly"


class Rerouted(Exception):  # a signal between two stages, not an error
    """Raised by a stage after this one (the budget stage's downgrade) that sent the request to
    ``model`` instead of the model it asked for, before anything went upstream: its limits are
    taken again, for ``model``."""

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.model = model


class Rider(Protocol):
    """A later stage's check-and-take, sent with this stage's own in one atomic store call and
    made only when the limits admit the request (the budget stage's reservation in Redis: one
    round trip before the upstream call instead of two). The later stage keeps its outcome on
    the context and reads it when its turn comes; this stage sees only the limits' answer."""

    def acquire(self, buckets: list[Bucket]) -> Awaitable[Acquired]:
        """``RateLimiter.acquire(buckets)``, with the rider's own work in the same call."""


class LimiterUnavailable(GatewayError):
    status = 503
    type = "api_error"
    code = "rate_limiter_unavailable"


class _Planned:
    """The limits of one (caller, model, provider), with what each request derives from them."""

    __slots__ = ("anthropic", "buckets", "headers", "limits", "token_indexes", "waits")

    def __init__(self, limits: list[Limit]) -> None:
        self.limits = limits
        self.headers = header_plan(limits)
        self.anthropic = header_plan(limits, anthropic=True)  # Anthropic's headers as well
        self.token_indexes = tuple(i for i, x in enumerate(limits) if x.kind == TOKENS)
        # What a request takes, one unit of each requests limit; the token limits' amounts are
        # filled in per request (``take``).
        self.buckets = [Bucket(x.key, x.capacity, x.window, 1) for x in limits]
        self.waits = any(x.scope == UPSTREAM for x in limits)  # a provider's limit: may wait

    def shown(self, ctx: RequestContext) -> HeaderPlan:
        """The headers this request's answer carries: Anthropic's too on its Messages API."""
        return self.anthropic if ctx.inbound.dialect == "anthropic" else self.headers


_PlanEntry = tuple[Principal | None, Stored, Target | None, _Planned | None]
_CALLER_MODEL = frozenset({"model", "key_model"})  # the caller's per-model scopes (tenant_model: "model")


class _Taken:
    """What a request took beyond the rate-limit stage's pick (``ctx.limits_taken``)."""

    __slots__ = ("holds", "models", "pending", "providers", "refusal", "returned_models",
                 "returned_providers")

    def __init__(self, first: Target | None, model: str | None) -> None:
        self.providers = [first.provider] if first is not None else []  # whose upstream limits
        self.models = [first.name] if first is not None else []  # whose per-model limits
        if isinstance(model, str):
            self.models.append(model)
        # The token reservation of the attempt under way, on a deployment taken for it, and the
        # provider and model whose limits it holds tokens of (None: not that one's).
        self.pending: tuple[RateLimiter, Reservation] | None = None
        self.holds: tuple[str | None, str | None] = (None, None)
        # Providers and models whose tokens a failed attempt gave back: an attempt sent there
        # again takes its tokens again (its requests are counted already).
        self.returned_providers: list[str] = []
        self.returned_models: list[str] = []
        self.refusal: GatewayError | None = None  # the last refusal, for when nothing was sent


class RateLimitStage:
    name = "rate_limits"

    def __init__(
        self,
        config: LimitsConfig,
        limiter: Callable[[], RateLimiter | None],
        stored: Callable[[], LimitCache | None],
        rider: Callable[[RequestContext], Rider | None] | None = None,
    ) -> None:
        """``rider``: the next stage's work to send with the limits' (None: nothing, or it
        cannot this time), asked once the request's buckets are known."""
        self._config = config
        self._limiter = limiter
        self._stored = stored
        self._rider = rider
        # (caller, model, target) -> the caller's record, the tenant's stored limits and the
        # target the plan was made for, and the plan; provider deployments' own limits
        # (providers[].rpm / tpm, in the YAML or through the admin API) are part of it.
        self._plans: dict[tuple[str | None, str, int], _PlanEntry] = {}
        # (caller, target, its model's limits too, its provider's too) -> as ``_plans``: the limits
        # an attempt elsewhere takes (``take``).
        self._more: dict[tuple[str | None, int, bool, bool, bool, bool], _PlanEntry] = {}
        self._warned = -math.inf

    async def __call__(self, ctx: RequestContext, call_next: Handler, model: str | None = None) -> Result:
        """``model``: the model the request was rerouted to (``Rerouted``); None: the one it names."""
        limiter = self._limiter()
        if limiter is None:
            route = ctx.route
            ctx.limited = route.target if route is not None else None  # an attempt elsewhere: ``take``
            try:
                return await call_next(ctx)
            except Rerouted:
                pass
            return await call_next(ctx)  # rerouted: no limits for the other model either
        principal = ctx.principal
        try:
            # The limits the caller's tenant set through the admin API (cached).
            stored = _EMPTY
            tenant = principal.tenant_id if principal is not None else None
            if tenant is not None and (cache := self._stored()) is not None:
                # Cached almost always: read without awaiting a coroutine (an await that never
                # suspends still costs); a tenant with no entry yet is read from the store.
                found = cache.peek(tenant, None)
                stored = found if found is not None else await cache.limits(tenant)
            planned = self._plan(ctx, stored, model)
            if planned is None:
                limits: list[Limit] = []
            else:
                limits = planned.limits
                buckets = planned.buckets
                tokens = 0
                if planned.token_indexes:
                    known = _tokens(ctx)  # None: a large prompt, counted off the loop first
                    tokens = known if known is not None else await _counted(ctx)
                    buckets = _with_tokens(buckets, planned.token_indexes, tokens)
                if (acquire_now := limiter.acquire_now) is not None:
                    # In process: no coroutine, and no rider (one rides only on a store that waits).
                    acquired = acquire_now(buckets)
                else:
                    ride = self._rider(ctx) if self._rider is not None else None
                    acquired = await (limiter.acquire(buckets) if ride is None else ride.acquire(buckets))
                if acquired.refused is not None and planned.waits:
                    moved = None
                    if limits[acquired.refused].scope == UPSTREAM:
                        moved = await self._elsewhere(ctx, limiter, stored, model, tokens)
                        if moved is None:
                            moved = await self._fallbacks(ctx, limiter, stored, model, tokens,
                                                          _refused_by(planned, buckets, acquired, ctx))
                    if moved is not None:
                        planned, buckets, acquired, tokens = moved
                        limits = planned.limits if planned is not None else []
                    else:
                        acquired = await self._wait(ctx, limiter, planned, buckets, acquired)
        except GatewayError:
            raise
        except Exception as exc:  # the limiter's store (Redis, the database) is unreachable
            return await self._unavailable(ctx, call_next, exc)
        if not limits:
            try:
                return await call_next(ctx)
            except Rerouted as rerouted:
                model = rerouted.model
            finally:
                if (taken := ctx.limits_taken) is not None and taken.pending is not None:
                    _settle(ctx, *taken.pending)  # an attempt elsewhere answered
            ctx.limits_taken = None  # ``_fallbacks``' (nothing was sent): the other model's plan decides
            return await self(ctx, call_next, model)  # nothing taken here: the other model's limits
        assert planned is not None
        states = acquired.states
        if (refused := acquired.refused) is not None:
            raise _refusal(limits, refused, buckets[refused], acquired, planned.shown(ctx))
        # ``planned.shown(ctx)`` written out: one call less on every request.
        write_rate_headers(ctx.response_headers, limits, states,
                           planned.anthropic if ctx.inbound.dialect == "anthropic" else planned.headers)
        try:
            return await call_next(ctx)
        except Rerouted as rerouted:
            model = rerouted.model
            tokens = 0  # given back below: nothing of this model's to settle after the response
        except GatewayError as exc:
            if not exc.spares_limits:
                raise
            # Refused by a later stage (a budget) before anything went upstream: the request does
            # not count. One more limiter call, on this refusal only.
            tokens = 0
            await _give_back(ctx, limiter, buckets, states, (limits, planned.shown(ctx)))
            raise
        finally:
            if tokens:
                # Settled with the budgets, in one callback after the response (pipeline/settle.py).
                callbacks = ctx.post_response
                settlement = callbacks[-1] if callbacks else None
                if type(settlement) is not Settlement:
                    settlement = Settlement()
                    ctx.after(settlement)
                settlement.limiter = limiter
                settlement.buckets = buckets
                settlement.states = states
                settlement.indexes = planned.token_indexes
                settlement.reserved = tokens
            if (taken := ctx.limits_taken) is not None and taken.pending is not None:
                _settle(ctx, *taken.pending)  # an attempt elsewhere answered
        await _give_back(ctx, limiter, buckets, states)
        ctx.limits_taken = None  # ``_fallbacks``' (nothing was sent): the other model's plan decides
        return await self(ctx, call_next, model)  # the limits of the model it is sent to

    def _plan(self, ctx: RequestContext, stored: Stored, model: str | None) -> _Planned | None:
        """The limits of this caller on ``model`` (None: the one the request names) and those of
        its route's provider, kept while the caller's record, the tenant's stored limits and the
        route's target are the same objects (the caches and the model table hand out the same
        ones until a change). None: no limit."""
        principal = ctx.principal
        if model is None:
            named = ctx.request.get("model")
            model = named if isinstance(named, str) else ""
        route = ctx.route
        # An empty plan (every deployment cooling down, none fits): the route is the group's first
        # only for the stages in between to price; nothing is sent there, so its provider's limits
        # are not taken (the fallback an attempt goes to takes its own: ``take``).
        target = route.target if route is not None and ctx.candidates != [] else None
        ctx.limited = target  # the deployment whose limits are taken here (an attempt elsewhere: ``take``)
        ctx.limited_model = model  # rerouted: not the one the request names (its limits given back)
        # The target's identity is part of the key: a model served by several deployments keeps
        # one plan per deployment (the entry keeps its target alive, so an id is not reused).
        key = (principal.id if principal is not None else None, model, id(target))
        entry = self._plans.get(key)
        if entry is not None and entry[0] is principal and entry[1] is stored and entry[2] is target:
            return entry[3]
        limits = plan(self._config, principal, model, stored)
        if target is not None and (target.rpm is not None or target.tpm is not None):
            limits += upstream(self._config, target.provider, LimitValues(rpm=target.rpm, tpm=target.tpm))
        return _kept(self._plans, key, (principal, stored, target), limits)

    async def _elsewhere(self, ctx: RequestContext, limiter: RateLimiter, stored: Stored, model: str | None,
                         tokens: int) -> tuple[_Planned | None, list[Bucket], Acquired, int] | None:
        """The first pick's provider limit has no room: the plan's next deployment on another
        provider whose limits admit the request becomes the first pick (its limits taken, one
        limiter call each, on this path only), rather than waiting for the first pick's room or
        refusing while a deployment of the group has some: (its limits, buckets, what was
        taken, the tokens reserved). None: none admits it; the first pick stays."""
        candidates = ctx.candidates
        first = ctx.route
        if first is None or not candidates or candidates[0] is not first:
            return None
        tried = {first.target.provider}  # a provider's limits are those of every deployment on it
        for i, route in enumerate(candidates):
            if route.target.provider in tried:
                continue
            tried.add(route.target.provider)
            ctx.route = route
            planned = self._plan(ctx, stored, model)
            moved = await _acquire(ctx, limiter, planned, tokens)
            if moved[2].refused is None:
                ctx.candidates = [route, *candidates[:i], *candidates[i + 1:]]
                return moved
            tokens = tokens or moved[3]
        ctx.route = first
        self._plan(ctx, stored, model)  # the first pick's again (ctx.limited)
        return None

    async def _fallbacks(self, ctx: RequestContext, limiter: RateLimiter, stored: Stored, model: str | None,
                         tokens: int, refusal: GatewayError,
                         ) -> tuple[_Planned | None, list[Bucket], Acquired, int] | None:
        """No deployment of the group has room under its provider's limit, and the group has
        fallbacks: they serve the request (the attempts stage turns to them as for a group none
        of whose deployments may be sent to) rather than waiting for room or refusing. Only the
        caller's limits on the model it names are taken here (as ``_elsewhere`` returns them);
        each fallback deployment's own are taken when an attempt goes there (``take``), and the
        caller gets ``refusal`` (the first pick's) or a fallback's when none has room. None: the
        group has no fallbacks, or none the caller's key may use (the attempts stage would pass
        each over): the first pick's wait applies, as without fallbacks."""
        group = ctx.group
        if group is None or not group.fallbacks:
            return None
        allowed = ctx.principal.allowed_models if ctx.principal is not None else None
        if allowed is not None and not any(model_allowed(name, allowed) for name in group.fallbacks):
            return None
        first = ctx.route
        ctx.route = None  # no deployment's limits: the caller's alone (ctx.limited: None)
        try:
            planned = self._plan(ctx, stored, model)
        finally:
            ctx.route = first  # still the one the stages in between price, as with no candidate
        moved = await _acquire(ctx, limiter, planned, tokens)
        ctx.candidates = []
        taken = ctx.limits_taken = _Taken(None, ctx.limited_model)
        taken.refusal = refusal
        return moved

    async def _wait(
        self, ctx: RequestContext, limiter: RateLimiter, planned: _Planned, buckets: list[Bucket],
        acquired: Acquired,
    ) -> Acquired:
        """While only a provider's own limit lacks room, wait for it and take again (all or
        nothing, so nothing is held while waiting), up to ``max_wait_seconds``."""
        limits = planned.limits
        started = time.monotonic()
        while True:
            refused = acquired.refused
            if refused is None or limits[refused].scope != UPSTREAM or math.isinf(acquired.retry_after):
                return acquired
            waited = time.monotonic() - started
            allowed = min(self._config.max_wait_seconds - waited, ctx.remaining(time.perf_counter()))
            if acquired.retry_after > allowed:
                raise _upstream_refusal(limits[refused], acquired, limits, planned.shown(ctx))
            await asyncio.sleep(acquired.retry_after)
            acquired = await limiter.acquire(buckets)

    async def take(self, ctx: RequestContext, route: Route) -> bool:
        """Before an attempt goes to ``route``, a deployment other than the one this stage took
        the limits of: its own limits and, for a model whose limits this request has not taken
        (a fallback group), the caller's limits on that model, unless taken already. One limiter
        call, all or nothing, no wait. False: refused (the refusal kept for ``refusal``)."""
        limiter = self._limiter()
        if limiter is None:
            return True
        taken = ctx.limits_taken
        if taken is None:
            taken = ctx.limits_taken = _Taken(ctx.limited, ctx.limited_model)
        target = route.target
        upstream_too = ((target.rpm is not None or target.tpm is not None)
                        and target.provider not in taken.providers)
        model_too = target.name not in taken.models
        upstream_again = not upstream_too and target.provider in taken.returned_providers
        model_again = not model_too and target.name in taken.returned_models
        if not (upstream_too or model_too or upstream_again or model_again):
            return True
        try:
            planned = self._plan_more(ctx.principal, await self._tenant_limits(ctx.principal), target,
                                      model_too, upstream_too, model_again, upstream_again)
            if planned is not None:
                buckets = planned.buckets
                tokens = 0
                if planned.token_indexes:
                    tokens = await ctx.count_prompt_tokens() + max_output_tokens(ctx)
                    buckets = buckets.copy()
                    for i in planned.token_indexes:
                        key_, capacity, window, _ = buckets[i]
                        buckets[i] = tuple.__new__(Bucket, (key_, capacity, window, tokens))
                acquired = await limiter.acquire(buckets)
        except GatewayError:
            raise
        except Exception as exc:  # the limiter's store is unreachable
            self._warn(exc)
            if self._config.on_store_error == "closed":
                taken.refusal = LimiterUnavailable(_UNAVAILABLE)
                return False
            return True
        if planned is not None:
            if acquired.refused is not None:
                taken.refusal = _refused_by(planned, buckets, acquired, ctx)
                return False
            if tokens:
                taken.pending = (limiter, (buckets, acquired.states, planned.token_indexes, tokens))
                taken.holds = (target.provider if upstream_too or upstream_again else None,
                               target.name if model_too or model_again else None)
        if upstream_again:
            taken.returned_providers.remove(target.provider)
        if model_again:
            taken.returned_models.remove(target.name)
        if upstream_too:
            taken.providers.append(target.provider)
        if model_too:
            taken.models.append(target.name)
        return True

    def _plan_more(self, principal: Principal | None, stored: Stored, target: Target, model_too: bool,
                   upstream_too: bool, model_again: bool = False, upstream_again: bool = False,
                   ) -> _Planned | None:
        """The limits ``take`` takes for ``target``: the caller's on its model (``model_too``)
        and its provider's own (``upstream_too``); of those a failed attempt gave its tokens of
        back (``model_again``, ``upstream_again``), the token limits only. Kept as ``_plan``
        keeps its plans."""
        key = (principal.id if principal is not None else None, id(target), model_too, upstream_too,
               model_again, upstream_again)
        entry = self._more.get(key)
        if entry is not None and entry[0] is principal and entry[1] is stored and entry[2] is target:
            return entry[3]
        limits = []
        if model_too or model_again:
            limits = [x for x in plan(self._config, principal, target.name, stored)
                      if x.scope in _CALLER_MODEL and (model_too or x.kind == TOKENS)]
        if upstream_too or upstream_again:
            limits += [x for x in upstream(self._config, target.provider,
                                           LimitValues(rpm=target.rpm, tpm=target.tpm))
                       if upstream_too or x.kind == TOKENS]
        return _kept(self._more, key, (principal, stored, target), limits)

    @staticmethod
    async def release(ctx: RequestContext) -> None:
        """The attempt under way failed: the tokens ``take`` reserved for it are given back (the
        request still counts: it was sent). Nothing when it reserved none."""
        taken = ctx.limits_taken
        if taken is None or taken.pending is None:
            return
        limiter, (buckets, states, indexes, tokens) = taken.pending
        taken.pending = None
        provider, model = taken.holds  # an attempt sent there again takes these tokens again
        if provider is not None:
            taken.returned_providers.append(provider)
        if model is not None:
            taken.returned_models.append(model)
        try:
            await limiter.adjust([tuple.__new__(Bucket, (*buckets[i][:3], -tokens)) for i in indexes],
                                 [states[i].slot for i in indexes])
        except Exception as exc:  # held until its window passes, as a failed correction is
            log.warning("rate limiter: giving back the tokens of a failed attempt failed (%s)",
                        type(exc).__name__)

    @staticmethod
    def refusal(ctx: RequestContext) -> GatewayError | None:
        """Why the last deployment ``take`` refused was passed over (None: none was), handed
        over once: the error for a request that could be sent nowhere, which gives back what
        this stage took (``spares_limits``)."""
        taken = ctx.limits_taken
        if taken is None:
            return None
        refusal, taken.refusal = taken.refusal, None
        if refusal is not None:
            # Nothing was sent: what this request took of the caller's limits is given back, as
            # for a budget's refusal (a caller retrying a saturated model keeps its own limits).
            refusal.spares_limits = True
        return refusal

    async def _tenant_limits(self, principal: Principal | None) -> Stored:
        """The limits the caller's tenant set through the admin API (cached)."""
        tenant = principal.tenant_id if principal is not None else None
        if tenant is None or (cache := self._stored()) is None:
            return _EMPTY
        found = cache.peek(tenant, None)
        return found if found is not None else await cache.limits(tenant)

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned >= _WARN_EVERY:
            self._warned = now
            log.warning("rate limiter unavailable (%s): requests are %s", type(exc).__name__,
                        "admitted" if self._config.on_store_error == "open" else "refused")

    async def _unavailable(self, ctx: RequestContext, call_next: Handler, exc: Exception) -> Result:
        self._warn(exc)
        if self._config.on_store_error == "closed":
            raise LimiterUnavailable(_UNAVAILABLE)
        try:
            return await call_next(ctx)
        except Rerouted:
            pass
        return await call_next(ctx)  # rerouted: admitted without limits, as the first model was


def _tokens(ctx: RequestContext) -> int | None:
    """What the request's token limits take: its prompt and its output bound; None for a large
    prompt not counted yet (``_counted``). Not a coroutine: the usual request awaits nothing."""
    prompt = ctx.prompt_tokens
    if prompt is None:
        if ctx.large():
            return None
        prompt = ctx.prompt_tokens_estimate()
    return prompt + max_output_tokens(ctx)


async def _counted(ctx: RequestContext) -> int:
    """``_tokens`` of a large prompt, counted in a worker thread first."""
    return await ctx.count_prompt_tokens() + max_output_tokens(ctx)


async def _acquire(ctx: RequestContext, limiter: RateLimiter, planned: _Planned | None, tokens: int,
                   ) -> tuple[_Planned | None, list[Bucket], Acquired, int]:
    """``planned``'s limits taken for this request, ``tokens`` its token limits' amount (0: not
    counted yet): (the plan, its buckets, what was taken, the tokens reserved)."""
    if planned is None:
        return None, [], Acquired([]), 0
    buckets = planned.buckets
    if planned.token_indexes:
        tokens = tokens or _tokens(ctx) or await _counted(ctx)
        buckets = _with_tokens(buckets, planned.token_indexes, tokens)
    return planned, buckets, await limiter.acquire(buckets), tokens if planned.token_indexes else 0


def _refused_by(planned: _Planned, buckets: list[Bucket], acquired: Acquired, ctx: RequestContext
                ) -> GatewayError:
    """The error for ``planned``'s limits refusing ``acquired``: a provider's own limit's 429
    ``upstream_rate_limited``, a caller's limit's (or, when the request alone exceeds a limit,
    the 400 ``request_exceeds_limit``)."""
    limits = planned.limits
    refused = acquired.refused
    assert refused is not None
    limit = limits[refused]
    if limit.scope == UPSTREAM and not math.isinf(acquired.retry_after):
        return _upstream_refusal(limit, acquired, limits, planned.shown(ctx))
    return _refusal(limits, refused, buckets[refused], acquired, planned.shown(ctx))


def _with_tokens(buckets: list[Bucket], indexes: tuple[int, ...], tokens: int) -> list[Bucket]:
    """``buckets`` with the token limits' (at ``indexes``) taking ``tokens``."""
    buckets = buckets.copy()
    for i in indexes:
        key, capacity, window, _ = buckets[i]
        buckets[i] = tuple.__new__(Bucket, (key, capacity, window, tokens))
    return buckets


async def _give_back(ctx: RequestContext, limiter: RateLimiter, buckets: list[Bucket],
                     states: Sequence[BucketState], shown: tuple[list[Limit], HeaderPlan] | None = None
                     ) -> None:
    """The request was not sent: what it took is given back, in the slots it was taken in.
    Rerouted (``shown`` None): the headers that described it are taken out, the other model's
    replace them. Refused by a later stage (``shown``: its limits and header plan): the headers
    say what is left without it."""
    headers = ctx.response_headers
    clear_rate_headers(headers)
    if shown is not None:
        left = [s._replace(used=s.used - b.amount, reset=s.reset if s.used > b.amount else 0.0)
                for b, s in zip(buckets, states, strict=True)]
        write_rate_headers(headers, shown[0], left, shown[1])
    try:
        await limiter.adjust([tuple.__new__(Bucket, (*b[:3], -b.amount)) for b in buckets],
                             [s.slot for s in states])
    except Exception as exc:  # held until its window passes, as a failed correction is
        log.warning("rate limiter: giving back the limits of a request that was not sent failed (%s)",
                    type(exc).__name__)


def _kept(plans: dict[Any, _PlanEntry], key: object,
          made_for: tuple[Principal | None, Stored, Target | None], limits: list[Limit]) -> _Planned | None:
    """``limits`` planned and kept under ``key`` with what they were made for (every plan is
    dropped when the cache is full). None: no limit."""
    if len(plans) >= _PLANS_MAX:
        plans.clear()
    planned = _Planned(limits) if limits else None
    plans[key] = (*made_for, planned)
    return planned


def _settle(ctx: RequestContext, limiter: RateLimiter, reservation: Reservation) -> None:
    """The answering attempt's tokens on a deployment ``take`` took, corrected after the
    response with the rest (the request's one settlement, pipeline/settle.py)."""
    callbacks = ctx.post_response
    settlement = callbacks[-1] if callbacks else None
    if type(settlement) is not Settlement:
        settlement = Settlement()
        ctx.after(settlement)
    if settlement.limiter is None:
        settlement.limiter = limiter
    settlement.extra = reservation


def _upstream_refusal(limit: Limit, acquired: Acquired, limits: list[Limit], plan: HeaderPlan
                      ) -> GatewayError:
    """A provider deployment's own limit has no room for this request."""
    retry = max(1, math.ceil(acquired.retry_after))
    headers = {"retry-after": str(retry), "x-ratelimit-scope": UPSTREAM}
    if acquired.states:  # the caller's own limits, as a success would show them
        write_rate_headers(headers, limits, acquired.states, plan)
    return RateLimited(
        f"the provider's limit for this deployment ({limit.limit} {limit.kind} per minute) is "
        f"reached; try again in {retry} s", code="upstream_rate_limited", headers=headers,
    )


def _refusal(limits: list[Limit], refused: int, bucket: Bucket, acquired: Acquired, plan: HeaderPlan
             ) -> GatewayError:
    limit = limits[refused]
    unit = "requests" if limit.kind != TOKENS else "tokens"
    per = "day" if limit.name == "tpd" else "minute"
    if math.isinf(acquired.retry_after):
        return InvalidRequest(
            f"this request alone needs {bucket.amount} tokens, more than the {limit.scope} limit of "
            f"{limit.limit} {unit} per {per} allows", code="request_exceeds_limit",
            headers={"x-ratelimit-scope": limit.scope},
        )
    retry = max(1, math.ceil(acquired.retry_after))
    headers = {"retry-after": str(retry), "x-ratelimit-scope": limit.scope}
    # Every kind's headers, as a success would carry them (from the states the limiter read while
    # refusing: nothing taken); the refusing limit's stand for its kind.
    if acquired.states:
        write_rate_headers(headers, limits, acquired.states, plan)
    anthropic = any(names is not None for _, _, names, _ in plan)
    write_refused(headers, unit, limit.capacity, acquired.retry_after, anthropic)
    return RateLimited(
        f"rate limit reached for the {limit.scope} ({limit.name}): {limit.limit} {unit} per {per}; "
        f"try again in {retry} s",
        headers=headers,
    )
