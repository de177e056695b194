"""State behind narrow async protocols: keys, audit log, tenancy, counters, usage ledger, shared cache,
change feed.

``open_stores(settings)`` opens them (migrations applied, pools connected) and ``Stores.close()``
closes them; see ``protocols`` for what each offers and ``factory`` for how they are chosen.
"""

from switchboard.stores.errors import StoreError
from switchboard.stores.factory import Stores, open_stores
from switchboard.stores.protocols import (
    SERVICE_ACCOUNT,
    USER,
    AuditEntry,
    AuditLog,
    AuditQuery,
    ChangeFeed,
    KeyQuery,
    KeyRecord,
    KeyStore,
    SharedCache,
    Subscription,
    Team,
    TenancyStore,
    Tenant,
    UsageLedger,
    UsageRecord,
    User,
    UserQuery,
)

__all__ = [
    "SERVICE_ACCOUNT",
    "USER",
    "AuditEntry",
    "AuditLog",
    "AuditQuery",
    "ChangeFeed",
    "KeyQuery",
    "KeyRecord",
    "KeyStore",
    "SharedCache",
    "StoreError",
    "Stores",
    "Subscription",
    "Team",
    "TenancyStore",
    "Tenant",
    "UsageLedger",
    "UsageRecord",
    "User",
    "UserQuery",
    "open_stores",
]
