"""API keys, the audit log of admin actions, and subscriptions to models and APIs."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from switchboard.stores.protocols.audit import AuditEntry
from switchboard.stores.protocols.clock import utcnow

if TYPE_CHECKING:
    from switchboard.stores.protocols.budgets import BudgetRecord


@dataclass(frozen=True)
class KeyRecord:
    """An API key as stored: never the key itself, only its hash and a displayable prefix."""

    id: str
    key_hash: str
    prefix: str
    tenant_id: str
    team_id: str | None = None
    user_id: str | None = None
    role: str = "user"
    # None: every model; otherwise only these model names.
    allowed_models: tuple[str, ...] | None = None
    expires_at: datetime | None = None
    # False once revoked, for good: nothing sets it back (KeyStore.update refuses a revoked key).
    # A reversible stop is ``blocked_by_role`` below.
    enabled: bool = True
    metadata: Mapping[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=utcnow)
    name: str | None = None  # a label for people
    created_by: str | None = None  # the principal id that issued it
    last_used_at: datetime | None = None  # written in batches, so up to a few seconds behind
    tags: tuple[str, ...] = ()  # short labels for people and filters
    service_account_id: str | None = None  # the owning service account, if the owner is one
    rpm_limit: int | None = None  # requests per minute (revision 0006); None: no limit on the key
    tpm_limit: int | None = None  # tokens per minute
    # The key's own budget in USD (revision 0007; stored in whole nano-USD); None: none on the key.
    max_budget_usd: Decimal | None = None
    budget_period: str | None = None  # one of BUDGET_PERIODS when max_budget_usd is set
    # Data residency (revision 0009): the regions its requests may be served in; None: anywhere.
    allowed_regions: tuple[str, ...] | None = None
    # Filled by ``get_by_hash`` only (never stored): the intersection of the tenant's, the
    # team's and the key's allowed regions, what its requests are held to; None: anywhere.
    effective_regions: frozenset[str] | None = None
    # MCP tool permissions (revision 0021, docs/mcp.md): {"allow": [...] | None, "deny": [...]}
    # patterns on "<server>__<tool>"; None: no list on the key. ``team_mcp_tools``: its team's,
    # filled by ``get_by_hash`` only.
    mcp_tools: Mapping[str, Any] | None = None
    team_mcp_tools: Mapping[str, Any] | None = None
    # The first key id of its rotation chain (revision 0022); None: the key's own id. Its
    # budgets, spend and rate limits are held under it, so a rotation does not reset them.
    lineage_id: str | None = None
    # Blocked (revision 0024): the role of whoever blocked it, which only that role or a higher
    # one may lift; None: not blocked. A blocked key is refused like a revoked one, but stays
    # the owner's unrevoked key and can be unblocked.
    blocked_by_role: str | None = None
    # Counts the writes to its settings (update, revoke, rotation, its owner moved): the
    # compare-and-set token of KeyStore.update and KeyStore.rotate. ``updated_at``: the last one.
    revision: int = 0
    updated_at: datetime | None = None
    # Issued with a check at its end (revision 0029, access/keys.py); False: a key from before,
    # which the request path looks up even when its check fails.
    checked: bool = False

    @property
    def lineage(self) -> str:
        return self.lineage_id or self.id

    @property
    def blocked(self) -> bool:
        return self.blocked_by_role is not None


@dataclass(frozen=True)
class AuditQuery:
    action: str | None = None
    resource_id: str | None = None
    actor: str | None = None
    since: datetime | None = None
    before_id: int | None = None  # cursor: entries older than this one
    limit: int = 100
    # Entries of these resource types are left out (those the reader may not see otherwise).
    hidden_types: tuple[str, ...] = ()


# A subscription's life: pending -> approved | rejected | withdrawn (by its team); approved ->
# revoked; a rejected, revoked or withdrawn subscription may be requested again (pending, same id).
SUBSCRIPTION_STATUSES = ("pending", "approved", "rejected", "revoked", "withdrawn")


@dataclass(frozen=True)
class SubscriptionRecord:
    """A team's subscription to a model that needs approval; one per (tenant, team, model)."""

    id: str
    tenant_id: str
    team_id: str
    model: str
    status: str = "pending"  # one of SUBSCRIPTION_STATUSES
    requested_by: str | None = None  # principal id
    decided_by: str | None = None
    reason: str | None = None  # the request's reason, then the decision's
    created_at: datetime = field(default_factory=utcnow)  # when last requested
    decided_at: datetime | None = None


