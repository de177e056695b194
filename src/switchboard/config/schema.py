"""The configuration schema: ``Settings``, the whole file. Validated once at start-up; nothing
reads files or env after that.

Each section's models live in a module of their own (providers, access, server, spend,
observability, routing, and catalog, mcp, prompts, services); this module assembles them, checks
what spans sections (a model's provider, a router's groups, a split's deployments) and
re-exports every section's names, so ``from switchboard.config.schema import X`` works for all.

Provider entries accept extra keys: each provider type validates its own options (see
``providers.registry``), so adding a provider never touches the schema. The package imports
nothing from the rest of Switchboard: it is the bottom layer.

String fields take a YAML scalar as written (``api_version: 2024-10-21``, ``version: 2.10``):
see ``config.yamlfile`` and ``config.base``.
"""

from __future__ import annotations

import typing
from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, model_validator

from switchboard.config.access import (  # noqa: F401 (re-exported)
    ASYMMETRIC_JWT_ALGORITHMS,
    HMAC_JWT_ALGORITHMS,
    AuthConfig,
    CallerCredentialsConfig,
    ClaimPath,
    ClaimValue,
    JwtAlgorithm,
    OidcClaimsConfig,
    OidcIssuerConfig,
    RoleName,
    TenantName,
)
from switchboard.config.base import MIB, Strict, control_character  # noqa: F401 (MIB, Strict re-exported)
from switchboard.config.catalog import CatalogConfig
from switchboard.config.mcp import McpConfig, McpServerConfig, check_stdio
from switchboard.config.observability import (  # noqa: F401 (re-exported)
    ALWAYS_REDACTED_HEADERS,
    MAX_PATTERN_LENGTH,
    MAX_REDACT_PATTERNS,
    AlertKind,
    AlertRule,
    AlertsConfig,
    AlertWebhookConfig,
    AnalyticsConfig,
    BodyPolicy,
    MetricLabel,
    MetricsConfig,
    RedactConfig,
    RequestLogConfig,
    RetentionConfig,
    TracingConfig,
    compile_pattern,
)
from switchboard.config.prompts import ApisConfig, PromptsConfig
from switchboard.config.providers import (  # noqa: F401 (re-exported)
    DEFAULT_TOTAL,
    ModelConfig,
    ProviderConfig,
    ProviderTls,
    Timeouts,
    TimeoutsOverride,
    connect_past_total,
    deployment_names,
)
from switchboard.config.routing import (  # noqa: F401 (re-exported)
    ERROR_CLASSES,
    STRATEGIES,
    CooldownConfig,
    ErrorClass,
    GroupPolicy,
    HealthCheckConfig,
    RetryConfig,
    RouterConfig,
    RoutingRule,
    RuleCondition,
    SemanticRoute,
    SemanticRouter,
    Split,
    SplitArm,
    Strategy,
    TokenRange,
)
from switchboard.config.server import (  # noqa: F401 (re-exported)
    LOG_LEVELS,
    CorsConfig,
    DatabaseConfig,
    EgressConfig,
    FilesConfig,
    ImagesConfig,
    RedisConfig,
    ResponsesConfig,
    ServerConfig,
)
from switchboard.config.services import ServiceConfig
from switchboard.config.spend import (  # noqa: F401 (re-exported)
    BudgetsConfig,
    BudgetWebhookConfig,
    LimitsConfig,
    LimitValue,
    LimitValues,
    Percent,
    SpendConfig,
    check_timezone,
)
from switchboard.config.urls import check_http_url, proxy_url_problem  # noqa: F401 (re-exported)


