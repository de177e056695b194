"""A scripted group of deployments for the attempts stage: each call of the rest of the chain
takes the next outcome scripted for the deployment in ``ctx.route``, on a fake clock."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from switchboard.context import Chunk, Reply, RequestContext, Result, StreamReply
from switchboard.errors import GatewayError, UpstreamUnavailable
from switchboard.routing.groups import Group
from switchboard.routing.health import Probe, Taken
from switchboard.routing.router import ANYWHERE, Needs, Router
from tests.unit.pipeline.fakes import context


class Clock:
    """perf_counter() and time() of the stage under test; sleeping advances it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[tuple[float, float]] = []  # (when, how long)

    def perf_counter(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0 + self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append((self.now, seconds))
        self.now += seconds


def route(name: str, group: str = "g") -> Any:
    """A deployment named ``name`` of the group ``group`` (what labels its attempts)."""
    return SimpleNamespace(deployment=name, target=SimpleNamespace(name=group, require_approval=False))


def group(name: str, deployments: list[Any], num_retries: int = 2, fallbacks: tuple[str, ...] = (),
          larger: tuple[str, ...] = ()) -> Group:
    """``larger``: the group's context_window_fallbacks."""
    return Group(name=name, deployments=tuple(deployments), weights=tuple(1 for _ in deployments),
                 strategy="weighted", num_retries=num_retries, allow_pinning=False, fallbacks=fallbacks,
                 context_window_fallbacks=larger)


class FakeRouter(Router):
    """Groups and plans as given; every start and finish recorded."""

    def __init__(self, groups: dict[str, Group], plans: dict[str, list[Any]] | None = None) -> None:
        super().__init__(SimpleNamespace(current=SimpleNamespace(groups=groups)))
        self.plans = plans or {}
        self.in_flight = 0
        self.finishes: list[tuple[str, GatewayError | None]] = []
        self.out: set[str] = set()  # deployments health keeps out (cooling down, probe held)
        self.asked: list[str] = []  # every availability check, in order
        self.cool_on_failure = False  # a failed deployment is kept out from then on

    def plan(self, group: Group, needs: Needs = ANYWHERE) -> list[Any]:
        return list(self.plans.get(group.name, group.deployments))

    def refusal(self, group: Group, needs: Needs = ANYWHERE, pinned: Any = None) -> GatewayError:
        return UpstreamUnavailable(f"nothing for {group.name}", code="no_deployment_available")

    def take(self, route: Any) -> Taken:
        self.asked.append(route.deployment)
        return False if route.deployment in self.out else None

    def started(self, route: Any, tokens: int = 0, probe: Probe | None = None) -> None:
        self.in_flight += 1

    def finished(self, route: Any, error: GatewayError | None, seconds: float,
                 first_byte: float | None = None, probe: Probe | None = None,
                 own_account: bool = False) -> None:
        self.in_flight -= 1
        self.finishes.append((route.deployment, error))
        if error is not None and self.cool_on_failure:
            self.out.add(route.deployment)


@dataclass
class Outcome:
    """What one attempt does: take ``seconds``, then answer, fail, or stream."""

    seconds: float = 0.01
    error: GatewayError | None = None
    stream: bool = False
    fail_before_first: bool = False  # a stream: fails before its first batch
    fail_after_first: bool = False  # a stream: fails after its first batch


@dataclass
class Script:
    clock: Clock
    outcomes: dict[str, list[Outcome]]
    calls: list[str] = field(default_factory=list)
    call_times: list[float] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    failures: list[GatewayError] = field(default_factory=list)  # every error an attempt raised
    returned: bool = False  # the stage has returned to its caller
    calls_after_return: int = 0

    async def __call__(self, ctx: RequestContext) -> Result:
        assert ctx.route is not None
        name = ctx.route.deployment
        if self.returned:
            self.calls_after_return += 1
        self.calls.append(name)
        self.call_times.append(self.clock.now)
        queue = self.outcomes.get(name) or []
        outcome = queue.pop(0) if queue else Outcome()
        self.clock.now += outcome.seconds
        if outcome.error is not None and not outcome.stream:
            self.failures.append(outcome.error)
            raise outcome.error
        if outcome.stream:
            return StreamReply(self._chunks(name, outcome), close=self._closer(name))
        return Reply({"deployment": name})

    def _closer(self, name: str) -> Any:
        async def close() -> None:
            self.closed.append(name)
        return close

    async def _chunks(self, name: str, outcome: Outcome) -> AsyncGenerator[list[Chunk], None]:
        error = outcome.error or UpstreamUnavailable("stream failed")
        if outcome.fail_before_first:
            self.failures.append(error)
            raise error
        yield [{"deployment": name, "n": 1}]
        if outcome.fail_after_first:
            self.failures.append(error)
            raise error
        yield [{"deployment": name, "n": 2}]


def new_context(deadline: float = float("inf"), **fields: Any) -> RequestContext:
    return context(deadline=deadline, **fields)
