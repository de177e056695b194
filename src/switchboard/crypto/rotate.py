"""``switchboard secrets rotate``: re-seal every stored secret under the current server secret.

Run after every instance has the new ``auth.secret_key`` with the old one in
``auth.previous_secret_keys``; then the previous one can be dropped. Three transactions, each all
or nothing: REST services' headers, then MCP secrets and tokens, then provider credentials and
the key-hashing key with the run's audit entry (last, so that an entry the database refuses
leaves the credentials under the old key, and the run exits non-zero). A value that opens with
no key of the ring stops the run at its step; the steps before it stay done (and are audited).
A step the database does not store stops it too (the steps before stay done, not audited).
Idempotent: what is already under the current key is left as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

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


# The steps, in order, as the command line names them.
SERVICES_STEP = "REST services' headers"
MCP_STEP = "MCP secrets and tokens"
PROVIDERS_STEP = "provider credentials and the key-hashing key"


class Stopped(Exception):
    """A step of the run (``step``) met a value no key of the ring opens (``cause`` a
    DecryptError), or its transaction failed (the database refused it, or the last step's audit
    entry): that step wrote nothing, but what the steps before it re-sealed (``done``) is
    committed."""

    def __init__(self, done: Rotated, cause: Exception, step: str) -> None:
        super().__init__(str(cause))
        self.done = done
        self.cause = cause
        self.step = step


def audit_entry(done: Rotated, complete: bool = True) -> AuditEntry:
    """The audit entry of a rotation that re-sealed something (in the default tenant's log, with
    the platform's other changes): the key now sealing, and the counts; never a secret.
    ``complete`` false: a run stopped by a value it could not open, after re-sealing these."""
    return AuditEntry(tenant_id="default", actor=CLI_ACTOR, actor_role=CLI_ROLE, action="secrets.rotate",
                      resource_type="server_secret", resource_id=done.key_id,
                      after={**asdict(done), "complete": complete})


async def rotate_all(services: ServiceStore | None, providers: ProviderStore, mcp: McpStore | None,
                     keyring: Keyring) -> Rotated:
    """Every step in turn (services' headers, MCP, providers with the audit entry of a run that
    re-sealed anything). Raises :class:`Stopped` with the step and what the steps before it
    committed when one meets a value no key of the ring opens, or is not stored."""
    done = Rotated(0, 0, keyring.current)

    def audited(credentials: int, server_secrets: int) -> AuditEntry | None:
        whole = replace(done, credentials=credentials, server_secrets=server_secrets)
        return audit_entry(whole) if whole.changed else None  # a rerun that changed nothing: none

    step = SERVICES_STEP
    try:
        done = replace(done, service_headers=await rotate_services(services, keyring))
        if mcp is not None:
            step = MCP_STEP
            mcp_secrets, mcp_tokens = await _rotate_mcp(mcp, keyring)
            done = replace(done, mcp_secrets=mcp_secrets, mcp_tokens=mcp_tokens)
        step = PROVIDERS_STEP
        credentials, server_secrets = await _rotate_providers(providers, keyring, audited)
    except Exception as exc:  # a value no key opens, or the database refused the step (or its entry)
        raise Stopped(done, exc, step) from exc
    return replace(done, credentials=credentials, server_secrets=server_secrets)


async def rotate(store: ProviderStore, keyring: Keyring, mcp: McpStore | None = None) -> Rotated:
    """Raises DecryptError (nothing written) if a stored value opens with no key of the ring.
    The MCP secrets (``mcp``) are a transaction of their own, after the providers'."""
    creds, secrets = await _rotate_providers(store, keyring)
    mcp_secrets, mcp_tokens = (0, 0) if mcp is None else await _rotate_mcp(mcp, keyring)
    return Rotated(creds, secrets, keyring.current, mcp_secrets, mcp_tokens)


async def _rotate_providers(store: ProviderStore, keyring: Keyring,
                            audited: Callable[[int, int], AuditEntry | None] | None = None
                            ) -> tuple[int, int]:
    def credential(record: CredentialRecord) -> str:
        assert record.ciphertext is not None
        return keyring.reencrypt(record.ciphertext, credential_aad(record.provider, record.id))

    def secret(name: str, sealed: str) -> str:
        return keyring.reencrypt(sealed, server_secret_aad(name))

    return await store.reseal(credential, secret, audited)


async def _rotate_mcp(mcp: McpStore, keyring: Keyring) -> tuple[int, int]:
    def server(record: McpServerRecord) -> McpServerRecord:
        # A URL stored in clear (before URLs were sealed) is sealed with the rest now.
        return resealed(keyring, record)

    def token(record: McpTokenRecord) -> str:
        aad = mcp_token_aad(record.tenant_id, record.user_id, record.server)
        return keyring.reencrypt(record.sealed, aad)

    return await mcp.reseal(server, token)


async def rotate_services(store: ServiceStore | None, keyring: Keyring) -> int:
    """Re-seal the headers of every stored REST service (its own transaction; all or nothing);
    how many services changed. Raises DecryptError (nothing written) like :func:`rotate`."""
    if store is None:
        return 0

    def headers(record: ServiceRecord) -> dict[str, str]:
        return {h: keyring.reencrypt(v, service_header_aad(record.tenant_id, record.name, h))
                for h, v in record.headers.items()}

    return await store.reseal(headers)
