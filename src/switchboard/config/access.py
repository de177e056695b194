"""Who may call: the master key, the secret that keys hashes and sealed credentials, callers'
own provider credentials, and JWT callers from OIDC identity providers (docs/access.md).

Part of the configuration schema (config/schema.py re-exports every name).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from switchboard.config.base import Credential, Strict
from switchboard.config.urls import check_http_url

# Headers that carry the caller's Switchboard key or a provider's, or that the gateway itself reads.
_RESERVED_HEADERS = frozenset({
    "authorization", "x-api-key", "api-key", "x-goog-api-key", "cookie", "host", "content-type",
    "content-length", "x-request-id",
})


class CallerCredentialsConfig(Strict):
    """Callers sending their own provider credential (off unless enabled here and allowed by the
    provider entry with ``allow_caller_credentials``)."""

    enabled: bool = False
    # The request header that carries the caller's provider credential.
    header: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")] = (
        "x-provider-authorization"
    )

    @field_validator("header")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.lower() in _RESERVED_HEADERS:
            raise ValueError(f"{value!r} is reserved (it carries a Switchboard or a provider key)")
        return value.lower()


# -- JWT / OIDC callers (access/oidc.py verifies; docs/access.md "JWT / OIDC callers") --------

# The roles of access/roles.py, by name (this module imports nothing outside config/; a test
# checks the two lists agree).
RoleName = Literal["platform_admin", "tenant_admin", "team_admin", "developer", "viewer"]
JwtAlgorithm = Literal[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
    "HS256", "HS384", "HS512",
]
ASYMMETRIC_JWT_ALGORITHMS: tuple[JwtAlgorithm, ...] = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)
HMAC_JWT_ALGORITHMS: tuple[JwtAlgorithm, ...] = ("HS256", "HS384", "HS512")
# A claim name, or a dotted path into nested objects (``realm_access.roles``).
ClaimPath = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\s]+$")]
ClaimValue = Annotated[str, Field(min_length=1, max_length=256)]
TenantName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")]


class OidcClaimsConfig(Strict):
    """Which claim carries what; None: not taken from the token."""

    tenant: ClaimPath | None = None
    team: ClaimPath | None = None
    user: ClaimPath | None = "sub"
    role: ClaimPath | None = None


class OidcIssuerConfig(Strict):
    """One trusted identity provider whose JWTs authenticate callers."""

    issuer: Annotated[str, Field(max_length=2048)]
    audience: Annotated[str, Field(min_length=1, max_length=512)] | Annotated[
        list[Annotated[str, Field(min_length=1, max_length=512)]], Field(min_length=1, max_length=20)
    ]
    # <issuer>/.well-known/openid-configuration names the JWKS; or give jwks_url (then used as is).
    discovery: bool = True
    jwks_url: Annotated[str, Field(max_length=2048)] | None = None
    algorithms: Annotated[list[JwtAlgorithm], Field(min_length=1, max_length=13)] = Field(
        default_factory=lambda: list(ASYMMETRIC_JWT_ALGORITHMS)
    )
    # Required when an HS* algorithm is listed: the HMAC secret shared with the issuer.
    shared_secret: Credential | None = None
    leeway_seconds: Annotated[float, Field(ge=0, le=300)] = 30.0
    jwks_cache_seconds: Annotated[float, Field(gt=0, le=86_400)] = 600.0
    # An unknown kid refetches the JWKS at most once per this many seconds.
    jwks_refetch_cooldown_seconds: Annotated[float, Field(ge=0, le=3600)] = 30.0
    http_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0
    # A verified token is remembered (by hash) this long, at most until it expires; 0: never.
    token_cache_seconds: Annotated[float, Field(ge=0, le=3600)] = 60.0
    claims: OidcClaimsConfig = OidcClaimsConfig()
    roles: Annotated[dict[ClaimValue, RoleName], Field(max_length=1000)] = Field(default_factory=dict)
    # The role of a caller whose token carries no role that ``roles`` maps; None refuses it.
    default_role: Literal["tenant_admin", "team_admin", "developer", "viewer"] | None = "developer"
    # The tenant of every caller of this issuer, when no tenant claim is configured.
    tenant: TenantName | None = None
    models: Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(min_length=1)] = Field(
        default_factory=lambda: ["*"]
    )

    @field_validator("issuer", "jwks_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value)

    @model_validator(mode="after")
    def _consistent(self) -> OidcIssuerConfig:
        if not self.discovery and self.jwks_url is None:
            raise ValueError("jwks_url: required when discovery is false")
        hmac_listed = [a for a in self.algorithms if a in HMAC_JWT_ALGORITHMS]
        if hmac_listed and self.shared_secret is None:
            raise ValueError(f"shared_secret: required with {', '.join(hmac_listed)} in algorithms")
        if self.shared_secret is not None:
            if not hmac_listed:
                raise ValueError("shared_secret: set, but no HS* algorithm is listed")
            # RFC 7518 3.2: at least as many bytes as the hash's output (32 for HS256, 64 for HS512).
            needed = max(int(a[2:]) // 8 for a in hmac_listed)
            if len(self.shared_secret.get_secret_value().encode()) < needed:
                raise ValueError(f"shared_secret: must be at least {needed} bytes for {max(hmac_listed)}")
        if self.tenant is not None and self.claims.tenant is not None:
            raise ValueError("tenant: give either tenant (fixed) or claims.tenant, not both")
        return self


def master_key_problem(master_key: str) -> str | None:
    """Why ``master_key`` cannot be the master key (None when it can); also said of the
    embedded default's variable, under its own name."""
    if len(master_key) < 8:
        return "must be at least 8 characters"
    if master_key != master_key.strip() or any(c in master_key for c in "\r\n\x00"):
        # No Authorization header carries it (HTTP strips a value's surrounding whitespace and
        # refuses line breaks): every admin call would be refused, with nothing saying why.
        return ("it has surrounding whitespace or a line break, which no request can send "
                "(a trailing newline in the variable?)")
    return None


