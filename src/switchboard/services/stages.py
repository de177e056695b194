"""The stages of a call to a REST service (gateway.py ``services_stages``), after the common
ones (observe, auth): which service (404 when the caller's tenant has none of that name, 405 for
a method it does not take), its subscription, the caller's rate limits and the service's own,
and one usage-ledger record per call (the request log's row: operation ``service``, model
``service:<name>``, 0 tokens)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from switchboard.access.subscriptions import SubscriptionCache
from switchboard.config.schema import LimitsConfig
from switchboard.context import RequestContext, Result
from switchboard.errors import GatewayError, NotFound, UpstreamBadGateway
from switchboard.limits.cache import LimitCache
from switchboard.limits.plan import REQUESTS, Limit, Stored, plan
from switchboard.pipeline.chain import Handler
from switchboard.pipeline.limits import RateLimitStage, _Planned
from switchboard.pipeline.subscription import require_approved
from switchboard.services.context import ServiceContext
from switchboard.services.table import Service, ServiceTable
from switchboard.spend.ledger import LedgerWriter
from switchboard.stores.protocols import RateLimiter, UsageRecord

log = logging.getLogger("switchboard.services")

DEFAULT_TENANT = "default"
SERVICE_SCOPE = "service"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


def _service_ctx(ctx: RequestContext) -> ServiceContext:
    assert isinstance(ctx, ServiceContext), "the services chain runs on a ServiceContext"
    return ctx


class ServiceStage:
    """Finds the service as the caller's tenant sees it."""

    name = "service"

    def __init__(self, table: ServiceTable) -> None:
        self._table = table

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        sctx = _service_ctx(ctx)
        principal = ctx.principal
        tenant = (principal.tenant_id if principal is not None else None) or DEFAULT_TENANT
        service = await self._table.lookup(tenant, sctx.service_name)
        if service is None:
            raise NotFound(f"no service '{sctx.service_name}'", code="service_not_found")
        if ctx.method not in service.settings.methods:
            allowed = ", ".join(service.settings.methods)
            raise MethodNotAllowed(f"the service '{service.name}' does not take {ctx.method}",
                                   headers={"allow": allowed})
        if service.broken is not None:
            raise UpstreamBadGateway(f"the service '{service.name}' cannot be called: {service.broken}",
                                     code="service_unavailable")
        sctx.service = service
        ctx.request = {"model": service.subject}
        return await call_next(ctx)


class ServiceSubscriptionStage:
    """A service with ``require_approval`` serves a team only once its subscription is approved."""

    name = "subscription"

    def __init__(self, cache: Callable[[], SubscriptionCache | None]) -> None:
        self._cache = cache

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        service = _service_ctx(ctx).service
        assert service is not None
        if service.settings.require_approval:
            cache = self._cache()
            assert cache is not None, "the gateway has started"
            await require_approved(cache, ctx.principal, service.subject, f"the service '{service.name}'",
                                   param=None)
        return await call_next(ctx)


class ServiceRateLimitStage(RateLimitStage):
    """The caller's request limits (global, tenant, team, user, key: no model applies) and the
    service's own ``rpm`` per key, checked and taken at once by the rate limiter."""

    name = "rate_limits"

    def __init__(self, config: LimitsConfig, limiter: Callable[[], RateLimiter | None],
                 stored: Callable[[], LimitCache | None]) -> None:
        super().__init__(config, limiter, stored)
        self._service_plans: dict[tuple[str | None, str], tuple[Any, Stored, Service, _Planned | None]] = {}

    def _plan(self, ctx: RequestContext, stored: Stored, model: str | None) -> _Planned | None:
        service = _service_ctx(ctx).service  # no model: never rerouted
        assert service is not None
        principal = ctx.principal
        key = (principal.id if principal is not None else None, service.name)
        entry = self._service_plans.get(key)
        if entry is not None and entry[0] is principal and entry[1] is stored and entry[2] is service:
            return entry[3]
        limits = plan(self._config, principal, "", stored)
        rpm = service.settings.rpm
        if rpm is not None:
            # Per key lineage, as the key's own windows: a rotated key carries on its predecessor's.
            who = principal.owner if principal is not None else "anonymous"
            tenant = service.tenant or "*"
            bucket = f"service:{tenant}:{service.name}:{who}:rpm"
            window = self._config.window_seconds
            limits.append(Limit(SERVICE_SCOPE, bucket, REQUESTS, rpm, rpm, window, "rpm"))
        if len(self._service_plans) >= 10_000:
            self._service_plans.clear()
        planned = _Planned(limits) if limits else None
        self._service_plans[key] = (principal, stored, service, planned)
        return planned


class ServiceUsageStage:
    """One usage-ledger record per call that reached this stage, after the response."""

    name = "usage"

    def __init__(self, writer: Callable[[], LedgerWriter | None]) -> None:
        self._writer = writer

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        ctx.after(self._record)
        return await call_next(ctx)

    async def _record(self, ctx: RequestContext) -> None:
        writer = self._writer()
        service = _service_ctx(ctx).service
        if writer is None or service is None:
            return
        outcome = ctx.outcome
        status = outcome.recorded_status()  # as the metrics, the traces and the failure log
        elapsed = time.perf_counter() - ctx.started
        overhead, upstream = ctx.split_time()
        p = ctx.principal
        metadata: dict[str, Any] = {"operation": "service", "method": ctx.method, "service": service.name}
        if outcome.client_disconnected:
            metadata["client_disconnected"] = True
            if outcome.stream:  # left the answer relayed as it arrives: its status stays the one sent
                metadata["abandoned"] = True
        first = outcome.first_byte_at
        record = UsageRecord(
            request_id=ctx.request_id,
            tenant_id=(p.tenant_id if p is not None else None) or DEFAULT_TENANT,
            model=service.subject,
            key_id=p.key_id if p is not None else None,
            team_id=p.team_id if p is not None else None,
            user_id=p.user_id if p is not None else None,
            provider="service",
            status=status,
            stream=outcome.stream,
            latency_ms=round(elapsed * 1000),
            created_at=datetime.now(UTC) - timedelta(seconds=elapsed),
            metadata=metadata,
            ttft_ms=round((first - ctx.started) * 1000) if first is not None else None,
            error_code=outcome.error_code if status >= 400 else None,
            upstream_model=service.name,
            tags=p.tags if p is not None else (),
            overhead_ms=round(overhead * 1000),
            upstream_ms=round(upstream * 1000),
            log_id=ctx.record_id,
            entry_id=ctx.entry_id(),
        )
        try:
            writer.record(record)
        except Exception:  # accounting never fails the request it accounts for
            log.exception("request %s: usage record not written", ctx.request_id)

