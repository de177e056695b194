"""Which limits apply to one request, from the settings, the key and the admin API's records.

Every limit in scope applies (global, model, tenant, team, user, key, key-by-model) and the most
restrictive one decides. For one subject, a limit set through the admin API (or on the key)
replaces the configured per-subject default field by field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from switchboard.config.schema import LimitsConfig, LimitValues
from switchboard.context import Principal

DAY = 86_400.0
REQUESTS, TOKENS = "requests", "tokens"

# (scope, subject) -> the limits the admin API set for it, within one tenant.
Stored = Mapping[tuple[str, str], LimitValues]


@dataclass(frozen=True, slots=True)
class Limit:
    scope: str  # global | model | tenant | team | user | key | key_model
    key: str  # the bucket's key, unique per scope, subject and counted thing
    kind: str  # requests | tokens
    limit: int  # as configured
    capacity: int  # the limit plus the burst
    window: float  # seconds
    name: str  # rpm | tpm | tpd


def _merge(default: LimitValues | None, explicit: LimitValues | None) -> LimitValues | None:
    if explicit is None:
        return default
    if default is None:
        return explicit
    return LimitValues(
        rpm=explicit.rpm if explicit.rpm is not None else default.rpm,
        tpm=explicit.tpm if explicit.tpm is not None else default.tpm,
        tpd=explicit.tpd if explicit.tpd is not None else default.tpd,
    )


UPSTREAM = "upstream"


def upstream(config: LimitsConfig, provider: str, values: LimitValues) -> list[Limit]:
    """A provider deployment's own limits: no burst, the provider would refuse it."""
    out = []
    for name, kind, value in (("rpm", REQUESTS, values.rpm), ("tpm", TOKENS, values.tpm)):
        if value is not None:
            key = f"upstream:{provider}:{name}"
            out.append(Limit(UPSTREAM, key, kind, value, value, config.window_seconds, name))
    return out


def plan(config: LimitsConfig, principal: Principal | None, model: str, stored: Stored) -> list[Limit]:
    """The limits of a request by ``principal`` to ``model``, widest scope first. ``model`` is
    empty for a request that names none (files and batches): no per-model limit applies."""
    scopes: list[tuple[str, str, LimitValues | None]] = [("global", "all", config.global_)]
    if model:
        scopes.append(("model", model, config.models.get(model)))
    if principal is not None:
        tenant = principal.tenant_id
        if tenant is not None:
            scopes.append(("tenant", tenant, _merge(config.per_tenant, stored.get(("tenant", tenant)))))
            if model:  # the tenant's own limit on this model (admin API), apart from the global one
                scopes.append(("tenant_model", f"{tenant}:{model}", stored.get(("model", model))))
        if principal.team_id is not None:
            team = principal.team_id
            scopes.append(("team", f"{tenant}:{team}", _merge(config.per_team, stored.get(("team", team)))))
        if principal.user_id is not None:
            user = principal.user_id
            scopes.append(("user", f"{tenant}:{user}", _merge(config.per_user, stored.get(("user", user)))))
        if principal.key_id is not None:
            # The key's lineage (the first key of its rotation chain): a rotated key keeps its
            # windows and the key_model limits set on its predecessor.
            key = principal.key_lineage or principal.key_id
            own = None
            if principal.rpm_limit is not None or principal.tpm_limit is not None:
                own = LimitValues(rpm=principal.rpm_limit, tpm=principal.tpm_limit)
            scopes.append(("key", key, _merge(config.per_key, own)))
            if model:
                per_model = config.per_key_model.get(model) or config.per_key_model.get("*")
                subject = f"{key}:{model}"
                scopes.append(("key_model", subject, _merge(per_model, stored.get(("key_model", subject)))))
    burst = 1.0 + config.burst
    out: list[Limit] = []
    for scope, subject, values in scopes:
        if values is None:
            continue
        shown = "model" if scope == "tenant_model" else scope
        for name, kind, window, value in (
            ("rpm", REQUESTS, config.window_seconds, values.rpm),
            ("tpm", TOKENS, config.window_seconds, values.tpm),
            ("tpd", TOKENS, DAY, values.tpd),
        ):
            if value is not None:
                out.append(Limit(shown, f"{scope}:{subject}:{name}", kind, value, int(value * burst), window,
                                 name))
    return out
