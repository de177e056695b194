"""What each deployment is doing, as this instance sees it: requests in flight, moving
averages of latency and time to first byte, recent errors, what was sent in the current minute.
In-process and approximate by design (each instance balances its own traffic); the strategies
read it (routing/strategies.py), the admin API shows it (GET /admin/v1/routing/groups).

Memory is bounded: one small record per deployment served (keyed by group and deployment
name, so a model table swapped at run time keeps the statistics of the deployments it still
holds; those of a deployment it no longer holds are forgotten with the swap, :meth:`keep`), each
with at most :data:`RECENT_ERRORS` recent errors.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Container
from typing import Any

from switchboard.routing.table import Route

# Weight of the newest sample in the moving averages: about the last ten requests count.
ALPHA = 0.2
# A sample counts for at most this many times the average (and 1 ms): one stall or a connection
# made again moves an average by 60 % at most (1 + ALPHA * (SAMPLE_CAP - 1)), while a lasting
# slowdown still shows within a few answers (a 50-fold one in about nine).
SAMPLE_CAP = 4.0
_CAP_FLOOR = 0.001
RECENT_ERRORS = 20


class Deployment:
    """One deployment's counters. Latencies in seconds; None until the first sample."""

    __slots__ = ("answered", "errors", "finished", "first_byte", "in_flight", "last_finished", "last_sample",
                 "last_started", "minute", "minute_requests", "minute_tokens", "total")

    def __init__(self) -> None:
        self.in_flight = 0
        self.finished = 0
        self.answered = 0  # of those finished, the ones that answered (the averages' samples)
        # Moving averages: time to the first byte (a stream's first chunk; a non-stream
        # answer's whole response) and total time.
        self.first_byte: float | None = None
        self.total: float | None = None
        self.last_sample = 0.0  # monotonic time of the last latency sample (0: never)
        self.last_finished = 0.0  # ... of the last request that ended, failed or not (0: never)
        self.last_started = 0.0  # ... of the last request sent (0: never)
        self.errors: deque[tuple[float, str]] = deque(maxlen=RECENT_ERRORS)  # (unix time, code)
        self.minute = 0  # the minute (monotonic // 60) the two counters below are for
        self.minute_requests = 0
        self.minute_tokens = 0

    def sent_this_minute(self, now: float) -> tuple[int, int]:
        """Requests and tokens sent in the current minute."""
        if int(now // 60) != self.minute:
            return 0, 0
        return self.minute_requests, self.minute_tokens


def _moved(average: float, sample: float) -> float:
    """``average`` moved toward ``sample``, which counts for at most :data:`SAMPLE_CAP` times it."""
    cap = SAMPLE_CAP * (average if average > _CAP_FLOOR else _CAP_FLOOR)
    return average + ALPHA * ((sample if sample < cap else cap) - average)


def key(route: Route) -> tuple[str, str]:
    return route.target.name, route.deployment


class DeploymentStats:
    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._by: dict[tuple[str, str], Deployment] = {}
        self.turns: dict[str, int] = {}  # round robin: requests routed per group

    def now(self) -> float:
        return float(self._clock())

    def of(self, route: Route) -> Deployment:
        k = (route.target.name, route.deployment)
        d = self._by.get(k)
        if d is None:
            d = self._by[k] = Deployment()
        return d

    def peek(self, route: Route) -> Deployment | None:
        """The counters of ``route`` if it was ever sent a request (reading creates nothing)."""
        return self._by.get((route.target.name, route.deployment))

    def started(self, route: Route, tokens: int = 0) -> None:
        """A request to ``route`` is being sent, with ``tokens`` (the prompt estimate)."""
        d = self.of(route)
        d.in_flight += 1
        now = d.last_started = self._clock()
        minute = int(now // 60)
        if minute != d.minute:
            d.minute, d.minute_requests, d.minute_tokens = minute, 0, 0
        d.minute_requests += 1
        d.minute_tokens += tokens

    def finished(self, route: Route, ok: bool, seconds: float, first_byte: float | None,
                 code: str | None = None) -> None:
        """It ended: answered (``ok``) or failed (with the error's ``code``), after ``seconds``,
        its first byte after ``first_byte`` seconds (streams; None otherwise). The router
        passes an error's code, else its type."""
        d = self._by.get((route.target.name, route.deployment))
        if d is None:
            return  # removed from the model table while the request ran: forgotten (keep)
        if d.in_flight > 0:
            d.in_flight -= 1
        d.finished += 1
        d.last_finished = self._clock()
        if not ok:
            d.errors.append((time.time(), code or "error"))
            return  # a failure's time says nothing about how fast the deployment answers
        fb = seconds if first_byte is None else first_byte
        n = d.answered
        d.answered = n + 1
        if d.first_byte is None or d.total is None:
            d.first_byte, d.total = fb, seconds
        elif n == 1:
            # A deployment's first answer also paid for what only the first pays (the connection,
            # its TLS handshake, the gateway's first use of the provider's code), which may have
            # cost more than the answer: the lower of the first two starts the averages.
            d.first_byte, d.total = min(d.first_byte, fb), min(d.total, seconds)
        else:
            d.first_byte = _moved(d.first_byte, fb)
            d.total = _moved(d.total, seconds)
        d.last_sample = self._clock()

    def keep(self, deployments: Container[tuple[str, str]], groups: Container[str]) -> None:
        """Forget the deployments (by group and deployment name) and the groups no longer in the
        model table: a table changed at run time keeps no record of what it dropped."""
        for k in [k for k in self._by if k not in deployments]:
            del self._by[k]
        for g in [g for g in self.turns if g not in groups]:
            del self.turns[g]

    def state(self, route: Route) -> dict[str, Any]:
        """What the admin API shows for ``route``."""
        d = self.peek(route) or Deployment()
        now = self._clock()
        requests, tokens = d.sent_this_minute(now)
        return {
            "in_flight": d.in_flight,
            "latency_ms": None if d.total is None else round(d.total * 1000, 1),
            "first_byte_ms": None if d.first_byte is None else round(d.first_byte * 1000, 1),
            "requests_this_minute": requests,
            "tokens_this_minute": tokens,
            "recent_errors": [
                {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)), "code": code}
                for at, code in d.errors
            ],
        }
