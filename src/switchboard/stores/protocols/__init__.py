"""What the control plane needs from state, as narrow async protocols.

Each protocol has an embedded implementation (in-process memory and the SQLite file in the
data dir) and a cluster one (Redis and PostgreSQL); ``factory.open_stores`` picks them from the
settings. Callers depend on these protocols only.

Tenant isolation: every key and ledger query takes the tenant explicitly, and a record of
another tenant is "not found". The one exception is ``KeyStore.get_by_hash``: authentication
learns the tenant from the key record it finds.

One module per domain; everything is re-exported here, so callers import from
``switchboard.stores.protocols``.
"""

from __future__ import annotations

from switchboard.stores.protocols.access import (
    SUBSCRIPTION_STATUSES,
    AuditEntry,
    AuditLog,
    AuditQuery,
    KeyQuery,
    KeyRecord,
    KeyStore,
    SubscriptionExists,
    SubscriptionQuery,
    SubscriptionRecord,
    SubscriptionStore,
)
from switchboard.stores.protocols.analytics import (
    ANALYTICS_GROUPS,
    ANALYTICS_INTERVALS,
    AnalyticsQuery,
    AnalyticsRow,
    AnalyticsStore,
    Incident,
    IncidentQuery,
    IncidentStore,
)
from switchboard.stores.protocols.budgets import (
    BUDGET_PERIODS,
    BUDGET_SCOPES,
    BUDGET_UNITS,
    Again,
    BudgetCounters,
    BudgetRecord,
    BudgetStore,
    Charge,
    Reserved,
)
from switchboard.stores.protocols.clock import (
    utcnow,
)
from switchboard.stores.protocols.limits import (
    LIMIT_SCOPES,
    LIMIT_SLOTS,
    Acquired,
    Bucket,
    BucketState,
    LimitRecord,
    LimitStore,
    RateLimiter,
)
from switchboard.stores.protocols.logs import (
    LogBody,
    LogEntry,
    LogPage,
    LogQuery,
    LogSearch,
    RequestBody,
    RequestLogStore,
    RetentionDone,
)
from switchboard.stores.protocols.mcp import (
    McpServerRecord,
    McpStore,
    McpTokenRecord,
)
from switchboard.stores.protocols.objects import (
    BATCH,
    FILE,
    FileStore,
    OwnedObject,
    ResponseStore,
    StoredResponse,
)
from switchboard.stores.protocols.prompts import (
    ApiExists,
    ApiRecord,
    ApiSession,
    ApiStore,
    PromptStore,
    PromptVersion,
    SessionStore,
)
from switchboard.stores.protocols.providers import (
    CredentialRecord,
    ModelRecord,
    ProviderRecord,
    ProviderStore,
    RoutingOverride,
    RoutingState,
    RoutingStore,
    SplitOverride,
)
from switchboard.stores.protocols.revocations import (
    TokenRevocation,
    TokenRevocationStore,
    TooManyRevocations,
)
from switchboard.stores.protocols.services import (
    ServiceExists,
    ServiceRecord,
    ServiceStore,
)
from switchboard.stores.protocols.shared import (
    EVERYTHING,
    Callback,
    ChangeFeed,
    Claim,
    Failure,
    HealthStore,
    SharedCache,
    Subscription,
)
from switchboard.stores.protocols.tenancy import (
    SERVICE_ACCOUNT,
    USER,
    Team,
    TenancyStore,
    Tenant,
    User,
    UserQuery,
)
from switchboard.stores.protocols.usage import (
    REPORT_FIELDS,
    USAGE_ROW,
    TooManyGroups,
    UsageLedger,
    UsageRecord,
    UsageReportQuery,
    UsageReportRow,
    UsageRow,
    usage_record,
    usage_row,
)

__all__ = [
    "ANALYTICS_GROUPS",
    "ANALYTICS_INTERVALS",
    "BATCH",
    "BUDGET_PERIODS",
    "BUDGET_SCOPES",
    "BUDGET_UNITS",
    "EVERYTHING",
    "FILE",
    "LIMIT_SCOPES",
    "LIMIT_SLOTS",
    "REPORT_FIELDS",
    "SERVICE_ACCOUNT",
    "SUBSCRIPTION_STATUSES",
    "USAGE_ROW",
    "USER",
    "Acquired",
    "Again",
    "AnalyticsQuery",
    "AnalyticsRow",
    "AnalyticsStore",
    "ApiExists",
    "ApiRecord",
    "ApiSession",
    "ApiStore",
    "AuditEntry",
    "AuditLog",
    "AuditQuery",
    "Bucket",
    "BucketState",
    "BudgetCounters",
    "BudgetRecord",
    "BudgetStore",
    "Callback",
    "ChangeFeed",
    "Charge",
    "Claim",
    "CredentialRecord",
    "Failure",
    "FileStore",
    "HealthStore",
    "Incident",
    "IncidentQuery",
    "IncidentStore",
    "KeyQuery",
    "KeyRecord",
    "KeyStore",
    "LimitRecord",
    "LimitStore",
    "LogBody",
    "LogEntry",
    "LogPage",
    "LogQuery",
    "LogSearch",
    "McpServerRecord",
    "McpStore",
    "McpTokenRecord",
    "ModelRecord",
    "OwnedObject",
    "PromptStore",
    "PromptVersion",
    "ProviderRecord",
    "ProviderStore",
    "RateLimiter",
    "RequestBody",
    "RequestLogStore",
    "Reserved",
    "ResponseStore",
    "RetentionDone",
    "RoutingOverride",
    "RoutingState",
    "RoutingStore",
    "ServiceExists",
    "ServiceRecord",
    "ServiceStore",
    "SessionStore",
    "SharedCache",
    "SplitOverride",
    "StoredResponse",
    "Subscription",
    "SubscriptionExists",
    "SubscriptionQuery",
    "SubscriptionRecord",
    "SubscriptionStore",
    "Team",
    "TenancyStore",
    "Tenant",
    "TokenRevocation",
    "TokenRevocationStore",
    "TooManyGroups",
    "TooManyRevocations",
    "UsageLedger",
    "UsageRecord",
    "UsageReportQuery",
    "UsageReportRow",
    "UsageRow",
    "User",
    "UserQuery",
    "usage_record",
    "usage_row",
    "utcnow",
]
