"""Providers, credentials and models managed at run time, and routing overrides."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from switchboard.stores.protocols.access import RevokeAudited, SubscriptionRecord
from switchboard.stores.protocols.audit import AuditEntry
from switchboard.stores.protocols.clock import utcnow


@dataclass(frozen=True)
class ProviderRecord:
    """A provider added through the admin API (YAML ones are not stored). Platform-wide: the
    platform admin alone manages providers, so there is no tenant."""

    name: str
    type: str
    api_base: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    timeouts: Mapping[str, float] | None = None
    max_connections: int | None = None
    # Callers may send their own credential for this provider (see auth.caller_credentials).
    allow_caller_credentials: bool = False
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    # What the deployment itself accepts per minute (revision 0008); None: not limited.
    rpm: int | None = None
    tpm: int | None = None


@dataclass(frozen=True)
class CredentialRecord:
    """One credential of a provider: sealed (``ciphertext``) or a reference (``ref``), never the
    key in clear; ``mask`` (``sk-…abcd``) is what people see."""

    id: str
    provider: str
    mask: str
    ciphertext: str | None = None
    ref: str | None = None
    label: str | None = None
    created_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class ModelRecord:
    name: str
    provider: str
    model: str  # the upstream model id
    timeouts: Mapping[str, float] | None = None
    drop_params: bool = False
    info: Mapping[str, Any] | None = None  # catalog overrides, as in the YAML
    require_approval: bool = False
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class RoutingState:
    """Every stored provider, credential and model, read in one transaction; with ``routing``,
    the routing store's overrides and splits too (None: not read)."""

    providers: list[ProviderRecord]
    credentials: list[CredentialRecord]
    models: list[ModelRecord]
    overrides: list[RoutingOverride] | None = None
    splits: list[SplitOverride] | None = None


class ProviderStore(Protocol):
    async def load(self, routing: bool = False) -> RoutingState:
        """Everything stored; ``routing``: with every routing override and split
        (``RoutingStore.overrides``, ``split_overrides``), read with them on one connection
        (the model table's reload: one checkout, not three)."""

    async def get_provider(self, name: str) -> ProviderRecord | None: ...

    # ``audited``, where a write takes it: its audit entry, appended in the write's transaction
    # (both or neither), none when nothing is written.

    async def create_provider(self, record: ProviderRecord, credential: CredentialRecord | None = None,
                              *, audited: AuditEntry | None = None) -> bool:
        """False (nothing stored) when a provider of that name exists. With ``credential``, both in
        one transaction: no delete sees the provider without it (nor undoes the create between
        the two, unaudited)."""

    async def update_provider(self, record: ProviderRecord, read: datetime | None = None, *,
                              audited: AuditEntry | None = None) -> bool:
        """False when there is no such provider, or (given ``read``, the ``updated_at`` of the
        record the change was made from) when it changed since: read it again and retry; False
        too (nothing written) when the database refuses the row for a constraint."""

    async def delete_provider(self, name: str, *, audited: AuditEntry | None = None) -> str:
        """``deleted`` (with its credentials), ``missing``, or ``in_use`` (a stored model uses
        it; nothing is deleted). Checked and done in one transaction."""

    async def credentials(self, provider: str) -> list[CredentialRecord]:
        """Oldest first."""

    async def add_credential(self, record: CredentialRecord, *, audited: AuditEntry | None = None) -> bool:
        """False (nothing stored) when its provider is not stored, or was deleted meanwhile."""

    async def delete_credential(self, provider: str, credential_id: str, *,
                                audited: AuditEntry | None = None) -> bool: ...

    async def get_model(self, name: str) -> ModelRecord | None: ...

    async def create_model(self, record: ModelRecord, *, provider_stored: bool = False,
                           audited: AuditEntry | None = None) -> bool:
        """False when a stored model of that name exists, or (``provider_stored``: its provider
        is a stored one) when that provider is not stored, or was deleted meanwhile."""

    async def update_model(self, record: ModelRecord, read: datetime | None = None, *,
                           provider_stored: bool = False, audited: AuditEntry | None = None) -> bool:
        """As :meth:`update_provider`; False too (nothing written) when ``provider_stored`` (its
        provider is a stored one) and that provider is not stored, or was deleted meanwhile."""

    async def delete_model(self, name: str, deleted_by: str | None = None, *,
                           audited: AuditEntry | None = None, revoke_audited: RevokeAudited | None = None
                           ) -> list[tuple[SubscriptionRecord, SubscriptionRecord]] | None:
        """Remove the stored model and, in the same transaction, revoke every tenant's approved
        subscriptions to it (a model added again under the name needs new approvals), each with
        ``revoke_audited``'s entry; (before, after) of each revoked, None when there was no such
        model."""
        ...

    async def server_secret(self, name: str) -> str | None:
        """A sealed server secret (e.g. the key-hashing key), as stored."""

    async def init_server_secret(self, name: str, sealed: str) -> str:
        """Store ``sealed`` unless ``name`` exists; returns what is stored (the first writer
        wins when instances start together)."""

    async def reseal(
        self,
        credential: Callable[[CredentialRecord], str],
        secret: Callable[[str, str], str],
        audited: Callable[[int, int], AuditEntry | None] | None = None,
    ) -> tuple[int, int]:
        """Replace every sealed credential by ``credential(record)`` and every server secret by
        ``secret(name, sealed)``, in one transaction; rows whose value does not change are not
        written. ``audited(credentials, secrets)``, given the counts, is the entry appended in
        that transaction (None: none), a failing entry undoing the re-seal. Returns how many
        credentials and server secrets were rewritten."""


# -- routing: run-time overrides of a group's deployments (routing/live.py) ------------------


@dataclass(frozen=True)
class RoutingOverride:
    """A deployment's weight set through the admin API, over the configuration's. Gateway-wide
    (groups are), so there is no tenant."""

    group: str
    deployment: str
    weight: int | None
    updated_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class SplitOverride:
    """A split's arms' percents, changed at run time (router.splits names the split)."""

    name: str
    percents: Mapping[str, float]  # by arm (its group or deployment name)
    updated_at: datetime = field(default_factory=utcnow)


class RoutingStore(Protocol):
    async def overrides(self) -> list[RoutingOverride]:
        """Every override, by group and deployment."""

    async def split_overrides(self) -> list[SplitOverride]:
        """Every split's run-time percents, by name."""

    async def set_split(self, name: str, percents: Mapping[str, float] | None, *,
                        audited: Callable[[SplitOverride | None], AuditEntry] | None = None,
                        ) -> tuple[SplitOverride | None, SplitOverride | None]:
        """Set (or with None remove) a split's percents, with ``audited``'s entry (given the
        override as read in that transaction, None: none) in the same transaction (both or
        neither); returns the override now stored and the one before (None: none). Already so:
        nothing is written (``audited`` neither) and both are the same."""

    async def set_weight(self, group: str, deployment: str, weight: int | None, *,
                         audited: Callable[[RoutingOverride | None], AuditEntry] | None = None,
                         ) -> tuple[RoutingOverride | None, RoutingOverride | None]:
        """Set (or with None remove) the weight of one deployment, with ``audited``'s entry
        (given the override as read in that transaction, None: none) in the same transaction
        (both or neither); returns the override now stored and the one before (None: none).
        Already so: nothing is written (``audited`` neither) and both are the same."""
