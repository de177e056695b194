"""The request path's one handle on routing: the group a model name resolves to, the order in
which its deployments are tried, and what each attempt reports back (statistics, health).

The route stage (pipeline/route.py) asks for a plan; the attempts stage (pipeline/attempts.py)
walks it, taking each deployment it sends to (``take``: a half-open one's probe goes to that
attempt, whichever place a pin or a split gave it in the plan), reporting every attempt here,
and asks for a fallback group's plan when it runs out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Iterator
from typing import NamedTuple, Protocol

from switchboard.errors import GatewayError, UpstreamUnavailable, error_class
from switchboard.routing import prerouting, strategies
from switchboard.routing.groups import Group
from switchboard.routing.health import Health, Probe, Taken
from switchboard.routing.live import Snapshot
from switchboard.routing.stats import DeploymentStats
from switchboard.routing.table import Route


class Table(Protocol):
    current: Snapshot


class Needs(NamedTuple):
    """What a request asks of the deployment that serves it (computed by the route stage)."""

    regions: frozenset[str] | None = None  # where it may be served (data residency); None: anywhere
    tokens: int | None = None  # prompt plus the output bound, for context windows; None: unchecked
    prompt_tokens: int = 0  # the prompt estimate, for the cost and headroom strategies
    output_tokens: int | None = None  # the request's output bound (cost); None: not given
    per_input: bool = False  # ``tokens`` is the largest embeddings input's (a window bounds each)


ANYWHERE = Needs()

# The error classes that describe the provider account rather than the deployment: on a
# caller's own credential (pipeline/caller_credentials.py), the caller's account.
ACCOUNT_CLASSES = frozenset({"rate_limit", "billing"})


class Router:
    def __init__(
        self, table: Table, stats: DeploymentStats | None = None, health: Health | None = None,
        windows: prerouting.Windows | None = None,
    ) -> None:
        self._table = table
        self.stats = stats if stats is not None else DeploymentStats()
        self.health = health if health is not None else Health()
        # Each deployment's context window (prerouting.Windows); None: never checked.
        self.windows = windows

    def group(self, name: str) -> Group | None:
        return self._table.current.groups.get(name)

    def live(self, route: Route) -> Route | None:
        """``route`` as the model table holds it now: a change to its provider since it was
        planned (a credential rotated, an option edited) rebuilt it on a new client, which a
        retry must use (the old one keeps only the exchanges already under way). None: the
        deployment is no longer in the table (its model or provider was removed)."""
        found = self._table.current.groups.get(route.target.name)
        for other in found.deployments if found is not None else ():
            if other.deployment == route.deployment and other.target.name == route.target.name:
                return other
        return None

    def forget_removed(self, snapshot: Snapshot) -> None:
        """The model table became ``snapshot``: forget the statistics and health of the
        deployments and groups it no longer holds (LiveRouting calls it on every swap)."""
        kept = snapshot.deployments()
        names = {g.name for g in snapshot.groups.values()}
        self.stats.keep(kept, names)
        self.health.keep(kept)
        if self.windows is not None:
            self.windows.keep(kept, names)

    async def tripped(self, group: str, deployment: str) -> bool:
        """Whether ``deployment`` of ``group`` is in the model table and out of traffic (cooling
        down or half-open): the alerts resolve a breaker incident whose recovery went unheard."""
        found = self.group(group)
        for route in found.deployments if found is not None else ():
            if route.target.name == group and route.deployment == deployment:
                return await self.health.tripped(route)
        return False

    def claims(self, group: Group) -> Awaitable[None] | None:
        """Cluster: what to await before planning ``group`` so that a half-open deployment of it
        (or of its context-window fallbacks, planned with it) may be this request's probe
        (Health.claims); None, the common case: nothing is out, nothing to wait for."""
        if not group.context_window_fallbacks:
            return self.health.claims(group.deployments)
        return self.health.claims(self._with_larger(group))  # walked only when something is out

    def _with_larger(self, group: Group) -> Iterator[Route]:
        yield from group.deployments
        for name in group.context_window_fallbacks:
            other = self.group(name)
            if other is not None:
                yield from other.deployments

    def plan(self, group: Group, needs: Needs = ANYWHERE, strategy: str | None = None) -> list[Route]:
        """``group``'s deployments that may serve a request, in the order to try them; empty
        when none may (then :meth:`refusal` says why). ``strategy``: a caller's pinned one
        instead of the group's."""
        now = time.monotonic()
        single = group.single
        if single is not None and needs is ANYWHERE and self.health.eligible(single, now):
            return [single]
        fitting = prerouting.eligible(group.deployments, needs.regions, needs.tokens, self.windows)
        # A loop, not a comprehension: that made ``self`` and ``now`` cells on every request.
        healthy = self.health.eligible
        eligible = []
        for r in fitting:
            if healthy(r, now):
                eligible.append(r)
        ordered = strategies.order(group, eligible, self.stats, strategy or group.strategy,
                                   needs.prompt_tokens, needs.output_tokens)
        if not fitting and needs.tokens is not None and group.context_window_fallbacks:
            ordered = ordered + self._larger(group, needs, now)
        # No probe is taken here: the attempt that sends to a half-open deployment takes it
        # (``take``), so a pin or a split sending elsewhere leaves it to the next request.
        return ordered

    def _larger(self, group: Group, needs: Needs, now: float) -> list[Route]:
        """A request that fits none of ``group``'s context windows: the deployments of its
        ``context_window_fallbacks`` that it fits, group by group in order."""
        out: list[Route] = []
        for name in group.context_window_fallbacks:
            other = self.group(name)
            if other is None or other is group:
                continue
            fitting = prerouting.eligible(other.deployments, needs.regions, needs.tokens, self.windows)
            eligible = [r for r in fitting if self.health.eligible(r, now)]
            out += strategies.order(other, eligible, self.stats, other.strategy, needs.prompt_tokens,
                                    needs.output_tokens)
        return out

    def refusal(self, group: Group, needs: Needs = ANYWHERE, pinned: Route | None = None) -> GatewayError:
        """The error for a request no deployment of ``group`` (nor of its fallbacks) may serve:
        403 ``region_not_allowed`` when none is inside the caller's regions, 400
        ``context_length_exceeded`` when none in them is large enough, else 503
        ``no_healthy_deployment`` (every one that could serve it is cooling down). ``pinned``:
        the one deployment of ``group`` the request may use (a caller's pin), whose cooldown,
        not its healthy siblings', says when to come back."""
        chain = [group]
        for name in (*group.fallbacks, *group.context_window_fallbacks):
            other = self.group(name)
            if other is not None and all(other is not g for g in chain):
                chain.append(other)
        own = (pinned,) if pinned is not None else group.deployments
        allowed = [r for g in chain for r in (own if g is group else g.deployments)
                   if prerouting.in_regions(r, needs.regions)]
        if not allowed:
            return prerouting.outside_regions(f"the model '{group.name}'", needs.regions)
        if needs.tokens is not None and self.windows is not None:
            sizes = [self.windows(r) for r in allowed]
            if all(size is not None and size < needs.tokens for size in sizes):
                largest = max(size for size in sizes if size is not None)
                return prerouting.too_large(needs.tokens, f"the largest context window of the model "
                                            f"'{group.name}'", largest, needs.per_input)
        # When the first of them may be tried again, so clients wait that long rather than
        # retry at once (the SDKs' own backoff is about a second; a cooldown lasts 30 s).
        wait = self.health.ready_in(allowed)
        headers = {"retry-after": str(max(1, math.ceil(wait)))} if wait is not None else None
        return UpstreamUnavailable(
            f"no healthy deployment of the model '{group.name}': every one that may serve this "
            "request is cooling down after failures", code="no_healthy_deployment", headers=headers)

    def unfit(self, route: Route, needs: Needs = ANYWHERE) -> GatewayError | None:
        """Why ``route`` may never serve this request, whatever its health: 403
        ``region_not_allowed`` outside the caller's regions, 400 ``context_length_exceeded``
        when its context window is too small; None when it may (it may still be cooling down)."""
        what = f"the deployment '{route.deployment}' of the model '{route.target.name}'"
        if not prerouting.in_regions(route, needs.regions):
            return prerouting.outside_regions(what, needs.regions)
        if not prerouting.fits(route, needs.tokens, self.windows):
            assert needs.tokens is not None and self.windows is not None  # else it fits
            size = self.windows(route) or 0
            return prerouting.too_large(needs.tokens, f"the context window of {what}", size, needs.per_input)
        return None

    def take(self, route: Route) -> Taken:
        """Whether an attempt may be sent to ``route`` now, asked right before it is: None (yes),
        False (no: cooling down, or another attempt holds its probe), or a half-open route's
        probe token, this attempt's to pass to ``started`` and ``finished``."""
        return self.health.take(route)  # the clock is read only for a deployment that is out

    def started(self, route: Route, tokens: int = 0, probe: Probe | None = None) -> None:
        """An attempt on ``route`` begins; ``tokens``: its prompt estimate (headroom); ``probe``:
        what ``take`` gave it."""
        self.stats.started(route, tokens)
        self.health.started(route, probe)

    def finished(self, route: Route, error: GatewayError | None, seconds: float,
                 first_byte: float | None = None, probe: Probe | None = None,
                 own_account: bool = False) -> None:
        """An attempt on ``route`` ended; ``own_account``: it was sent on the caller's own
        provider credential, whose rate limits and quota are the caller's account's, not the
        deployment's (they never count towards its cooldown, which every other caller would
        meet)."""
        # An error without a code (an upstream 4xx whose body gave none) is named by its type,
        # which the status gives when the body did not: "not_found_error", not "error".
        self.stats.finished(route, error is None, seconds, first_byte,
                            None if error is None else error.code or error.type)
        if error is None:
            self.health.succeeded(route, probe)
        elif own_account and error_class(error) in ACCOUNT_CLASSES:
            self.health.released(route, probe)  # says nothing about the deployment
        elif self.may_cool_down(route) and self.live(route) is not None:
            self.health.failed(route, error, probe)  # an error that does not count frees a probe's slot
        else:  # (or of a deployment the table dropped while it ran: its state was forgotten)
            self.health.released(route, probe)

    def may_cool_down(self, route: Route) -> bool:
        """Whether failures may take ``route`` out: not the one deployment of a group without
        fallbacks (nowhere else to go: a cooldown would only turn its errors into 503s)."""
        group = self.group(route.target.name)
        return group is None or len(group.deployments) > 1 or bool(group.fallbacks)
