"""The model table: client model name -> where and how to call it.

``routing/live.py`` rebuilds it whenever the stored providers and models change; the functions
here build its parts from configuration entries, whichever their source.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from switchboard.config.schema import ModelConfig, ProviderConfig, Settings, Timeouts, deployment_names
from switchboard.crypto import refs
from switchboard.providers import registry
from switchboard.providers.base import ProviderAdapter
from switchboard.providers.registry import ResolvedProvider
from switchboard.providers.target import Target
from switchboard.upstream import outbound
from switchboard.upstream.auth import MissingCredentialAuth, RotatingAuth, UpstreamAuth
from switchboard.upstream.client import UpstreamClient
from switchboard.upstream.google_auth import ServiceAccountAuth


@dataclass(slots=True, frozen=True)
class Route:
    target: Target
    adapter: ProviderAdapter
    client: UpstreamClient
    # A per-model override of the provider's timeouts; None: the provider's own, set on its
    # session. The upstream client turns it into its transport's form.
    timeout: Timeouts | None
    # Whether remote images must be fetched and inlined before the adapter sees the request.
    inline_images: bool = False
    # The deployment's name within its group (``target.name``), unique in the group, and the
    # model entry it was built from (region, weight, tags, rpm/tpm, catalog overrides).
    deployment: str = ""
    entry: ModelConfig | None = None
    # The model whose counting rules the prompt estimate follows (Claude's images, OpenAI's
    # encodings): the entry's ``info.base_model`` when set, as a name that says no model (a
    # Bedrock application inference profile ARN, an Azure deployment) needs it, else ``target.model``.
    counted_as: str = ""


def resolve_providers(settings: Settings) -> dict[str, ResolvedProvider]:
    """Every provider entry resolved once (options validated, api_base worked out, TLS context
    and proxy built), by name."""
    for p in settings.providers:
        outbound.warn_unverified(p)
    return {p.name: registry.resolve(p) for p in settings.providers}


def credential_values(p: ProviderConfig) -> list[str]:
    """The provider's keys in clear, ``env:``/``file:`` references resolved (RefError if not)."""
    given = ([p.api_key] if p.api_key is not None else []) + list(p.api_keys)
    return [refs.resolve(v.get_secret_value()) for v in given]


def make_client(resolved: ResolvedProvider, keys: list[str], *, missing: bool = False) -> UpstreamClient:
    """The pooled client of one provider; several keys are used in turn, one per request.
    ``missing``: it was given credentials, none usable (``keys`` empty): every call is refused."""
    p = resolved.config
    auth = MissingCredentialAuth(p.name) if missing else _key_auth(resolved, keys)
    return UpstreamClient(p.name, auth, p.max_connections, dict(p.headers), p.timeouts, p.max_response_bytes,
                          resolved.url_credential, resolved.outbound)


def _key_auth(resolved: ResolvedProvider, keys: list[str]) -> UpstreamAuth:
    p = resolved.config

    def with_key(key: str | None) -> ProviderConfig:
        return p.model_copy(update={"api_key": None if key is None else SecretStr(key), "api_keys": []})

    given: list[str | None] = list(keys) or [None]
    schemes = [resolved.spec.make_auth(with_key(k), resolved.options) for k in given]
    if resolved.outbound is not None:  # a token fetched for it goes the provider's way too
        for scheme in schemes:
            if isinstance(scheme, ServiceAccountAuth):
                scheme.route(resolved.outbound)
    # One key, the common case: fixed headers folded into the session.
    return schemes[0] if len(schemes) == 1 else RotatingAuth(schemes)


def build_clients(
    settings: Settings, providers: dict[str, ResolvedProvider] | None = None
) -> dict[str, UpstreamClient]:
    if providers is None:
        providers = resolve_providers(settings)
    return {name: make_client(r, credential_values(r.config)) for name, r in providers.items()}


def make_route(
    m: ModelConfig, resolved: ResolvedProvider, client: UpstreamClient, deployment: str = ""
) -> Route:
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
        own_account=p.allow_account_objects,
        rpm=p.rpm,
        tpm=p.tpm,
        max_event_bytes=p.max_event_bytes,
    )
    adapter = resolved.spec.adapter
    override = timeouts if m.timeouts else None
    return Route(target, adapter, client, override, adapter.needs_inline_images(target),
                 deployment or m.deployment or f"{m.provider}/{m.model}", m,
                 m.info.base_model if m.info is not None and m.info.base_model else m.model)


def build_routes(
    settings: Settings,
    clients: dict[str, UpstreamClient],
    providers: dict[str, ResolvedProvider] | None = None,
) -> list[Route]:
    """Every configured deployment's route, in the configuration's order."""
    if providers is None:
        providers = resolve_providers(settings)
    names = deployment_names(settings.models)
    return [make_route(m, providers[m.provider], clients[m.provider], names[i])
            for i, m in enumerate(settings.models)]
