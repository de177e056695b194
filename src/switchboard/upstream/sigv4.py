"""AWS Signature Version 4 request signing, as an upstream auth scheme (stdlib hmac/hashlib only).

Reference: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv_create-signed-request.html
and the official test suite (``aws-c-auth/tests/aws-signing-test-suite/v4``), whose vectors the unit
tests reproduce byte for byte.

Canonical URI: every service except S3 URI-encodes the path *as sent on the wire* once more, so a
Bedrock model id ``a.b-v1:0`` travels as ``a.b-v1%3A0`` (or ``:``) and is signed as ``a.b-v1%253A0``
(or ``%3A``). aiohttp (through yarl) may normalise the path it is given, so the signer derives the
canonical URI from the same yarl parse aiohttp sends, and it sets ``Host`` itself, so what is signed
is exactly what goes out.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote

from yarl import URL

from switchboard.upstream.request import UpstreamRequest

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_SPACES = re.compile(r"\s+")


def uri_encode(value: str, keep_slash: bool = False) -> str:
    """AWS UriEncode: everything but ``A-Za-z0-9-._~`` (and ``/`` when asked) as ``%XX`` of UTF-8."""
    return quote(value, safe="/~" if keep_slash else "~")


def canonical_uri(raw_path: str) -> str:
    """The wire path (already percent-encoded once) encoded again, as for every non-S3 service."""
    return uri_encode(raw_path or "/", keep_slash=True)


def canonical_query(raw_query: str) -> str:
    pairs = []
    for item in raw_query.split("&") if raw_query else ():
        key, _, value = item.partition("=")
        pairs.append((uri_encode(unquote(key)), uri_encode(unquote(value))))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def canonical_headers(headers: Mapping[str, str]) -> tuple[str, str]:
    """(canonical header block, signed header list) for ``headers`` (all of them are signed)."""
    items = sorted((name.lower(), _SPACES.sub(" ", value.strip())) for name, value in headers.items())
    block = "".join(f"{name}:{value}\n" for name, value in items)
    return block, ";".join(name for name, _ in items)


def canonical_request(
    method: str, raw_path: str, raw_query: str, headers: Mapping[str, str], payload_hash: str
) -> tuple[str, str]:
    """(canonical request, signed headers)."""
    block, signed = canonical_headers(headers)
    text = "\n".join(
        [method.upper(), canonical_uri(raw_path), canonical_query(raw_query), block, signed, payload_hash]
    )
    return text, signed


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = _hmac(f"AWS4{secret}".encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    return "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])


def signature(secret: str, amz_date: str, region: str, service: str, canonical: str) -> str:
    date = amz_date[:8]
    scope = f"{date}/{region}/{service}/aws4_request"
    key = signing_key(secret, date, region, service)
    return hmac.new(key, string_to_sign(amz_date, scope, canonical).encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:  # never print the secret or the token
        return f"Credentials({self.access_key_id}, ***)"


def host_header(url: URL) -> str:
    """``host[:port]`` as an HTTP client writes it (the port only when not the scheme's default)."""
    host = url.raw_host or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return host if url.is_default_port() else f"{host}:{url.port}"


def sign_headers(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
    credentials: Credentials,
    region: str,
    service: str,
    now: datetime,
) -> dict[str, str]:
    """The headers to add to a request so that AWS accepts it: Host, X-Amz-Date, the session token
    when there is one, and Authorization. ``headers`` (e.g. Content-Type) are signed as given."""
    parsed = URL(url)
    amz_date = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    added = {"Host": host_header(parsed), "X-Amz-Date": amz_date}
    if credentials.session_token:
        added["X-Amz-Security-Token"] = credentials.session_token
    to_sign = {**{k: v for k, v in headers.items() if k.lower() not in _NEVER_SIGNED}, **added}
    payload_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
    canonical, signed = canonical_request(
        method, parsed.raw_path, parsed.raw_query_string, to_sign, payload_hash
    )
    sig = signature(credentials.secret_access_key, amz_date, region, service, canonical)
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    added["Authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, SignedHeaders={signed}, Signature={sig}"
    )
    return added


# Headers that proxies or the HTTP client may rewrite; signing them would break the signature.
_NEVER_SIGNED = frozenset({"authorization", "user-agent", "expect", "x-amzn-trace-id", "connection",
                           "content-length", "accept-encoding", "host", "x-amz-date", "x-amz-security-token"})


class SigV4Auth:
    """Signs every upstream request with SigV4 for one region and service."""

    __slots__ = ("_clock", "_credentials", "_region", "_service")

    def __init__(
        self,
        credentials: Credentials,
        region: str,
        service: str,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._credentials = credentials
        self._region = region
        self._service = service
        self._clock = clock or (lambda: datetime.now(UTC))

    async def apply(self, request: UpstreamRequest) -> None:
        request.headers.update(
            sign_headers(
                request.method,
                request.url,
                request.headers,
                request.body,
                self._credentials,
                self._region,
                self._service,
                self._clock(),
            )
        )

    async def close(self) -> None:
        return None

    def secrets(self) -> list[str]:
        c = self._credentials
        return [s for s in (c.access_key_id, c.secret_access_key, c.session_token) if s]

    def __repr__(self) -> str:
        return f"SigV4Auth({self._region}/{self._service})"
