"""What instances share: a cache, the change feed, and deployment health (cluster only)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import NamedTuple, Protocol


class SharedCache(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store for ``ttl`` seconds (> 0)."""

    async def delete(self, key: str) -> None: ...

    async def touch(self, key: str, ttl: float, prefix: bytes = b"",
                    group: str | None = None) -> bytes | None:
        """The value, now kept ``ttl`` seconds (> 0) from now (a sliding expiry) when it begins
        with ``prefix`` (its owner's mark), else returned with its expiry left as it was; None,
        and nothing stored, when ``key`` holds nothing. One step (cluster: one round trip).
        ``group``: the one ``key`` was stored in by ``add_counted``, kept as long as it."""

    async def add_counted(self, key: str, value: bytes, ttl: float, group: str, limit: int) -> bool:
        """Store for ``ttl`` seconds as one of ``group``'s keys, only when fewer than ``limit`` of
        them hold a value (one deleted or expired no longer counts); True when stored. Atomic
        across instances. One step (cluster: one round trip)."""

    async def add(self, key: str, value: bytes, ttl: float) -> bool:
        """Store for ``ttl`` seconds only when ``key`` holds nothing; True when stored. Atomic
        across instances: of callers racing on one key, exactly one gets True (single-use marks)."""

    async def take(self, key: str) -> bytes | None:
        """The value, removed in the same step: of callers racing on one key, one gets it."""


Callback = Callable[[str, str], Awaitable[None]]

# The message that says anything of a topic may have changed: drop (or reload) everything. Sent
# by a change feed to its subscribers when it may have lost messages (it reconnected), and by
# whoever changes everything at once.
EVERYTHING = "*"


class Subscription(Protocol):
    async def close(self) -> None: ...


class ChangeFeed(Protocol):
    """Tells every instance that something changed (a key, a model, a policy). At most once:
    a message can be lost (a reconnect), so whatever it invalidates also has a short TTL. A feed
    that reconnected hands each subscriber ``EVERYTHING`` once it hears its topic again, since
    what was published meanwhile is lost."""

    async def publish(self, topic: str, message: str) -> None: ...

    async def subscribe(self, topic: str, callback: Callback) -> Subscription:
        """``callback(topic, message)`` runs for every message published after this returns,
        by any instance. Exceptions from it are logged, never propagated."""


# -- deployment health shared by every instance (cluster only) ------------------------------


class Failure(NamedTuple):
    opened: bool  # this failure opened the cooldown
    cooling_ms: int  # how long the deployment is still cooling down (0: it is not)


class Claim(NamedTuple):
    claimed: bool  # this instance may send the half-open probe
    cooling_ms: int  # still cooling down (opened again elsewhere): no probe yet


class HealthStore(Protocol):
    """Failure streaks, cooldowns and probe claims of deployments, shared through Redis
    (stores/redis/health.py); routing/health.py keeps the state it reads in process."""

    async def failed(self, group: str, deployment: str, threshold: int, cooldown_ms: int,
                     force: bool = False) -> Failure: ...

    async def succeeded(self, group: str, deployment: str, probe: bool = False) -> None: ...

    async def claim_probe(self, group: str, deployment: str, ttl_ms: int, holder: str) -> Claim: ...

    async def extend_probe(self, group: str, deployment: str, ttl_ms: int, holder: str) -> bool: ...

    async def release_probe(self, group: str, deployment: str, holder: str) -> bool: ...

    async def cooling_ms(self, group: str, deployment: str) -> int: ...

    async def out(self) -> dict[tuple[str, str], int]:
        """Every deployment out of traffic: ms of cooldown left, 0 when half-open."""
        ...
