"""The tables, as SQLAlchemy Core metadata. The migrations create them; this mirrors them."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("key_hash", sa.String(128), nullable=False),
    sa.Column("prefix", sa.String(32), nullable=False),
    sa.Column("name", sa.String(200)),
    # indexed with created_at and id (revision 0027), below
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("team_id", sa.String(64)),
    sa.Column("user_id", sa.String(64)),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("allowed_models", sa.JSON),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(64)),
    sa.Column("last_used_at", sa.DateTime(timezone=True)),
    # tenancy (revision 0002)
    sa.Column("tags", sa.JSON),
    sa.Column("service_account_id", sa.String(64)),
    sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
)

usage_records = sa.Table(
    "usage_records",
    metadata,
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("key_id", sa.String(64)),
    sa.Column("team_id", sa.String(64)),
    sa.Column("user_id", sa.String(64)),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("provider", sa.String(128)),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("prompt_tokens", sa.Integer, nullable=False),
    sa.Column("completion_tokens", sa.Integer, nullable=False),
    # Billionths of a US dollar: exact on every dialect (SQLite has no exact decimal type).
    sa.Column("cost_nano_usd", sa.BigInteger, nullable=False),
    sa.Column("latency_ms", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Index("ix_usage_records_tenant_created", "tenant_id", "created_at"),
    # spend: usage, the billing split, timings and tags (revision 0005)
    sa.Column("cache_read_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("cache_write_5m_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("cache_write_1h_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("reasoning_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("unpriced", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("ttft_ms", sa.Integer),
    sa.Column("stream", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("error_code", sa.String(64)),
    sa.Column("upstream_model", sa.String(256)),
    sa.Column("tags", sa.JSON),
    sa.Index("ix_usage_records_created", "created_at"),
    # image and audio units; the deployment that answered and every attempt (revision 0009)
    sa.Column("image_input_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("audio_input_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("image_output_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("audio_output_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("deployment", sa.String(256)),
    sa.Column("attempts", sa.JSON),
    # the gateway's own milliseconds and the upstream's (revision 0010)
    sa.Column("overhead_ms", sa.Integer),
    sa.Column("upstream_ms", sa.Integer),
    # the gateway's own id of the record, which its stored bodies carry (revision 0037)
    sa.Column("log_id", sa.String(32)),
    # the record's own id, made by the gateway per request (the request id of rows stored before,
    # and of a batch's record): the key, with the time PostgreSQL partitions the table by day on
    # (revisions 0010, 0042); the caller's request id is looked up through its own index
    sa.Column("entry_id", sa.String(128), nullable=False),
    sa.PrimaryKeyConstraint("entry_id", "created_at"),
    sa.Index("ix_usage_records_request_created", "request_id", "created_at"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("actor_role", sa.String(32), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("resource_type", sa.String(64), nullable=False),
    sa.Column("resource_id", sa.String(128), nullable=False),
    sa.Column("before", sa.JSON),
    sa.Column("after", sa.JSON),
    sa.Column("client", sa.String(64)),
    sa.Column("request_id", sa.String(128)),
    sa.Index("ix_audit_log_tenant_id", "tenant_id", "id"),
)

# -- providers, their credentials, models managed at run time, server secrets (revision 0003) --

providers = sa.Table(
    "providers",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("api_base", sa.String(2048)),
    sa.Column("options", sa.JSON, nullable=False),
    sa.Column("headers", sa.JSON, nullable=False),
    sa.Column("timeouts", sa.JSON),
    sa.Column("max_connections", sa.Integer),
    sa.Column("allow_caller_credentials", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

provider_credentials = sa.Table(
    "provider_credentials",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("provider", sa.String(128), nullable=False),
    # Exactly one of: the key sealed under the server secret (crypto/keyring.py), or a reference.
    sa.Column("ciphertext", sa.Text),
    sa.Column("ref", sa.String(1100)),
    sa.Column("mask", sa.String(1100), nullable=False),
    sa.Column("label", sa.String(200)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_provider_credentials_provider", "provider", "created_at"),
)

models = sa.Table(
    "models",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("provider", sa.String(128), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("timeouts", sa.JSON),
    sa.Column("drop_params", sa.Boolean, nullable=False),
    sa.Column("info", sa.JSON),
    sa.Column("require_approval", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

server_secrets = sa.Table(
    "server_secrets",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("ciphertext", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# -- subscriptions (revision 0004): teams subscribed to models that need approval ---------------

subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("team_id", sa.String(64), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("requested_by", sa.String(64)),
    sa.Column("decided_by", sa.String(64)),
    sa.Column("reason", sa.String(1000)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("tenant_id", "team_id", "model", name="uq_subscriptions_tenant_team_model"),
    sa.Index("ix_subscriptions_tenant_id", "tenant_id", "id"),
)

# -- tenancy (revision 0002): tenants, teams, users and service accounts; api_keys gains
# tags and service_account_id there too (declared above, where the table is).

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(64)),
)

# Ids of deleted tenants, never reused (revision 0023).
retired_tenants = sa.Table(
    "retired_tenants",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
)

teams = sa.Table(
    "teams",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(64)),
    sa.Index("ix_teams_tenant_id", "tenant_id", "id"),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("team_id", sa.String(64)),
    sa.Column("name", sa.String(200)),
    sa.Column("email", sa.String(320)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(64)),
    sa.Index("ix_users_tenant_id", "tenant_id", "id"),
)

# -- provider limits (revision 0008): a provider's own rpm and tpm --------------------------------

providers.append_column(sa.Column("rpm", sa.BigInteger))
providers.append_column(sa.Column("tpm", sa.BigInteger))

# -- rate limits (revision 0006): a key's own limits ---------------------------------------------

api_keys.append_column(sa.Column("rpm_limit", sa.BigInteger))
api_keys.append_column(sa.Column("tpm_limit", sa.BigInteger))

rate_limits = sa.Table(
    "rate_limits",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),  # tenant | team | user | model
    sa.Column("subject", sa.String(256), nullable=False),  # its id, or the model name
    sa.Column("rpm", sa.BigInteger),
    sa.Column("tpm", sa.BigInteger),
    sa.Column("tpd", sa.BigInteger),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(64)),
    sa.UniqueConstraint("tenant_id", "scope", "subject", name="uq_rate_limits_tenant_scope_subject"),
)

# -- budgets (revision 0007): budgets set through the admin API, alerts fired, a key's own budget

api_keys.append_column(sa.Column("max_budget_nano_usd", sa.BigInteger))  # NULL: no budget on the key
api_keys.append_column(sa.Column("budget_period", sa.String(16)))

budgets = sa.Table(
    "budgets",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),  # tenant | team | user | key
    sa.Column("subject", sa.String(256), nullable=False),  # its id
    sa.Column("unit", sa.String(8), nullable=False),  # usd | tokens
    sa.Column("max_units", sa.BigInteger, nullable=False),  # nano-USD (usd), or tokens
    sa.Column("period", sa.String(16), nullable=False),  # daily | weekly | monthly | total
    sa.Column("timezone", sa.String(64)),  # NULL: the config's budgets.timezone
    sa.Column("thresholds", sa.String(64)),  # comma-separated percents; NULL: the config's
    sa.Column("downgrade_model", sa.String(256)),
    sa.Column("downgrade_at", sa.Integer),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(64)),
    sa.UniqueConstraint("tenant_id", "scope", "subject", "unit", "period",
                        name="uq_budgets_tenant_scope_subject_unit_period"),
    # The key budgets alone, without reading the others (revision 0040): the search for key
    # chains whose keys all expired (stores/sql/budgets.py, ended_key_chains).
    sa.Index("ix_budgets_scope", "scope", "tenant_id", "subject"),
)

budget_alerts = sa.Table(
    "budget_alerts",
    metadata,
    sa.Column("budget_id", sa.String(64), primary_key=True),
    sa.Column("period_start", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("threshold", sa.Integer, primary_key=True),
    # The budget's amount the alert was sent for (revision 0038): a budget raised or lowered
    # mid-period alerts again at its thresholds of the new amount.
    sa.Column("max_units", sa.BigInteger, primary_key=True),
    sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
)

# data residency (revision 0009): the regions a tenant's, team's or key's requests may be served in
for _table in (tenants, teams, api_keys):
    _table.append_column(sa.Column("allowed_regions", sa.JSON))

# routing: run-time overrides of a group's deployments, e.g. a weight (revision 0009)
routing_overrides = sa.Table(
    "routing_overrides",
    metadata,
    sa.Column("group_name", sa.String(256), nullable=False),
    sa.Column("deployment", sa.String(256), nullable=False),
    sa.Column("weight", sa.Integer),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("group_name", "deployment"),
)

# routing: a split's percents changed at run time (revision 0009)
routing_splits = sa.Table(
    "routing_splits",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("percents", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# the request log (revision 0010): request and response bodies of the requests a policy selects,
# redacted before they are stored (docs/observability.md); the record itself is usage_records'
request_bodies = sa.Table(
    "request_bodies",
    metadata,
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("request", sa.Text),
    sa.Column("response", sa.Text),
    sa.Column("request_headers", sa.JSON),
    sa.Column("truncated", sa.Boolean, nullable=False, server_default=sa.false()),
    # the usage record's log_id: what a body joins its record on (revision 0037), and the key, with
    # the time PostgreSQL partitions the table by day on (revisions 0010, 0043); a body stored
    # before 0037 has its request id as log id
    sa.Column("log_id", sa.String(128), nullable=False),
    sa.PrimaryKeyConstraint("log_id", "created_at"),
    sa.Index("ix_request_bodies_tenant_created", "tenant_id", "created_at"),
    # retention on SQLite deletes by created_at range through it (PostgreSQL drops partitions)
    sa.Index("ix_request_bodies_created", "created_at"),
)

# -- analytics (revision 0011): hourly rollups of the usage ledger, kept as records are stored ----
# (stores/sql/analytics.py, docs/observability.md "Analytics"). An absent dimension is '' rather
# than NULL so the primary key (one row per hour and combination) works on both dialects. The
# latency and time-to-first-token histograms are one count column per fixed bucket
# (stores/histogram.py), so concurrent writers merge them with a plain ``x = x + excluded.x``.
ANALYTICS_MEASURES = (
    "requests", "errors", "prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens",
    "cost_nano_usd", "latency_ms_sum", "ttft_ms_sum", "ttft_count",
)
ANALYTICS_BUCKETS = 78  # histogram.BUCKETS; the migration creates this many columns per histogram
LATENCY_COLUMNS = tuple(f"latency_h{i:02d}" for i in range(ANALYTICS_BUCKETS))
TTFT_COLUMNS = tuple(f"ttft_h{i:02d}" for i in range(ANALYTICS_BUCKETS))


def _analytics_measures() -> list[sa.Column[int]]:
    return [sa.Column(name, sa.BigInteger, nullable=False, server_default="0")
            for name in (*ANALYTICS_MEASURES, *LATENCY_COLUMNS, *TTFT_COLUMNS)]


analytics_hourly = sa.Table(
    "analytics_hourly",
    metadata,
    sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),  # the UTC hour's start
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("team_id", sa.String(64), nullable=False),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("deployment", sa.String(256), nullable=False),
    sa.Column("provider", sa.String(128), nullable=False),
    *_analytics_measures(),
    sa.PrimaryKeyConstraint("bucket", "tenant_id", "team_id", "key_id", "user_id", "model", "deployment",
                            "provider", name="pk_analytics_hourly"),
    sa.Index("ix_analytics_hourly_tenant_bucket", "tenant_id", "bucket"),
)

# One row per hour, key and tag of the key: a request with several tags counts once in each.
analytics_tags_hourly = sa.Table(
    "analytics_tags_hourly",
    metadata,
    sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("team_id", sa.String(64), nullable=False),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("tag", sa.String(256), nullable=False),
    *_analytics_measures(),
    sa.PrimaryKeyConstraint("bucket", "tenant_id", "team_id", "key_id", "user_id", "tag",
                            name="pk_analytics_tags_hourly"),
    sa.Index("ix_analytics_tags_hourly_tenant_bucket", "tenant_id", "bucket"),
)

# alerts (revision 0012): incidents, open and resolved, and the one open incident per (rule,
# subject) across every instance (an insert that conflicts means another instance opened it)
alert_incidents = sa.Table(
    "alert_incidents",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("subject", sa.String(600), nullable=False),
    sa.Column("tenant_id", sa.String(64)),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("threshold", sa.Float),
    sa.Column("details", sa.JSON),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("resolves_at", sa.DateTime(timezone=True)),
    sa.Column("resolved_at", sa.DateTime(timezone=True)),
    sa.Column("resolved_value", sa.Float),
    sa.Index("ix_alert_incidents_started", "started_at"),
    # with id (revision 0028): a page in (started_at, id) order straight from the index
    sa.Index("ix_alert_incidents_tenant_started", "tenant_id", "started_at", "id"),
)

alert_open = sa.Table(
    "alert_open",
    metadata,
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(600), nullable=False),
    sa.Column("incident_id", sa.String(40), nullable=False),
    sa.PrimaryKeyConstraint("rule", "subject"),
)

# log search (revision 0013): indexes for the request log's common filters (docs/observability.md,
# "Searching the request log"). Key, team and user ids name one tenant's records, so their
# indexes serve the platform admin's queries across tenants too; model and deployment names are
# shared by tenants, so theirs lead with the tenant. On PostgreSQL the bodies' text has a
# full-text index (the search's ``q``); SQLite searches the bodies of the time range with LIKE.
sa.Index("ix_usage_records_key_created", usage_records.c.key_id, usage_records.c.created_at)
sa.Index("ix_usage_records_team_created", usage_records.c.team_id, usage_records.c.created_at)
sa.Index("ix_usage_records_user_created", usage_records.c.user_id, usage_records.c.created_at)
sa.Index("ix_usage_records_tenant_model_created", usage_records.c.tenant_id, usage_records.c.model,
         usage_records.c.created_at)
sa.Index("ix_usage_records_tenant_deployment_created", usage_records.c.tenant_id,
         usage_records.c.deployment, usage_records.c.created_at)
sa.Index("ix_usage_records_tenant_error_created", usage_records.c.tenant_id, usage_records.c.error_code,
         usage_records.c.created_at, postgresql_where=usage_records.c.error_code.isnot(None),
         sqlite_where=usage_records.c.error_code.isnot(None))
# The expression the search's full-text condition repeats word for word (log_search.py). The
# bodies are JSON text, where a line break, a tab or a control character is an escape ("\n",
# "\u001f"): each escape (and an escaped backslash or quote, read left to right) becomes a space
# first, else the parser reads "\nhello" as the word "nhello" and "hello" is never found
# (revision 0039).
BODY_TEXT_SQL = (r"to_tsvector('simple', regexp_replace("
                 r"coalesce(request, '') || ' ' || coalesce(response, ''), "
                 r"'\\(u[0-9a-fA-F]{4}|.)', ' ', 'g'))")
sa.Index("ix_request_bodies_text", sa.text(BODY_TEXT_SQL), _table=request_bodies,
         postgresql_using="gin").ddl_if(dialect="postgresql")

# -- files and batches (revision 0015): what was created through the gateway, and by whom -------

owned_objects = sa.Table(
    "owned_objects",
    metadata,
    sa.Column("kind", sa.String(8), nullable=False),  # file | batch
    sa.Column("id", sa.String(256), nullable=False),  # the upstream's id
    sa.Column("provider", sa.String(128), nullable=False),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("owner", sa.String(128), nullable=False),
    sa.Column("key_id", sa.String(64)),
    sa.Column("team_id", sa.String(64)),
    sa.Column("user_id", sa.String(64)),
    sa.Column("purpose", sa.String(64)),
    sa.Column("status", sa.String(32)),
    sa.Column("body", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("costed", sa.Boolean, nullable=False, server_default=sa.false()),
    # (revision 0036) set when deleted: the row stays a while as a list cursor, seen by nothing else
    sa.Column("deleted_at", sa.DateTime(timezone=True)),
    sa.PrimaryKeyConstraint("kind", "id"),
    # with id (revision 0028): a page in (created_at, id) order straight from the index
    sa.Index("ix_owned_objects_owner", "kind", "tenant_id", "owner", "created_at", "id"),
    sa.Index("ix_owned_objects_open", "kind", "costed", "seen_at"),
)
# the tombstones alone, oldest first, for their purge (revision 0036)
sa.Index("ix_owned_objects_deleted", owned_objects.c.kind, owned_objects.c.deleted_at,
         postgresql_where=owned_objects.c.deleted_at.isnot(None),
         sqlite_where=owned_objects.c.deleted_at.isnot(None))


# responses (revision 0014): Responses API responses kept for previous_response_id and
# GET /v1/responses/{id} (http/responses/), their JSON as text; expired rows are purged.
responses = sa.Table(
    "responses",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.String(64)),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("response", sa.Text, nullable=False),
    sa.Column("input_items", sa.Text, nullable=False),
    sa.Column("conversation", sa.Text, nullable=False),
    sa.Index("ix_responses_expires", "expires_at"),
)

# -- the prompt registry (revision 0016): immutable versions per (tenant, name), and labels -------

prompt_versions = sa.Table(
    "prompt_versions",
    metadata,
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("messages", sa.Text, nullable=False),  # JSON
    sa.Column("variables", sa.Text, nullable=False),  # JSON schema
    sa.Column("params", sa.Text, nullable=False),  # JSON
    sa.Column("output_schema", sa.Text),  # JSON schema
    sa.Column("description", sa.Text),
    sa.Column("team_id", sa.String(64)),
    sa.Column("created_by", sa.String(128)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "name", "version"),
)

prompt_labels = sa.Table(
    "prompt_labels",
    metadata,
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("label", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "name", "label"),
)

# apis (revision 0017): prompts published as REST APIs (apis/), one row per (tenant, name).
apis = sa.Table(
    "apis",
    metadata,
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("prompt", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer),
    sa.Column("label", sa.String(64)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("team_id", sa.String(64)),
    sa.Column("require_approval", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("successor", sa.String(128)),
    sa.Column("sunset_at", sa.DateTime(timezone=True)),
    sa.Column("deprecated_at", sa.DateTime(timezone=True)),
    sa.Column("split", sa.JSON),
    sa.Column("sessions", sa.JSON),
    sa.Column("created_by", sa.String(64)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "name"),
)


# api_sessions (revision 0018): the history of sessions of multi-turn prompt APIs
# (apis/sessions.py), per tenant, caller and session id; its turns as JSON text; expired rows
# are purged.
api_sessions = sa.Table(
    "api_sessions",
    metadata,
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("api", sa.String(128), nullable=False),
    sa.Column("session_id", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("turns", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "owner", "api", "session_id"),
    sa.Index("ix_api_sessions_expires", "expires_at"),
)


# services (revision 0019): plain REST services registered through the admin API (services/):
# their settings as JSON, the headers they add sealed with the credential keyring.
# by_platform_admin (revision 0025): a platform admin registered it or last changed its URL (the
# default tenant's egress exemption, upstream/egress.py).
services = sa.Table(
    "services",
    metadata,
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("headers", sa.JSON, nullable=False),
    sa.Column("created_by", sa.String(200)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("by_platform_admin", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.PrimaryKeyConstraint("tenant_id", "name"),
)

# -- MCP servers managed at run time (revision 0020): settings in clear, secrets sealed ---------
# The URL is sealed with the secrets, config["url"] its origin only (crypto/mcp_servers.py).
# A global server's tenant_id is "*" (no tenant id has that shape), so names are unique per scope.
# by_platform_admin (revision 0025): as for services above.

mcp_servers = sa.Table(
    "mcp_servers",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("sealed", sa.Text),
    sa.Column("header_names", sa.JSON, nullable=False),
    sa.Column("created_by", sa.String(128)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("by_platform_admin", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.UniqueConstraint("tenant_id", "name", name="uq_mcp_servers_tenant_name"),
)

# Per-user OAuth tokens for MCP servers, sealed; one row per (tenant, user, server name).
mcp_oauth_tokens = sa.Table(
    "mcp_oauth_tokens",
    metadata,
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("user_id", sa.String(128), nullable=False),
    sa.Column("server", sa.String(64), nullable=False),
    sa.Column("sealed", sa.Text, nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "user_id", "server"),
    sa.Index("ix_mcp_oauth_tokens_server", "tenant_id", "server"),
)

# MCP tool permissions of a team's or a key's callers (revision 0021): {"allow": [...], "deny": [...]}
for _table in (teams, api_keys):
    _table.append_column(sa.Column("mcp_tools", sa.JSON))

# A key's lineage (revision 0022): the first key id of its rotation chain, which its budgets,
# spend and rate limits are held under (itself for a key never rotated).
api_keys.append_column(sa.Column("lineage_id", sa.String(64)))
sa.Index("ix_api_keys_tenant_lineage", api_keys.c.tenant_id, api_keys.c.lineage_id)
# A chain's keys by its lineage alone (revision 0041): a key's own budget is known by its lineage
# only (``key:<lineage>``), looked up from its threshold claims (stores/sql/budgets.py).
sa.Index("ix_api_keys_lineage", api_keys.c.lineage_id)

# Keys changed in place (revision 0024): a reversible block (the blocker's role; NULL: not
# blocked; ``enabled`` false is a revoke, final), and a revision for compare-and-set writes.
api_keys.append_column(sa.Column("blocked_by_role", sa.String(32)))
api_keys.append_column(sa.Column("revision", sa.BigInteger, nullable=False, server_default="0"))
api_keys.append_column(sa.Column("updated_at", sa.DateTime(timezone=True)))

# Token revocations (revision 0026): a JWT caller cut off by an admin before its tokens expire;
# one row per (tenant, user), the user being the caller's mapped user id (no record needed).
token_revocations = sa.Table(
    "token_revocations",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
    sa.Column("block", sa.Boolean, nullable=False),
    sa.Column("reason", sa.String(500)),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(64)),
    sa.Column("created_by_role", sa.String(32), nullable=False),
    sa.UniqueConstraint("tenant_id", "user_id", name="uq_token_revocations_tenant_user"),
)

# Indexes for admin lists (revision 0027). A tenant's keys are listed oldest first by (created_at,
# id), a page at a time: this index returns a page without sorting all of the tenant's keys, and
# replaces the index on tenant_id alone (ix_api_keys_tenant_id, revision 0001), its prefix. The
# audit log read for one resource (?resource_id=) finds its entries without reading every entry
# of the tenant.
sa.Index("ix_api_keys_tenant_created", api_keys.c.tenant_id, api_keys.c.created_at, api_keys.c.id)
sa.Index("ix_audit_log_tenant_resource", audit_log.c.tenant_id, audit_log.c.resource_id, audit_log.c.id)

# The audit log read by actor and by time (revision 0028): one actor's entries newest first
# without reading the others', and the first entry id of a period, which bounds a newest-first
# read of ?since= to the period (stores/sql/audit.py).
sa.Index("ix_audit_log_tenant_actor", audit_log.c.tenant_id, audit_log.c.actor, audit_log.c.id)
sa.Index("ix_audit_log_tenant_at", audit_log.c.tenant_id, audit_log.c.at, audit_log.c.id)

# Keys with a check (revision 0029): true for a key issued with one (access/keys.py), false for
# the keys issued before (and by an instance not yet upgraded: the default), counted at start and
# periodically through the index (access/unchecked.py).
api_keys.append_column(sa.Column("checked", sa.Boolean, nullable=False, server_default=sa.false()))
sa.Index("ix_api_keys_checked", api_keys.c.checked)
