"""JWT callers: bearer tokens issued by an external identity provider (OIDC).

A token is accepted when its ``iss`` is one of ``auth.oidc``'s issuers, its header's ``alg`` is
one that issuer allows (asymmetric only, unless HS* is listed with a shared secret), its
signature verifies with the issuer's key named by ``kid`` (from the JWKS, found through OIDC
discovery or configured), and ``aud``, ``exp``, ``nbf`` and ``iat`` hold (with a leeway). Its
claims then give the caller's tenant, team, user and role, as the issuer's mapping says.

Bounds, so neither callers nor a slow identity provider can hurt the gateway:

- The JWKS is fetched at start-up (in the background) and when needed, with a timeout and a
  size limit, kept ``jwks_cache_seconds``, and fetched by one task however many requests wait
  for it. A token naming a ``kid`` the cached set lacks
  refetches it at most once per ``jwks_refetch_cooldown_seconds`` (key rotation: the new key is
  found; a made-up kid costs the provider nothing more); a failed fetch is retried at most every
  few seconds, and the keys last fetched stay in use meanwhile. Once keys are held, an expired
  set is refetched in the background: no caller waits on a slow provider for keys it has.
- A JWKS key that cannot be loaded, or that holds private key material, is skipped (and logged
  once, by kid): the issuer's other keys keep working. A set with no usable key is a failed fetch.
- Keys from the JWKS are never used as HMAC secrets (HS* verifies with ``shared_secret`` only),
  a key must fit the algorithm (RSA for RS*/PS*, the matching EC curve for ES*, OKP for EdDSA),
  and URLs in a token's header (``jku``, ``x5u``) are ignored.
- A verified token is remembered by its SHA-256 in a bounded LRU until it expires or for
  ``token_cache_seconds``, whichever is first, so the request path does not verify a signature
  per request.

A token of a user an admin revoked (``access/revocations.py``, kept in memory) is refused with
``token_revoked``, a remembered one included: the check follows the cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
import orjson
from jwt.exceptions import InvalidJTIError, InvalidSubjectError

from switchboard.access.revocations import DEFAULT_TENANT, TokenRevocations
from switchboard.access.roles import RANK
from switchboard.access.tokens import TokenRefused, bounded, mapped_user
from switchboard.config.schema import HMAC_JWT_ALGORITHMS, OidcIssuerConfig, check_http_url
from switchboard.context import Principal
from switchboard.errors import GatewayError, PermissionDenied

log = logging.getLogger("switchboard.access")

MAX_TOKEN_CHARS = 16 * 1024
MAX_DOCUMENT_BYTES = 1024 * 1024  # a discovery document or a JWKS
MAX_KEYS = 100
MAX_SHOWN_URL = 300  # of a redirect's Location, in the log
TOKEN_CACHE_ENTRIES = 10_000
FAILURE_BACKOFF = 5.0  # at most one fetch attempt this often after a failure
PRINCIPAL_ID_MAX = 64  # the audit log's actor column
_IDENT = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")
_USER = re.compile(r"[\x21-\x7e]{1,1024}")  # printable ASCII (Auth0's "auth0|123" included)
_KEY_ID = re.compile(r"key_[0-9a-f]{16}")  # the id of a key (http/admin/keys.py): never a user's
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # no store's text holds NUL or an unpaired surrogate

# The key type (and curve) each asymmetric algorithm needs.
_KTY = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
_CURVE = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


class OidcUnavailable(GatewayError):
    status = 503
    type = "api_error"
    code = "oidc_unavailable"


class _FetchError(Exception):
    pass


@dataclass(slots=True)
class _Verified:
    principal: Principal
    until: float  # wall-clock time
    iat: float | None  # when it was issued (None: no iat), for revocations


class _Issuer:
    """One trusted issuer: its settings and its JWKS, fetched and cached."""

    def __init__(
        self,
        config: OidcIssuerConfig,
        session: Callable[[], aiohttp.ClientSession],
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self._session = session
        self._clock = clock  # monotonic
        self.algorithms = frozenset(config.algorithms)
        self.secret = config.shared_secret.get_secret_value().encode() if config.shared_secret else None
        self.models = None if config.models == ["*"] else tuple(config.models)
        # A subject is unique only within its issuer (OIDC: iss + sub), so callers' ids carry
        # the issuer: "alice" of one provider never owns what "alice" of another created.
        self.tag = issuer_tag(config.issuer)
        self._jwks_uri = config.jwks_url
        self._keys: dict[str, list[dict[str, Any]]] = {}  # by kid: one per key type (RFC 7517)
        self._unnamed: list[dict[str, Any]] = []
        self._parsed: dict[tuple[int, str], jwt.PyJWK] = {}
        self._skipped: frozenset[str] = frozenset()  # the unusable keys of the last set, logged
        self._fetched_at: float | None = None
        self._attempted_at = float("-inf")
        self._failed = False
        self._task: asyncio.Task[None] | None = None
        self.fetches = 0  # JWKS fetches attempted, for tests and metrics
        self.on_rotation: Callable[[], None] | None = None

    @property
    def fetching(self) -> bool:
        """Whether a JWKS fetch is under way, for tests and metrics."""
        return self._task is not None

    # -- keys ------------------------------------------------------------------------------

    async def key(self, kid: str | None, alg: str) -> Any:
        """The public key ``kid`` names, fit for ``alg``; refetches within the bounds."""
        now = self._clock()
        stale = self._fetched_at is None or now - self._fetched_at >= self.config.jwks_cache_seconds
        if stale and self._may_fetch(now, 0.0):
            if self._fetched_at is None:
                await self._refresh()  # no keys yet: nothing to verify with until it answers
            else:
                # Keys held: refresh in the background and verify with them meanwhile, so a
                # provider that hangs costs callers nothing (a withdrawn key drops its tokens
                # once the fetch lands; an unknown kid below still waits for it).
                self._start_fetch()
        if self._fetched_at is None:
            raise OidcUnavailable(
                f"the identity provider {self.config.issuer} could not be reached for its signing keys"
            )
        jwk = self._find(kid, alg)
        if jwk is None and self._may_fetch(self._clock(), self.config.jwks_refetch_cooldown_seconds):
            await self._refresh()
            jwk = self._find(kid, alg)
        if jwk is None:
            shown = "(none)" if kid is None else repr(kid[:64])
            raise TokenRefused("token_unknown_kid", f"the key id {shown} is not one of the issuer's keys")
        return self._public_key(jwk, alg)

    def _may_fetch(self, now: float, cooldown: float) -> bool:
        if self._failed:  # the provider is down: do not ask it on every request
            cooldown = max(cooldown, min(FAILURE_BACKOFF, self.config.jwks_refetch_cooldown_seconds))
        return now - self._attempted_at >= cooldown

    def _find(self, kid: str | None, alg: str) -> dict[str, Any] | None:
        if kid is not None:
            # A kid is unique per key type only (RFC 7517): of its keys, the one that fits the
            # token's algorithm (else any: _public_key says it does not fit).
            named = self._keys.get(kid, [])
            return next((jwk for jwk in named if _fits(jwk, alg)), named[0] if named else None)
        every = [*(jwk for named in self._keys.values() for jwk in named), *self._unnamed]
        return every[0] if len(every) == 1 else None  # no kid: only an unambiguous set will do

    def _public_key(self, jwk: dict[str, Any], alg: str) -> Any:
        if not _fits(jwk, alg):
            raise TokenRefused(
                "token_algorithm_not_allowed", f"the algorithm {alg} does not fit the issuer's key it names"
            )
        cached = self._parsed.get((id(jwk), alg))
        if cached is None:
            try:
                cached = jwt.PyJWK(jwk, algorithm=alg)
            except jwt.PyJWTError:
                raise TokenRefused("token_signature_invalid", "the issuer's key cannot verify it") from None
            self._parsed[(id(jwk), alg)] = cached
        return cached.key

    def warm(self) -> None:
        """Start fetching the keys now, without waiting (at start-up)."""
        self._start_fetch()

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def _start_fetch(self) -> asyncio.Task[None]:
        task = self._task
        if task is None:
            task = asyncio.get_running_loop().create_task(self._fetch())
            self._task = task
            task.add_done_callback(self._fetched)
        return task

    async def _refresh(self) -> None:
        """One fetch for every waiter; failures keep the keys already held."""
        await asyncio.shield(self._start_fetch())

    def _fetched(self, task: asyncio.Task[None]) -> None:
        self._task = None
        if not task.cancelled() and task.exception() is not None:
            log.debug("jwks refresh failed: %r", task.exception())

    async def _fetch(self) -> None:
        self._attempted_at = self._clock()
        self.fetches += 1
        try:
            if self._jwks_uri is None:
                self._jwks_uri = await self._discover()
            document = await self._get(self._jwks_uri)
            keys, unnamed, skipped = _parse_jwks(document)
        except Exception as exc:  # whatever went wrong, the provider's keys are not to be had now
            self._failed = True
            if self.config.jwks_url is None:
                self._jwks_uri = None  # discover again next time
            log.warning("oidc issuer %s: cannot fetch signing keys: %s", self.config.issuer, exc)
            return
        for note in skipped:
            if note not in self._skipped:  # once, not on every refetch of the same set
                log.warning("oidc issuer %s: skipped an unusable key of its JWKS: %s",
                            self.config.issuer, note)
        self._skipped = frozenset(skipped)
        withdrawn = any(jwk not in keys.get(kid, ()) for kid, named in self._keys.items() for jwk in named)
        rotated = self._fetched_at is not None and (withdrawn or self._unnamed != unnamed)
        self._keys, self._unnamed, self._parsed = keys, unnamed, {}
        self._fetched_at = self._clock()
        self._failed = False
        if rotated and self.on_rotation is not None:
            self.on_rotation()  # a key was withdrawn: forget tokens it verified

    async def _discover(self) -> str:
        url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = await self._get(url)
        if document.get("issuer") != self.config.issuer:
            raise _FetchError(f"discovery at {url} names another issuer")
        uri = document.get("jwks_uri")
        if not isinstance(uri, str):
            raise _FetchError(f"discovery at {url} has no jwks_uri")
        try:
            return check_http_url(uri)
        except ValueError:
            raise _FetchError(f"discovery at {url}: jwks_uri is not an http(s) URL") from None

    async def _get(self, url: str) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=self.config.http_timeout_seconds)
        try:
            # Not followed, as by every outbound call of the gateway: the keys it trusts come
            # from the URL the operator configured, not from wherever that URL points to.
            async with self._session().get(
                url, timeout=timeout, allow_redirects=False, headers={"accept": "application/json"}
            ) as resp:
                if 300 <= resp.status <= 399:
                    location = resp.headers.get("Location", "(no Location)")[:MAX_SHOWN_URL]
                    raise _FetchError(f"{url} answered with a redirect (HTTP {resp.status}) to {location}, "
                                      "which is not followed; configure the URL that serves the document "
                                      "(the issuer, or jwks_url)")
                if resp.status != 200:
                    raise _FetchError(f"{url} answered HTTP {resp.status}")
                if (resp.content_length or 0) > MAX_DOCUMENT_BYTES:
                    raise _FetchError(f"{url}: document over {MAX_DOCUMENT_BYTES} bytes")
                body = bytearray()
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise _FetchError(f"{url}: document over {MAX_DOCUMENT_BYTES} bytes")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise _FetchError(f"{url}: {type(exc).__name__}") from None
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise _FetchError(f"{url}: not JSON") from None
        if not isinstance(document, dict):
            raise _FetchError(f"{url}: not a JSON object")
        return document


def _fits(jwk: dict[str, Any], alg: str) -> bool:
    """Whether ``jwk`` is a key for ``alg``: its type, its curve, its own ``alg`` if it says one."""
    curve = _CURVE.get(alg)
    return (
        jwk.get("kty") == _KTY.get(alg[:2])
        and jwk.get("alg", alg) == alg
        and (curve is None or jwk.get("crv") == curve)
    )


def _parse_jwks(
    document: dict[str, Any],
) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]], list[str]]:
    """The signature keys of a JWKS by kid (a kid may name one key per type), and those without
    one, and a note (kid and why,
    never key material) for each key skipped as unusable; symmetric keys are dropped. A set with
    no usable signature key is an error: nothing could verify a token."""
    raw = document.get("keys")
    if not isinstance(raw, list):
        raise _FetchError("the JWKS has no 'keys' list")
    keys: dict[str, list[dict[str, Any]]] = {}
    unnamed: list[dict[str, Any]] = []
    skipped: list[str] = []
    for jwk in raw[:MAX_KEYS]:
        if not isinstance(jwk, dict) or jwk.get("kty") not in ("RSA", "EC", "OKP"):
            continue  # never "oct": a published key is not a secret
        if jwk.get("use", "sig") != "sig":
            continue
        kid = jwk.get("kid")
        if "d" in jwk:
            # A private key made public: anyone could sign with it (and PyJWT cannot verify
            # with a private RSA key).
            skipped.append(f"{_shown_kid(kid)}, it holds private key material")
            continue
        try:
            jwt.PyJWK(jwk)
        except Exception as exc:  # PyJWT raises TypeError, NotImplementedError... on odd fields
            # One key PyJWT cannot load (an "alg" that is a list, a malformed modulus) is
            # skipped: the issuer's other keys keep working.
            skipped.append(f"{_shown_kid(kid)}, {type(exc).__name__}")
            continue
        if isinstance(kid, str) and 0 < len(kid) <= 256:
            keys.setdefault(kid, []).append(jwk)
        elif kid is None:
            unnamed.append(jwk)
    if not keys and not unnamed:
        raise _FetchError("the JWKS holds no usable signing key" + "".join(f"; skipped {n}" for n in skipped))
    return keys, unnamed, skipped


def _shown_kid(kid: Any) -> str:
    if isinstance(kid, str):
        return f"kid {kid[:64]!r}"
    return "no kid" if kid is None else "a kid that is not a string"


# PyJWT's exceptions, most specific first, and what the caller is told.
_REFUSALS: tuple[tuple[type[jwt.PyJWTError], str, str], ...] = (
    (jwt.InvalidSignatureError, "token_signature_invalid", "the token's signature does not verify"),
    (jwt.ExpiredSignatureError, "token_expired", "the token has expired"),
    (jwt.ImmatureSignatureError, "token_not_yet_valid", "the token is not valid yet (nbf or iat)"),
    (jwt.InvalidIssuerError, "token_issuer_invalid", "the token's issuer is not trusted"),
    (jwt.InvalidAudienceError, "token_audience_invalid", "the token is not meant for this gateway (aud)"),
    (jwt.InvalidAlgorithmError, "token_algorithm_not_allowed", "the token's algorithm is not allowed"),
    (jwt.InvalidIssuedAtError, "token_claims_invalid", "the token's 'iat' claim is not a number"),
    (InvalidSubjectError, "token_claims_invalid", "the token's 'sub' claim is not a string"),
    (InvalidJTIError, "token_claims_invalid", "the token's 'jti' claim is not a string"),
    (jwt.InvalidKeyError, "token_signature_invalid", "the issuer's key cannot verify this token"),
)


_TIMES = ("exp", "nbf", "iat")  # the claims that are times (NumericDate)


def _check_times(claims: dict[str, Any]) -> None:
    for name in _TIMES:
        # A NumericDate is a JSON number (RFC 7519). PyJWT also takes digits as text, and a
        # boolean as an int, which the comparisons (and a revocation's, of iat) must not use.
        value = claims.get(name)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise TokenRefused("token_claims_invalid", f"the token's '{name}' claim is not a number")


def _refusal(exc: jwt.PyJWTError) -> TokenRefused:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        if exc.claim == "aud":
            return TokenRefused("token_audience_invalid", "the token has no audience (aud)")
        return TokenRefused("token_claims_invalid", f"the token lacks the '{exc.claim}' claim")
    for kind, code, message in _REFUSALS:
        if isinstance(exc, kind):
            return TokenRefused(code, message)
    return TokenRefused("token_malformed", "the token is not a well-formed JWT")


def claim(claims: dict[str, Any], path: str) -> Any:
    """A claim by name (``https://example.com/roles`` as is), else by dotted path
    (``realm_access.roles``); None if absent."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


class OidcVerifier:
    """Verifies JWTs from the configured issuers and makes them principals."""

    def __init__(
        self,
        issuers: Sequence[OidcIssuerConfig],
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        cache_entries: int = TOKEN_CACHE_ENTRIES,
    ) -> None:
        self._clock = clock
        self._issuers = {c.issuer: _Issuer(c, self._client, monotonic) for c in issuers}
        for issuer in self._issuers.values():
            issuer.on_rotation = self.forget_tokens
        self._verified: OrderedDict[bytes, _Verified] = OrderedDict()
        self._max = cache_entries
        self._http: aiohttp.ClientSession | None = None
        self.verifications = 0  # signatures checked, for tests and metrics
        # The residency policy of a tenant and team (the intersection of their allowed regions),
        # set once the stores are open; read with each token verified and cached with it. It
        # raises TokenRefused for a team claim that names another tenant's team.
        self.regions: Callable[[str | None, str | None], Awaitable[frozenset[str] | None]] | None = None
        # The users an admin cut off (set once the stores are open): checked after the cache.
        self.revocations: TokenRevocations | None = None

    def issuer(self, name: str) -> _Issuer | None:
        return self._issuers.get(name)

    async def start(self) -> None:
        """Open the HTTP session and start fetching every issuer's keys in the background, so
        the first caller rarely waits and a provider that cannot be reached is logged at once."""
        if self._http is None:
            self._http = aiohttp.ClientSession(trust_env=False)
            for issuer in self._issuers.values():
                issuer.warm()

    async def close(self) -> None:
        for issuer in self._issuers.values():
            issuer.cancel()
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise _FetchError("the verifier is not started")
        return self._http

    def forget_tokens(self) -> None:
        self._verified.clear()

    async def verify(self, token: str) -> Principal:
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        hit = self._verified.get(digest)
        if hit is not None and hit.until <= self._clock():
            del self._verified[digest]
            hit = None
        if hit is not None:
            self._verified.move_to_end(digest)
        else:
            hit = await self._verify(token)
            if hit.until > self._clock():
                if len(self._verified) >= self._max:
                    self._verified.popitem(last=False)
                self._verified[digest] = hit
        revocations = self.revocations
        if revocations is not None and revocations.by_user:  # nothing to pay while none exists
            refusal = revocations.refusal(hit.principal, hit.iat)
            if refusal is not None:
                raise TokenRefused("token_revoked", refusal)
        return hit.principal

    async def _verify(self, token: str) -> _Verified:
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenRefused("token_malformed", f"the token is longer than {MAX_TOKEN_CHARS} characters")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise TokenRefused("token_malformed", "the token is not a well-formed JWT") from None
        iss = unverified.get("iss")
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise TokenRefused("token_issuer_invalid", "the token's issuer is not trusted by this gateway")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in issuer.algorithms:
            shown = repr(alg[:32]) if isinstance(alg, str) else "(none)"
            raise TokenRefused("token_algorithm_not_allowed", f"the algorithm {shown} is not allowed here")
        kid = header.get("kid")
        if alg in HMAC_JWT_ALGORITHMS:
            key: Any = issuer.secret  # only ever the configured shared secret, never a JWKS key
        else:
            key = await issuer.key(kid if isinstance(kid, str) else None, alg)
        config = issuer.config
        self.verifications += 1
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=config.audience,
                issuer=config.issuer,
                leeway=config.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.DecodeError as exc:
            if isinstance(exc, jwt.InvalidSignatureError):
                raise _refusal(exc) from None
            # The token parsed above and its signature verified: what PyJWT could not read
            # is a time claim (exp, nbf) that is not a number.
            raise TokenRefused(
                "token_claims_invalid", "the token's 'exp' or 'nbf' claim is not a number"
            ) from None
        except jwt.PyJWTError as exc:
            # PyJWT checks the times after the signature, reading a boolean as 0 or 1 (an
            # "exp": true expired in 1970): a time that is not a number is told as such.
            if not isinstance(exc, jwt.InvalidSignatureError | jwt.InvalidKeyError):
                _check_times(unverified)
            raise _refusal(exc) from None
        _check_times(claims)
        principal = self._principal(issuer, claims)
        if self.regions is not None:
            principal.allowed_regions = await self.regions(principal.tenant_id, principal.team_id)
        until = self._clock() + config.token_cache_seconds
        exp = claims["exp"]
        if exp < until:  # compared as is: an exp beyond a float's range is simply far away
            until = float(exp)
        return _Verified(principal, until, _issued_at(claims.get("iat")))

    def _principal(self, issuer: _Issuer, claims: dict[str, Any]) -> Principal:
        config = issuer.config
        mapping = config.claims
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise TokenRefused("token_claims_invalid", "the token lacks the 'sub' claim")
        if _UNSTORABLE.search(sub):
            # The caller's id is written with what it creates (keys, files, the audit log): a
            # NUL or an unpaired surrogate cannot be stored, and would fail those writes.
            raise TokenRefused("token_claims_invalid",
                               "the token's 'sub' claim holds a NUL character or an unpaired surrogate")
        prefix = f"oidc:{issuer.tag}:"
        principal_id = prefix + bounded(sub, PRINCIPAL_ID_MAX - len(prefix))
        # Neither a claim nor a fixed tenant: the default tenant's, named as its keys name it (a
        # principal without a tenant is the master key's, which no tenant's limits, budgets or
        # regions hold).
        tenant: str | None = config.tenant or DEFAULT_TENANT
        if mapping.tenant is not None:
            tenant = _mapped(claims, mapping.tenant, "tenant", _IDENT, required=True)
        team = None if mapping.team is None else _mapped(claims, mapping.team, "team", _IDENT, required=False)
        user = None if mapping.user is None else _mapped(claims, mapping.user, "user", _USER, required=True)
        if user is not None:
            if _KEY_ID.fullmatch(user):
                # A caller reaches its own key and its user's keys alike (and their request log,
                # usage and analytics): a user named as a key would reach that key.
                raise TokenRefused("token_claims_invalid",
                                   "the token's user claim has the form of the gateway's key ids")
            user = mapped_user(user)
        return Principal(
            id=principal_id,
            role=self._role(config, claims),
            tenant_id=tenant,
            team_id=team,
            user_id=user,
            allowed_models=issuer.models,
            metadata={"issuer": config.issuer},
        )

    def _role(self, config: OidcIssuerConfig, claims: dict[str, Any]) -> str:
        """The most powerful role any of the role claim's values maps to, else the default."""
        mapped: list[str] = []
        if config.claims.role is not None:
            value = claim(claims, config.claims.role)
            values = value if isinstance(value, list) else [value]
            mapped = [config.roles[v] for v in values[:1000] if isinstance(v, str) and v in config.roles]
        if mapped:
            return max(mapped, key=lambda role: RANK[role])
        if config.default_role is None:
            raise PermissionDenied(
                "the token carries no role this gateway maps", code="token_role_not_mapped"
            )
        return config.default_role


def _issued_at(iat: Any) -> float | None:
    """``iat`` as a float (PyJWT refused one that is not a number, or in the future); an integer
    too far in the past for a float is as good as minus infinity."""
    if not isinstance(iat, int | float) or isinstance(iat, bool):
        return None
    try:
        return float(iat)
    except OverflowError:
        return float("-inf")


def issuer_tag(issuer: str) -> str:
    """A short stable name of an issuer for callers' ids: 8 hex digits of its URL's SHA-256."""
    return hashlib.sha256(issuer.encode()).hexdigest()[:8]


def _mapped(
    claims: dict[str, Any], path: str, what: str, shape: re.Pattern[str], *, required: bool
) -> str | None:
    value = claim(claims, path)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not shape.fullmatch(value):
        problem = "lacks" if value is None else "has an unusable"
        raise TokenRefused("token_claims_invalid", f"the token {problem} '{path[:64]}' claim (the {what})")
    return value
