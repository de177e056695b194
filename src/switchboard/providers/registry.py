"""Provider types by name. Adding a provider: write ``providers/<name>.py`` exposing ``SPEC``
and add its module name below."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache

from pydantic import BaseModel, SecretStr, ValidationError

from switchboard.config.schema import ProviderConfig
from switchboard.providers.spec import ProviderSpec
from switchboard.upstream import outbound
from switchboard.upstream.auth import StaticHeaderAuth
from switchboard.upstream.outbound import Outbound
from switchboard.upstream.userinfo import UrlCredential, split_userinfo

_MODULES: tuple[str, ...] = (
    "openai",
    "azure",
    "anthropic",
    "gemini",
    "vertex",
    "cohere",
    "bedrock",
    "mistral",
    "openai_compatible",
)


@cache
def providers() -> dict[str, ProviderSpec]:
    specs: dict[str, ProviderSpec] = {}
    for name in _MODULES:
        spec: ProviderSpec = importlib.import_module(f"switchboard.providers.{name}").SPEC
        specs[spec.type] = spec
    return specs


def get(provider_type: str) -> ProviderSpec:
    return providers()[provider_type]


@dataclass(frozen=True, slots=True)
class ResolvedProvider:
    """One provider entry resolved once at start-up: its type, validated options and base URL."""

    config: ProviderConfig
    spec: ProviderSpec
    options: BaseModel  # the provider type's own options model
    api_base: str  # without a trailing slash, and without user info (taken out as ``url_credential``)
    # The base URL's user info, sent as ``Authorization: Basic`` (upstream/userinfo.py).
    url_credential: UrlCredential | None = None
    # Its TLS context and proxy (``tls``, ``proxy``: YAML providers only), built here, once.
    outbound: Outbound | None = None

    @property
    def name(self) -> str:
        return self.config.name


def options_for(config: ProviderConfig) -> BaseModel:
    return get(config.type).options.model_validate(config.options)


def resolve(config: ProviderConfig) -> ResolvedProvider:
    """The resolved record for an entry that passed :func:`check_provider` (at config load)."""
    spec = get(config.type)
    options = spec.options.model_validate(config.options)
    api_base = spec.api_base(config, options)
    assert api_base is not None, "checked when the config was loaded"
    api_base, url_credential = split_userinfo(api_base)
    try:
        egress = outbound.build(config)
    except outbound.OutboundError as exc:  # checked at load (check_provider): a file changed since
        raise outbound.OutboundError(f"provider '{config.name}': {exc}") from None
    return ResolvedProvider(config, spec, options, api_base, url_credential, egress)


def check_provider(config: ProviderConfig, keyed: bool | None = None) -> list[str]:
    """Problems with one provider entry, as ``key: message`` lines (empty when valid).
    ``keyed``: whether the provider has a key (None: its own ``api_key``/``api_keys`` say; a
    stored provider's credentials are kept apart from its entry)."""
    specs = providers()
    spec = specs.get(config.type)
    if spec is None:
        return [f"type: unknown provider type {config.type!r} (known: {', '.join(sorted(specs))})"]
    problems = []
    try:
        options = spec.options.model_validate(config.options)
    except ValidationError as err:
        for e in err.errors(include_url=False, include_input=False):
            key = ".".join(str(p) for p in e["loc"])
            msg = "unknown key" if e["type"] == "extra_forbidden" else str(e["msg"])
            problems.append(f"{key}: {msg.removeprefix('Value error, ')}")
        return problems
    api_base = spec.api_base(config, options)
    try:
        outbound.build(config)  # the tls files read as serving will read them
    except outbound.OutboundError as exc:
        problems.append(str(exc))
    if api_base is None:
        problems.append("api_base: required for this provider type")
    elif split_userinfo(api_base)[1] is not None:
        if keyed is None:
            keyed = config.api_key is not None or bool(config.api_keys)
        clash = _authorization_clash(config, spec, options, keyed)
        if clash is not None:
            problems.append(
                f"api_base: its user info (user:password@) is sent as Authorization: Basic, and {clash}; "
                "a request carries one Authorization header: remove the user info or the other credential")
    return problems


def _authorization_clash(
    config: ProviderConfig, spec: ProviderSpec, options: BaseModel, keyed: bool
) -> str | None:
    """What else of the provider would be sent in ``Authorization`` (None: nothing), judged
    from the scheme its credential builds (a placeholder key stands for a real one)."""
    if any(name.lower() == "authorization" for name in config.headers):
        return "its headers set Authorization"
    key = SecretStr("placeholder-key") if keyed else None
    auth = spec.make_auth(config.model_copy(update={"api_key": key, "api_keys": []}), options)
    # Not a fixed header: a token or a signature made per request, in Authorization.
    if not isinstance(auth, StaticHeaderAuth) or any(n.lower() == "authorization" for n in auth.headers):
        return f"a provider of type {config.type} sends its credential in Authorization"
    return None
