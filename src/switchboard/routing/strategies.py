"""Load-balancing strategies: the order in which a group's deployments are tried.

Each strategy is a function of the group, its eligible deployments and the deployment
statistics (routing/stats.py); the first of the order is the one chosen, the rest are the
retries' order. Definitions (docs/routing.md, "Groups and strategies"):

- ``weighted``: deployment i first with probability w_i / sum(w) (weights of 0 only after every
  positive one; the rest follow by weighted sampling without replacement).
- ``round-robin``: the eligible deployments in turn, one step per request of the group.
- ``least-busy``: fewest requests in flight on this instance first (ties at random).
- ``latency``: lowest moving average of time to first byte first. Exploration: a deployment
  never tried, or not tried for :data:`STALE_SECONDS`, is tried first once (and once more when
  that one answered: its first answer paid for the connection); one tried lately that never
  answered goes after those that did; otherwise, with probability :data:`EXPLORE`, a
  random other deployment goes first, so a slow deployment that recovered is measured again.
  A request sent counts as a try from its start (one still in flight is not explored again).
- ``cost``: lowest estimated price first (input price x prompt tokens + output price x expected
  output tokens, from each deployment's catalog record); unpriced deployments last.
- ``headroom``: most tokens per minute left first (``tpm`` minus the tokens this instance sent
  it in the current minute); a deployment whose ``rpm`` is used up goes last; a deployment
  without limits counts as unlimited.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable

from switchboard.routing.groups import Group
from switchboard.routing.stats import DeploymentStats
from switchboard.routing.table import Route

EXPLORE = 0.05
STALE_SECONDS = 30.0
# Expected output tokens when the request does not bound them (the cost estimate).
DEFAULT_OUTPUT_TOKENS = 256

rng = random.Random()
# A process forked after import (a preloading process manager) would repeat its parent's choices.
os.register_at_fork(after_in_child=rng.seed)
_NEVER = float("inf")

Strategy = Callable[[Group, list[Route], DeploymentStats, int, int | None], list[Route]]


def weighted(group: Group, eligible: list[Route], stats: DeploymentStats, prompt: int,
             output: int | None) -> list[Route]:
    w = group.weight_of
    if len(eligible) == 2:  # the common group, without sorting
        a, b = eligible
        wa, wb = w.get(a.deployment, 1), w.get(b.deployment, 1)
        if wa + wb == 0:
            return [a, b] if rng.random() < 0.5 else [b, a]
        return [a, b] if rng.random() * (wa + wb) < wa else [b, a]
    # Efraimidis-Spirakis: u ** (1 / w) sorted high to low is weighted sampling without
    # replacement; the first is chosen with probability w_i / sum(w).
    keyed = []
    zeros = []
    for r in eligible:
        weight = w.get(r.deployment, 1)
        if weight > 0:
            keyed.append((rng.random() ** (1.0 / weight), r))
        else:
            zeros.append(r)
    keyed.sort(key=lambda kr: kr[0], reverse=True)
    rng.shuffle(zeros)
    return [r for _, r in keyed] + zeros


def round_robin(group: Group, eligible: list[Route], stats: DeploymentStats, prompt: int,
                output: int | None) -> list[Route]:
    turn = stats.turns.get(group.name, 0)
    stats.turns[group.name] = turn + 1
    i = turn % len(eligible)
    return eligible[i:] + eligible[:i]


def _shuffled(eligible: list[Route]) -> list[Route]:
    out = list(eligible)
    rng.shuffle(out)
    return out


def least_busy(group: Group, eligible: list[Route], stats: DeploymentStats, prompt: int,
               output: int | None) -> list[Route]:
    def in_flight(r: Route) -> int:
        d = stats.peek(r)
        return 0 if d is None else d.in_flight

    return sorted(_shuffled(eligible), key=in_flight)


def latency(group: Group, eligible: list[Route], stats: DeploymentStats, prompt: int,
            output: int | None) -> list[Route]:
    now = stats.now()
    unmeasured: list[Route] = []
    measured: list[tuple[float, Route]] = []
    for r in eligible:
        d = stats.peek(r)
        # Tried: sent a request (one still in flight counts, so a slow first answer is not
        # waited for by every request meanwhile), or had one end.
        if d is None or now - max(d.last_started, d.last_finished) > STALE_SECONDS:
            unmeasured.append(r)  # never tried, or not for a while: try it (again)
        elif d.finished == 1 and d.answered == 1 and d.in_flight == 0:
            # Answered once, the answer that paid for the first connection: once more, so its
            # average starts from a warm one (routing/stats.py) before it is ranked.
            unmeasured.append(r)
        else:  # tried lately and never answered (or not yet): after the others
            measured.append((_NEVER if d.first_byte is None else d.first_byte, r))
    measured.sort(key=lambda fr: fr[0])
    ranked = [r for _, r in measured]
    if unmeasured:
        rng.shuffle(unmeasured)
        return unmeasured + ranked
    if len(ranked) > 1 and rng.random() < EXPLORE:
        i = rng.randrange(1, len(ranked))
        ranked.insert(0, ranked.pop(i))
    return ranked


def estimated_cost(price: tuple[float, float] | None, prompt: int, output: int | None) -> float | None:
    """USD per million requests of this shape (a ranking key, not a bill)."""
    if price is None:
        return None
    out = DEFAULT_OUTPUT_TOKENS if output is None else output
    return price[0] * prompt + price[1] * out


def cost(group: Group, eligible: list[Route], stats: DeploymentStats, prompt: int,
         output: int | None) -> list[Route]:
    prices = dict(zip((r.deployment for r in group.deployments), group.prices, strict=False))
    priced: list[tuple[float, Route]] = []
    unpriced: list[Route] = []
    for r in _shuffled(eligible):  # equal prices: at random
        c = estimated_cost(prices.get(r.deployment), prompt, output)
        if c is None:
            unpriced.append(r)
        else:
            priced.append((c, r))
    priced.sort(key=lambda cr: cr[0])
    return [r for _, r in priced] + unpriced


def headroom_of(route: Route, stats: DeploymentStats, tokens: int, now: float) -> tuple[int, float]:
    """(0 when its rpm is used up else 1, tokens per minute left): larger is more room."""
    entry = route.entry
    rpm = entry.rpm if entry else None
    tpm = entry.tpm if entry else None
    d = stats.peek(route)
    requests, sent = (0, 0) if d is None else d.sent_this_minute(now)
    room = 1 if rpm is None or requests < rpm else 0
    left = float("inf") if tpm is None else float(tpm - sent - tokens)
    return room, left


def headroom(group: Group, eligible: list[Route], stats: DeploymentStats, prompt: int,
             output: int | None) -> list[Route]:
    now = stats.now()
    return sorted(_shuffled(eligible), key=lambda r: headroom_of(r, stats, prompt, now), reverse=True)


STRATEGIES: dict[str, Strategy] = {
    "weighted": weighted,
    "round-robin": round_robin,
    "least-busy": least_busy,
    "latency": latency,
    "cost": cost,
    "headroom": headroom,
}


def order(group: Group, eligible: list[Route], stats: DeploymentStats, strategy: str,
          prompt_tokens: int, output_tokens: int | None = None) -> list[Route]:
    """``eligible`` in the order to try them under ``strategy`` (unknown: configuration order)."""
    if len(eligible) < 2:
        return eligible
    fn = STRATEGIES.get(strategy)
    return eligible if fn is None else fn(group, eligible, stats, prompt_tokens, output_tokens)
