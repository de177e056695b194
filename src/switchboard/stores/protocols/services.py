"""Plain REST services registered through the admin API (services/, revision 0019)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from switchboard.stores.protocols.access import RevokeAudited, SubscriptionRecord
from switchboard.stores.protocols.audit import AuditEntry
from switchboard.stores.protocols.clock import utcnow


@dataclass(frozen=True)
class ServiceRecord:
    """A REST service proxied under ``/services/{name}/``, stored for one tenant. ``spec`` is the
    service's settings (config/services.py ``ServiceSettings``) without its headers; ``headers``
    maps each added header's name to its value sealed with the provider-credential keyring.
    ``by_platform_admin``: a platform admin registered it or last changed its URL, which exempts a
    record of the ``default`` tenant from the egress rules (upstream/egress.py); false, the safe
    side, unless the admin API says so (revision 0025)."""

    tenant_id: str
    name: str
    spec: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)
    created_by: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    by_platform_admin: bool = False


class ServiceExists(Exception):
    """The tenant has a service of that name already."""


class ServiceStore(Protocol):
    # ``audited``, where a write takes it: its audit entry, appended in the write's transaction
    # (both or neither), none when nothing is written.

    async def create(self, record: ServiceRecord, *, audited: AuditEntry | None = None) -> ServiceRecord:
        """Store a new service; ServiceExists when the (tenant, name) is taken."""
        ...

    async def get(self, tenant_id: str, name: str) -> ServiceRecord | None: ...

    async def list_services(self, tenant_id: str | None) -> list[ServiceRecord]:
        """A tenant's services by name (None: every tenant's)."""
        ...

    async def update(self, record: ServiceRecord, read: datetime | None = None, *,
                     audited: AuditEntry | None = None) -> ServiceRecord | None:
        """Replace the spec, headers and ``by_platform_admin`` of an existing service; None when
        there is none, or (given ``read``, the ``updated_at`` of the record the change was made
        from) when it changed since: read it again and retry."""
        ...

    async def delete(self, tenant_id: str, name: str, deleted_by: str | None = None, *,
                     audited: AuditEntry | None = None, revoke_audited: RevokeAudited | None = None
                     ) -> list[tuple[SubscriptionRecord, SubscriptionRecord]] | None:
        """Remove the service and, in the same transaction, revoke its approved subscriptions
        (a service registered again under the name needs new approvals), each with
        ``revoke_audited``'s entry; (before, after) of each revoked, None when there was no such
        service."""
        ...

    async def reseal(self, headers: Callable[[ServiceRecord], Mapping[str, str]]) -> int:
        """Replace every service's sealed headers with ``headers(record)`` where they differ, in
        one transaction (an exception from ``headers`` writes nothing); how many changed."""
        ...
