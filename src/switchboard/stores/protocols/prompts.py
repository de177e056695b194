"""The prompt registry (prompts/, revision 0016), prompts published as APIs, and the sessions
of multi-turn ones."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from switchboard.stores.protocols.audit import AuditEntry
from switchboard.stores.protocols.clock import utcnow


@dataclass(frozen=True)
class PromptVersion:
    """One immutable version of a prompt. Versions count from 1 per (tenant, name); a change is
    a new version, labels (``production``, ``staging``, any name) point at versions."""

    tenant_id: str
    name: str
    version: int
    # The chat messages, each ``{"role": ..., "content": <Jinja2 template text>}``.
    messages: Sequence[Mapping[str, Any]]
    # JSON schema of the variables (an object schema).
    variables: Mapping[str, Any]
    # The bound model or model group.
    model: str
    # Default request parameters: temperature, max_tokens, tools, response_format, ...
    params: Mapping[str, Any] = field(default_factory=dict)
    # JSON schema the output must satisfy (structured output); None: plain text.
    output_schema: Mapping[str, Any] | None = None
    description: str | None = None
    team_id: str | None = None  # the owning team
    created_by: str | None = None
    created_at: datetime = field(default_factory=utcnow)


class PromptStore(Protocol):
    async def create_version(self, draft: PromptVersion, *,
                             audited: Callable[[PromptVersion], AuditEntry] | None = None) -> PromptVersion:
        """Store ``draft`` as the next version of its (tenant, name) (``draft.version`` is
        ignored); the stored version, its number assigned atomically. ``audited``'s entry (from
        the version as stored) is written in the same transaction (both or neither)."""
        ...

    async def get(self, tenant_id: str, name: str, *, version: int | None = None,
                  label: str | None = None) -> PromptVersion | None:
        """A version by number, or the one a label points at; neither: the latest."""
        ...

    async def versions(self, tenant_id: str, name: str) -> list[PromptVersion]: ...

    async def version_numbers(self, tenant_id: str, names: Iterable[str]) -> dict[str, list[int]]:
        """The version numbers of each of ``names`` (ascending; [] for a name without one), in one
        query rather than one per prompt."""
        ...

    async def labels(self, tenant_id: str, name: str) -> dict[str, int]: ...

    async def set_label(self, tenant_id: str, name: str, label: str, version: int, *,
                        audited: Callable[[int | None], AuditEntry] | None = None) -> int | None:
        """Point ``label`` at ``version``; the version it pointed at just before (None: it is
        new), read atomically with the move, so concurrent moves each get the one they replaced.
        A label already at ``version`` is not written (the answer is ``version``). ``audited``'s
        entry (from the version replaced) is written with the move (both or neither)."""
        ...

    async def list_prompts(self, tenant_id: str, *, team_id: str | None = None,
                           after: str | None = None, limit: int = 100) -> list[PromptVersion]:
        """The latest version of each of the tenant's prompts (one team's when ``team_id``), by
        name; ``after``: only the names after it."""
        ...

    async def all_labels(self, tenant_id: str, names: list[str]) -> dict[str, dict[str, int]]:
        """The labels of each of ``names`` (a name without labels is absent)."""
        ...

    async def any_stored(self) -> bool:
        """Whether any tenant has a prompt version stored: read once at start, to import the
        template and schema libraries ahead of the first call (gateway.py, ``warm_imports``)."""
        ...


# -- prompts published as APIs (apis/, revision 0017) -----------------------------------------


@dataclass(frozen=True)
class ApiRecord:
    """A prompt published as ``POST /apis/{name}``. It follows a prompt ``label`` or a fixed
    prompt ``version``; ``/apis/{name}/v{N}`` pins prompt version N."""

    tenant_id: str
    name: str
    prompt: str
    version: int | None = None
    label: str | None = None
    # draft -> published -> deprecated -> retired
    status: str = "published"
    description: str | None = None
    team_id: str | None = None  # the owning team
    require_approval: bool = False
    successor: str | None = None  # named in Deprecation/Sunset links and the 410 of a retired API
    sunset_at: datetime | None = None
    deprecated_at: datetime | None = None  # when it became deprecated (the Deprecation header)
    # A/B split between prompt versions: [{"version": N, "percent": P}, ...]; sticky per key.
    split: Sequence[Mapping[str, Any]] | None = None
    # Server-side sessions (x-switchboard-session) for multi-turn APIs; None: off.
    sessions: Mapping[str, Any] | None = None
    created_by: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


class ApiExists(Exception):
    """An API of this name already exists in the tenant."""


class ApiStore(Protocol):
    # ``audited``, where a write takes it: its audit entry (or what makes it from the record as
    # written), appended in the write's transaction (both or neither), none when nothing is written.

    async def create(self, record: ApiRecord, *, audited: AuditEntry | None = None) -> ApiRecord:
        """Store a new API; ApiExists when the tenant has one of that name."""
        ...

    async def get(self, tenant_id: str, name: str) -> ApiRecord | None: ...

    async def list_apis(self, tenant_id: str) -> list[ApiRecord]: ...

    async def update(self, record: ApiRecord, read: datetime | None = None, *,
                     audited: Callable[[ApiRecord], AuditEntry] | None = None) -> ApiRecord:
        """Replace the stored API of that (tenant, name) (``updated_at`` set now); KeyError if
        none, or (given ``read``, the ``updated_at`` of the record the change was made from) if
        it changed since: read it again and retry."""
        ...


# -- sessions of multi-turn prompt APIs (apis/sessions.py, revision 0018) ----------------------


@dataclass(frozen=True)
class ApiSession:
    """The server-side history of one session of a published API: per tenant, per caller
    (``owner``: the key's id, else the principal's) and per session id. ``turns`` are the
    exchanges, oldest first, each a list of canonical chat messages (the user's, then the
    reply). ``version`` counts saves (optimistic concurrency)."""

    tenant_id: str
    owner: str
    api: str
    session_id: str
    turns: Sequence[Sequence[Mapping[str, Any]]]
    expires_at: datetime
    version: int = 0
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


class SessionStore(Protocol):
    async def get(self, tenant_id: str, owner: str, api: str, session_id: str,
                  now: datetime | None = None) -> ApiSession | None:
        """The session; None when missing or expired (at ``now``, default: the current time)."""
        ...

    async def save(self, session: ApiSession, expected_version: int | None) -> bool:
        """Store ``session`` (its ``version`` is the new one): insert it when
        ``expected_version`` is None, else replace the stored one only if it is still at
        ``expected_version``. False when another save got there first (reload and retry)."""
        ...

    async def delete(self, tenant_id: str, owner: str, api: str, session_id: str) -> bool: ...

    async def purge(self, now: datetime, limit: int = 1000) -> int:
        """Delete at most ``limit`` sessions expired at ``now``; how many were deleted."""
        ...
