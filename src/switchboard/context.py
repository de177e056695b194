"""Per-request state carried through the pipeline."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from switchboard.http.inbound import InboundAPI
    from switchboard.routing.table import Route


@dataclass(slots=True)
class Principal:
    """Who is calling. Only the master key exists for now; virtual keys extend this."""

    id: str
    role: str = "admin"


@dataclass(slots=True)
class RequestContext:
    request_id: str
    operation: str  # chat | embeddings | completions | count_tokens
    inbound: InboundAPI
    headers: dict[str, str]
    body: bytes
    started: float
    request: dict[str, Any] = field(default_factory=dict)  # canonical request
    principal: Principal | None = None
    route: Route | None = None
    # What the client asked for, kept before adapters touch the request.
    stream: bool = False
    client_wants_usage: bool = False
    usage: dict[str, Any] | None = None
    response_headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Reply:
    """A complete canonical response."""

    body: dict[str, Any]
    status: int = 200


Chunk = dict[str, Any]


@dataclass(slots=True)
class StreamReply:
    """A canonical chunk stream, consumed exactly once by the edge.

    ``chunks`` yields non-empty batches: the chunks decoded from one upstream read. A stage that
    wraps the stream iterates batches and may change, drop or add chunks within them.
    """

    chunks: AsyncGenerator[list[Chunk], None]


Result = Reply | StreamReply
