"""The model table: client model name -> where and how to call it. Built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from switchboard.config.schema import Settings, Timeouts
from switchboard.providers import registry
from switchboard.providers.base import ProviderAdapter
from switchboard.providers.registry import ResolvedProvider
from switchboard.providers.target import Target
from switchboard.upstream.client import UpstreamClient


@dataclass(slots=True, frozen=True)
class Route:
    target: Target
    adapter: ProviderAdapter
    client: UpstreamClient
    # A per-model override of the provider's timeouts; None: the provider's own, set on its
    # session. The upstream client turns it into its transport's form.
    timeout: Timeouts | None


def resolve_providers(settings: Settings) -> dict[str, ResolvedProvider]:
    """Every provider entry resolved once (options validated, api_base worked out), by name."""
    return {p.name: registry.resolve(p) for p in settings.providers}


def build_clients(
    settings: Settings, providers: dict[str, ResolvedProvider] | None = None
) -> dict[str, UpstreamClient]:
    if providers is None:
        providers = resolve_providers(settings)
    clients = {}
    for name, resolved in providers.items():
        p = resolved.config
        auth = resolved.spec.make_auth(p, resolved.options)
        clients[name] = UpstreamClient(
            name, auth, p.max_connections, dict(p.headers), p.timeouts, p.max_response_bytes
        )
    return clients


def build_routes(
    settings: Settings,
    clients: dict[str, UpstreamClient],
    providers: dict[str, ResolvedProvider] | None = None,
) -> dict[str, Route]:
    if providers is None:
        providers = resolve_providers(settings)
    routes = {}
    for m in settings.models:
        resolved = providers[m.provider]
        p = resolved.config
        timeouts = m.timeouts.over(p.timeouts) if m.timeouts else p.timeouts
        target = Target(
            name=m.name,
            model=m.model,
            provider=p.name,
            provider_type=p.type,
            api_base=resolved.api_base,
            options=resolved.options,
            timeouts=timeouts,
            drop_params=m.drop_params,
            require_approval=m.require_approval,
            allow_caller_credentials=p.allow_caller_credentials,
        )
        override = timeouts if m.timeouts else None
        routes[m.name] = Route(target, resolved.spec.adapter, clients[p.name], override)
    return routes
