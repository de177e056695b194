"""AES-256-GCM under keys derived from the server secret, with key ids, so the secret can change.

Each ciphertext is ``v1.<kid>.<base64url(nonce | ciphertext+tag)>``: ``kid`` is a short hash of
the key that sealed it, so a :class:`Keyring` (the current secret and the previous ones) finds
the key to open it with, and ``switchboard secrets rotate`` knows what is not yet under the
current one. The associated data binds a ciphertext to its record (e.g. the provider and the
credential id): a ciphertext copied onto another record does not open.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from switchboard.config.schema import AuthConfig

VERSION = "v1"
_INFO = b"switchboard/stored-secrets/v1"
_NONCE = 12


class DecryptError(Exception):
    """A ciphertext that no key of the keyring opens (unknown key id, or altered / moved)."""


def derive(secret: str) -> bytes:
    """The 256-bit encryption key for a server secret (HKDF-SHA256; never the secret itself)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO)
    return hkdf.derive(secret.encode())


def key_id(key: bytes) -> str:
    """A short, non-secret name for a derived key."""
    return hashlib.sha256(b"switchboard/kid/" + key).hexdigest()[:12]


@dataclass(frozen=True)
class Keyring:
    """The current key (encrypts) and previous ones (decrypt only), by key id."""

    current: str  # the current key id
    keys: dict[str, bytes]

    @classmethod
    def from_secrets(cls, current: str, previous: Iterable[str] = ()) -> Keyring:
        key = derive(current)
        keys = {key_id(key): key}
        for old in previous:
            if old:
                k = derive(old)
                keys.setdefault(key_id(k), k)
        return cls(key_id(key), keys)

    def encrypt(self, plaintext: str, aad: str) -> str:
        nonce = os.urandom(_NONCE)
        sealed = AESGCM(self.keys[self.current]).encrypt(nonce, plaintext.encode(), aad.encode())
        return f"{VERSION}.{self.current}.{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"

    def decrypt(self, token: str, aad: str) -> str:
        kid = kid_of(token)
        key = self.keys.get(kid)
        if key is None:
            raise DecryptError(f"sealed under key id {kid}, which no configured secret derives")
        body = token.split(".", 2)[2]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return AESGCM(key).decrypt(raw[:_NONCE], raw[_NONCE:], aad.encode()).decode()
        except (InvalidTag, ValueError) as exc:
            raise DecryptError("the ciphertext does not open: altered, or moved to another record") from exc

    def is_current(self, token: str) -> bool:
        return kid_of(token) == self.current

    def reencrypt(self, token: str, aad: str) -> str:
        """The same secret sealed under the current key (a token already under it is kept)."""
        return token if self.is_current(token) else self.encrypt(self.decrypt(token, aad), aad)


def kid_of(token: str) -> str:
    parts = token.split(".", 2)
    if len(parts) != 3 or parts[0] != VERSION:
        raise DecryptError("not a sealed value of a known version")
    return parts[1]


def credential_aad(provider: str, credential_id: str) -> str:
    return f"provider-credential:{provider}:{credential_id}"


def server_secret_aad(name: str) -> str:
    return f"server-secret:{name}"


def mcp_server_aad(server_id: str) -> str:
    """The secrets (static headers, OAuth client secret) of an MCP server stored at run time."""
    return f"mcp-server:{server_id}"


def mcp_token_aad(tenant: str, user: str, server: str) -> str:
    """One user's OAuth tokens for one MCP server."""
    return f"mcp-oauth-token:{tenant}:{user}:{server}"


def from_settings(auth: AuthConfig) -> Keyring | None:
    """The keyring of ``auth.secret_key`` and ``auth.previous_secret_keys`` (None: no secret)."""
    if auth.secret_key is None:
        return None
    return Keyring.from_secrets(
        auth.secret_key.get_secret_value(), [s.get_secret_value() for s in auth.previous_secret_keys]
    )


def service_header_aad(tenant: str, name: str, header: str) -> str:
    """A stored REST service's header (services/): it opens for this service and header only."""
    return f"service-header:{tenant}:{name}:{header.lower()}"
