"""Rate limits: requests and tokens per minute (and tokens per day) at every scope in force.

Runs after routing, so a request refused for another reason (no such model, not allowed) takes
nothing. One call to the limiter checks and takes from every applicable bucket at once (all or
nothing): the request counts 1 against each requests limit and its estimate (prompt estimate +
``max_tokens``) against each token limit. After the response, a post-response callback corrects
the token buckets to the usage the provider reported (a failed call with no usage gives its
tokens back). The OpenAI-style headers of the most restrictive limits go on every response
(streams: on the response start); a refusal is 429 ``rate_limit_exceeded`` with ``Retry-After``
and the scope in the message and in ``x-ratelimit-scope``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from switchboard.config.schema import LimitsConfig, LimitValues
from switchboard.context import AfterResponse, Principal, RequestContext, Result
from switchboard.errors import GatewayError, InvalidRequest, RateLimited
from switchboard.limits.cache import LimitCache
from switchboard.limits.estimate import estimate_request_tokens, used_tokens
from switchboard.limits.headers import duration, header_plan, rate_headers
from switchboard.limits.plan import TOKENS, UPSTREAM, Limit, Stored, plan, upstream
from switchboard.pipeline.chain import Handler
from switchboard.providers.target import Target
from switchboard.stores.protocols import Acquired, Bucket, RateLimiter

log = logging.getLogger("switchboard.limits")

_EMPTY: Stored = {}
_WARN_EVERY = 10.0  # seconds between two warnings about an unreachable limiter
_PLANS_MAX = 10_000  # (caller, model) plans kept; cleared when full


class LimiterUnavailable(GatewayError):
    status = 503
    type = "api_error"
    code = "rate_limiter_unavailable"


class _Planned:
    """The limits of one (caller, model, provider), with what each request derives from them."""

    __slots__ = ("headers", "limits", "token_indexes")

    def __init__(self, limits: list[Limit]) -> None:
        self.limits = limits
        self.headers = header_plan(limits)
        self.token_indexes = tuple(i for i, x in enumerate(limits) if x.kind == TOKENS)


class RateLimitStage:
    name = "rate_limits"

    def __init__(
        self,
        config: LimitsConfig,
        limiter: Callable[[], RateLimiter | None],
        stored: Callable[[], LimitCache | None],
    ) -> None:
        self._config = config
        self._limiter = limiter
        self._stored = stored
        # (caller, model, provider's own limits) -> the plan; provider deployments' own limits
        # (providers[].rpm / tpm, in the YAML or through the admin API) are part of it.
        self._plans: dict[tuple[Any, ...], tuple[Principal | None, Stored, _Planned]] = {}
        self._warned = -math.inf

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        limiter = self._limiter()
        if limiter is None:
            return await call_next(ctx)
        principal = ctx.principal
        model = ctx.request.get("model")
        model = model if isinstance(model, str) else ""
        try:
            cache = self._stored()
            tenant = principal.tenant_id if principal is not None else None
            stored = await cache.get(tenant) if cache is not None and tenant is not None else _EMPTY
            target = ctx.route.target if ctx.route is not None else None
            planned = self._plan(principal, model, stored, target)
            limits = planned.limits
            if not limits:
                return await call_next(ctx)
            tokens = await estimate_request_tokens(ctx) if planned.token_indexes else 0
            buckets = [Bucket(x.key, x.capacity, x.window, tokens if x.kind == TOKENS else 1) for x in limits]
            acquired = await self._acquire(ctx, limiter, limits, buckets)
        except GatewayError:
            raise
        except Exception as exc:  # the limiter's store (Redis, the database) is unreachable
            return await self._unavailable(ctx, call_next, exc)
        if acquired.refused is not None:
            raise _refusal(limits[acquired.refused], buckets[acquired.refused], acquired)
        ctx.response_headers.update(rate_headers(limits, acquired.states, planned.headers))
        if tokens:
            states = acquired.states
            token_buckets = [(buckets[i], states[i].slot) for i in planned.token_indexes]
            ctx.after(_settle(limiter, token_buckets, tokens))
        return await call_next(ctx)

    def _plan(
        self, principal: Principal | None, model: str, stored: Stored, target: Target | None
    ) -> _Planned:
        """The limits of this caller on this model (and its provider's own), kept while the
        caller's record and the tenant's stored limits are the same objects (both caches hand
        out the same ones until a change)."""
        provider = (target.provider, target.rpm, target.tpm) if target is not None else None
        key = (principal.id if principal is not None else None, model, provider)
        entry = self._plans.get(key)
        if entry is not None and entry[0] is principal and entry[1] is stored:
            return entry[2]
        limits = plan(self._config, principal, model, stored)
        if provider is not None and (provider[1] is not None or provider[2] is not None):
            name, rpm, tpm = provider
            limits += upstream(self._config, name, LimitValues(rpm=rpm, tpm=tpm))
        if len(self._plans) >= _PLANS_MAX:
            self._plans.clear()
        planned = _Planned(limits)
        self._plans[key] = (principal, stored, planned)
        return planned

    async def _acquire(
        self, ctx: RequestContext, limiter: RateLimiter, limits: list[Limit], buckets: list[Bucket]
    ) -> Acquired:
        """Take from every bucket; while only a provider's own limit lacks room, wait for it (all
        or nothing, so nothing is held while waiting), up to ``max_wait_seconds``."""
        started = time.monotonic()
        while True:
            acquired = await limiter.acquire(buckets)
            refused = acquired.refused
            if refused is None or limits[refused].scope != UPSTREAM or math.isinf(acquired.retry_after):
                return acquired
            waited = time.monotonic() - started
            allowed = min(self._config.max_wait_seconds - waited, ctx.remaining(time.perf_counter()))
            if acquired.retry_after > allowed:
                retry = max(1, math.ceil(acquired.retry_after))
                limit = limits[refused]
                raise RateLimited(
                    f"the provider's limit for this deployment ({limit.limit} {limit.kind} per minute) is "
                    f"reached; try again in {retry} s", code="upstream_rate_limited",
                    headers={"retry-after": str(retry), "x-ratelimit-scope": UPSTREAM},
                )
            await asyncio.sleep(acquired.retry_after)

    async def _unavailable(self, ctx: RequestContext, call_next: Handler, exc: Exception) -> Result:
        now = time.monotonic()
        if now - self._warned >= _WARN_EVERY:
            self._warned = now
            log.warning("rate limiter unavailable (%s): requests are %s", type(exc).__name__,
                        "admitted" if self._config.on_store_error == "open" else "refused")
        if self._config.on_store_error == "closed":
            raise LimiterUnavailable("rate limits cannot be checked right now; try again shortly")
        return await call_next(ctx)


def _refusal(limit: Limit, bucket: Bucket, acquired: Acquired) -> GatewayError:
    unit = "requests" if limit.kind != TOKENS else "tokens"
    per = "day" if limit.name == "tpd" else "minute"
    if math.isinf(acquired.retry_after):
        return InvalidRequest(
            f"this request alone needs {bucket.amount} tokens, more than the {limit.scope} limit of "
            f"{limit.limit} {unit} per {per} allows", code="request_exceeds_limit",
            headers={"x-ratelimit-scope": limit.scope},
        )
    retry = max(1, math.ceil(acquired.retry_after))
    return RateLimited(
        f"rate limit reached for the {limit.scope} ({limit.name}): {limit.limit} {unit} per {per}; "
        f"try again in {retry} s",
        headers={
            "retry-after": str(retry),
            "x-ratelimit-scope": limit.scope,
            f"x-ratelimit-limit-{unit}": str(limit.capacity),
            f"x-ratelimit-remaining-{unit}": "0",
            f"x-ratelimit-reset-{unit}": duration(acquired.retry_after),
        },
    )


def _settle(limiter: RateLimiter, buckets: Sequence[tuple[Bucket, int]], reserved: int) -> AfterResponse:
    async def settle(ctx: RequestContext) -> None:
        used = used_tokens(ctx.usage)
        if used is None:
            # No usage reported: a failed call gives its reservation back; otherwise it stands.
            if ctx.outcome.status < 400 and ctx.outcome.status != 0:
                return
            used = 0
        delta = used - reserved
        if delta == 0:
            return
        try:
            await limiter.adjust([Bucket(b.key, b.capacity, b.window, delta) for b, _ in buckets],
                                 [slot for _, slot in buckets])
        except Exception as exc:
            log.warning("rate limiter: correcting a token reservation failed (%s)", type(exc).__name__)

    return settle
