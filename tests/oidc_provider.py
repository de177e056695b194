"""A small OpenID Connect identity provider for the tests: discovery and a JWKS on a free port of
127.0.0.1, served by aiohttp on a thread of its own, with signing keys the test can add, rotate
and withdraw, and tokens signed with them (PyJWT, keys from ``cryptography``)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from tests.servers import free_port

AUDIENCE = "switchboard"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any = field(repr=False)

    @property
    def public_pem(self) -> bytes:
        return bytes(self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ))

    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        if self.alg.startswith(("RS", "PS")):
            data = RSAAlgorithm.to_jwk(public, as_dict=True)
        elif self.alg.startswith("ES"):
            data = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            data = OKPAlgorithm.to_jwk(public, as_dict=True)
        return {**data, "kid": self.kid, "alg": self.alg, "use": "sig"}


def new_key(alg: str = "RS256", kid: str | None = None) -> SigningKey:
    if alg.startswith(("RS", "PS")):
        private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif alg == "ES384":
        private = ec.generate_private_key(ec.SECP384R1())
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(alg)
    return SigningKey(kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}", alg, private)


class IdentityProvider:
    """Serves ``<issuer>/.well-known/openid-configuration`` and ``<issuer>/jwks``; counts hits."""

    def __init__(self, realm: str = "/realms/test", alg: str = "RS256") -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}{realm}"
        self._realm = realm
        self.keys: list[SigningKey] = [new_key(alg)]
        self.hits: Counter[str] = Counter()
        self.down = False  # answer 503 to everything
        self.delay = 0.0  # seconds to wait before answering (a provider that hangs)
        # While set to an unset event, JWKS requests wait until the test sets it (a provider that
        # hangs for exactly as long as the test says).
        self.hold: threading.Event | None = None
        self.jwks_body: bytes | None = None  # served instead of the keys' JWKS when set
        self.extra_jwks: list[dict[str, Any]] = []  # published before the keys, as they are
        # "discovery" and "jwks" named here answer a 302 to the same document under /moved/.
        self.redirected: set[str] = set()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # -- serving ---------------------------------------------------------------------------

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def jwks_fetches(self) -> int:
        with self._lock:
            return self.hits["jwks"]

    def start(self) -> IdentityProvider:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_get(f"{self._realm}/.well-known/openid-configuration", self._discovery)
            app.router.add_get(f"{self._realm}/jwks", self._jwks)
            app.router.add_get(f"{self._realm}/moved/.well-known/openid-configuration", self._discovery)
            app.router.add_get(f"{self._realm}/moved/jwks", self._jwks)
            self._runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(self._runner.setup())
            loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert ready.wait(10), "the identity provider did not start"
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def moved(self, url: str) -> str:
        """Where a redirected document (``redirected``) is sent to."""
        return url.replace(self._realm, f"{self._realm}/moved", 1)

    def _redirect(self, request: web.Request, document: str) -> web.Response | None:
        if document not in self.redirected or "/moved/" in request.path:
            return None
        return web.Response(status=302, headers={"Location": self.moved(str(request.url))})

    async def _discovery(self, request: web.Request) -> web.Response:
        with self._lock:
            self.hits["discovery"] += 1
            if (redirect := self._redirect(request, "discovery")) is not None:
                return redirect
            if self.down:
                return web.json_response({"error": "down"}, status=503)
        return web.json_response({
            "issuer": self.issuer,
            "jwks_uri": self.jwks_url,
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        })

    async def _jwks(self, request: web.Request) -> web.Response:
        with self._lock:
            self.hits["jwks"] += 1
            if (redirect := self._redirect(request, "jwks")) is not None:
                return redirect
            delay, hold = self.delay, self.hold
        if delay:
            await asyncio.sleep(delay)
        if hold is not None:
            await asyncio.to_thread(hold.wait)
        with self._lock:
            if self.down:
                return web.json_response({"error": "down"}, status=503)
            if self.jwks_body is not None:
                return web.Response(body=self.jwks_body, content_type="application/json")
            keys = [*self.extra_jwks, *(k.jwk() for k in self.keys)]
        return web.json_response({"keys": keys})

    # -- keys ------------------------------------------------------------------------------

    @property
    def key(self) -> SigningKey:
        """The current signing key (the last one published)."""
        with self._lock:
            return self.keys[-1]

    def publish(self, key: SigningKey) -> SigningKey:
        with self._lock:
            self.keys.append(key)
        return key

    def rotate(self, alg: str | None = None) -> SigningKey:
        """Publish a new key and withdraw every older one."""
        key = new_key(alg or self.key.alg)
        with self._lock:
            self.keys = [key]
        return key

    # -- tokens ----------------------------------------------------------------------------

    def claims(self, **claims: Any) -> dict[str, Any]:
        """Valid claims for the gateway; ``name=None`` drops a claim."""
        now = int(time.time())
        base: dict[str, Any] = {
            "iss": self.issuer, "aud": AUDIENCE, "sub": "user-1", "iat": now, "exp": now + 300,
        }
        base.update(claims)
        return {k: v for k, v in base.items() if v is not None}

    def token(
        self,
        *,
        key: SigningKey | None = None,
        alg: str | None = None,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        key = key or self.key
        return jwt.encode(
            self.claims(**claims), key.private, algorithm=alg or key.alg,
            headers={"kid": key.kid, **(headers or {})},
        )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    """A JWT put together by hand (PyJWT refuses to make some of the bad ones)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = sign(signing_input.encode()) if sign else b""
    return f"{signing_input}.{b64(signature)}"