class AuthConfig(Strict):
    master_key: SecretStr
    # Keys the hashes of the gateway's API keys (and, later, the encryption of stored provider
    # credentials). Absent: $SWITCHBOARD_SECRET_KEY, else a file generated in the data dir.
    secret_key: Credential | None = None
    # Secrets used before the current one: stored values sealed under them still open, and
    # `switchboard secrets rotate` re-seals them under the current one. Also
    # $SWITCHBOARD_PREVIOUS_SECRET_KEYS (comma-separated).
    previous_secret_keys: Annotated[list[Credential], Field(max_length=20)] = Field(default_factory=list)
    # How often the keys' last-used times are written (one batched statement each time).
    last_used_interval_seconds: Annotated[float, Field(gt=0, le=3600)] = 5.0
    caller_credentials: CallerCredentialsConfig = CallerCredentialsConfig()
    # Identity providers whose JWTs are accepted as bearer tokens.
    oidc: Annotated[list[OidcIssuerConfig], Field(max_length=20)] = Field(default_factory=list)

    @field_validator("oidc")
    @classmethod
    def _issuers_once(cls, value: list[OidcIssuerConfig]) -> list[OidcIssuerConfig]:
        issuers = [i.issuer for i in value]
        if len(set(issuers)) != len(issuers):
            raise ValueError("each issuer may be listed once")
        return value

    @field_validator("master_key")
    @classmethod
    def _sendable(cls, value: SecretStr) -> SecretStr:
        problem = master_key_problem(value.get_secret_value())
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        # Counted without the whitespace around it, which is not used (settings/secret.py).
        if value is not None and len(value.get_secret_value().strip()) < 32:
            raise ValueError("must be at least 32 characters")
        return value
