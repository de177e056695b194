"""The gateway's API keys: how they look, how they are made and how they are hashed.

A key is ``sk-sb-`` + 8 visible characters + 40 random ones (URL-safe base64 alphabet), about
240 bits of entropy. The first 14 characters (``sk-sb-`` and the visible part) are its prefix,
stored and shown so a person can tell keys apart; the key itself is shown once, at creation, and
stored only as HMAC-SHA256 under a key derived from the server secret. A keyed hash (not a slow
password hash) is enough for random keys of this length, and keeps the lookup cheap.
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
    """Whether ``text`` has the shape of a gateway key (checked before any hashing or lookup)."""
    return len(text) == LENGTH and _SHAPE.match(text) is not None


def new_key() -> str:
    body = secrets.token_urlsafe(48)[: VISIBLE + RANDOM]
    return PREFIX + body


def prefix_of(key: str) -> str:
    return key[: len(PREFIX) + VISIBLE]


def key_hash(key: str, hashing: bytes) -> str:
    return hmac.new(hashing, key.encode(), hashlib.sha256).hexdigest()
