"""Files and batches (revision 0015; docs/api-files.md) and stored Responses API responses
(http/responses/, revision 0014), owned by whoever created them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from switchboard.stores.protocols.clock import utcnow

FILE = "file"
BATCH = "batch"
MESSAGE_BATCH = "msgbatch"  # an Anthropic message batch (/v1/messages/batches); the column holds 8
# With a message batch's id: the upstream model each of its requests was sent for, read only to
# price its results (http/files/message_costing.py); kept apart so the batch's row stays small.
MESSAGE_BATCH_MODELS = "msgmodel"
# With an (Azure) batch's id: the model each line of its input file names, read only to price its
# output (http/files/costing.py): Azure's output reports the base model, not the deployment.
BATCH_MODELS = "batchmdl"
# How long a deleted object's id stays a list cursor (FileStore.delete): long enough for a walk
# over the list that deletes each page it reads, short enough that the tombstones stay few.
TOMBSTONE_SECONDS = 24 * 3600


@dataclass(frozen=True)
class OwnedObject:
    """A file or batch created through the gateway at an upstream: who owns it, and the upstream's
    object as last seen. ``id`` is the upstream's id, which callers use; a caller sees only the
    objects of its own tenant and ``owner`` (its key id, else its principal id)."""

    id: str
    kind: str  # FILE | BATCH | MESSAGE_BATCH
    provider: str  # the provider entry that holds it
    tenant_id: str
    owner: str
    key_id: str | None = None
    team_id: str | None = None
    user_id: str | None = None
    purpose: str | None = None  # a file's purpose, a batch's endpoint
    status: str | None = None  # a batch's status as last seen
    body: Mapping[str, Any] = field(default_factory=dict)  # the upstream's object as last seen
    created_at: datetime = field(default_factory=utcnow)
    costed: bool = False  # a batch whose cost is in the usage ledger


class FileStore(Protocol):
    async def put(self, record: OwnedObject) -> None:
        """Record a new object (an id already recorded for ``kind`` is left as it was; a deleted
        one's tombstone is replaced)."""

    async def get(self, kind: str, object_id: str) -> OwnedObject | None: ...

    async def list_owned(self, kind: str, tenant_id: str, owner: str, *, after: str | None = None,
                         limit: int = 20, purpose: str | None = None,
                         newest_first: bool = True) -> list[OwnedObject]:
        """The owner's objects, newest first (else oldest first); ``after``: those that come
        after that id in that order. The owner's object deleted less than ``TOMBSTONE_SECONDS``
        ago is still a cursor (a walk that deletes each page it reads goes on from its last id).
        An ``after`` that is none of the owner's objects of ``kind`` (unknown, deleted longer
        ago, or another owner's, deleted or not) raises ValueError: its place in the order is
        not known, and an empty page would read as the end of the list."""

    async def update(self, kind: str, object_id: str, body: Mapping[str, Any], status: str | None) -> None:
        """The upstream's object as now seen."""

    async def delete(self, kind: str, object_id: str) -> bool:
        """Forget the object (True when it was there): from now on it is found, listed, updated
        and polled by nothing, and a new object of that id may be recorded. Of a listed kind
        (not ``MESSAGE_BATCH_MODELS`` nor ``BATCH_MODELS``) its id and place in the list stay
        ``TOMBSTONE_SECONDS`` as a cursor of its owner's list."""

    async def purge(self, now: datetime, limit: int = 1000) -> int:
        """Drop at most ``limit`` tombstones (of every kind) older than ``TOMBSTONE_SECONDS`` at
        ``now``, oldest first; how many were dropped. The deletes purge those of their own kind;
        this is for the kinds no one deletes from any more (the batch poller's rounds)."""

    async def open_batches(self, limit: int, kind: str = BATCH) -> list[OwnedObject]:
        """Batches of ``kind`` not yet costed, least recently seen first (for the poller)."""

    async def mark_costed(self, object_id: str, kind: str = BATCH) -> bool:
        """Mark a batch's cost as recorded; True for the one call that changed it."""

    async def unpriced_batch_of_output(self, tenant_id: str, owner: str, file_id: str) -> OwnedObject | None:
        """The owner's batch (kind ``BATCH``) not yet costed whose output file, as last seen, is
        ``file_id``; None when there is none."""


# -- stored Responses API responses (http/responses/, revision 0014) ----------------------------


@dataclass(frozen=True)
class StoredResponse:
    """A Responses API response kept for ``previous_response_id`` and ``GET /v1/responses/{id}``.

    It belongs to one caller: its tenant and its owner (the key id, else the principal's id);
    callers other than the owner are answered "not found". ``conversation`` holds the canonical
    chat messages up to and including this response's output (not the instructions), so a
    request continuing it reads one row."""

    id: str
    tenant_id: str | None
    owner: str
    created_at: datetime
    expires_at: datetime
    response: Mapping[str, Any]
    input_items: Sequence[Mapping[str, Any]]
    conversation: Sequence[Mapping[str, Any]]


class ResponseStore(Protocol):
    async def put(self, record: StoredResponse) -> None:
        """Insert ``record`` (ids are unique; a repeated id replaces nothing and raises)."""
        ...

    async def get(self, response_id: str) -> StoredResponse | None:
        """The record, or None when there is none or it has expired."""
        ...

    async def delete(self, response_id: str) -> bool: ...

    async def purge(self, now: datetime, limit: int = 1000) -> int:
        """Delete at most ``limit`` records expired at ``now``; how many were deleted."""
        ...
