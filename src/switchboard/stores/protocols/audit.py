"""An entry of the audit log of admin actions (``AuditLog``, protocols/access.py), on its own:
the stores that write one with their change (a key's revoke, a budget's delete) take it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from switchboard.stores.protocols.clock import utcnow


@dataclass(frozen=True)
class AuditEntry:
    """One admin change: who did what to which resource, from where, before and after (secrets
    never included). ``id`` is assigned by the store and orders entries."""

    tenant_id: str
    actor: str  # the principal id
    actor_role: str
    action: str  # e.g. key.create, key.revoke, key.rotate
    resource_type: str
    resource_id: str
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None
    client: str | None = None  # the caller's address
    request_id: str | None = None
    at: datetime = field(default_factory=utcnow)
    id: int | None = None
