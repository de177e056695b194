"""Active health checks (``router.health_checks``, off by default): every ``interval_seconds``
each deployment gets a tiny request (a one-token chat, or a one-word embedding for embedding
models), and its outcome is reported to the router (health, statistics) as a request's would be.

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
from switchboard.routing.router import Router
from switchboard.routing.table import Route

log = logging.getLogger("switchboard.routing")

CONCURRENCY = 4
CHAT: dict[str, Any] = {"messages": [{"role": "user", "content": "ping"}], "max_completion_tokens": 1}
EMBEDDING: dict[str, Any] = {"input": "ping"}


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
        now = time.monotonic()
        due = [r for r in self._routes() if self._health.available(r, now)]
        await asyncio.gather(*(self._check(r) for r in due))

    def _request(self, route: Route) -> tuple[str, dict[str, Any]]:
        entry = route.entry
        match = (self._catalog.resolve_entry(route.target.provider_type, entry.model, entry.info)
                 if entry is not None else None)
        if match is not None and match.info.mode == "embedding":
            return "embeddings_request", {"model": route.target.name, **EMBEDDING}
        return "chat_request", {"model": route.target.name, **CHAT}

    async def _check(self, route: Route) -> None:
        async with self._slots:
            self._health.started(route)
            began = time.perf_counter()
            try:
                build, request = self._request(route)
                upstream = getattr(route.adapter, build)(request, route.target)
                reply = await asyncio.wait_for(route.client.send(upstream, route.timeout),
                                               self.config.timeout_seconds)
                if reply.status >= 400:
                    raise route.adapter.error(reply.status, reply.headers, reply.body, route.target)
            except TimeoutError:
                error: GatewayError = UpstreamTimeout("the health check timed out")
                self._router.finished(route, error, time.perf_counter() - began)
            except GatewayError as failed:
                self._router.finished(route, failed, time.perf_counter() - began)
            except Exception:  # an adapter that cannot build the check: say nothing of health
                log.warning("health check of %s of %s could not be sent", route.deployment,
                            route.target.name, exc_info=True)
            else:
                self._router.finished(route, None, time.perf_counter() - began)
