"""What the error-rate and latency rules read: each deployment's recent attempts, in memory.

The observer (``observability/observers.py``, run after the response is written) records every
attempt of a finished request (deployment, group, failed or not, milliseconds) into a bounded
sliding window per deployment; the evaluator reads them. Bounded: at most ``MAX_SAMPLES`` per
deployment (the newest kept) and ``MAX_DEPLOYMENTS`` deployments.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

from switchboard.context import RequestContext
from switchboard.observability.alerts.rules import Rule, failed

MAX_SAMPLES = 10_000  # per deployment
MAX_DEPLOYMENTS = 10_000

Key = tuple[str, str]  # (group, deployment)


class Sample(NamedTuple):
    at: float
    failed: bool
    ms: int


class Window(NamedTuple):
    requests: int
    failures: int
    ms: list[int]


class Windows:
    """Recent attempts per (group, deployment) of the deployments some rule watches."""

    def __init__(self, rules: Sequence[Rule], clock: Callable[[], float] = time.time) -> None:
        self._rules = [r for r in rules if r.kind in ("error_rate", "latency")]
        self._keep = max((r.window_seconds for r in self._rules), default=0.0)
        self._clock = clock
        self._samples: dict[Key, deque[Sample]] = {}
        self._watched: dict[Key, bool] = {}

    def _is_watched(self, key: Key) -> bool:
        watched = self._watched.get(key)
        if watched is None:
            if len(self._watched) >= MAX_DEPLOYMENTS:
                self._watched.clear()
            watched = self._watched[key] = any(r.watches(*key) for r in self._rules)
        return watched

    def add(self, group: str, deployment: str, status: int, ms: int, at: float | None = None,
            code: str | None = None, own_account: bool = False) -> None:
        key = (group, deployment)
        if not self._is_watched(key):
            return
        samples = self._samples.get(key)
        if samples is None:
            if len(self._samples) >= MAX_DEPLOYMENTS:
                return
            samples = self._samples[key] = deque(maxlen=MAX_SAMPLES)
        samples.append(Sample(self._clock() if at is None else at, failed(status, code, own_account), ms))

    def now(self) -> float:
        return self._clock()

    def window(self, key: Key, since: float) -> Window:
        samples = self._samples.get(key, ())
        recent = [s for s in samples if s.at >= since]
        return Window(len(recent), sum(1 for s in recent if s.failed), [s.ms for s in recent])

    def prune(self, now: float | None = None) -> None:
        """Forget what no rule's window reaches any more (deployments left idle included)."""
        oldest = (self._clock() if now is None else now) - self._keep
        for key in list(self._samples):
            samples = self._samples[key]
            while samples and samples[0].at < oldest:
                samples.popleft()
            if not samples:
                del self._samples[key]

    def __iter__(self) -> Iterator[Key]:
        return iter(list(self._samples))


class AttemptObserver:
    """The Observer that feeds ``Windows`` (registered in ``Gateway.observers``)."""

    def __init__(self, windows: Windows) -> None:
        self.windows = windows

    def observe(self, ctx: RequestContext) -> None:
        attempts = ctx.attempts
        if not attempts:
            return
        now = self.windows.now()
        # Every attempt of a request carries the caller's own credential, or none does.
        own = ctx.caller_credential is not None
        for attempt in attempts:
            self.windows.add(attempt.group, attempt.deployment, attempt.status, attempt.ms, now,
                             attempt.code, own)
