"""Try the route stage's candidates: retries within the group, then its fallback groups.

The stages after this one (inline images, the terminal that builds the upstream request) run
once per attempt, for the deployment in ``ctx.route``; work that depends on the target is redone
there (the adapter builds the request, drops parameters and applies the caller's credential on
every call) and what can be shared is kept on the request (images once fetched stay inlined).

An attempt that fails with an error class in ``router.retry.on`` is retried, at most
``num_retries`` times per group, cycling through the group's candidates in their order (a group
of one retries the same deployment). Between attempts the stage waits an exponential backoff
with full jitter; a failed deployment's ``Retry-After`` (or ``retry-after-ms``) is honoured when
the next attempt goes to that same deployment, up to ``retry.max_retry_after_seconds``: a longer
wait moves on to another deployment at once, and when there is none the group is done. No wait
crosses the request's deadline (``ctx.deadline``): a wait that would is not taken, and the
request fails with its last error. Once a group is done on an error class in
``router.fallback_on``, its ``fallbacks`` are tried in order, each planned like the first group
(deployments out of region or cooling down are never tried); an empty plan is skipped. A group
done on an upstream ``context_window`` error (the request is too long for the deployment) tries
its ``context_window_fallbacks`` the same way instead. The last error is what the client gets;
when nothing could be attempted at all, the primary group's refusal.

Streams: the first batch of a stream is read here, before the stream is returned, so a stream
that fails before its first byte (an error status, a dropped connection, an error event, a
first-byte timeout) is retried like any failure; the edge writes nothing before this stage
returns. Once a batch has been returned nothing is retried: a failure mid-stream reaches the
client as the stream's error event.

Before each attempt the router is asked whether its deployment may be sent to now
(``Router.take``): a deployment another request's probe holds, or cooling down since the plan,
is passed over; a half-open one's probe goes to the attempt that sends it, whose token it passes
to the router with its outcome (only the probe's outcome decides the deployment's health). An
attempt going to a deployment other than the one whose limits the rate-limit stage took
(``ctx.limited``) takes that deployment's limits first (``DeploymentLimits.take``, without
waiting): refused, it is passed over in the same way; a failed attempt gives back the tokens it
reserved there. When nothing could be sent at all and a limit was the reason, the client gets
that limit's 429. A request sent nowhere does not use its caller's rate limits (``_unsent``).

Every answer carries ``x-switchboard-model`` (the group of the deployment that answered),
``x-switchboard-deployment`` and ``x-switchboard-attempts``; an error, the last deployment tried.
``ctx.attempts`` lists every attempt for the usage ledger, each with its deployment's group.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Protocol

from switchboard.config.schema import RouterConfig
from switchboard.context import CLIENT_CLOSED, Attempt, Chunk, RequestContext, Result, StreamReply
from switchboard.errors import GatewayError, UnsupportedParameter, UpstreamTimeout, error_class, unraised
from switchboard.pipeline import caller_credentials
from switchboard.pipeline.chain import Handler
from switchboard.routing.pinning import PIN_DEPLOYMENT
from switchboard.routing.router import ANYWHERE, Router

if TYPE_CHECKING:
    from switchboard.routing.groups import Group
    from switchboard.routing.health import Probe
    from switchboard.routing.table import Route

MODEL_HEADER = "x-switchboard-model"
DEPLOYMENT_HEADER = "x-switchboard-deployment"
ATTEMPTS_HEADER = "x-switchboard-attempts"

# An Attempt built without the named tuple's generated ``__new__`` (a Python function's call):
# once a request. Every field is given, in order.
_new = tuple.__new__


class DeploymentLimits(Protocol):
    """The rate limits of the deployments an attempt may go to beyond the rate-limit stage's
    pick (pipeline/limits.py ``RateLimitStage``)."""

    def take(self, ctx: RequestContext, route: Route) -> Awaitable[bool]:
        """Take ``route``'s limits for this request unless taken already; False: refused."""

    def release(self, ctx: RequestContext) -> Awaitable[None]:
        """The attempt under way failed: give back the tokens its ``take`` reserved."""

    def refusal(self, ctx: RequestContext) -> GatewayError | None:
        """Why the last deployment refused by its limits was passed over (None: none was)."""


