"""The running gateway: the live model table (upstream clients and routes) and the stage
chains, built once."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from switchboard import catalog, tokens
from switchboard.access import keys as keyfmt
from switchboard.access.cache import KeyCache
from switchboard.access.last_used import LastUsed
from switchboard.access.residency import ResidencyCache
from switchboard.access.revocations import TokenRevocations
from switchboard.access.subscriptions import SubscriptionCache
from switchboard.access.tokens import TokenRefused
from switchboard.access.unchecked import UncheckedKeys
from switchboard.apis import schemas
from switchboard.apis.cache import ApiCache
from switchboard.apis.sessions import SessionBook
from switchboard.background import stop_task
from switchboard.config.schema import Settings
from switchboard.context import RequestContext
from switchboard.crypto import keyring as crypto_keyring
from switchboard.crypto.server import SecretsUnavailable, hashing_key
from switchboard.http import cork
from switchboard.http.admin.budgets import end_chain
from switchboard.http.apis import ApiCalls, ApiStage, OutputStage
from switchboard.http.apis.docs import DocumentCache
from switchboard.http.apis.sessions import SessionStage
from switchboard.http.files import FileService, budget_gated
from switchboard.http.files.message_batches import MessageBatches
from switchboard.http.files.references import FileReferenceStage
from switchboard.http.mcp import McpServer
from switchboard.http.mcp.runner import ToolRunner
from switchboard.http.responses import HistoryStage, Responses
from switchboard.limits.cache import LimitCache
from switchboard.mcp.auth import McpAuth
from switchboard.mcp.loop import McpLoopStage
from switchboard.mcp.passthrough import CLIENTS
from switchboard.mcp.registry import Registry as McpRegistry
from switchboard.mcp.stages import ToolBudgetStage, ToolCall, ToolCheckStage, ToolRecordStage, ToolStage
from switchboard.mcp.toolbox import McpToolbox
from switchboard.observability.alerts.evaluator import Alerts
from switchboard.observability.metrics import Metrics, WebhookHealth
from switchboard.observability.observers import Observer
from switchboard.observability.redact import Redactor
from switchboard.observability.request_log import BodyWriter, Maintenance, Policies
from switchboard.observability.rollups import RollupRetention
from switchboard.pipeline import count_tokens, invoke
from switchboard.pipeline.access import ModelAccessStage
from switchboard.pipeline.attempts import AttemptStage
from switchboard.pipeline.auth import Authenticator, AuthStage
from switchboard.pipeline.budget_gate import BudgetGateStage
from switchboard.pipeline.budgets import BudgetStage
from switchboard.pipeline.caller_credentials import CallerCredentialsStage
from switchboard.pipeline.capture import CaptureStage
from switchboard.pipeline.chain import Handler, Stage, build_chain
from switchboard.pipeline.decode import DecodeStage
from switchboard.pipeline.embeddings import EmbeddingsTerminal
from switchboard.pipeline.images import ImageFetcher, InlineImagesStage
from switchboard.pipeline.limits import RateLimitStage
from switchboard.pipeline.models import ModelDirectory
from switchboard.pipeline.observe import ObserveStage
from switchboard.pipeline.prompt import PromptStage
from switchboard.pipeline.route import RouteStage
from switchboard.pipeline.rules import RulesStage, reached, router_embed
from switchboard.pipeline.subscription import GroupGate, SubscriptionStage
from switchboard.pipeline.usage import UsageStage
from switchboard.portal.cache import CatalogCache
from switchboard.prompts import sandbox
from switchboard.routing.health import Health
from switchboard.routing.live import LiveRouting
from switchboard.routing.prerouting import Windows
from switchboard.routing.probes import HealthChecks
from switchboard.routing.router import Router
from switchboard.server_memory import MemoryTrim
from switchboard.services import (
    ServiceCaptureStage,
    ServiceProxy,
    ServiceRateLimitStage,
    ServiceStage,
    ServiceSubscriptionStage,
    ServiceTable,
    ServiceUsageStage,
)
from switchboard.spend.budgets.book import BudgetBook
from switchboard.spend.budgets.chains import ExpiredChains
from switchboard.spend.budgets.webhooks import WebhookSender
from switchboard.spend.cost import Prices
from switchboard.spend.ledger import LedgerWriter
from switchboard.stores import StoreError, Stores, open_stores
from switchboard.stores.factory import data_dir
from switchboard.upstream.egress import EgressPolicy

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from switchboard.access.oidc import OidcVerifier
    from switchboard.observability.tracing import Tracing

# Files and batches: limits and budgets, no model call at request time (http/files/).
FILE_CALLS = frozenset({"files", "batches"})

# Operations that call a provider, and the one that only needs the model to exist.
MODEL_CALLS = frozenset({
    "chat", "embeddings", "completions",
    # media (http/media, pipeline/media.py)
    "rerank", "moderations", "image_generations", "image_edits", "image_variations", "transcriptions",
    "translations", "speech",
})


def _oidc_verifier(settings: Settings) -> OidcVerifier | None:
    """The JWT verifier when ``auth.oidc`` lists identity providers. Imported here, once, rather
    than at start: PyJWT and the cryptography it loads would cost every start tens of
    milliseconds for a feature most gateways do not configure."""
    if not settings.auth.oidc:
        return None
    from switchboard.access.oidc import OidcVerifier  # only when configured (see above)

    return OidcVerifier(settings.auth.oidc)


async def configured_hashing_key(stores: Stores, settings: Settings) -> bytes | None:
    """The key-hashing key the configured secrets open (None without a server secret); raises
    SecretsUnavailable when they do not open the stored one."""
    auth = settings.auth
    keyring = crypto_keyring.from_settings(auth)
    if keyring is None or auth.secret_key is None:
        return None
    initial = keyfmt.hashing_key(auth.secret_key.get_secret_value())
    return await hashing_key(stores.providers, keyring, initial)


async def check_serving(settings: Settings) -> None:
    """The stores open (migrations applied, servers reachable) and the server secret opens the
    stored key-hashing key: ``serve`` refuses to start with one clear line instead of failing
    inside each worker's lifespan."""
    stores = await open_stores(settings)
    try:
        await configured_hashing_key(stores, settings)
    except SecretsUnavailable as exc:
        raise StoreError(str(exc)) from None
    finally:
        await stores.close()


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        secret = settings.auth.secret_key
        # JWT callers, when identity providers are configured; its HTTP session opens in start().
        self.oidc = _oidc_verifier(settings)
        self.authenticator = Authenticator(
            settings.auth.master_key.get_secret_value(), secret.get_secret_value() if secret else None,
            self.oidc,
        )
        self.key_cache: KeyCache | None = None
        self.unchecked_keys: UncheckedKeys | None = None
        self.residency: ResidencyCache | None = None  # token callers' tenants and teams
        self.last_used: LastUsed | None = None
        self.subscriptions: SubscriptionCache | None = None
        self.limit_cache: LimitCache | None = None  # limits set through the admin API
        # JWT callers an admin cut off, in memory (only with identity providers configured).
        self.token_revocations: TokenRevocations | None = None
        self.images = ImageFetcher(settings.images)
        # Model limits, capabilities and prices, with the config's overrides applied.
        self.catalog = catalog.build(settings)
        # The model table: the YAML's entries now, the stored ones merged in at start().
        self.routing = LiveRouting(settings, self.catalog)
        self.models = ModelDirectory(self.routing)
        # Groups, strategies, deployment statistics and health, over the model table.
        self.router = Router(self.routing, health=Health(settings.router.cooldown),
                             windows=Windows(self.catalog))
        self.routing.swapped.append(self.router.forget_removed)
        self._rules: RulesStage | None = None
        # Optional active health checks (router.health_checks), started with the gateway.
        self.health_checks = HealthChecks(settings.router.health_checks, self.routing.all_routes,
                                          self.router, self.catalog)
        # Each served model's prices, and the usage ledger's writer (opened in start()).
        self.prices = Prices(self.catalog, self.routing)
        self.routing.swapped.append(self.prices.forget_removed)
        self.usage: LedgerWriter | None = None
        self._unhook_spool: Callable[[], None] = lambda: None
        # Files and batches (http/files/): their owners, and the poller that prices finished batches.
        self.files = FileService(settings.files, self.routing, self.router, self.catalog, self.prices,
                                 settings.spend.refuse_unpriced)
        # Anthropic's Message Batches (/v1/messages/batches): the same records, costing and poller.
        self.message_batches = MessageBatches(self.files, self.routing, self.router)
        self.budgets: BudgetBook | None = None  # opened in start()
        self.expired_chains: ExpiredChains | None = None  # started with the budgets
        # The key that hashes API keys, read from the database at start (None: no secret).
        self.hashing: bytes | None = None
        # Terminal handlers, named so the app can pair them with their endpoints.
        self.invoke: Handler = invoke.invoke
        self.embed: Handler = EmbeddingsTerminal(self.prices)  # invoke, for embedding models only
        self.count_tokens: Handler = count_tokens.count_tokens
        self.stores: Stores | None = None  # opened in start(): they connect to databases
        # What watches finished requests (observability/observers.py): metrics, alerts.
        self.observers: list[Observer] = []
        # The request log (docs/observability.md): which bodies are kept, their writer, and the
        # partitions and retention of the log (opened in start()).
        self.body_policies = Policies(settings.request_log.bodies)
        self.bodies: BodyWriter | None = None
        self.log_maintenance: Maintenance | None = None
        self.rollup_retention: RollupRetention | None = None
        # Prometheus metrics (GET /metrics); None when metrics.enabled is false: nothing paid.
        self.metrics: Metrics | None = None
        if settings.metrics.enabled:
            # Names only routing knows: a semantic router's, a rule's (requested, then rerouted).
            semantic = [s.model for s in settings.router.semantic]
            semantic += [r.model for r in settings.router.rules if r.model != "*"]
            self.metrics = Metrics(settings.metrics, settings.auth.master_key.get_secret_value(),
                                   self.routing, self.router.health, semantic)
            self.observers.append(self.metrics)
        # OpenTelemetry traces (pipeline/trace.py), only when enabled: nothing of OpenTelemetry
        # is imported otherwise.
        self.tracing: Tracing | None = None
        if settings.tracing.enabled:
            from switchboard.observability.tracing import Tracing

            self.tracing = Tracing(settings.tracing)
        # Alert rules (observability/alerts/): fed by the observers, the deployments' health
        # and the budgets' thresholds. Without rules it only resolves, from its start until none
        # is left, the incidents of rules removed since (no observer, no listener).
        self.alerts: Alerts | None = Alerts(settings.alerts)
        if self.alerts is not None:
            if self.alerts.observer is not None:
                self.observers.append(self.alerts.observer)
            if self.alerts.watches_breakers:
                self.router.health.listeners.append(self.alerts.breaker)
                self.alerts.tripped = self.router.tripped
        # The Responses API's calls under way and stored responses (http/responses/).
        self.responses = Responses(settings.responses,
                                   lambda: self.stores.responses if self.stores is not None else None)
        # Freed memory handed back to the OS now and then (server_memory.py).
        self.memory = MemoryTrim(settings.server.memory_trim_seconds)
        # Prompt API calls under way (http/apis/).
        self.api_calls = ApiCalls()
        # The MCP gateway's credentials (static, per-user OAuth) and stored servers (mcp/auth.py).
        self.mcp_auth = McpAuth(settings)
        # The MCP gateway (mcp/, http/mcp/): the upstream servers and the aggregated toolbox.
        # Where tenants' services and MCP servers may connect (docs/access.md, "Egress").
        self.egress = EgressPolicy(settings.egress)
        self.mcp_registry = McpRegistry(settings.mcp_servers, settings.mcp, self.mcp_auth.credentials,
                                        self.egress)
        self.mcp = McpToolbox(settings.mcp, self.mcp_registry)
        # Tool calls the gateway makes itself (the tool loop) run the same stages, metrics first.
        observe: list[Stage] = [ObserveStage(self.observers, self.metrics)] if self.observers else []
        self.mcp.runner = ToolRunner(build_chain([*observe, *self.mcp_stages()], ToolCall(self.mcp)),
                                     settings.server.request_timeout_seconds)
        # Sessions of multi-turn prompt APIs (apis/sessions.py): their turns and their purge.
        self.api_sessions = SessionBook(lambda: self.stores.api_sessions if self.stores is not None else None)
        # Plain REST services under /services/{name}/ (services/): the YAML's now, the stored ones
        # looked up (and cached) once the stores are open; one pooled session to reach them.
        self.services = ServiceTable(settings.services)
        self.service_proxy = ServiceProxy(self.egress,
                                          caller_credentials=settings.auth.caller_credentials.header)
        self.api_cache: ApiCache | None = None  # their records, for the request path (apis/cache.py)
        self.api_documents: DocumentCache | None = None  # their OpenAPI documents (http/apis/docs.py)
        self.catalog_cache: CatalogCache | None = None  # the portal catalog's store reads (portal/cache.py)
        self.ready = False
        # The deferred libraries imported once started, when something will need them (start()).
        self.warming: asyncio.Task[None] | None = None
        # Prompts from chat (docs/prompts.md): a request naming a registry prompt gets its messages.
        self.prompts = PromptStage(settings.prompts, lambda: self.stores, settings.apis.max_body_bytes)

    def services_stages(self) -> list[Stage]:
        """``/services/{name}/...``: the common stages, then which service, its subscription,
        the caller's rate limits and the service's rpm, and the call's ledger record."""
        stages: list[Stage] = [
            *self.common_stages(),
            ServiceStage(self.services),
            ServiceSubscriptionStage(lambda: self.subscriptions),
        ]
        if self.body_policies:  # the request log's bodies, as for model calls
            log = self.settings.request_log
            stages.append(ServiceCaptureStage(self.body_policies, self._redactor(), log.max_body_bytes,
                                              lambda: self.bodies))
        return [
            *stages,
            ServiceRateLimitStage(self.settings.limits,
                                  lambda: self.stores.limiter if self.stores is not None else None,
                                  lambda: self.limit_cache),
            ServiceUsageStage(lambda: self.usage),
        ]

    def _redactor(self) -> Redactor:
        """What the request log's bodies and headers are redacted with: ``request_log.redact``,
        and always the credential headers, the one carrying callers' own provider credentials
        included (a request that does not use it, a service call say, may still carry it)."""
        return Redactor(self.settings.request_log.redact, (self.settings.auth.caller_credentials.header,))

    def services_chain(self) -> Handler:
        return build_chain(self.services_stages(), self.service_proxy)

    def responses_chain(self, terminal: Handler, operation: str = "chat") -> Handler:
        """The chain of ``operation`` with the stored conversation of ``previous_response_id``
        read right after decoding (POST /v1/responses, and its input-token count)."""
        stages = self.stages(operation)
        at = next(i for i, stage in enumerate(stages) if isinstance(stage, DecodeStage)) + 1
        stages.insert(at, HistoryStage(self.responses))
        # The Responses request's own file ids too: a native deployment receives them as written.
        for i, stage in enumerate(stages):
            if isinstance(stage, FileReferenceStage):
                stages[i] = FileReferenceStage(self.files, self._responses_body)
        return build_chain(stages, terminal)

    def api_chain(self, terminal: Handler) -> Handler:
        """The chat chain of a prompt API call (POST /apis/{name}, http/apis/): the API resolved
        and its prompt rendered in place of decoding (no prompt reference to resolve), no key
        model list (the API's own access and subscription govern it), the output schema checked
        just outside the attempts."""
        stages = [s for s in self.stages("chat") if not isinstance(s, ModelAccessStage | PromptStage)]
        at = next(i for i, stage in enumerate(stages) if isinstance(stage, DecodeStage))
        stages[at] = ApiStage(self.api_calls, lambda: self.stores, lambda: self.subscriptions,
                              self.prompts.cache, lambda: self.api_cache)
        # Sessions trim by the windows of every group the routing rules may send the name to.
        rules = next((s for s in stages if isinstance(s, RulesStage)), None)
        targets = rules.targets if rules is not None else None
        stages.insert(at + 1, SessionStage(self.api_calls, self.api_sessions, self.router, targets))
        at = next(i for i, stage in enumerate(stages) if isinstance(stage, AttemptStage))
        budgets = next(stage for stage in stages if isinstance(stage, BudgetStage))
        stages.insert(at, OutputStage(self.api_calls, self.settings.apis, budgets.reserve_again))
        return build_chain(stages, terminal)

    def _webhooks(self) -> dict[str, WebhookHealth]:
        """The configured webhook senders by the name their metrics carry: ``budgets`` and
        ``alerts.<name>``."""
        out: dict[str, WebhookHealth] = {}
        if self.budgets is not None and self.budgets.webhooks.config is not None:
            out["budgets"] = self.budgets.webhooks
        for name, sender in (self.alerts.senders.items() if self.alerts is not None else ()):
            out[f"alerts.{name}"] = sender
        return out

    def _responses_body(self, ctx: RequestContext) -> Any:
        return self.responses.call(ctx).translated.body

    def model_terminal(self, operation: str) -> Handler:
        """The terminal of a model call's operation: the embeddings one checks the model's mode."""
        return self.embed if operation == "embeddings" else self.invoke

    def chain(self, operation: str, terminal: Handler) -> Handler:
        """The stage chain of one operation around its terminal handler, folded once."""
        return build_chain(self.stages(operation), terminal)

    def stages(self, operation: str) -> list[Stage]:
        """The request path of ``operation``, outermost first. A feature is a new entry here."""
        return [*self.common_stages(), *self.operation_stages(operation)]

    def common_stages(self) -> list[Stage]:
        """Stages every endpoint runs: /v1/*, /v1/models, count_tokens and /admin/* alike."""
        stages: list[Stage] = []
        if self.observers:  # metrics, alerts: nothing to pay when none is on
            stages.append(ObserveStage(self.observers, self.metrics))
        stages.append(AuthStage(self.authenticator))
        return stages

    def operation_stages(self, operation: str) -> list[Stage]:
        if operation in FILE_CALLS:
            return self.files_stages()
        if operation != "count_tokens" and operation not in MODEL_CALLS:
            return []
        stages: list[Stage] = []
        if self.tracing is not None and operation in MODEL_CALLS:
            # A span per authenticated model call (continuing the caller's trace); an
            # unauthenticated flood cannot fill the export queue.
            from switchboard.pipeline.trace import TraceStage

            stages.append(TraceStage(self.tracing))
        stages += [
            DecodeStage(),
            *([FileReferenceStage(self.files)] if operation == "chat" else []),
            self.prompts,
            *self.mcp_loop_stages(operation),
            ModelAccessStage(),
            *self.rules_stage(),
            RouteStage(self.router),
            SubscriptionStage(lambda: self.subscriptions),
            CallerCredentialsStage(self.settings.auth.caller_credentials),
        ]
        if operation == "count_tokens":
            return stages
        # The request log's bodies, when a policy keeps some: the caller and model are known here,
        # and a request refused by the limits or budgets below is logged with its error.
        if self.body_policies:
            bodies = self.settings.request_log
            stages.append(CaptureStage(self.body_policies, self._redactor(), bodies.max_body_bytes,
                                       lambda: self.bodies))
        # Cost and the usage ledger: one record per request, the attempts in it; before the limits
        # and budgets, so a request they refuse is recorded too (with its error, no attempts).
        refuse = self.settings.spend.refuse_unpriced
        usage = UsageStage(self.prices, lambda: self.usage, refuse_unpriced=refuse)
        stages.append(usage)
        # Budgets: reserve before the call, settle after it (the usage stage records the cost).
        # With Redis, the reservation rides on the rate limits' store call (one round trip).
        budgets = BudgetStage(self.settings.budgets, lambda: self.budgets, self.prices, self.routing,
                              lambda: self.stores.admission if self.stores is not None else None,
                              refused=usage.refused if refuse else None, router=self.router,
                              subscriptions=lambda: self.subscriptions)
        limits = RateLimitStage(
            self.settings.limits,
            lambda: self.stores.limiter if self.stores is not None else None,
            lambda: self.limit_cache,
            budgets.ride,
        )
        stages.append(limits)
        stages.append(budgets)
        # Retries and fallbacks: the stages after this one run once per attempt; an attempt sent
        # elsewhere than the limits' pick takes that deployment's limits first.
        stages.append(AttemptStage(self.router, self.settings.router,
                                   gate=GroupGate(lambda: self.subscriptions),
                                   refused=usage.refused if refuse else None, limits=limits))
        if self.tracing is not None:  # a child span per attempt, its traceparent sent upstream
            from switchboard.pipeline.trace import AttemptSpanStage

            stages.append(AttemptSpanStage(self.tracing))
        # Always present: whether a request's route needs its images inlined is a flag on the
        # Route (the model table changes at run time), checked by the stage, per attempt.
        stages.append(InlineImagesStage(self.images))
        return stages

    def files_stages(self) -> list[Stage]:
        """Files and batches (http/files/): each request counts against the caller's request
        limits (0 tokens); an upload or a batch's creation is refused while a budget of the
        caller is exhausted, reserving nothing (the batch's cost counts once it is recorded)."""
        return [
            RateLimitStage(self.settings.limits,
                           lambda: self.stores.limiter if self.stores is not None else None,
                           lambda: self.limit_cache),
            BudgetGateStage(self.settings.budgets, lambda: self.budgets, budget_gated),
        ]

    def mcp_loop_stages(self, operation: str) -> list[Stage]:
        """Chat and Responses requests naming MCP servers in ``tools`` (mcp/loop.py): the tool
        loop runs the rest of the chain once per model call."""
        if operation != "chat":
            return []
        registry = self.mcp_registry
        # Each tool call of the loop as a tools/call on /mcp, metrics first (its ids <id>.t<n>).
        observe: list[Stage] = [ObserveStage(self.observers, self.metrics)] if self.observers else []
        tool_chain = build_chain([*observe, *self.mcp_stages()], ToolCall(self.mcp))
        return [McpLoopStage(lambda: self.mcp if registry.all() else None,
                             lambda p: {u.name: u.server for u in registry.visible(p)}, self.settings.mcp,
                             lambda: tool_chain)]

    def mcp_stages(self) -> list[Stage]:
        """One MCP tools/call (mcp/stages.py): the tool resolved, traces, the record, permissions
        and arguments checked, the request log's bodies, rate limits (the key's, and
        ``limits.models["<server>__<tool>"]`` per tool) and the per-call price on budgets."""
        stages: list[Stage] = [ToolStage(self.mcp)]
        if self.tracing is not None:
            from switchboard.pipeline.trace import TraceStage

            stages.append(TraceStage(self.tracing))
        stages += [ToolRecordStage(lambda: self.usage), ToolCheckStage(self.mcp)]
        if self.body_policies:
            bodies = self.settings.request_log
            stages.append(CaptureStage(self.body_policies, self._redactor(), bodies.max_body_bytes,
                                       lambda: self.bodies))
        stages.append(self._mcp_limits())
        stages.append(ToolBudgetStage(self.settings.budgets, lambda: self.budgets))
        return stages

    def _mcp_limits(self) -> RateLimitStage:
        return RateLimitStage(self.settings.limits,
                              lambda: self.stores.limiter if self.stores is not None else None,
                              lambda: self.limit_cache)

    def mcp_chain(self) -> Handler:
        """The /mcp endpoint: authentication, the JSON-RPC message decoded, then its method;
        tools/call runs the mcp_stages() chain, the other methods that reach the servers (lists,
        resources/read, prompts/get) the rate limits: one request each, no per-tool limit."""
        server = McpServer(self.mcp, build_chain(self.mcp_stages(), ToolCall(self.mcp)), [self._mcp_limits()])
        return build_chain([*self.common_stages(), DecodeStage()], server)

    def rules_stage(self) -> list[Stage]:
        """Conditional and semantic routing, only when configured (nothing to pay otherwise)."""
        router = self.settings.router
        if not router.rules and not router.semantic and not router.splits:
            return []
        if self._rules is None:  # one per gateway: the semantic routers' examples embedded once
            self._rules = RulesStage(router, router_embed(self.router), self.routing)
        return [self._rules]

    def reached(self, model: str) -> list[tuple[str, str]]:
        """Every group a chat request for ``model`` may be served by, and how (rules, splits,
        semantic routing, fallbacks): pipeline/rules.py ``reached``. In-process, no store."""
        self.rules_stage()
        return reached(model, self._rules, self.router)

    async def start(self) -> None:
        # The shipped token encodings (about a second of CPU), built in a thread while the rest
        # starts, and ready before the gateway is: no request pays for them.
        encodings = asyncio.create_task(asyncio.to_thread(tokens.preload))
        self.stores = await open_stores(self.settings)
        keyring = crypto_keyring.from_settings(self.settings.auth)
        hashing = await configured_hashing_key(self.stores, self.settings)
        if hashing is not None:
            self.hashing = hashing
            self.authenticator.use_hashing_key(hashing)
        stale = self.settings.database.stale_while_unreachable_seconds
        ttl = self.settings.database.cache_seconds
        self.key_cache = KeyCache(self.stores.keys, self.stores.feed, ttl=ttl, negative_ttl=min(ttl, 5.0),
                                  stale_if_error=stale)
        await self.key_cache.start()
        self.unchecked_keys = UncheckedKeys()  # keys from before the check: made-up keys looked up?
        await self.unchecked_keys.start(self.stores.keys, self.stores.feed, ttl)
        if self.oidc is not None:
            self.residency = ResidencyCache(self.stores.tenancy, self.stores.feed, ttl=ttl,
                                            stale_if_error=stale)
            await self.residency.start()
        self.subscriptions = SubscriptionCache(self.stores.subscriptions, self.stores.feed, ttl=ttl,
                                               stale_if_error=stale)
        await self.subscriptions.start()
        if self.stores.limits is not None:
            self.limit_cache = LimitCache(self.stores.limits, self.stores.feed, ttl=ttl, stale_if_error=stale)
            await self.limit_cache.start()
        self.last_used = LastUsed(self.stores.keys, self.settings.auth.last_used_interval_seconds)
        self.last_used.start()
        if self.stores.apis is not None:
            api_ttl = self.settings.apis.cache_seconds
            self.api_cache = ApiCache(self.stores.apis, self.stores.feed, ttl=api_ttl)
            await self.api_cache.start()
            stores = self.stores
            self.api_documents = DocumentCache(self.stores.apis, stores.prompts, stores.feed, ttl=api_ttl)
            await self.api_documents.start()
            self.catalog_cache = CatalogCache(stores.feed, ttl=api_ttl)
            await self.catalog_cache.start()
        spend = self.settings.spend
        self.usage = LedgerWriter(self.stores.ledger, data_dir(self.settings) / "spool",
                                  max_bytes=spend.spool_max_bytes, flush_seconds=spend.flush_seconds,
                                  batch=spend.flush_batch)
        await self.usage.start()
        self._unhook_spool = cork.before_send(self.usage.write_spooled)
        request_log = self.settings.request_log
        if self.stores.request_log is not None:
            self.log_maintenance = Maintenance(self.stores.request_log, request_log.retention)
            await self.log_maintenance.start()
            if self.body_policies:
                self.bodies = BodyWriter(
                    self.stores.request_log, queue_max=request_log.queue_max,
                    flush_seconds=request_log.flush_seconds, batch=request_log.flush_batch,
                )
                self.bodies.start()
        days = self.settings.analytics.retention_days
        if days is not None and self.stores.analytics is not None:
            self.rollup_retention = RollupRetention(self.stores.analytics, days)
            self.rollup_retention.start()
        if self.stores.budgets is not None:
            self.budgets = BudgetBook(
                self.settings.budgets, self.stores.budgets, self.stores.budget_counters, self.stores.ledger,
                self.stores.feed, WebhookSender(self.settings.budgets.webhook),
                ledger_ready=self.usage.recovered, writer=self.usage, cache_seconds=ttl,
                stale_if_error=stale,
            )
            await self.budgets.start()
            if self.alerts is not None and self.alerts.watches_budgets:
                self.budgets.listeners.append(self.alerts.budget_crossed)
                self.alerts.key_live = self._key_live
                self.alerts.budget_alerting = self.budgets.alerts_at
        if self.alerts is not None:
            await self.alerts.start(self.stores.incidents)
        if self.stores.budgets is not None:
            # Alert rules or not, a key chain whose keys all expired has its budgets ended (after
            # the alerts' start: ending them resolves their incidents).
            self.expired_chains = ExpiredChains(self.stores.budgets, self._end_chain,
                                                self.settings.budgets.expired_keys_seconds,
                                                self.settings.budgets.timezone)
            self.expired_chains.start()
        self.authenticator.attach(self.key_cache, self.last_used, self.unchecked_keys)
        if self.oidc is not None:
            self.oidc.regions = self._residency
            if self.stores.token_revocations is not None:
                self.token_revocations = TokenRevocations()
                await self.token_revocations.start(self.stores.token_revocations, self.stores.feed, ttl)
                self.oidc.revocations = self.token_revocations
            await self.oidc.start()
        await self.routing.start(self.stores.providers, self.stores.feed, keyring, ttl,
                                 overrides=self.stores.routing)
        await self.services.start(self.stores.services, self.stores.feed, keyring)
        # Cooldowns shared through Redis when configured, else kept in this process.
        await self.router.health.start(self.stores.health, self.stores.feed)
        self.health_checks.start()
        if self.metrics is not None:
            # The background writers' queues, spool and drops, and the stores' last check, read at
            # each scrape; one check first so the first scrape has the stores' answers.
            await self.stores.checks.results()
            self.metrics.watch(self.usage, self.bodies, self.last_used, self.stores.checks, self._webhooks())
            await self.metrics.start()  # the metrics.port listener, when configured
        self.files.start(self.stores.files, self.stores.ledger, lambda: self.budgets, self.stores.keys,
                         lambda: self.subscriptions,
                         self.metrics.batch_charged if self.metrics is not None else None)
        self.message_batches.use(lambda: self.subscriptions)
        # With several processes serving, a stored response is written before its reply leaves.
        self.responses.shared = self.stores.shared
        self.responses.start()  # the purge of expired stored responses
        await self.mcp_auth.start(self.stores, keyring, self.mcp_registry)
        self.mcp_registry.start()  # MCP servers' health checks
        await CLIENTS.start(self.settings.mcp, self.stores.sessions, self.stores.feed)  # mcp/passthrough.py
        self.api_sessions.start()  # the purge of expired API sessions
        await encodings
        self.memory.start()
        self.ready = True
        # Not awaited: readiness does not wait for it, and the loop serves meanwhile.
        self.warming = asyncio.create_task(self.warm_imports(), name="warm-imports")

    async def warm_imports(self) -> None:
        """Import the template and schema libraries (Jinja2, jsonschema: 40-100 ms of CPU) in a
        worker thread when what is stored or configured at start will need them, instead of on
        the event loop by the first prompt, prompt API or MCP tool call (lazy.py). A call that
        arrives meanwhile waits on Python's import lock for the same import to finish. Nothing
        is imported when nothing needs it.

        When the start-up froze what it built (app.py's lifespan, ``gc.freeze``), the modules
        imported here, which live as long, are frozen with it once imported (on the loop: cheap),
        so the collector's scans do not walk them. What requests hold at that instant is frozen
        too: freed by its reference count as ever, only a cycle among it is never collected."""
        preload = await self._deferred_needed()
        if preload is None:
            return
        try:
            await asyncio.to_thread(preload)
        except Exception as exc:  # a broken install: the first call meets it, close() must not
            log.warning("could not import the template and schema libraries ahead: %s", type(exc).__name__)
        else:
            if gc.get_freeze_count():
                gc.collect()  # what is already garbage is freed, not frozen for good
                gc.freeze()

    async def _deferred_needed(self) -> Callable[[], None] | None:
        """What to import ahead: the sandbox and the schemas when a prompt is stored (a prompt
        API serves one), the schemas alone when MCP servers are configured or stored."""
        prompts = self.stores.prompts if self.stores is not None else None
        try:
            stored = prompts is not None and await prompts.any_stored()  # one query, at start only
        except Exception as exc:  # the database out of reach: the first call imports, as before
            # The type only: a driver's text can run to several lines with the statement.
            log.warning("could not tell whether prompts are stored, not importing ahead: %s",
                        type(exc).__name__)
            stored = False
        if stored:
            return sandbox.preload
        mcp_stored = self.mcp_auth.stored
        if self.settings.mcp_servers or (mcp_stored is not None and mcp_stored.servers):
            return schemas.preload
        return None

    async def _key_live(self, tenant: str, lineage: str) -> bool:
        """Whether a key of the rotation chain may still spend (the alerts' key budget sweep)."""
        assert self.stores is not None
        return await self.stores.keys.lineage_live(tenant, lineage, datetime.now(UTC))

    async def _end_chain(self, tenant: str, lineage: str) -> None:
        """A key chain whose keys all expired (``ExpiredChains``): its budgets ended as a revoke
        of its last key ends them."""
        assert self.stores is not None
        await end_chain(self.stores, self.budgets, self.alerts, tenant, lineage)

    async def _residency(self, tenant: str | None, team: str | None) -> frozenset[str] | None:
        """A token caller's residency policy: its tenant's and team's allowed regions (keys
        carry theirs with the key record). A team claim naming another tenant's team is refused
        here, once per token: the caller would otherwise file records of its tenant under it; so
        are a tenant and a team that were deleted."""
        if self.residency is None:
            return None
        # Cached (access/residency.py): served as last read while the database cannot be read.
        found = await self.residency.get((tenant, team))
        assert found is not None  # the loader always answers a Residency
        if found.team_tenant is not None and found.team_tenant != (tenant or "default"):
            raise TokenRefused(
                "token_claims_invalid", "the token's team claim names a team of another tenant"
            )
        if found.tenant_retired:
            # A deleted tenant's id is retired with its records still filed under it (audit log,
            # usage, logs): a token naming it would read them and file new ones under it.
            raise TokenRefused("token_claims_invalid", "the token's tenant was deleted")
        if found.team_deleted:
            # Its users, keys and requests would be filed under a team that is gone, outside the
            # regions it had.
            raise TokenRefused("token_claims_invalid", "the token's team was deleted")
        return found.regions

    async def close(self) -> None:
        self.ready = False
        await stop_task(self.warming)  # an import under way finishes in its thread
        self.warming = None
        await self.memory.close()
        if self.metrics is not None:
            await self.metrics.close()
        await self.files.close()
        await self.health_checks.close()
        await self.router.health.close()
        await self.routing.close()
        await self.images.close()
        if self.oidc is not None:
            await self.oidc.close()
        if self.token_revocations is not None:
            await self.token_revocations.close()
            self.token_revocations = None
        if self.last_used is not None:
            await self.last_used.close()  # the last batch, before the stores close
            self.last_used = None
        if self.expired_chains is not None:
            await self.expired_chains.close()
            self.expired_chains = None
        budget_hook = None
        if self.budgets is not None:
            # With alerts, its webhook is closed with theirs: receivers that hang (often one host
            # for both) hold the exit for one grace, not one after the other.
            budget_hook = self.budgets.webhooks if self.alerts is not None else None
            await self.budgets.close(webhooks=budget_hook is None)  # alerts under way (bounded)
            self.budgets = None
        if self.alerts is not None:
            # notices under way, webhooks in flight (bounded)
            await self.alerts.close(also=() if budget_hook is None else (budget_hook,))
        if self.usage is not None:
            self._unhook_spool()
            await self.usage.close()  # the last batch; what cannot be stored stays spooled
            self.usage = None
        if self.bodies is not None:
            await self.bodies.close()  # the last bodies, before the stores close
            self.bodies = None
        if self.log_maintenance is not None:
            await self.log_maintenance.close()
            self.log_maintenance = None
        if self.rollup_retention is not None:
            await self.rollup_retention.close()
            self.rollup_retention = None
        if self.unchecked_keys is not None:
            await self.unchecked_keys.close()
            self.unchecked_keys = None
        if self.key_cache is not None:
            await self.key_cache.close()
            self.key_cache = None
        if self.residency is not None:
            await self.residency.close()
            self.residency = None
        if self.subscriptions is not None:
            await self.subscriptions.close()
            self.subscriptions = None
        if self.limit_cache is not None:
            await self.limit_cache.close()
            self.limit_cache = None
        await self.responses.close()
        await self.api_sessions.close()
        await self.prompts.close()
        await self.mcp_auth.close()
        await CLIENTS.close()
        await self.mcp_registry.close()
        await self.services.close()
        await self.service_proxy.close()
        if self.api_cache is not None:
            await self.api_cache.close()
            self.api_cache = None
        if self.api_documents is not None:
            await self.api_documents.close()
            self.api_documents = None
        if self.catalog_cache is not None:
            await self.catalog_cache.close()
            self.catalog_cache = None
        if self.stores is not None:
            await self.stores.close()
            self.stores = None
        if self.tracing is not None:  # export the spans still queued (bounded by its timeout)
            await asyncio.to_thread(self.tracing.shutdown)
