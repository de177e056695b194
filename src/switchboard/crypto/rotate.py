"""``switchboard secrets rotate``: re-seal every stored secret under the current server secret.

Run after every instance has the new ``auth.secret_key`` with the old one in
``auth.previous_secret_keys``; then the previous one can be dropped. One transaction: all or
nothing. Idempotent: what is already under the current key is left as it is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from switchboard.crypto.keyring import (
    Keyring,
    credential_aad,
    mcp_token_aad,
    server_secret_aad,
    service_header_aad,
)
from switchboard.crypto.mcp_servers import resealed
from switchboard.stores.protocols import (
    AuditEntry,
    CredentialRecord,
    McpServerRecord,
    McpStore,
    McpTokenRecord,
    ProviderStore,
    ServiceRecord,
    ServiceStore,
)


@dataclass(frozen=True)
class Rotated:
    credentials: int  # credentials re-sealed
    server_secrets: int  # server secrets (the key-hashing key) re-sealed
    key_id: str  # the current key's id
    mcp_secrets: int = 0  # MCP servers' sealed headers, OAuth client secrets and URLs re-sealed
    mcp_tokens: int = 0  # per-user MCP OAuth tokens re-sealed
    service_headers: int = 0  # REST services whose stored headers were re-sealed

    @property
    def changed(self) -> bool:
        return any((self.credentials, self.server_secrets, self.mcp_secrets, self.mcp_tokens,
                    self.service_headers))


# Who ran it, as the audit log names the command line: whoever holds the database and the
# server secrets, the operator.
CLI_ACTOR = "cli"
CLI_ROLE = "platform_admin"


def audit_entry(done: Rotated) -> AuditEntry:
    """The audit entry of a rotation that re-sealed something (in the default tenant's log, with
    the platform's other changes): the key now sealing, and the counts; never a secret."""
    return AuditEntry(tenant_id="default", actor=CLI_ACTOR, actor_role=CLI_ROLE, action="secrets.rotate",
                      resource_type="server_secret", resource_id=done.key_id, after=asdict(done))


async def rotate(store: ProviderStore, keyring: Keyring, mcp: McpStore | None = None) -> Rotated:
    """Raises DecryptError (nothing written) if a stored value opens with no key of the ring.
    The MCP secrets (``mcp``) are a transaction of their own, after the providers'."""

    def credential(record: CredentialRecord) -> str:
        assert record.ciphertext is not None
        return keyring.reencrypt(record.ciphertext, credential_aad(record.provider, record.id))

    def secret(name: str, sealed: str) -> str:
        return keyring.reencrypt(sealed, server_secret_aad(name))

    creds, secrets = await store.reseal(credential, secret)
    mcp_secrets = mcp_tokens = 0
    if mcp is not None:
        def server(record: McpServerRecord) -> McpServerRecord:
            # A URL stored in clear (before URLs were sealed) is sealed with the rest now.
            return resealed(keyring, record)

        def token(record: McpTokenRecord) -> str:
            aad = mcp_token_aad(record.tenant_id, record.user_id, record.server)
            return keyring.reencrypt(record.sealed, aad)

        mcp_secrets, mcp_tokens = await mcp.reseal(server, token)
    return Rotated(creds, secrets, keyring.current, mcp_secrets, mcp_tokens)


async def rotate_services(store: ServiceStore | None, keyring: Keyring) -> int:
    """Re-seal the headers of every stored REST service (its own transaction; all or nothing);
    how many services changed. Raises DecryptError (nothing written) like :func:`rotate`."""
    if store is None:
        return 0

    def headers(record: ServiceRecord) -> dict[str, str]:
        return {h: keyring.reencrypt(v, service_header_aad(record.tenant_id, record.name, h))
                for h, v in record.headers.items()}

    return await store.reseal(headers)