class AttemptAbandoned(GatewayError):
    """Reported to the router for an attempt the client cancelled: not the deployment's fault."""

    status = 499
    code = "client_closed"


class DeadlinePassed(UpstreamTimeout):
    """The request's deadline came while a retry or fallback was under way: the gateway's
    decision (class "gateway"), so nothing more is tried and no deployment is blamed."""

    code = "deadline_exceeded"
    from_upstream = False


_ABANDONED = AttemptAbandoned("the client closed the request")
_NEVER = float("inf")


def retry_after_seconds(error: GatewayError) -> float | None:
    """The wait a failed attempt's upstream asked for (``retry-after-ms``, else ``Retry-After``
    in seconds or as an HTTP date), or None."""
    headers = error.headers
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            ms = float(value)
        except ValueError:
            ms = -1.0
        if ms >= 0 and ms == ms:  # not NaN
            return ms / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        return max(0.0, when.timestamp() - time.time())
    return seconds if seconds >= 0 and seconds == seconds else None


class _Report:
    """Tells the router how a primed stream ended, once. Nothing here is retried: the client
    may have the first batch already. A stream closed before its end (read or not) was
    abandoned. A stream that ended with an error has its attempt (noted as answered at its
    first byte) take the error's status and code: the ledger and the alert rules read it."""

    __slots__ = ("began", "ctx", "first_byte", "probe", "route", "router")

    def __init__(self, router: Router, route: Route, began: float, first_byte: float,
                 probe: Probe | None, ctx: RequestContext) -> None:
        self.router = router
        self.route = route
        self.began = began
        self.first_byte = first_byte
        self.probe = probe
        self.ctx = ctx

    def __call__(self, error: BaseException | None) -> None:
        failure = error if error is None or isinstance(error, GatewayError) else _ABANDONED
        self.router.finished(self.route, failure, time.perf_counter() - self.began, self.first_byte,
                             self.probe, self.ctx.caller_credential is not None)
        attempts = self.ctx.attempts
        if error is not None and failure is error and attempts:  # the stream's own error
            attempts[-1] = attempts[-1]._replace(status=failure.status, code=failure.code)


def _unsent(refusal: GatewayError) -> GatewayError:
    """The refusal of a request sent nowhere (every deployment cooling down, none it fits, a pin
    that may never serve it): the rate-limit stage gives back what it took, as for a limit's or a
    budget's refusal (``spares_limits``), so a caller retrying keeps its own limits."""
    refusal.spares_limits = True
    return refusal


