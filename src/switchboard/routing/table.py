"""The model table: client model name -> where and how to call it. Built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from switchboard.config.schema import Settings
from switchboard.providers import registry
from switchboard.providers.base import ProviderAdapter
from switchboard.routing.target import Target
from switchboard.upstream.client import UpstreamClient, client_timeout


@dataclass(slots=True, frozen=True)
class Route:
    target: Target
    adapter: ProviderAdapter
    client: UpstreamClient
    timeout: aiohttp.ClientTimeout | None  # None: the provider's timeouts, set on its session


def build_clients(settings: Settings) -> dict[str, UpstreamClient]:
    clients = {}
    for p in settings.providers:
        spec = registry.get(p.type)
        options = registry.options_for(p)
        auth = spec.make_auth(p, options)
        clients[p.name] = UpstreamClient(p.name, auth, p.max_connections, dict(p.headers), p.timeouts)
    return clients


def build_routes(settings: Settings, clients: dict[str, UpstreamClient]) -> dict[str, Route]:
    providers = {p.name: p for p in settings.providers}
    routes = {}
    for m in settings.models:
        p = providers[m.provider]
        spec = registry.get(p.type)
        options = registry.options_for(p)
        api_base = spec.api_base(p, options)
        assert api_base is not None  # checked when the config was loaded
        timeouts = m.timeouts.over(p.timeouts) if m.timeouts else p.timeouts
        target = Target(
            name=m.name,
            model=m.model,
            provider=p.name,
            provider_type=p.type,
            api_base=api_base,
            options=options,
            timeouts=timeouts,
            drop_params=m.drop_params,
        )
        timeout = client_timeout(timeouts) if m.timeouts else None
        routes[m.name] = Route(target, spec.adapter, clients[p.name], timeout)
    return routes