def bad_tokens(idp: IdentityProvider, person: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Tokens the gateway must refuse, by name: (token, expected code). ``person`` holds valid
    claims for the mapping used (a ``tenant`` and a ``preferred_username`` claim)."""
    key = idp.key
    stranger = new_key("RS256", kid=key.kid)  # claims to be the published key
    good = idp.claims(**person)
    pem = key.public_pem
    head, _, signature = idp.token(**person).split(".")
    tampered = ".".join([head, b64(json.dumps({**good, "tenant": "evil"}).encode()), signature])
    return {
        "bad signature": (idp.token(key=stranger, **person), "token_signature_invalid"),
        "tampered payload": (tampered, "token_signature_invalid"),
        "wrong issuer": (idp.token(iss="https://evil.example", **person), "token_issuer_invalid"),
        "no issuer": (idp.token(iss=None, **person), "token_issuer_invalid"),
        "wrong audience": (idp.token(aud="someone-else", **person), "token_audience_invalid"),
        "no audience": (idp.token(aud=None, **person), "token_audience_invalid"),
        "expired": (idp.token(exp=int(good["iat"]) - 120, **person), "token_expired"),
        "not yet valid": (idp.token(nbf=int(good["iat"]) + 600, **person), "token_not_yet_valid"),
        "alg none": (hand_made({"alg": "none", "typ": "JWT"}, good), "token_algorithm_not_allowed"),
        "alg NONE with kid": (
            hand_made({"alg": "NONE", "kid": key.kid}, good), "token_algorithm_not_allowed"
        ),
        "RS256 to HS256 confusion": (
            hand_made({"alg": "HS256", "kid": key.kid}, good,
                      lambda data: hmac.new(pem, data, hashlib.sha256).digest()),
            "token_algorithm_not_allowed",
        ),
        "alg not fitting the key": (
            hand_made({"alg": "ES256", "kid": key.kid}, good, lambda data: b"x" * 64),
            "token_algorithm_not_allowed",
        ),
        "unknown kid": (
            idp.token(key=new_key("RS256", kid="nobody-knows"), **person), "token_unknown_kid"
        ),
        "malformed": ("abc.def.ghi", "token_malformed"),
        "not json": (f"{b64(b'{')}.{b64(b'{}')}.{b64(b'x')}", "token_malformed"),
        "oversized": ("a" * 9000 + "." + "b" * 9000 + ".c", "token_malformed"),
        "no tenant claim": (idp.token(**{**person, "tenant": None}), "token_claims_invalid"),
        "unusable tenant": (idp.token(**{**person, "tenant": "a b"}), "token_claims_invalid"),
        "no sub": (idp.token(sub=None, **person), "token_claims_invalid"),
        "no exp": (idp.token(exp=None, **person), "token_claims_invalid"),
        "exp not a number": (idp.token(exp="tomorrow", **person), "token_claims_invalid"),
        "nbf not a number": (idp.token(nbf=[1], **person), "token_claims_invalid"),
        # A NumericDate is a JSON number (RFC 7519): PyJWT reads a digit string too, the gateway not.
        "exp as text": (idp.token(exp=str(int(good["exp"])), **person), "token_claims_invalid"),
        "nbf as text": (idp.token(nbf=str(int(good["iat"])), **person), "token_claims_invalid"),
        "iat as text": (idp.token(iat=str(int(good["iat"])), **person), "token_claims_invalid"),
        # A JSON boolean is not a number either (though Python's bool is an int: true read as 1).
        "exp true": (idp.token(exp=True, **person), "token_claims_invalid"),
        "exp false": (idp.token(exp=False, **person), "token_claims_invalid"),
        "nbf true": (idp.token(nbf=True, **person), "token_claims_invalid"),
        "nbf false": (idp.token(nbf=False, **person), "token_claims_invalid"),
        "iat true": (idp.token(iat=True, **person), "token_claims_invalid"),
        "iat false": (idp.token(iat=False, **person), "token_claims_invalid"),
        "no user claim": (idp.token(**{**person, "preferred_username": None}), "token_claims_invalid"),
    }


BAD = [
    "bad signature", "tampered payload", "wrong issuer", "no issuer", "wrong audience", "no audience",
    "expired", "not yet valid", "alg none", "alg NONE with kid", "RS256 to HS256 confusion",
    "alg not fitting the key", "unknown kid", "malformed", "not json", "oversized", "no tenant claim",
    "unusable tenant", "no sub", "no exp", "exp not a number", "nbf not a number", "exp as text",
    "nbf as text", "iat as text", "exp true", "exp false", "nbf true", "nbf false", "iat true",
    "iat false", "no user claim",
]