@dataclass(frozen=True)
class SubscriptionQuery:
    status: str | None = None
    team_id: str | None = None
    model: str | None = None
    after_id: str | None = None  # cursor: subscriptions after this id (ids sort by creation)
    limit: int = 100


class SubscriptionExists(Exception):
    """A pending or approved subscription of this team to this model already exists."""

    def __init__(self, existing: SubscriptionRecord) -> None:
        super().__init__(existing.id)
        self.existing = existing


# The audit entry of a subscription requested: from it as stored and as it was (None: new).
RequestAudited = Callable[["SubscriptionRecord", "SubscriptionRecord | None"], AuditEntry]
# The audit entry of a subscription revoked with what it was to (a service or model removed):
# from it as it was and as revoked.
RevokeAudited = Callable[["SubscriptionRecord", "SubscriptionRecord"], AuditEntry]


class SubscriptionStore(Protocol):
    async def request(self, record: SubscriptionRecord) -> SubscriptionRecord:
        """Store ``record`` as pending. A rejected, revoked or withdrawn subscription of the same
        tenant, team and model is reopened instead (its id kept, the rest from ``record``); a pending
        or approved one raises :class:`SubscriptionExists`."""

    async def request_over(self, record: SubscriptionRecord, *, audited: RequestAudited | None = None
                           ) -> tuple[SubscriptionRecord, SubscriptionRecord | None]:
        """As :meth:`request`, also returning the rejected, revoked or withdrawn one it reopened
        as it was (None: a new one); ``audited``'s entry (from both) is appended to the audit log
        in the same transaction (both or neither)."""

    async def get(self, tenant_id: str, subscription_id: str) -> SubscriptionRecord | None: ...

    async def find(self, tenant_id: str, team_id: str, model: str) -> SubscriptionRecord | None:
        """The subscription of this team to this model (the request path's lookup, cached)."""

    async def list_subscriptions(self, tenant_id: str, query: SubscriptionQuery) -> list[SubscriptionRecord]:
        """The tenant's subscriptions matching ``query``, by id (oldest first)."""

    async def decide(
        self,
        tenant_id: str,
        subscription_id: str,
        *,
        expect: tuple[str, ...],
        status: str,
        decided_by: str,
        reason: str | None,
        audited: Callable[[SubscriptionRecord], AuditEntry] | None = None,
    ) -> SubscriptionRecord | None:
        """Move the subscription to ``status`` if its status is one of ``expect`` (atomically);
        the updated record, or None when there is no such subscription in that state.
        ``reason`` replaces the stored one; None keeps it (the request's, or an earlier decision's).
        ``audited``'s entry (from the updated record) is appended to the audit log in the same
        transaction (both or neither)."""


# ``owner_team`` of a key that belongs to no team (no team id is empty).
NO_TEAM = ""


@dataclass(frozen=True)
class KeyQuery:
    """One page of a tenant's keys, oldest first (creation time, then id). The filters are
    exact matches; ``team_scope`` and ``owners`` narrow the page to what a caller may see: the
    keys of that team, or those owned by (user, else service account) or being one of those ids;
    with ``owner_team``, those owned only when they are of that team (``NO_TEAM``: of none)."""

    team_id: str | None = None
    user_id: str | None = None
    service_account_id: str | None = None
    tag: str | None = None
    checked: bool | None = None  # false: only the keys issued before keys had a check
    team_scope: str | None = None
    owners: tuple[str, ...] | None = None
    owner_team: str | None = None
    after: str | None = None  # cursor: the last id of the previous page
    limit: int = 100


# The metadata entry naming a rotated key's successor (KeyStore.rotate).
ROTATED_TO = "rotated_to"

# What KeyStore.update may change: a key's owner, role, secret, lineage, limits and budget are
# fixed (limits and budgets have their own endpoints).
MUTABLE_KEY_FIELDS = frozenset({"name", "allowed_models", "expires_at", "metadata", "tags", "blocked_by_role",
                                "allowed_regions", "mcp_tools"})


class Revoked(NamedTuple):
    """A key revoked (``KeyStore.revoke``): the key as it is now, and whether its rotation chain
    ended with it (no key of it may spend any more), with the budgets set on the chain deleted."""

    key: KeyRecord
    chain_ended: bool
    deleted: list[BudgetRecord]


