"""The admin application: routers, OpenAPI, error shape, and what the routes need."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi

from switchboard import __version__
from switchboard.access.cache import KeyCache
from switchboard.access.revocations import TokenRevocations
from switchboard.access.subscriptions import SubscriptionCache
from switchboard.catalog import Catalog
from switchboard.config.schema import Settings
from switchboard.http.admin import (
    alerts,
    analytics,
    apis,
    audit,
    budgets,
    catalog,
    errors,
    key_update,
    keys,
    limits,
    logs,
    mcp_servers,
    models,
    prompts,
    providers,
    routing,
    spend,
    subscriptions,
    teams,
    tenants,
    token_revocations,
    usage,
    users,
)
from switchboard.http.admin import portal as portal_routes
from switchboard.http.admin import services as services_api
from switchboard.http.admin.authz import allow
from switchboard.http.admin.query import refuse_undeclared_query
from switchboard.http.admin.text_input import refuse_unstorable_input
from switchboard.limits.cache import LimitCache
from switchboard.observability.alerts.evaluator import Alerts
from switchboard.portal.cache import CatalogCache
from switchboard.routing.live import LiveRouting
from switchboard.routing.router import Router
from switchboard.services.table import ServiceTable
from switchboard.spend.budgets.service import BudgetService
from switchboard.spend.cost import Prices
from switchboard.stores import Stores
from switchboard.upstream.egress import EgressPolicy


@dataclass
class AdminServices:
    """What the admin routes use. The stores open in the lifespan, after the app is built, so
    they are reached through callables."""

    settings: Settings
    catalog: Catalog
    # The key-hashing key, read from the database at start-up (None: no server secret).
    hashing_key: Callable[[], bytes | None]
    stores: Callable[[], Stores]
    key_cache: Callable[[], KeyCache]
    subscriptions: Callable[[], SubscriptionCache]
    # Where tenants' services and MCP servers may connect: their URLs are checked at registration.
    egress: EgressPolicy
    # The live model table (providers and models managed at run time).
    routing: LiveRouting | None = field(default=None)
    # Each served model's prices (GET /admin/v1/usage/unpriced).
    prices: Prices | None = field(default=None)
    # Limits set through /admin/v1/limits, cached for the request path (None: not started).
    limit_cache: Callable[[], LimitCache | None] = field(default=lambda: None)
    # JWT callers cut off, in memory (access/revocations.py; None: no identity provider or not started).
    token_revocations: Callable[[], TokenRevocations | None] = field(default=lambda: None)
    # The running budgets (spend/budgets/): cache invalidation and live status (None: not started).
    budgets: Callable[[], BudgetService | None] = field(default=lambda: None)
    # The alerts (None: no alerts section): a budget deleted or changed resolves its incidents.
    alerts: Callable[[], Alerts | None] = field(default=lambda: None)
    # Groups, strategies and deployment state (GET/PATCH /admin/v1/routing/groups).
    router: Router | None = field(default=None)
    # Plain REST services (services/): the YAML's and the stored ones' cache (/admin/v1/services).
    services: ServiceTable | None = field(default=None)
    # The MCP gateway's credentials and stored servers (mcp/auth.py; None: not started).
    mcp: Callable[[], Any] = field(default=lambda: None)
    # What the portal catalog reads from the store, per tenant (portal/cache.py; None: not started).
    catalog_cache: Callable[[], CatalogCache | None] = field(default=lambda: None)
    # Every group a chat request for a model may be served by, and how (gateway.reached): what
    # publishing a prompt API gives its callers (http/admin/apis.py).
    reached: Callable[[str], list[tuple[str, str]]] = field(default=lambda model: [])

    @property
    def hashing(self) -> bytes | None:
        return self.hashing_key()


def create_admin_app(services: AdminServices) -> FastAPI:
    # The OpenAPI document and the docs page are served outside the admin chain, without a key
    # (http/admin_docs.py): not by FastAPI, whose page loads Swagger UI from a CDN. With
    # server.public_docs off, the document is the route below, behind the chain.
    app = FastAPI(
        title="Switchboard admin API",
        version=__version__,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        # A path with a trailing slash is an unknown URL (404 unknown_url), as on the model API:
        # Starlette's default answers it with an empty 307 to the Host header's host.
        redirect_slashes=False,
        # Every route, before its own checks: no NUL or unpaired surrogate in any text it takes, no
        # NaN, infinity or integer past 64 bits in its JSON body; a change takes no query
        # parameter its route does not declare.
        dependencies=[Depends(refuse_unstorable_input), Depends(refuse_undeclared_query)],
    )
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.state.services = services
    errors.install(app)
    app.include_router(catalog.router)
    app.include_router(keys.router)
    app.include_router(key_update.router)
    app.include_router(audit.router)
    app.include_router(limits.router)
    app.include_router(budgets.router)
    app.include_router(subscriptions.router)
    app.include_router(providers.router)
    app.include_router(models.router)
    app.include_router(tenants.router)
    app.include_router(teams.router)
    app.include_router(users.users_router)
    app.include_router(users.service_accounts_router)
    app.include_router(spend.router)
    app.include_router(usage.router)
    app.include_router(analytics.router)
    app.include_router(logs.router)
    app.include_router(routing.router)
    app.include_router(alerts.router)
    app.include_router(prompts.router)
    app.include_router(apis.router)
    app.include_router(portal_routes.router)
    app.include_router(services_api.router)
    app.include_router(mcp_servers.router)
    app.include_router(token_revocations.router)

    @app.get("/admin/v1/openapi.json", include_in_schema=False,
             dependencies=[Depends(allow("catalog", "read"))])
    async def openapi_document() -> dict[str, Any]:
        # Reached only with server.public_docs off (otherwise the gateway answers this path
        # before the admin chain, without a key): then any role may read it, as the catalog.
        return app.openapi()

    return app


BEARER = {"type": "http", "scheme": "bearer",
          "description": "An admin key (the master key, or a key whose role may make the call): "
                         "`Authorization: Bearer <key>`"}


# The document's server, relative to where the document is served (/admin/v1/openapi.json, with
# or without the public docs): the gateway's root as the caller reached it. Behind a reverse
# proxy that serves the gateway under a path prefix, Swagger UI's "Try it out" then calls
# <prefix>/admin/v1/..., as the page and the document are loaded from <prefix>/...; with no
# server at all it called the host's root, outside the prefix.
SERVER = "../.."


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with the bearer scheme every route takes declared (Swagger UI's
    "Authorize" then sends the key on "Try it out") and the gateway as its server."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes,
                             servers=[{"url": SERVER}])
        schema.setdefault("components", {})["securitySchemes"] = {"bearer": BEARER}
        schema["security"] = [{"bearer": []}]
        app.openapi_schema = schema
    return app.openapi_schema
