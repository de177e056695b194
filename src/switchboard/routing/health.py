"""Cooldowns and circuit breakers: a deployment that keeps failing is taken out for a while,
then probed (half-open) before it takes full traffic again. Embedded: in-process; with Redis,
shared by every instance (docs/routing.md, "Cooldowns, health, context windows and residency").

The rules come from ``router.cooldown``: ``failures`` consecutive failures, or ``failure_rate``
of at least ``min_requests`` requests within ``window_seconds``, of the error classes in ``on``
(switchboard.errors.error_class) take the deployment out for ``seconds``. Then it is half-open:
one request at a time is let through (the probe); its answer brings the deployment back, its
failure cools it down again.

``take`` is asked before every attempt and never waits: it reads the state this process keeps.
Half-open, it hands the probe to one attempt as a token (a ``Probe``): only the attempt holding
it makes the deployment's probe, so only its ``started``, ``succeeded``, ``failed`` and
``released`` count as the probe's; an attempt without it (one sent before the breaker opened)
decides nothing and frees nothing. With Redis (stores/redis/health.py) failures are also
counted there (the streak spans every instance), a cooldown opened by any instance is published
on the change feed's ``health`` topic and adopted by every other at once (an instance that
starts reads the deployments out from Redis once, ``_adopt``), and the half-open
probe is claimed with SET NX so one instance at a time sends it; the claim holds the probe's
token, so only its attempt extends or drops it (a late release of an older probe cannot free a
newer claim). The request that finds a deployment half-open with no claim held here waits for
that claim (``claims``, one Redis call, before it is planned), so it may be the probe itself:
an idle instance does not need a second request within the claim's 5 s to ever probe. A
request that answers costs nothing in Redis unless the deployment has failed since its last
answer; a request finding no deployment out costs nothing either. If Redis is unreachable the
bookkeeping goes on in this process alone: health never fails a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Container, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson

from switchboard.config.schema import CooldownConfig
from switchboard.errors import GatewayError, error_class
from switchboard.routing.table import Route
from switchboard.stores.protocols import EVERYTHING, ChangeFeed, HealthStore, Subscription

log = logging.getLogger("switchboard.routing")

TOPIC = "health"
# A probe let through must be sent (router.started) within this, else another may go.
GRANT_SECONDS = 5.0
# Cluster: how often an instance asks again for a probe another instance holds.
CLAIM_RETRY_SECONDS = 0.25
# Cluster: the most a request waits for a probe's claim (one Redis call); a Redis that does not
# answer by then leaves the request to the deployments it may use without one.
CLAIM_WAIT_SECONDS = 0.5
# At most one warning about an unreachable Redis per this many seconds.
WARN_SECONDS = 60.0

Key = tuple[str, str]
# What ``take`` answers: None, the deployment is closed (send freely); False, it may not be sent
# now (cooling down, or another attempt holds its probe); a token, this attempt is its probe.
Probe = str
Taken = Probe | Literal[False] | None
# Told of a deployment's cooldown opening (True) and of its recovery (False): (group,
# deployment, cooling down). Called on the event loop; must be quick and must not raise.
Listener = Callable[[str, str, bool], None]


@dataclass(slots=True)
class _State:
    streak: int = 0  # failures in a row, as this instance saw them
    tripped: bool = False  # cooling down, or half-open once ``until`` has passed
    until: float = 0.0  # the cooldown's end (this process's monotonic clock)
    probe_until: float = 0.0  # half-open: a probe is out until then
    probe: Probe | None = None  # the token of the attempt holding the probe
    granted: float = 0.0  # cluster: this instance holds the probe claim until then
    claim: Probe | None = None  # cluster: the token that claim is held under
    claiming: asyncio.Task[None] | None = None  # cluster: the claim being asked for in Redis
    next_claim: float = 0.0
    dirty: bool = False  # failed since its last answer (the shared streak needs a reset)
    # Per second of the window: [second, answered, failed].
    window: deque[list[int]] = field(default_factory=deque)


class Health:
    def __init__(self, config: CooldownConfig | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config if config is not None else CooldownConfig()
        self._on = frozenset(self.config.on)
        # Read on every answer: kept as a plain attribute (a pydantic model's field is read
        # through its slow attribute path). The cooldown rules are fixed for the process' life.
        self._by_rate = self.config.failure_rate is not None
        self._clock = clock
        self._states: dict[Key, _State] = {}
        self._shared: HealthStore | None = None
        self._feed: ChangeFeed | None = None
        self._subscription: Subscription | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._warned = -WARN_SECONDS
        # This instance's name, the start of its probes' tokens (``<holder>:<n>``, one per
        # probe): a probe claim in Redis holds its token, so only that probe extends or drops it.
        self._holder = uuid.uuid4().hex
        self._probes = itertools.count(1)
        # Who hears of cooldowns and recoveries (the alerts); an empty list costs nothing.
        self.listeners: list[Listener] = []

    async def start(self, shared: HealthStore | None, feed: ChangeFeed | None) -> None:
        """Share the state through ``shared`` (Redis) and ``feed``; None: this process only."""
        self._shared = shared
        if shared is not None and feed is not None:
            self._feed = feed
            self._subscription = await feed.subscribe(TOPIC, self._message)
        if shared is not None:
            # Subscribed first, so no cooldown opened meanwhile is missed between the two.
            await self._adopt(shared)

    async def _adopt(self, shared: HealthStore) -> None:
        """Take on the deployments the other instances have out of traffic: the feed told them
        before this process listened, and each would otherwise get one failing request from
        here (its failure's Redis answer saying it is out). Read once, at start: the request
        path stays without Redis calls. Redis unreachable: this process starts on its own."""
        try:
            out = await shared.out()
        except Exception as exc:
            self._unreachable(exc)
            return
        now = self._clock()
        for key, ms in out.items():
            state = self._states.setdefault(key, _State())
            if not state.tripped:
                self._tell(key, True)
            # ms 0: half-open, as on every instance that saw the cooldown (a probe first).
            state.tripped = True
            state.until = max(state.until, now + ms / 1000)
        if out:
            cooling = sum(1 for ms in out.values() if ms > 0)
            log.info("%d deployment(s) out of traffic on the other instances: %d cooling down, %d "
                     "half-open", len(out), cooling, len(out) - cooling)

    async def close(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.close()
            self._subscription = None
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()
        self._shared = None

    # -- the request path ------------------------------------------------------------------

    def take(self, route: Route, now: float | None = None) -> Taken:
        """Whether ``route`` may be sent an attempt now (sync: asked before every attempt). None:
        closed, send it; False: not now; a ``Probe``: half-open, and this attempt is its probe,
        the token to pass to ``started`` and to the outcome. ``now``: ``time.monotonic()``, read
        only for a deployment that is out."""
        state = self._states.get((route.target.name, route.deployment))
        if state is None or not state.tripped:
            return None
        if now is None:
            now = time.monotonic()
        if now < state.until or now < state.probe_until:
            return False
        if self._shared is None:
            probe = self._token()
        elif self._won(route, state, now) and state.claim is not None:
            probe = state.claim  # the claim this instance won in Redis
        else:
            return False
        state.granted, state.claim = 0.0, None
        state.probe = probe
        state.probe_until = now + GRANT_SECONDS  # to be sent within this, else another may go
        return probe

    def eligible(self, route: Route, now: float) -> bool:
        """Whether ``route`` may be planned: as :meth:`take`, without taking a half-open route's
        probe (the attempt that sends it takes it; a route planned and never tried must not keep
        its probe from the next request)."""
        state = self._states.get((route.target.name, route.deployment))
        if state is None or not state.tripped:
            return True
        if now < state.until or now < state.probe_until:
            return False
        return self._shared is None or self._won(route, state, now)

    def ready_in(self, routes: Iterable[Route]) -> float | None:
        """The seconds until the first of ``routes`` may be sent an attempt again (its cooldown
        over, or its half-open probe answered or lapsed): 0 when one may now; None for no routes.
        A refusal's ``Retry-After``: error path only."""
        now = self._clock()
        soonest: float | None = None
        for route in routes:
            state = self._states.get((route.target.name, route.deployment))
            wait = 0.0 if state is None or not state.tripped else max(0.0, state.until - now,
                                                                      state.probe_until - now)
            soonest = wait if soonest is None else min(soonest, wait)
        return soonest

    def claims(self, routes: Iterable[Route]) -> Awaitable[None] | None:
        """Cluster: the claims in Redis of the half-open deployments among ``routes`` whose probe
        no attempt holds and this instance has no claim on, asked for now so that the request
        about to be planned may be their probe (``eligible`` and ``take`` read only this
        process's state). None, nothing to wait for: embedded, or no deployment is out (the
        common case, answered without a clock read), or every claim is held or asked for too
        recently. Otherwise an awaitable that ends when the claims are answered, after
        :data:`CLAIM_WAIT_SECONDS` at most; a request cancelled meanwhile leaves them running."""
        states = self._states
        if self._shared is None or not states:
            return None
        now = time.monotonic()
        asked: list[asyncio.Task[None]] | None = None
        for route in routes:
            state = states.get((route.target.name, route.deployment))
            if (state is None or not state.tripped or now < state.until or now < state.probe_until
                    or (now < state.granted and state.claim is not None)):
                continue
            task = state.claiming
            if task is None:
                if now < state.next_claim:
                    continue  # another instance holds it: asked a moment ago
                task = self._ask(route, state)
                if task is None:
                    continue
            asked = [task] if asked is None else [*asked, task]
        return None if asked is None else _answered(asked)

    def _won(self, route: Route, state: _State, now: float) -> bool:
        """Cluster, half-open: whether this instance holds the probe's claim in Redis; if not,
        it asks for it in the background, for a later request (the request path asks through
        ``claims`` before planning, so this is for one whose claim did not answer in time)."""
        if now < state.granted and state.claim is not None:
            return True
        if state.claiming is None and now >= state.next_claim:
            self._ask(route, state)
        return False

    def _ask(self, route: Route, state: _State) -> asyncio.Task[None] | None:
        """Start asking Redis for ``route``'s probe claim (one request at a time per deployment)."""
        try:
            task = asyncio.get_running_loop().create_task(
                self._claim((route.target.name, route.deployment), state, route))
        except RuntimeError:  # no loop (a sync caller): nothing to ask
            return None
        state.claiming = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _token(self) -> Probe:
        return f"{self._holder}:{next(self._probes)}"

    def started(self, route: Route, probe: Probe | None) -> None:
        """An attempt is being sent to ``route``; ``probe``: its token when it took the probe,
        which is then out until answered (else the grant would lapse in seconds)."""
        if probe is None:
            return  # the common case: not a probe
        key = (route.target.name, route.deployment)
        state = self._states.get(key)
        if state is None or state.probe != probe:
            return  # no longer its probe: the deployment recovered, or cooled down again
        state.probe_until = self._clock() + route.target.timeouts.total
        if self._shared is not None:
            # The claim was short (a grant unused lapses in seconds): now it must outlast the probe.
            self._spawn(self._extend(key, route, probe))

    def succeeded(self, route: Route, probe: Probe | None = None) -> None:
        """``route`` answered; ``probe``: the attempt's token, if it took one."""
        key = (route.target.name, route.deployment)
        state = self._states.get(key)
        if state is None:
            if not self._by_rate:
                return  # the common case: nothing to count
            state = self._states[key] = _State()
        now = self._clock()
        if probe is not None and state.tripped and probe == state.probe:
            log.info("deployment %s of %s is healthy again", key[1], key[0])
            del self._states[key]
            self._tell(key, False)
            if self._shared is not None:
                self._spawn(self._recovered(key))
            return
        # Not the probe (an attempt sent before the breaker opened): its answer is counted, but
        # only the probe's brings the deployment back.
        state.streak = 0
        self._count(state, now, failed=False)
        if state.dirty:
            state.dirty = False
            if self._shared is not None:
                self._spawn(self._reset(key))
        if (not state.tripped and not self._by_rate
                and not any(s[2] for s in state.window)):
            del self._states[key]

    def released(self, route: Route, probe: Probe | None) -> None:
        """An attempt on ``route`` ended saying nothing about it (a caller's error, the client
        gone, the deadline, a check never sent), or was never sent: when it held the half-open
        probe, the probe goes to the next request at once, instead of staying taken until its
        timeout. Another attempt's ending frees nothing."""
        if probe is None:
            return  # the common case: not a probe
        key = (route.target.name, route.deployment)
        state = self._states.get(key)
        if state is None or state.probe != probe:
            return
        state.probe = None
        state.probe_until = 0.0
        if self._shared is not None:
            self._spawn(self._release(key, probe))

    def failed(self, route: Route, error: GatewayError, probe: Probe | None = None) -> None:
        """``route`` failed with ``error``; ``probe``: the attempt's token, if it took one. Only
        the classes in ``cooldown.on`` count (a caller's bad request says nothing about the
        deployment: a probe ending so frees its slot)."""
        if error_class(error) not in self._on:
            self.released(route, probe)
            return
        key = (route.target.name, route.deployment)
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _State()
        now = self._clock()
        if state.tripped and (now < state.until or probe is None or probe != state.probe):
            return  # already out, or half-open and not the probe (sent before the breaker opened)
        probe_failed = state.tripped
        state.streak += 1
        state.dirty = True
        rate = self._count(state, now, failed=True)
        trip = probe_failed or rate or state.streak >= self.config.failures
        if trip:
            self._open(key, state, now, self.config.seconds)
        if self._shared is not None:
            self._spawn(self._report(key, trip))

    def state(self, route: Route) -> dict[str, Any]:
        """What the admin API shows of ``route``: healthy, cooling_down (until when) or
        half_open, and its failures within the window."""
        state = self._states.get((route.target.name, route.deployment))
        if state is None:
            return {"status": "healthy", "until": None, "recent_failures": 0}
        now = self._clock()
        self._prune(state, now)
        failures = sum(s[2] for s in state.window)
        if not state.tripped:
            return {"status": "healthy", "until": None, "recent_failures": failures}
        if now < state.until:
            until = datetime.now(UTC) + timedelta(seconds=state.until - now)
            return {"status": "cooling_down", "until": until.isoformat(timespec="milliseconds"),
                    "recent_failures": failures}
        return {"status": "half_open", "until": None, "recent_failures": failures}

    async def tripped(self, route: Route) -> bool:
        """Whether ``route`` is out of traffic: cooling down or half-open here, or (Redis)
        cooling down on any instance. Not on the request path: the alerts' breaker sweep."""
        key = (route.target.name, route.deployment)
        state = self._states.get(key)
        if state is not None and state.tripped:
            return True
        shared = self._shared
        if shared is None:
            return False
        try:
            return await shared.cooling_ms(*key) > 0
        except Exception as exc:
            self._unreachable(exc)
            return True  # unknown: as if still out

    # -- this process's bookkeeping --------------------------------------------------------

    def _tell(self, key: Key, tripped: bool) -> None:
        for listener in self.listeners:
            try:
                listener(key[0], key[1], tripped)
            except Exception:  # a listener never breaks the bookkeeping
                log.exception("a health listener failed")

    def keep(self, deployments: Container[Key]) -> None:
        """Forget the state of the deployments (by group and deployment name) no longer in the
        model table: one removed while cooling down is never probed again, and would be held
        forever. Its cooldown in Redis (cluster) expires on its own."""
        for key in [k for k in self._states if k not in deployments]:
            del self._states[key]

    def _open(self, key: Key, state: _State, now: float, seconds: float) -> None:
        if not (state.tripped and now < state.until):
            log.warning("deployment %s of %s is cooling down for %.3g s", key[1], key[0], seconds)
            self._tell(key, True)
        state.tripped = True
        state.until = max(state.until, now + seconds)
        state.probe_until = state.granted = 0.0
        state.probe = state.claim = None  # an attempt holding the old probe decides nothing now
        state.streak = 0

    def _prune(self, state: _State, now: float) -> None:
        oldest = int(now - self.config.window_seconds)
        while state.window and state.window[0][0] <= oldest:
            state.window.popleft()

    def _count(self, state: _State, now: float, failed: bool) -> bool:
        """Count an outcome in the window; whether the failure rate now trips the breaker."""
        self._prune(state, now)
        second = int(now)
        if not state.window or state.window[-1][0] != second:
            state.window.append([second, 0, 0])
        state.window[-1][2 if failed else 1] += 1
        rate = self.config.failure_rate
        if not failed or rate is None:
            return False
        total = sum(s[1] + s[2] for s in state.window)
        bad = sum(s[2] for s in state.window)
        return total >= self.config.min_requests and bad >= rate * total

    # -- sharing through Redis and the change feed -----------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            task = asyncio.get_running_loop().create_task(work)
        except RuntimeError:  # no loop (a sync caller): nothing to share with
            work.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _unreachable(self, exc: Exception) -> None:
        now = self._clock()
        if now - self._warned >= WARN_SECONDS:
            self._warned = now
            log.warning("deployment health is kept in this process only: redis failed (%s)",
                        type(exc).__name__)

    async def _publish(self, key: Key, ms: int) -> None:
        if self._feed is None:
            return
        message = orjson.dumps({"g": key[0], "d": key[1], "ms": ms}).decode()
        try:
            await self._feed.publish(TOPIC, message)
        except Exception as exc:
            self._unreachable(exc)

    async def _report(self, key: Key, force: bool) -> None:
        shared = self._shared
        if shared is None:
            return
        c = self.config
        try:
            result = await shared.failed(key[0], key[1], c.failures, int(c.seconds * 1000), force)
        except Exception as exc:
            self._unreachable(exc)
            return
        if result.cooling_ms > 0:
            state = self._states.setdefault(key, _State())
            self._open(key, state, self._clock(), result.cooling_ms / 1000)
        if result.opened:
            await self._publish(key, result.cooling_ms)

    async def _reset(self, key: Key) -> None:
        if self._shared is None:
            return
        try:
            await self._shared.succeeded(key[0], key[1])
        except Exception as exc:
            self._unreachable(exc)

    async def _recovered(self, key: Key) -> None:
        if self._shared is None:
            return
        try:
            await self._shared.succeeded(key[0], key[1], probe=True)
        except Exception as exc:
            self._unreachable(exc)
            return
        await self._publish(key, 0)

    async def _extend(self, key: Key, route: Route, probe: Probe) -> None:
        if self._shared is None:
            return
        ms = int((GRANT_SECONDS + route.target.timeouts.total) * 1000)
        try:
            await self._shared.extend_probe(key[0], key[1], ms, probe)
        except Exception as exc:
            self._unreachable(exc)

    async def _release(self, key: Key, probe: Probe) -> None:
        if self._shared is None:
            return
        try:
            await self._shared.release_probe(key[0], key[1], probe)
        except Exception as exc:
            self._unreachable(exc)

    async def _claim(self, key: Key, state: _State, route: Route) -> None:
        try:
            if self._shared is None:
                return
            # The claim holds the token of the probe it is for: ``<this instance>:<n>``.
            token = self._token()
            try:
                claim = await self._shared.claim_probe(key[0], key[1], int(GRANT_SECONDS * 1000), token)
            except Exception as exc:
                self._unreachable(exc)
                # Probe on this instance's say.
                state.granted, state.claim = self._clock() + GRANT_SECONDS, token
                return
            now = self._clock()
            if claim.cooling_ms > 0:
                self._open(key, state, now, claim.cooling_ms / 1000)
            elif claim.claimed:
                state.granted, state.claim = now + GRANT_SECONDS, token
            else:
                state.next_claim = now + CLAIM_RETRY_SECONDS
        finally:
            state.claiming = None

    async def _message(self, topic: str, message: str) -> None:
        if message == EVERYTHING:  # the feed reconnected: the cooldowns held here end on their own
            return
        try:
            data = orjson.loads(message)
            key = (str(data["g"]), str(data["d"]))
            ms = int(data["ms"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("ignoring a malformed health message")
            return
        if ms <= 0:
            gone = self._states.pop(key, None)
            if gone is not None and gone.tripped:
                self._tell(key, False)
            return
        state = self._states.setdefault(key, _State())
        self._open(key, state, self._clock(), ms / 1000)


async def _answered(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for claims being asked (shared by every request waiting for them), within bounds:
    ``asyncio.wait`` neither cancels them at its timeout nor when the waiter is cancelled."""
    await asyncio.wait(tasks, timeout=CLAIM_WAIT_SECONDS)
