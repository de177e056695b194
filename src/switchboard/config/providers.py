"""Provider and model entries: where each upstream is, its credentials, timeouts and bounds,
and the deployments behind each model name (docs/configuration.md, docs/routing.md).

Part of the configuration schema (config/schema.py re-exports every name).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from switchboard.config.base import MAX_CONNECTIONS, MAX_SECONDS, MIB, ExactScalars, Strict, checked_headers
from switchboard.config.catalog import ModelEntryInfo
from switchboard.config.server import checked_proxy
from switchboard.config.urls import check_http_url

# A provider's ``timeouts.total`` when its entry gives none.
DEFAULT_TOTAL = 600.0


class Timeouts(Strict):
    """Seconds. ``first_byte`` bounds the wait for the response headers and every gap between
    reads afterwards (a stalled stream); ``total`` bounds the whole exchange, stream included."""

    connect: Annotated[float, Field(gt=0, le=MAX_SECONDS)] = 10.0
    first_byte: Annotated[float, Field(gt=0, le=MAX_SECONDS)] = 120.0
    total: Annotated[float, Field(gt=0, le=MAX_SECONDS)] = DEFAULT_TOTAL


class TimeoutsOverride(Strict):
    connect: Annotated[float, Field(gt=0, le=MAX_SECONDS)] | None = None
    first_byte: Annotated[float, Field(gt=0, le=MAX_SECONDS)] | None = None
    total: Annotated[float, Field(gt=0, le=MAX_SECONDS)] | None = None

    def over(self, base: Timeouts) -> Timeouts:
        return base.model_copy(update={k: v for k, v in self.model_dump().items() if v is not None})


def connect_past_total(
    connect: float | None, total: float | None, inherited: float, whose: str
) -> str | None:
    """Why a ``timeouts.connect`` given with ``total`` (None: the ``inherited`` one, ``whose``)
    cannot be, or None. ``total`` bounds the whole exchange, the connect included: a longer
    connect would never apply, and reads as a setting that does. Checked where a value comes in
    (the configuration file, the admin API), not on the models: a stored record still loads."""
    limit = total if total is not None else inherited
    if connect is None or connect <= limit:
        return None
    source = "" if total is not None else f", {whose}"
    return (f"{connect:g} s is longer than timeouts.total ({limit:g} s{source}), which bounds the whole "
            "exchange, connect included: lower it, or raise timeouts.total")


Path = Annotated[str, Field(min_length=1, max_length=4096)]


class ProviderTls(Strict):
    """How the gateway's TLS connections to one provider are checked and identify themselves
    (docs/configuration.md, ``providers[].tls``). The files are read, and the context built, once
    at start-up (upstream/outbound.py); never per request."""

    # A PEM bundle of the CAs trusted for this provider, instead of the system's store.
    ca_file: Path | None = None
    # A client certificate (PEM, with its chain) and its key, for mutual TLS.
    client_cert: Path | None = None
    client_key: Path | None = None
    # False: the provider's certificate is not checked at all (a warning at start-up says so).
    verify: bool = True

    @model_validator(mode="after")
    def _pair(self) -> ProviderTls:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key go together (the certificate and its private key)")
        return self


# Names as the admin API takes them (and the stored records' columns hold): a name in the file
# is listed, paged (``?after=``, the portal's ``<kind>:<name>``), referenced and sent in URLs
# (``/v1beta/models/{name}:generateContent``) as a stored one is.
PROVIDER_NAME_MAX = 128
PROVIDER_NAME_PATTERN = r"^[A-Za-z0-9_.:-]+$"
MODEL_NAME_MAX = 256
MODEL_NAME_PATTERN = r"^[A-Za-z0-9_.:/@+-]+$"


class ProviderConfig(ExactScalars):
    # Extra keys are provider-type options, checked by the provider's own options model.
    model_config = ConfigDict(extra="allow", frozen=True, coerce_numbers_to_str=True)

    name: Annotated[str, Field(min_length=1, max_length=PROVIDER_NAME_MAX, pattern=PROVIDER_NAME_PATTERN)]
    type: Annotated[str, Field(min_length=1)]
    api_base: str | None = None
    # A key, or a reference to one: ``env:NAME`` or ``file:/path`` (resolved when the client is
    # built, see crypto/refs.py). ``api_keys``: several, used in turn (one per request).
    api_key: SecretStr | None = None
    api_keys: Annotated[list[SecretStr], Field(max_length=100)] = Field(default_factory=list)
    timeouts: Timeouts = Timeouts()
    max_connections: Annotated[int, Field(ge=1, le=MAX_CONNECTIONS)] = 512
    headers: dict[str, str] = Field(default_factory=dict)
    # Bound on a non-stream response body; the largest embeddings batch (2048 inputs x 3072
    # floats, pretty-printed JSON) is about 150 MB.
    max_response_bytes: Annotated[int, Field(ge=1024)] = 256 * MIB
    # Bound on one unfinished stream event (providers/sse.py); a streamed image's base64 may
    # need more than the default. At least 64 KiB (events below 16 KiB are never measured),
    # at most 1 GiB.
    max_event_bytes: Annotated[int, Field(ge=64 * 1024, le=1024 * MIB)] = 16 * MIB
    # Let callers send their own credential for this provider (auth.caller_credentials must be
    # enabled too); see docs/access.md, "Caller credentials".
    allow_caller_credentials: bool = False
    # Callers may name objects of this provider's account (gs:// URIs, Files API ids, Azure
    # "On your data" data_sources) on the gateway's credential: only for a deployment whose
    # every caller may read all the account holds (docs/access.md, "Objects of the provider
    # account"). Configuration file only: the admin API does not take it.
    allow_account_objects: bool = False
    # The provider's own limits for this deployment (requests and tokens per minute): the
    # gateway waits up to limits.max_wait_seconds for room rather than send what it would
    # refuse (docs/limits.md).
    rpm: Annotated[int, Field(ge=1, le=1_000_000_000_000)] | None = None
    tpm: Annotated[int, Field(ge=1, le=1_000_000_000_000)] | None = None
    # TLS to this provider: its own CA bundle, a client certificate, or no check (YAML only).
    tls: ProviderTls | None = None
    # The outbound HTTP proxy to reach this provider through (YAML only): absent, the file's
    # ``egress.proxy`` (Settings fills it in); null or "": none. A secret (it may hold a password).
    proxy: SecretStr | None = None

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, value: SecretStr | None) -> SecretStr | None:
        return checked_proxy(value)

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        return checked_headers(value)

    @field_validator("api_base")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        check_http_url(value)
        if "?" in value or "#" in value:
            # The adapter appends its path (/chat/completions) to the base: a query would end up
            # before it and every call would miss (404); a key in it would sit in every URL.
            raise ValueError("a base URL takes no query string or fragment (the adapter appends its "
                             "path after it); send credentials as api_key or headers, and an API "
                             "version as the provider's option")
        return value

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


_DEPLOYMENT = r"^[A-Za-z0-9_.:/#@-]+$"


class ModelConfig(Strict):
    name: Annotated[str, Field(min_length=1, max_length=MODEL_NAME_MAX, pattern=MODEL_NAME_PATTERN)]
    provider: Annotated[str, Field(min_length=1, max_length=PROVIDER_NAME_MAX)]
    model: Annotated[str, Field(min_length=1)]
    timeouts: TimeoutsOverride | None = None
    drop_params: bool = False
    # Teams must subscribe, and a tenant admin approve, before their keys may call this model.
    require_approval: bool = False
    # Catalog overrides for this entry (limits, prices, capabilities); see docs/catalog.md.
    info: ModelEntryInfo | None = None
    # Several entries with the same ``name`` form a group of deployments (docs/routing.md).
    # ``deployment`` names this one within its group (default: ``<provider>/<model>``, with
    # ``#2``, ``#3``... when that repeats); it is what x-switchboard-deployment shows.
    deployment: Annotated[str, Field(min_length=1, max_length=256, pattern=_DEPLOYMENT)] | None = None
    # Where the deployment serves from, for data residency (e.g. "eu", "us-east").
    region: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")] | None = None
    # Share of the group's traffic under the weighted strategy (0: only as a fallback).
    weight: Annotated[int, Field(ge=0, le=1_000_000)] = 1
    tags: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=32)] = Field(
        default_factory=list)
    # This deployment's own requests and tokens per minute (the headroom strategy reads them).
    rpm: Annotated[int, Field(ge=1, le=1_000_000_000_000)] | None = None
    tpm: Annotated[int, Field(ge=1, le=1_000_000_000_000)] | None = None
    # POST /v1/responses to this deployment: translated to the chat form (any provider), or sent
    # as is ("native": providers of type openai or azure only; docs/api-responses.md).
    responses: Literal["translate", "native"] = "translate"


def deployment_names(entries: list[ModelConfig]) -> list[str]:
    """Each entry's deployment name: its own, else ``<provider>/<model>``, with ``#2``, ``#3``...
    when that repeats within its group. The model table, pins, the admin API and the split check
    all name deployments by it."""
    taken = {(m.name, m.deployment) for m in entries if m.deployment is not None}
    names: list[str] = []
    for m in entries:
        if m.deployment is not None:
            names.append(m.deployment)
            continue
        base = name = f"{m.provider}/{m.model}"
        n = 1
        while (m.name, name) in taken:
            n += 1
            name = f"{base}#{n}"
        taken.add((m.name, name))
        names.append(name)
    return names
