"""The gateway's API keys: how they look, how they are made and how they are hashed.

A key is ``sk-sb-`` + 8 visible characters + 40 random ones (URL-safe base64 alphabet), about
240 bits of entropy. The first 14 characters (``sk-sb-`` and the visible part) are its prefix,
stored and shown so a person can tell keys apart; the key itself is shown once, at creation, and
stored only as a keyed hash (BLAKE2b-256 in its keyed mode, a MAC) under a key derived from the
server secret with HMAC-SHA256. A keyed hash (not a slow password hash) is enough for random
keys of this length, and keeps the lookup cheap.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

PREFIX = "sk-sb-"
VISIBLE = 8
RANDOM = 40
LENGTH = len(PREFIX) + VISIBLE + RANDOM
_SHAPE = re.compile(rf"^{PREFIX}[A-Za-z0-9_-]{{{VISIBLE + RANDOM}}}$")
# Sub-key for key hashing, so the server secret can also serve other purposes (credential
# encryption) without the two uses ever sharing a key.
_HASH_CONTEXT = b"switchboard/api-key-hash/v1"


def hashing_key(server_secret: str) -> bytes:
    return hmac.new(server_secret.encode(), _HASH_CONTEXT, hashlib.sha256).digest()


def looks_like_key(text: str) -> bool:
    """Whether ``text`` has the shape of a gateway key (checked before any hashing or lookup).
    Length and prefix only, on the hot path: another character just hashes to an unknown key."""
    return len(text) == LENGTH and text.startswith(PREFIX)


def well_formed(text: str) -> bool:
    """The full shape check, alphabet included (for tools and tests)."""
    return _SHAPE.match(text) is not None


def new_key() -> str:
    body = secrets.token_urlsafe(48)[: VISIBLE + RANDOM]
    return PREFIX + body


def prefix_of(key: str) -> str:
    return key[: len(PREFIX) + VISIBLE]


def key_hash(key: str, hashing: bytes) -> str:
    # Keyed BLAKE2b is a MAC like HMAC-SHA256, computed by CPython's own C code: measured under
    # callgrind, about a fifteenth of the instructions of HMAC through OpenSSL 3 (whose
    # per-call set-up dominates for a 54-byte key), on every request that presents an API key.
    return hashlib.blake2b(key.encode("utf-8", "surrogateescape"), key=hashing, digest_size=32).hexdigest()
