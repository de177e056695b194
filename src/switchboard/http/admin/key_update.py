"""``PATCH /admin/v1/keys/{id}``: change a key in place, its secret kept (rotation changes the
secret every client holds; this does not).

JSON merge semantics: only the fields given change, ``null`` clears the nullable ones (``name``,
``expires_at``, ``allowed_regions``, ``mcp_tools``); lists and ``metadata`` are replaced as a
whole. The fields and their validation are the ones ``POST /admin/v1/keys`` takes (keys.py
defines them once). The key's identity, owner and role are fixed, and its own rate limits and
budget have their own endpoints: naming any of them is a 400 ``immutable_parameter``.

``enabled: false`` blocks the key and ``true`` unblocks it. A block is not a revoke: the store
keeps the blocker's role (``blocked_by_role``) next to ``enabled`` (false only once revoked, for
good), and only that role or a higher one may lift it. A revoked or rotated key is not changed
at all (400 ``key_revoked`` / ``key_rotated``), and the write is a compare-and-set on the
key's revision, so a revoke racing an update always stands.

Who may: whoever may issue or revoke the key (within reach, not below its role), models only
within the caller's own (:func:`keys.grantable`, as when issuing), and MCP tool rules, expiry and
regions only within the caller's key's own (:func:`keys.tools_grantable`,
:func:`keys.expiry_within`, :func:`keys.regions_within`: a key restricted by an admin does not
lift its own restriction; ``null`` is refused to such a caller). Like a revoke, the change is
published on the change feed: every instance uses the new settings from its next request.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BeforeValidator, ConfigDict, Field, StrictBool, field_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from switchboard.access.roles import RANK, may_grant
from switchboard.config.mcp import McpToolRule
from switchboard.errors import Conflict, InvalidRequest
from switchboard.http.admin import audit
from switchboard.http.admin.authz import Access, allow
from switchboard.http.admin.body import AdminBody
from switchboard.http.admin.budgets import chain_back
from switchboard.http.admin.keys import (
    EXPIRY_DOC,
    MCP_TOOLS_DOC,
    MODELS_DOC,
    REGIONS_DOC,
    ROTATED_FROM,
    Expiry,
    Metadata,
    Models,
    Name,
    Tags,
    denied,
    expiry_within,
    grantable,
    key_in_reach,
    outranks,
    public,
    regions_within,
    stored_regions,
    stored_tools,
    stores_of,
    tools_grantable,
)
from switchboard.http.admin.one_writer import one_writer
from switchboard.http.admin.scoping import Regions
from switchboard.stores import Stores
from switchboard.stores.protocols import KeyRecord
from switchboard.stores.protocols.access import ROTATED_TO

router = APIRouter(prefix="/admin/v1/keys", tags=["keys"])

# A write that lost a compare-and-set is read and tried again this many times in all.
_ATTEMPTS = 3


def _refuse(why: str) -> Any:
    def refuse(value: Any) -> Any:
        raise PydanticCustomError("immutable_parameter", why)

    return BeforeValidator(refuse)


# Fields of a key a change may not name: each a 400 naming it (not just "unknown field").
Identity = SkipJsonSchema[Annotated[Any, _refuse(
    "a key's identity, owner and role are fixed: issue a new key for another owner or role")]]
Kept = SkipJsonSchema[Annotated[Any, _refuse(
    "kept by the gateway (a key is revoked with DELETE /admin/v1/keys/{id})")]]
Elsewhere = SkipJsonSchema[Annotated[Any, _refuse(
    "a key's rate limits and budget are not changed here: see PUT /admin/v1/limits (scope "
    "key_model) and PUT /admin/v1/budgets (scope key)")]]

_NOT_NULL = {
    "models": "must be a list of models (a key always names the models it may use)",
    "metadata": "must be an object (send {} to remove every entry)",
    "tags": "must be a list (send [] to remove every tag)",
    "enabled": "must be true (unblock) or false (block)",
}


class KeyUpdate(AdminBody):
    model_config = ConfigDict(extra="forbid")

    models: Models | None = Field(default=None, description=MODELS_DOC + " Replaces the list.")
    name: Name | None = Field(default=None, description="A label for people; null removes it.")
    expires_at: Expiry | None = Field(default=None, description=EXPIRY_DOC + " null: never expires.")
    metadata: Metadata | None = Field(default=None, description="Replaces every entry.")
    tags: Tags | None = Field(default=None, description="Replaces the list.")
    enabled: StrictBool | None = Field(default=None, description="false blocks the key, true unblocks it.")
    allowed_regions: Regions | None = Field(default=None, description=REGIONS_DOC + " null: anywhere.")
    mcp_tools: McpToolRule | None = Field(default=None, description=MCP_TOOLS_DOC + " null: no list.")

    id: Identity = None
    key: Identity = None
    prefix: Identity = None
    tenant: Identity = None
    team: Identity = None
    user: Identity = None
    service_account: Identity = None
    role: Identity = None
    lineage: Identity = None
    created_at: Identity = None
    created_by: Identity = None
    object: Kept = None
    revoked: Kept = None
    last_used_at: Kept = None
    updated_at: Kept = None
    rpm_limit: Elsewhere = None
    tpm_limit: Elsewhere = None
    max_budget_usd: Elsewhere = None
    budget_period: Elsewhere = None

    @field_validator(*_NOT_NULL, mode="before")
    @classmethod
    def _not_null(cls, value: Any, info: Any) -> Any:
        if value is None:
            raise ValueError(_NOT_NULL[info.field_name])
        return value


def _changeable(key: KeyRecord, body: KeyUpdate) -> None:
    """A revoked key stays revoked, and a rotated one is on its way out (its successor holds its
    settings): neither is changed."""
    if not key.enabled:
        param = "enabled" if "enabled" in body.model_fields_set else None
        raise InvalidRequest("a revoked key cannot be changed or unblocked: revocation is final, issue a "
                             "new key instead", param=param, code="key_revoked")
    successor = key.metadata.get(ROTATED_TO)
    if successor is not None:
        raise InvalidRequest(f"the key was rotated (to '{successor}'): change that key instead (revoking "
                             "this one ends its grace period now)", code="key_rotated")


def _blocked_by(access: Access, key: KeyRecord, enabled: bool) -> str | None:
    """The key's block after the change: the strongest blocker's role is kept, and only a caller
    of that role or above lifts it (a developer does not undo its admin's block)."""
    role = access.principal.role
    if not enabled:
        held = key.blocked_by_role
        return held if held is not None and RANK.get(held, 0) >= RANK.get(role, 0) else role
    if key.blocked_by_role is not None and not may_grant(role, key.blocked_by_role):
        raise denied(f"the key was blocked by a caller with the role '{key.blocked_by_role}': the role "
                     f"'{role}' may not unblock it")
    return None


def _changed(access: Access, key: KeyRecord, body: KeyUpdate) -> tuple[KeyRecord, set[str]]:
    """The key with the body's fields applied, and the names of the stored fields they set."""
    given = body.model_fields_set
    changes: dict[str, Any] = {}
    if "models" in given and body.models is not None:
        changes["allowed_models"] = tuple(body.models)
    if "name" in given:
        changes["name"] = body.name
    if "expires_at" in given:
        changes["expires_at"] = body.expires_at
    if "metadata" in given and body.metadata is not None:
        # What the gateway wrote (the predecessor of a rotated key) stays.
        kept = {name: key.metadata[name] for name in (ROTATED_FROM,) if name in key.metadata}
        changes["metadata"] = {**body.metadata, **kept}
    if "tags" in given and body.tags is not None:
        changes["tags"] = tuple(body.tags)
    if "enabled" in given and body.enabled is not None:
        changes["blocked_by_role"] = _blocked_by(access, key, body.enabled)
    if "allowed_regions" in given:
        changes["allowed_regions"] = stored_regions(body.allowed_regions)
    if "mcp_tools" in given:
        changes["mcp_tools"] = stored_tools(body.mcp_tools)
    return replace(key, **changes, updated_at=datetime.now(UTC)), set(changes)


@router.patch("/{key_id}", summary="Change a key's settings in place (its secret is kept)")
async def update_key(
    key_id: str, body: KeyUpdate, request: Request, access: Annotated[Access, Depends(allow("key", "update"))]
) -> dict[str, Any]:
    stores = stores_of(request)
    async with one_writer("key", key_id):
        for _ in range(_ATTEMPTS):
            before = await key_in_reach(access, stores, key_id)
            outranks(access, before)
            if body.models is not None:
                grantable(access, body.models)
            if "mcp_tools" in body.model_fields_set:
                tools_grantable(access, stored_tools(body.mcp_tools))
            # Its expiry and regions too: a caller whose key has them neither clears nor widens them.
            if "expires_at" in body.model_fields_set:
                expiry_within(access, body.expires_at, cleared=True)
            if "allowed_regions" in body.model_fields_set:
                regions_within(access, body.allowed_regions, cleared=True)
            _changeable(before, body)
            after, fields = _changed(access, before, body)
            if not fields:
                return public(before)  # nothing to change: nothing written, nothing audited
            revives = await _revives(stores, before, after, fields)
            # Written with its audit entry: an error answered means nothing changed.
            updated = audit.entry(request, "key.update", "api_key", before.id, before=public(before),
                                  after=public(after), tenant=before.tenant_id)
            if await stores.keys.update(after, fields, audited=updated):
                break
        else:
            raise Conflict("the key kept changing while it was being updated: try again", code="key_changed")
    after = replace(after, revision=before.revision + 1)
    # The same path as a revoke: every instance drops the cached key and reads the new settings.
    await request.app.state.services.key_cache().changed(before.key_hash)
    if revives:
        await chain_back(request, before.lineage)
    return public(after)


async def _revives(stores: Stores, before: KeyRecord, after: KeyRecord, fields: set[str]) -> bool:
    """Whether the change brings back a key chain no key of which could spend: the key had
    expired and no longer has, and no other key of its chain could spend. Read only for a
    change of an expired key's expiry."""
    now = datetime.now(UTC)
    if "expires_at" not in fields or before.expires_at is None or before.expires_at > now:
        return False
    if after.expires_at is not None and after.expires_at <= now:
        return False
    return not await stores.keys.lineage_live(before.tenant_id, before.lineage, now)
