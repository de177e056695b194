"""Server secrets kept in the database, sealed under the server secret.

The key that hashes the gateway's API keys was derived from the server secret itself, so a new
secret broke every issued key. It is now stored sealed (``server_secrets``): created on first
start as exactly the key derived from the secret in use then (keys issued before keep working),
opened at every start with the keyring, and re-sealed by ``switchboard secrets rotate``.
"""

from __future__ import annotations

import base64

from switchboard.crypto.keyring import DecryptError, Keyring, server_secret_aad
from switchboard.stores.protocols import ProviderStore

HASHING_KEY = "api_key_hashing"


class SecretsUnavailable(Exception):
    """The configured secrets do not open what the database holds."""


async def hashing_key(store: ProviderStore, keyring: Keyring, initial: bytes) -> bytes:
    """The stored key-hashing key; ``initial`` is stored (sealed) when there is none yet."""
    aad = server_secret_aad(HASHING_KEY)
    sealed = await store.server_secret(HASHING_KEY)
    if sealed is None:
        fresh = keyring.encrypt(base64.b64encode(initial).decode(), aad)
        sealed = await store.init_server_secret(HASHING_KEY, fresh)
    try:
        return base64.b64decode(keyring.decrypt(sealed, aad))
    except DecryptError as exc:
        raise SecretsUnavailable(
            f"the server secret does not open the stored API-key hashing key ({exc}); if the "
            "secret was changed, give the one in use before as auth.previous_secret_keys "
            "(or SWITCHBOARD_PREVIOUS_SECRET_KEYS) and run `switchboard secrets rotate`"
        ) from None

