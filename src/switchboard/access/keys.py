"""The gateway's API keys: how they look, how they are made and how they are hashed.

A key is ``sk-sb-`` + 8 visible characters + 40 more (URL-safe base64 alphabet): 32 random ones
(192 bits of entropy besides the visible part) and an 8-character check. The first 14
characters (``sk-sb-`` and the visible part) are its prefix, stored and shown so a person can
tell keys apart; the key itself is shown once, at creation, and stored only as a keyed hash
(BLAKE2b-256 in its keyed mode, a MAC) under a key derived from the server secret with
HMAC-SHA256. A keyed hash (not a slow password hash) is enough for random keys of this length,
and keeps the lookup cheap.

The last :data:`CHECK` characters of a key are a check: a MAC of the rest (keyed BLAKE2b under a
sub-key of the key-hashing key, base64url), so the gateway tells a key it issued from a made-up
one without asking the database (``checks_out``). Keys issued before the check existed are random
to the end; they are looked up as before while any of them is live (access/unchecked.py).
"""

from __future__ import annotations

import base64
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
# Sub-key of the key-hashing key for the check, derived from the stored hashing key (not the
# server secret) so a rotated secret leaves the checks of issued keys valid.
_CHECK_CONTEXT = b"switchboard/api-key-check/v1"
CHECK = 8  # characters: 6 bytes of MAC, 48 bits; the key keeps 32 random characters (192 bits)
_CHECK_BYTES = CHECK * 6 // 8


def hashing_key(server_secret: str) -> bytes:
    return hmac.new(server_secret.encode(), _HASH_CONTEXT, hashlib.sha256).digest()


def looks_like_key(text: str) -> bool:
    """Whether ``text`` has the shape of a gateway key (checked before any hashing or lookup).
    Length and prefix only, on the hot path: another character just hashes to an unknown key."""
    return len(text) == LENGTH and text.startswith(PREFIX)


def well_formed(text: str) -> bool:
    """The full shape check, alphabet included (for tools and tests)."""
    return _SHAPE.match(text) is not None


def checking_key(hashing: bytes) -> bytes:
    """The key of the keys' checks, from the key-hashing key (crypto/server.py)."""
    return hmac.new(hashing, _CHECK_CONTEXT, hashlib.sha256).digest()


def _check(signed: str, checking: bytes) -> bytes:
    digest = hashlib.blake2b(signed.encode("utf-8", "surrogateescape"), key=checking,
                             digest_size=_CHECK_BYTES).digest()
    return base64.urlsafe_b64encode(digest)


def new_key(hashing: bytes) -> str:
    """A new key, its check made with the key-hashing key ``hashing``."""
    signed = PREFIX + secrets.token_urlsafe(48)[: VISIBLE + RANDOM - CHECK]
    return signed + _check(signed, checking_key(hashing)).decode()


def checks_out(key: str, checking: bytes) -> bool:
    """Whether the check at the end of ``key`` (of the gateway's shape) is right: false for a
    made-up key and for a key issued before the check existed. A microsecond or two; constant
    time in the check's value, so it cannot be found a character at a time."""
    signed, check = key[:-CHECK], key[-CHECK:]
    return hmac.compare_digest(check.encode("utf-8", "surrogateescape"), _check(signed, checking))


def prefix_of(key: str) -> str:
    return key[: len(PREFIX) + VISIBLE]


def key_hash(key: str, hashing: bytes) -> str:
    # Keyed BLAKE2b is a MAC like HMAC-SHA256, computed by CPython's own C code: measured under
    # callgrind, about a fifteenth of the instructions of HMAC through OpenSSL 3 (whose
    # per-call set-up dominates for a 54-byte key), on every request that presents an API key.
    return hashlib.blake2b(key.encode("utf-8", "surrogateescape"), key=hashing, digest_size=32).hexdigest()
