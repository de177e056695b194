"""Active health checks (``router.health_checks``, off by default): every ``interval_seconds``
each deployment gets a tiny request (a one-token chat, or a one-word embedding for embedding
models), and its outcome is reported to the router (health, statistics) as a request's would be:
started and finished alike, so it is in flight while it runs and leaves the count as it found it.

A deployment cooling down is not checked (its cooldown runs its course); a half-open one is
checked only when the check may be its probe. At most :data:`CONCURRENCY` checks run at once,
each bounded by ``timeout_seconds``. The checks start and stop with the gateway.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from switchboard.background import stop_task
from switchboard.catalog import Catalog
from switchboard.config.schema import HealthCheckConfig
from switchboard.errors import GatewayError, UpstreamTimeout
from switchboard.routing.health import Probe
from switchboard.routing.router import Router
from switchboard.routing.table import Route

log = logging.getLogger("switchboard.routing")

CONCURRENCY = 4
CHAT: dict[str, Any] = {"messages": [{"role": "user", "content": "ping"}], "max_completion_tokens": 1}
EMBEDDING: dict[str, Any] = {"input": "ping"}


class CheckNotAnswered(GatewayError):
    """A check ended without an answer for a reason not the deployment's (the gateway stopping):
    class "gateway", so it counts as no failure and frees a half-open probe's slot."""

    code = "check_not_answered"


_NOT_ANSWERED = CheckNotAnswered("the health check ended without an answer")


class HealthChecks:
    def __init__(self, config: HealthCheckConfig, routes: Callable[[], list[Route]], router: Router,
                 catalog: Catalog) -> None:
        self.config = config
        self._routes = routes
        self._router = router
        self._health = router.health
        self._catalog = catalog
        self._task: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(CONCURRENCY)

    def start(self) -> None:
        if self.config.enabled and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.interval_seconds)
            try:
                await self.check_all()
            except Exception:
                log.exception("health checks failed")

    async def check_all(self) -> None:
        """One round: every deployment that may be checked now, a few at a time."""
        routes = self._routes()
        claims = self._health.claims(routes)  # cluster: a half-open one's check may be its probe
        if claims is not None:
            await claims
        now = time.monotonic()
        due = [(r, p) for r in routes if (p := self._health.take(r, now)) is not False]
        await asyncio.gather(*(self._check(r, p) for r, p in due))

    def _request(self, route: Route) -> tuple[str, dict[str, Any]]:
        entry = route.entry
        match = (self._catalog.resolve_entry(route.target.provider_type, entry.model, entry.info)
                 if entry is not None else None)
        if match is not None and match.info.mode == "embedding":
            return "embeddings_request", {"model": route.target.name, **EMBEDDING}
        return "chat_request", {"model": route.target.name, **CHAT}

    async def _check(self, route: Route, probe: Probe | None) -> None:
        """One check of ``route``; ``probe``: a half-open route's probe, which the check is."""
        async with self._slots:
            try:
                build, request = self._request(route)
                upstream = getattr(route.adapter, build)(request, route.target)
            except Exception:  # an adapter that cannot build the check: say nothing of health
                log.warning("health check of %s of %s could not be sent", route.deployment,
                            route.target.name, exc_info=True)
                self._health.released(route, probe)  # a half-open one's probe goes to the next request
                return
            # Started and finished through the router alike: the check is in flight in the
            # statistics while it runs, and leaves the real requests' count as it found it.
            self._router.started(route, 0, probe)
            began = time.perf_counter()
            error: GatewayError | None = None
            try:
                reply = await asyncio.wait_for(route.client.send(upstream, route.timeout),
                                               self.config.timeout_seconds)
                if reply.status >= 400:
                    raise route.adapter.error(reply.status, reply.headers, reply.body, route.target)
            except TimeoutError:
                error = UpstreamTimeout("the health check timed out")
            except GatewayError as failed:
                error = failed
            except Exception:  # not the deployment's doing: counts as nothing
                log.warning("health check of %s of %s failed in the gateway", route.deployment,
                            route.target.name, exc_info=True)
                error = _NOT_ANSWERED
            except BaseException:  # the gateway stopping: the books balanced all the same
                self._router.finished(route, _NOT_ANSWERED, time.perf_counter() - began, None, probe)
                raise
            self._router.finished(route, error, time.perf_counter() - began, None, probe)