class KeyStore(Protocol):
    async def put(self, record: KeyRecord) -> None:
        """Insert the key, or replace the record with the same id (within its tenant)."""

    async def issue(self, record: KeyRecord, owners: Collection[str] = ("tenant", "team", "user"), *,
                    audited: Sequence[AuditEntry] = ()) -> bool:
        """Insert a new key only while its ``owners`` (of "tenant", "team", "user": its tenant,
        team, and user or service account, those it names) exist, checked as it is written;
        False (nothing stored) when one does not. ``audited`` is appended to the audit log in the
        same transaction (both or neither)."""

    async def get_by_hash(self, key_hash: str) -> KeyRecord | None:
        """The authentication lookup. Returns disabled and expired keys too: the caller decides."""

    async def get(self, tenant_id: str, key_id: str) -> KeyRecord | None: ...

    async def count_unchecked(self, now: datetime) -> int:
        """How many keys without a check (``checked`` false) may still authenticate: not revoked
        and not expired at ``now`` (a blocked key counts: it can be unblocked)."""

    async def find(self, key_id: str) -> KeyRecord | None:
        """A key by id in any tenant: for the platform admin only (ids are unique everywhere)."""

    async def list_keys(self, tenant_id: str) -> list[KeyRecord]: ...

    async def page_keys(self, tenant_id: str, query: KeyQuery) -> list[KeyRecord]:
        """At most ``query.limit`` keys matching it, after the cursor; ValueError for a cursor
        that is no key of the tenant within the query's reach (``team_scope``, ``owners``)."""

    async def lineage_live(self, tenant_id: str, lineage: str, now: datetime) -> bool:
        """Whether a key of the rotation chain ``lineage`` may still authenticate at ``now``
        (not revoked, not expired; a blocked key counts: it can be unblocked)."""

    async def revoke(self, tenant_id: str, key_id: str, now: datetime, *,
                     audited: Callable[[KeyRecord], AuditEntry],
                     budget_audited: Callable[[BudgetRecord], AuditEntry]) -> Revoked | None:
        """Revoke the key, for good (a key revoked already is not written again), with
        ``audited``'s entry for the key as revoked; and, when no key of its
        rotation chain may spend at ``now`` any more, the budgets set on the chain (``scope``
        key) deleted with their claims, each with ``budget_audited``'s entry: one transaction,
        all of it or none. None when the tenant has no such key or it is revoked already."""

    async def update(self, record: KeyRecord, fields: Collection[str], *,
                     audited: AuditEntry | None = None) -> bool:
        """Write ``fields`` (of MUTABLE_KEY_FIELDS) of ``record``, with its ``updated_at``, to the
        stored key of its tenant and id, the rest as stored, and count one more revision. Only if
        the stored key is still at ``record.revision``, not revoked and not rotated: a change
        made since the read (a revoke above all) stands. False (nothing written) otherwise.
        ``audited`` is appended to the audit log in the same transaction (both or neither)."""

    async def rotate(self, old: KeyRecord, successor: KeyRecord, expires_at: datetime, *,
                     audited: Sequence[AuditEntry] = ()) -> bool:
        """Retire ``old`` (its expiry brought to ``expires_at``, ``rotated_to`` set in its
        metadata) and insert ``successor``, at once and only if ``old`` is still as read (its
        ``revision``), enabled, not blocked and not rotated: of concurrent rotations one wins, a
        revoke that landed first stands, and an update that landed first is not lost on the
        successor. False (nothing written) when the key is no longer rotatable or changed.
        ``audited`` is appended to the audit log in the same transaction (all or nothing)."""

    async def reassign(self, tenant_id: str, key_id: str, team_id: str | None, role: str) -> bool:
        """Set only the key's team and role (the rest of the record, ``enabled`` included, as
        stored; one more revision); False when the tenant has no such key."""

    async def touch(self, used: Mapping[str, datetime]) -> None:
        """Record when keys (by id) were last used, in one batch; a time never moves backwards."""


class AuditLog(Protocol):
    """Append-only: entries are added and read, never changed or removed through the gateway."""

    async def append(self, entry: AuditEntry) -> int:
        """Store the entry; returns its id."""

    async def query(self, tenant_id: str, query: AuditQuery) -> list[AuditEntry]:
        """The tenant's entries matching ``query``, newest first."""