class Settings(Strict):
    providers: list[ProviderConfig] = Field(default_factory=list)
    models: list[ModelConfig] = Field(default_factory=list)
    auth: AuthConfig
    server: ServerConfig = ServerConfig()
    images: ImagesConfig = ImagesConfig()
    egress: EgressConfig = EgressConfig()
    catalog: CatalogConfig = CatalogConfig()
    database: DatabaseConfig = DatabaseConfig()
    redis: RedisConfig | None = None
    spend: SpendConfig = SpendConfig()
    limits: LimitsConfig = LimitsConfig()
    budgets: BudgetsConfig = BudgetsConfig()
    router: RouterConfig = RouterConfig()
    metrics: MetricsConfig = MetricsConfig()
    tracing: TracingConfig = TracingConfig()
    request_log: RequestLogConfig = RequestLogConfig()
    analytics: AnalyticsConfig = AnalyticsConfig()
    alerts: AlertsConfig = AlertsConfig()
    files: FilesConfig = FilesConfig()
    responses: ResponsesConfig = ResponsesConfig()
    # The prompt registry and prompts published as APIs (docs/prompts.md).
    prompts: PromptsConfig = PromptsConfig()
    apis: ApisConfig = ApisConfig()
    # Plain REST services proxied under /services/{name}/ (docs/services.md).
    services: Annotated[list[ServiceConfig], Field(max_length=1000)] = Field(default_factory=list)
    # The MCP gateway (docs/mcp.md): upstream servers and the /mcp endpoint's bounds.
    mcp_servers: Annotated[list[McpServerConfig], Field(max_length=1000)] = Field(default_factory=list)
    mcp: McpConfig = McpConfig()
    # Set for the embedded default: serve the built-in mock upstream under /mock.
    builtin_mock: bool = False

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        """A section written with no keys under it (``server:`` with its keys commented out,
        YAML's null) is an empty one: its defaults (``[]`` for a list), as if it were left out,
        rather than an error; ``auth:`` so is told its missing ``master_key``."""
        if not isinstance(data, dict) or None not in data.values():
            return data
        return {k: _EMPTY_SECTIONS[k]() if v is None and k in _EMPTY_SECTIONS else v
                for k, v in data.items()}

    @model_validator(mode="before")
    @classmethod
    def _default_proxy(cls, data: Any) -> Any:
        """``egress.proxy`` written into every provider entry that names no ``proxy`` of its
        own, so each entry holds the proxy it uses (the admin API shows it, the workers get it);
        an entry's ``proxy: null`` or ``""`` keeps it out."""
        if not isinstance(data, dict):
            return data
        egress = data.get("egress")
        proxy = egress.get("proxy") if isinstance(egress, dict) else getattr(egress, "proxy", None)
        providers = data.get("providers")
        if not proxy or not isinstance(providers, list):
            return data
        if isinstance(proxy, SecretStr):
            proxy = proxy.get_secret_value()
        if not isinstance(proxy, str) or proxy_url_problem(proxy) is not None:
            return data  # refused as egress.proxy, once (not again for every provider)
        filled = [_with_proxy(p, proxy) for p in providers]
        return {**data, "providers": filled}

    @model_validator(mode="after")
    def _references(self) -> Settings:
        seen: set[str] = set()
        for p in self.providers:
            if p.name in seen:
                raise ValueError(f"duplicate provider name {p.name!r}")
            seen.add(p.name)
        deployments: set[tuple[str, str]] = set()
        types = {p.name: p.type for p in self.providers}
        for i, m in enumerate(self.models):
            if m.provider not in seen:
                known = ", ".join(sorted(seen)) or "none"
                raise ValueError(f"models[{i}].provider: unknown provider {m.provider!r} (known: {known})")
            if m.responses == "native" and types[m.provider] not in ("openai", "azure"):
                raise ValueError(f"models[{i}].responses: 'native' needs a provider of type openai or azure, "
                                 f"not {types[m.provider]!r}")
            if m.deployment is not None:
                if (m.name, m.deployment) in deployments:
                    raise ValueError(f"models[{i}].deployment: duplicate deployment {m.deployment!r} "
                                     f"in group {m.name!r}")
                deployments.add((m.name, m.deployment))
        self._check_router({m.name for m in self.models})
        self._check_header_names()
        self._check_timeouts()
        services = [s.name for s in self.services]
        if len(services) != len(set(services)):  # REST services (docs/services.md)
            twice = sorted({n for n in services if services.count(n) > 1})
            raise ValueError(f"services: duplicate service name {twice[0]!r}")
        check_stdio(self.mcp_servers, self.mcp)  # stdio MCP servers only where allowed (config/mcp.py)
        return self

    def _check_timeouts(self) -> None:
        """A ``timeouts.connect`` written out is within the total that bounds it: the entry's own,
        else (a model's) its provider's, else the default."""
        totals = {p.name: p.timeouts.total for p in self.providers}
        for i, p in enumerate(self.providers):
            given = p.timeouts.model_fields_set
            problem = connect_past_total(p.timeouts.connect if "connect" in given else None,
                                         p.timeouts.total if "total" in given else None, DEFAULT_TOTAL,
                                         "the default")
            if problem:
                raise ValueError(f"providers[{i}].timeouts.connect: {problem}")
        for i, m in enumerate(self.models):
            if m.timeouts is not None:
                problem = connect_past_total(m.timeouts.connect, m.timeouts.total, totals[m.provider],
                                             f"from provider {m.provider!r}")
                if problem:
                    raise ValueError(f"models[{i}].timeouts.connect: {problem}")

    def _check_header_names(self) -> None:
        """Names an answer carries in its x-switchboard-* headers hold no control character: a
        group's (x-switchboard-model, -route), an upstream model id (part of a deployment's
        default name, x-switchboard-deployment) and a rule's (x-switchboard-route); an alias
        follows the model names' rule, which refuses one first.
        The HTTP server refuses a header holding one (a CR, a LF), so every answer routed
        through such a name was a 500: the file is refused instead."""
        names = [*((f"models[{i}].name", m.name) for i, m in enumerate(self.models)),
                 *((f"models[{i}].model", m.model) for i, m in enumerate(self.models)),
                 *((f"router.rules[{i}].name", r.name) for i, r in enumerate(self.router.rules) if r.name)]
        for where, name in names:
            if (found := control_character(name)) is not None:
                raise ValueError(f"{where}: control characters are not allowed ({found}): the name is "
                                 "sent in x-switchboard-* response headers")

    def _check_router(self, names: set[str]) -> None:
        r = self.router
        for alias, group in r.aliases.items():
            if alias in names:
                raise ValueError(f"router.aliases.{alias}: the name is a model group already")
            if group not in names:
                raise ValueError(f"router.aliases.{alias}: unknown model group {group!r}")
        known = names | set(r.aliases)
        sections = (("fallbacks", r.fallbacks), ("context_window_fallbacks", r.context_window_fallbacks))
        for section, chains in sections:
            for name, chain in chains.items():
                if name in r.aliases:  # a chain is looked up by its group's name, never an alias's
                    raise ValueError(f"router.{section}.{name}: {name!r} is an alias of the model group "
                                     f"{r.aliases[name]!r}; key the chain by the group")
                for target in [name, *chain]:
                    if target not in known:
                        raise ValueError(f"router.{section}.{name}: unknown model group {target!r}")
        for name in r.groups:
            if name not in names:
                raise ValueError(f"router.groups.{name}: unknown model group")
        named: dict[str, int] = {}
        for i, rule in enumerate(r.rules):
            if rule.to not in known:
                raise ValueError(f"router.rules[{i}].to: unknown model group {rule.to!r}")
            # The name x-switchboard-route shows: two rules sharing one could not be told apart.
            name = rule.name or f"rules[{i}]"
            if name in named:
                raise ValueError(f"router.rules[{i}].name: {name!r} is the name of "
                                 f"router.rules[{named[name]}] already (each rule's name is unique)")
            named[name] = i
        semantic: dict[str, int] = {}
        for i, sem in enumerate(r.semantic):
            if sem.model in semantic:
                raise ValueError(f"router.semantic[{i}].model: {sem.model!r} has a semantic router already "
                                 f"(router.semantic[{semantic[sem.model]}]); one per model")
            semantic[sem.model] = i
            targets = [sem.embedding_model, *(route.to for route in sem.routes)]
            for target in targets + ([sem.default] if sem.default else []):
                if target not in known:
                    raise ValueError(f"router.semantic[{i}]: unknown model group {target!r}")
        self._check_splits(known)

    def _check_splits(self, known: set[str]) -> None:
        split_models: set[str] = set()
        all_names = deployment_names(self.models) if self.router.splits else []
        for i, split in enumerate(self.router.splits):
            if split.model in split_models:
                raise ValueError(f"router.splits[{i}].model: {split.model!r} has a split already")
            split_models.add(split.model)
            group = self.router.aliases.get(split.model, split.model)
            # Deployment names as the table names them (explicit, else <provider>/<model>[#n]).
            names = {name for m, name in zip(self.models, all_names, strict=True) if m.name == group}
            for arm in split.arms:
                if arm.to is not None and arm.to not in known:
                    raise ValueError(f"router.splits[{i}]: unknown model group {arm.to!r}")
                if arm.deployment is not None and arm.deployment not in names:
                    listed = ", ".join(sorted(names)) or "none"
                    raise ValueError(f"router.splits[{i}]: the model {split.model!r} has no deployment "
                                     f"{arm.deployment!r} (deployments: {listed})")


def _empty_value(annotation: Any) -> type | None:
    """What an empty section of this type is (``dict`` for a section, ``list`` for a list),
    or None for a key that is no section or where null means something of its own (``redis``)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _empty_value(typing.get_args(annotation)[0])
    if origin is list:
        return list
    return dict if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


# Settings' keys whose null is an empty section, and what that is.
_EMPTY_SECTIONS = {name: empty for name, info in Settings.model_fields.items()
                   if (empty := _empty_value(info.annotation)) is not None}


def _with_proxy(entry: Any, proxy: str) -> Any:
    """A provider entry (as written, or already a ProviderConfig) with ``proxy`` unless it names
    its own (null and "" included)."""
    if isinstance(entry, dict):
        return entry if "proxy" in entry else {**entry, "proxy": proxy}
    if isinstance(entry, ProviderConfig) and "proxy" not in entry.model_fields_set:
        return entry.model_copy(update={"proxy": SecretStr(proxy)})  # checked as egress.proxy
    return entry