class AttemptStage:
    name = "attempts"

    def __init__(self, router: Router, config: RouterConfig | None = None,
                 rng: random.Random | None = None,
                 sleep: Callable[[float], Awaitable[None]] | None = None,
                 gate: Callable[[RequestContext, Group], Awaitable[bool]] | None = None,
                 refused: Callable[[Route], bool] | None = None,
                 limits: DeploymentLimits | None = None) -> None:
        self._router = router
        # The limits of a deployment other than the one the rate-limit stage took. None: none.
        self._limits = limits
        # Deployments never sent to (no price, with spend.refuse_unpriced: UsageStage.refused),
        # left out of the candidates and of every fallback's plan. None: none.
        self._refused = refused
        # May the caller use a fallback group (pipeline/subscription.py GroupGate)? None: every one.
        self._gate = gate
        config = config if config is not None else RouterConfig()
        self._retry_on = frozenset(config.retry.on)
        self._fallback_on = frozenset(config.fallback_on)
        # A context-window fallback that fails moves on to the next (larger) one on these.
        self._larger_on = self._fallback_on | {"context_window"}
        self._backoff = config.retry.backoff_seconds
        self._max_backoff = config.retry.max_backoff_seconds
        self._max_retry_after = config.retry.max_retry_after_seconds
        self._random = (rng or random.Random()).random
        self._sleep = sleep if sleep is not None else asyncio.sleep

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Result:
        candidates = ctx.candidates
        group = ctx.group
        if group is None or candidates is None:  # not routed (nothing to try but the route)
            return await call_next(ctx)
        if self._refused is not None:
            candidates = _not_refused(candidates, self._refused)
        if not candidates:
            if ctx.refusal is not None:  # a pin its deployment may never serve: no fallback
                raise _unsent(unraised(ctx.refusal))  # a copy: the context keeps the refusal
            return await self._after_failure(ctx, call_next, group, [], None, 0)
        # The first attempt, inline (no deadline of its own: the upstream's timeouts bound it):
        # the common case is one attempt that answers.
        route = candidates[0]
        router = self._router
        probe = router.take(route)
        # Another request's probe holds it, or it cooled down since the plan; or the rate-limit
        # stage took another deployment's limits (a candidate filtered out) and its own refuse.
        if probe is False or (route.target is not ctx.limited and not await self._admits(ctx, route, probe)):
            candidates, probe = await self._sendable(ctx, candidates[1:])
            if not candidates:
                return await self._after_failure(ctx, call_next, group, [], None, 0)
            route = candidates[0]
        ctx.route = route
        router.started(route, ctx.needs.prompt_tokens if ctx.needs is not None else 0, probe)
        began = time.perf_counter()
        failure: GatewayError | None = None
        try:
            result = await call_next(ctx)
            if type(result) is StreamReply:
                result = await self._primed(ctx, route, result, began, probe)
            else:
                seconds = time.perf_counter() - began
                router.finished(route, None, seconds, None, probe)
                ctx.attempts = [_new(Attempt, (route.deployment, route.target.name, 200, None,
                                               int(seconds * 1000 + 0.5)))]
        except GatewayError as error:
            self._failed(ctx, route, error, began, probe)
            failure = error
        except BaseException:
            self._abandoned(ctx, route, began, probe)
            raise
        if failure is not None:
            if ctx.limits_taken is not None:
                await self._release(ctx)
            try:
                return await self._after_failure(ctx, call_next, group, candidates, failure, 1)
            finally:
                failure = None  # see _after_failure
        headers = ctx.response_headers
        headers[MODEL_HEADER] = route.target.name  # a context-window fallback's own group
        headers[DEPLOYMENT_HEADER] = route.deployment
        headers[ATTEMPTS_HEADER] = "1"
        return result

    async def _sendable(self, ctx: RequestContext, candidates: list[Route]
                        ) -> tuple[list[Route], Probe | None]:
        """``candidates`` from the first that may be sent to now (and whose limits admit the
        request) on, and what ``take`` gave it (empty: none may)."""
        for i, route in enumerate(candidates):
            probe = self._router.take(route)
            if probe is not False and (route.target is ctx.limited or await self._admits(ctx, route, probe)):
                return candidates[i:], probe
        return [], None

    async def _admits(self, ctx: RequestContext, route: Route, probe: Probe | None) -> bool:
        """Whether the limits of ``route`` (not the deployment the rate-limit stage took) admit
        this request, taken now if not yet; refused, the probe ``take`` gave it is released."""
        if self._limits is None or await self._limits.take(ctx, route):
            return True
        self._router.health.released(route, probe)
        return False

    async def _release(self, ctx: RequestContext) -> None:
        """An attempt failed: the tokens reserved for it on its deployment are given back."""
        if self._limits is not None:
            await self._limits.release(ctx)

    async def _attempt(self, ctx: RequestContext, call_next: Handler, route: Route,
                       bounded: bool, probe: Probe | None) -> Result:
        """One try of ``route`` (taken: ``probe`` is what ``Router.take`` gave it): the rest of
        the chain, and a stream's first batch."""
        ctx.route = route
        router = self._router
        router.started(route, ctx.needs.prompt_tokens if ctx.needs is not None else 0, probe)
        began = time.perf_counter()
        try:
            if bounded and ctx.deadline != _NEVER:  # a retry: never past the request's deadline
                async with asyncio.timeout(max(0.0, ctx.deadline - began)):
                    result = await call_next(ctx)
                    if isinstance(result, StreamReply):
                        result = await self._primed(ctx, route, result, began, probe)
            else:
                result = await call_next(ctx)
                if isinstance(result, StreamReply):
                    result = await self._primed(ctx, route, result, began, probe)
        except GatewayError as error:
            self._failed(ctx, route, error, began, probe)
            if ctx.limits_taken is not None:
                await self._release(ctx)
            raise
        except TimeoutError:
            late = DeadlinePassed("the request's deadline passed before a deployment answered")
            self._failed(ctx, route, late, began, probe)
            if ctx.limits_taken is not None:
                await self._release(ctx)
            raise late from None
        except BaseException:
            self._abandoned(ctx, route, began, probe)
            raise
        if not isinstance(result, StreamReply):
            seconds = time.perf_counter() - began
            router.finished(route, None, seconds, None, probe)
            self._note(ctx, Attempt(route.deployment, route.target.name, 200, None, round(seconds * 1000)))
        return result

    async def _primed(self, ctx: RequestContext, route: Route, reply: StreamReply,
                      began: float, probe: Probe | None) -> StreamReply:
        """The stream with its first batch already read (a failure before it is raised here)."""
        chunks = reply.chunks
        try:
            first: list[Chunk] | None = await anext(chunks)
        except StopAsyncIteration:
            first = None
        except BaseException:
            await reply.aclose()
            raise
        first_byte = time.perf_counter() - began
        self._note(ctx, _new(Attempt, (route.deployment, route.target.name, 200, None,
                                       round(first_byte * 1000))))
        if first is not None:
            chunks.unread(first)
        chunks.add(done=_Report(self._router, route, began, first_byte, probe, ctx))  # at once if it ended
        return reply

    def _failed(self, ctx: RequestContext, route: Route, error: GatewayError, began: float,
                probe: Probe | None) -> None:
        seconds = time.perf_counter() - began
        self._router.finished(route, error, seconds, None, probe, ctx.caller_credential is not None)
        ms = round(seconds * 1000)
        self._note(ctx, Attempt(route.deployment, route.target.name, error.status, error.code, ms))

    def _abandoned(self, ctx: RequestContext, route: Route, began: float, probe: Probe | None) -> None:
        """An attempt cut before its answer (the client left, the server is stopping): it counts
        for nothing in health, and the record names it, as the attempt that was under way."""
        seconds = time.perf_counter() - began
        self._router.finished(route, _ABANDONED, seconds, None, probe)
        self._note(ctx, Attempt(route.deployment, route.target.name, CLIENT_CLOSED, "client_closed",
                                round(seconds * 1000)))

    @staticmethod
    def _note(ctx: RequestContext, attempt: Attempt) -> None:
        if ctx.attempts is None:
            ctx.attempts = [attempt]
        else:
            ctx.attempts.append(attempt)

    @staticmethod
    def _answered(ctx: RequestContext, route: Route) -> None:
        """The routing headers of an answer: labelled with the group the deployment belongs to
        (a plan may hold a context-window fallback's deployments after the group's own)."""
        headers = ctx.response_headers
        headers[MODEL_HEADER] = route.target.name
        headers[DEPLOYMENT_HEADER] = route.deployment
        headers[ATTEMPTS_HEADER] = str(len(ctx.attempts)) if ctx.attempts else "1"

    async def _after_failure(self, ctx: RequestContext, call_next: Handler, group: Group,
                             candidates: list[Route], error: GatewayError | None, tried: int) -> Result:
        """The rest of the primary group's attempts after the first failed, then its fallbacks:
        ``context_window_fallbacks`` when the upstream said the request is too long for its
        context window, else ``fallbacks`` on the classes of ``router.fallback_on``."""
        try:
            at = tried - 1  # the candidate that just failed
            if isinstance(error, UnsupportedParameter) and len(candidates) > 1:
                error, answered, tried, at = await self._elsewhere(ctx, call_next, candidates, error, tried)
                if answered is not None:
                    return answered
            if error is not None:
                error, answered = await self._retries(ctx, call_next, group, candidates, error, tried, at)
                if answered is not None:
                    return answered
            if error is None or error_class(error) in self._fallback_on:
                error, answered = await self._chain(ctx, call_next, group, group.fallbacks,
                                                    self._fallback_on, error)
                if answered is not None:
                    return answered
            elif error_class(error) == "context_window" and group.context_window_fallbacks:
                error, answered = await self._chain(ctx, call_next, group, group.context_window_fallbacks,
                                                    self._larger_on, error)
                if answered is not None:
                    return answered
            if error is None:  # nothing was sent: a limit's refusal, else the router's
                refusal = self._limits.refusal(ctx) if self._limits is not None else None
                if refusal is not None:
                    raise refusal
                pin = ctx.headers.get(PIN_DEPLOYMENT)  # valid: the route stage checked it
                raise _unsent(self._router.refusal(group, ctx.needs or ANYWHERE,
                                                   group.deployment(pin) if pin is not None else None))
            raise error
        finally:
            # A failure's traceback holds this frame, which would hold the failure: a reference
            # cycle per failed request, left for the cyclic garbage collector (whose passes stall
            # the event loop). The frames that pass failures on let go of them as they end.
            error = None
            attempts = ctx.attempts
            headers = ctx.response_headers
            if attempts and MODEL_HEADER not in headers:  # failed: the last deployment tried
                headers[MODEL_HEADER] = attempts[-1].group
                headers[DEPLOYMENT_HEADER] = attempts[-1].deployment
                headers[ATTEMPTS_HEADER] = str(len(attempts))

    async def _elsewhere(self, ctx: RequestContext, call_next: Handler, candidates: list[Route],
                         refusal: UnsupportedParameter, tried: int,
                         ) -> tuple[GatewayError, Result | None, int, int]:
        """The group's other deployments after one refused a parameter it cannot translate: a
        group mixing providers answers where the feature exists, not by luck of the pick. The
        refusal is the gateway's own (nothing was sent), so each is tried at once; when every
        one refuses, the first refusal stands. Another error ends this and goes on as a failed
        attempt of that deployment: (the error, the answer or None, the attempts so far, the
        index of the candidate that failed last)."""
        count = len(candidates)
        first = (tried - 1) % count
        for step in range(1, count):
            index = (first + step) % count
            route = candidates[index]
            if time.perf_counter() >= ctx.deadline or (probe := self._router.take(route)) is False:
                continue
            if route.target is not ctx.limited and not await self._admits(ctx, route, probe):
                continue
            tried += 1
            try:
                result = await self._attempt(ctx, call_next, route, True, probe)
            except UnsupportedParameter:
                tried -= 1  # nothing was sent: no retry used up
                continue
            except GatewayError as failure:
                return failure, None, tried, index
            self._answered(ctx, route)
            return refusal, result, tried, index
        return refusal, None, tried, first

    async def _chain(self, ctx: RequestContext, call_next: Handler, group: Group, names: tuple[str, ...],
                     go_on: frozenset[str], error: GatewayError | None,
                     ) -> tuple[GatewayError | None, Result | None]:
        """``group``'s fallback groups ``names`` in order, each planned like the first group and
        retried within itself, until one answers (error, the answer) or one fails with a class
        outside ``go_on`` (the last error, None). A group this request already tried (a
        context-window fallback planned with the group's own deployments) is not tried again."""
        try:
            needs = ctx.needs or ANYWHERE
            for name in names:
                fallback = self._router.group(name)
                if fallback is None or fallback is group or _tried(ctx, fallback.name):
                    continue
                if self._gate is not None and not await self._gate(ctx, fallback):
                    continue
                if (claims := self._router.claims(fallback)) is not None:
                    await claims  # a half-open deployment of it may be this request's probe
                plan = caller_credentials.usable(ctx, self._router.plan(fallback, needs))
                if self._refused is not None:
                    plan = _not_refused(plan, self._refused)
                if not plan:
                    continue
                if time.perf_counter() >= ctx.deadline:
                    break
                plan, probe = await self._sendable(ctx, plan)
                if not plan:
                    continue
                try:
                    result = await self._attempt(ctx, call_next, plan[0], True, probe)
                except GatewayError as failure:
                    tried, at = 1, 0
                    if isinstance(failure, UnsupportedParameter):  # as in the first group
                        failure, answered, tried, at = await self._elsewhere(ctx, call_next, plan, failure, 1)
                        if answered is not None:
                            return error, answered
                        if isinstance(failure, UnsupportedParameter):  # none of it takes the request
                            continue  # (the refusal is not an answer): the next fallback
                    error, answered = await self._retries(ctx, call_next, fallback, plan, failure, tried, at)
                    if answered is not None:
                        return error, answered
                    if error_class(error) not in go_on:
                        break
                    continue
                self._answered(ctx, plan[0])
                return error, result
            return error, None
        finally:
            error = None  # see _after_failure

    async def _retries(self, ctx: RequestContext, call_next: Handler, group: Group,
                       candidates: list[Route], error: GatewayError, tried: int, at: int | None = None,
                       ) -> tuple[GatewayError, Result | None]:
        """Retries within ``group`` after ``tried`` attempts, the last (``candidates[at]``, by
        default the tried-th) failing with ``error``: (the last error, None) when the group is
        done, or (error, the answer)."""
        try:
            allowed = group.num_retries + 1
            count = len(candidates)
            index = tried - 1 if at is None else at  # the candidate that just failed
            # Deployments that asked for too long a wait, or cannot take the request at all.
            avoid: list[Route] | None = None
            failed = candidates[index % count]  # the deployment ``error`` is from
            while tried < allowed and error_class(error) in self._retry_on:
                asked = retry_after_seconds(error)
                if asked is not None and asked > self._max_retry_after:
                    avoid = [failed] if avoid is None else [*avoid, failed]
                index, probe = self._next_candidate(candidates, index + 1, avoid)
                if index < 0:
                    break
                planned = route = candidates[index % count]
                wait = self._backoff_for(tried)
                if asked is not None and route is failed:  # a wait within the bound
                    wait = max(wait, asked)
                if time.perf_counter() + wait >= ctx.deadline:
                    self._router.health.released(route, probe)  # not sent: a probe taken goes on
                    break  # a wait that would cross the deadline is not taken
                if wait > 0:
                    await self._sleep(wait)
                # The model table may have changed since the plan (or during the wait): the
                # retry goes out as the deployment is now, never on a client retired with the
                # credential it held; a deployment removed meanwhile ends the group's retries.
                live = self._router.live(route)
                if live is None:
                    self._router.health.released(route, probe)
                    break
                route = live
                if route.target is not ctx.limited and not await self._admits(ctx, route, probe):
                    avoid = [planned] if avoid is None else [*avoid, planned]  # its limits refused
                    continue
                tried += 1
                try:
                    result = await self._attempt(ctx, call_next, route, True, probe)
                except UnsupportedParameter:
                    # Refused by the gateway (nothing was sent): that deployment cannot take the
                    # request, so its refusal is not the group's answer; the failure stands.
                    refused = candidates[index % count]
                    avoid = [refused] if avoid is None else [*avoid, refused]
                    tried -= 1  # nothing was sent: no retry used up
                    continue
                except GatewayError as failure:
                    error = failure
                    failed = candidates[index % count]
                    continue
                self._answered(ctx, route)
                return error, result
            return error, None
        finally:
            del error  # see _after_failure

    def _next_candidate(self, candidates: list[Route], start: int, avoid: list[Route] | None,
                        ) -> tuple[int, Probe | None]:
        """The index of the first candidate from ``start`` on (wrapping around) that did not ask
        for too long a wait and that may be sent a request now, or -1, and what ``take`` gave
        it. A retry never goes to a deployment cooling down (this request's own failures may
        just have taken it out) nor to a half-open one whose probe another request holds; it
        takes a half-open one's probe."""
        count = len(candidates)
        for i in range(start, start + count):
            route = candidates[i % count]
            if avoid is not None and any(route is r for r in avoid):
                continue
            if (probe := self._router.take(route)) is not False:
                return i, probe
        return -1, None

    def _backoff_for(self, retry: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**(retry-1)))."""
        if self._backoff <= 0:
            return 0.0
        ceiling = min(self._max_backoff, self._backoff * (2 ** (retry - 1)))
        return ceiling * self._random()


def _not_refused(routes: list[Route], refused: Callable[[Route], bool]) -> list[Route]:
    """``routes`` but those never sent to. A function of its own: a comprehension in
    ``AttemptStage.__call__`` made ``self`` a cell there on every request."""
    return [r for r in routes if not refused(r)]


def _tried(ctx: RequestContext, group: str) -> bool:
    return any(a.group == group for a in ctx.attempts or ())
