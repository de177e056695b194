"""``GET /admin/v1/logs``: the request log searched, newest first, a page at a time.

A record is the usage ledger's record of one request (every field), with the stored request and
response bodies when there are some and they are asked for (``include_bodies=true``; always for a
``request_id`` lookup). A list without ``request_id`` covers ``from`` (inclusive) to ``to``
(exclusive), by default the 24 hours up to now; a ``request_id`` lookup has no default range.
Pages follow ``next_cursor`` (opaque: base64 of the last record's time, request id and entry id;
records may share a caller's request id and time, never their entry id).

Who sees what follows the ``log`` row of the permission table: the platform admin every tenant
(or one, ``?tenant=``), a tenant admin its tenant, a team admin its team, a developer its own
user's and keys' requests, a viewer nothing (403). A record outside the caller's reach is never
returned: a lookup of another tenant's request id answers ``{"data": []}``, as for an id that
does not exist, so a caller cannot learn that it exists.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from switchboard.errors import InvalidRequest
from switchboard.http.admin.authz import Access, allow
from switchboard.http.admin.query import (
    MAX_INT,
    plain_decimal,
    query_params,
    rfc3339,
    whole_number,
    within_reach,
)
from switchboard.http.admin.text_input import problem_with
from switchboard.spend.cost import format_usd
from switchboard.stores.protocols import LogEntry, LogQuery

router = APIRouter(prefix="/admin/v1/logs", tags=["logs"])

DEFAULT_RANGE = timedelta(hours=24)
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
MAX_REQUEST_ID = 128
MAX_USD = Decimal(10**9)
TEXT = ("request_id", "tenant", "team", "key", "user", "model", "deployment", "provider",
        "error_code", "q")
PARAMETERS = frozenset({*TEXT, "from", "to", "status", "min_latency_ms", "max_latency_ms",
                        "min_cost_usd", "max_cost_usd", "limit", "cursor", "include_bodies",
                        "abandoned"})
_STATUS_CLASS = re.compile(r"[1-5]xx", re.IGNORECASE)






def _usd(name: str, value: str | None) -> Decimal | None:
    if value is None:
        return None
    amount = Decimal(value) if plain_decimal(value) else Decimal(-1)
    if not 0 <= amount <= MAX_USD:
        raise InvalidRequest(f"{name}: expected a decimal number of US dollars from 0 to {MAX_USD}",
                             param=name, code="invalid_value")
    return amount


def _status(value: str | None) -> tuple[int | None, int | None]:
    """An exact status (``502``) or a class (``5xx``)."""
    if value is None:
        return None, None
    if _STATUS_CLASS.fullmatch(value):
        return None, int(value[0])
    if value.isascii() and value.isdigit() and len(value) == 3 and 100 <= int(value) <= 599:
        return int(value), None
    raise InvalidRequest("status: expected an HTTP status (e.g. 429) or a class (e.g. 5xx)",
                         param="status", code="invalid_status")


def _flag(name: str, value: str | None) -> bool | None:
    """``true`` or ``false``; None when not given."""
    if value is None:
        return None
    if value in ("true", "false"):
        return value == "true"
    raise InvalidRequest(f"{name}: expected true or false", param=name, code="invalid_value")


def _bool(name: str, value: str | None) -> bool:
    return bool(_flag(name, value))


def encode_cursor(created_at: datetime, request_id: str, entry_id: str | None) -> str:
    position = [created_at.astimezone(UTC).isoformat(), request_id, *([] if entry_id is None else [entry_id])]
    raw = json.dumps(position, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _id(value: object) -> bool:
    # An id goes to the database as given: text it could not hold is not a cursor's.
    return (isinstance(value, str) and 0 < len(value) <= MAX_REQUEST_ID
            and problem_with(value) is None)


def decode_cursor(value: str) -> tuple[datetime, str] | tuple[datetime, str, str]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        # [time, request id, entry id]; a cursor from before entry ids has none.
        at, request_id, *entry = json.loads(raw)
        if isinstance(at, str) and _id(request_id) and (entry == [] or (len(entry) == 1 and _id(entry[0]))):
            parsed = datetime.fromisoformat(at)
            if parsed.tzinfo is not None:
                return (parsed.astimezone(UTC), request_id, *entry)
    except (binascii.Error, ValueError, TypeError, OverflowError):
        pass
    raise InvalidRequest("cursor: not a cursor this endpoint returned", param="cursor",
                         code="invalid_cursor")


def _scope(access: Access, params: dict[str, str]) -> tuple[str | None, dict[str, Any]]:
    """The tenant to read (None: every tenant) and the owner filters, narrowed to the reach."""
    scoped: dict[str, Any] = {"team_id": params.get("team")}
    return within_reach(access, params.get("tenant"), scoped), scoped


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def public(entry: LogEntry) -> dict[str, Any]:
    """A record as the API shows it: every ledger field; the bodies when there are some."""
    r = entry.record
    shown: dict[str, Any] = {
        "object": "log_record",
        "request_id": r.request_id,
        "entry_id": r.entry_id,
        "created_at": _iso(r.created_at),
        "tenant": r.tenant_id,
        "team": r.team_id,
        "key": r.key_id,
        "user": r.user_id,
        "model": r.model,
        "upstream_model": r.upstream_model,
        "provider": r.provider,
        "deployment": r.deployment,
        "status": r.status,
        "error_code": r.error_code,
        "stream": r.stream,
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "cache_read_tokens": r.cache_read_tokens,
        "cache_write_5m_tokens": r.cache_write_5m_tokens,
        "cache_write_1h_tokens": r.cache_write_1h_tokens,
        "reasoning_tokens": r.reasoning_tokens,
        "image_input_tokens": r.image_input_tokens,
        "audio_input_tokens": r.audio_input_tokens,
        "image_output_tokens": r.image_output_tokens,
        "audio_output_tokens": r.audio_output_tokens,
        "cost_usd": format_usd(r.cost_usd),
        "unpriced": r.unpriced,
        "latency_ms": r.latency_ms,
        "ttft_ms": r.ttft_ms,
        "overhead_ms": r.overhead_ms,
        "upstream_ms": r.upstream_ms,
        "attempts": None if r.attempts is None else [dict(a) for a in r.attempts],
        "tags": list(r.tags),
        # A stream the client left after it began (usage stage): the status is the one sent.
        "abandoned": r.metadata.get("abandoned") is True,
        "metadata": dict(r.metadata),
    }
    if entry.body is not None:
        shown.update(request=entry.body.request, response=entry.body.response,
                     request_headers=None if entry.body.request_headers is None
                     else dict(entry.body.request_headers),
                     truncated=entry.body.truncated)
    return shown


def _range(params: dict[str, str], lookup: bool) -> tuple[datetime | None, datetime | None]:
    since, until = rfc3339("from", params.get("from")), rfc3339("to", params.get("to"))
    if not lookup:
        until = until or datetime.now(UTC)
        since = since or until - DEFAULT_RANGE
    if since is not None and until is not None and since > until:
        raise InvalidRequest("from: after to", param="from", code="invalid_time_range")
    return since, until


def _between(low_name: str, low: Any, high: Any) -> None:
    if low is not None and high is not None and low > high:
        raise InvalidRequest(f"{low_name}: above its maximum", param=low_name, code="invalid_range")


@router.get("", summary="Search the request log (newest first, cursor pages)")
async def search(request: Request, access: Annotated[Access, Depends(allow("log", "read"))]) -> Any:
    params = query_params(request, PARAMETERS, nonblank=True)
    if len(params.get("request_id", "")) > MAX_REQUEST_ID:
        raise InvalidRequest(f"request_id: longer than {MAX_REQUEST_ID} characters", param="request_id",
                             code="invalid_value")
    lookup = "request_id" in params
    since, until = _range(params, lookup)
    status, status_class = _status(params.get("status"))
    min_ms = whole_number("min_latency_ms", params.get("min_latency_ms"), 0, MAX_INT)
    max_ms = whole_number("max_latency_ms", params.get("max_latency_ms"), 0, MAX_INT)
    _between("min_latency_ms", min_ms, max_ms)
    min_usd, max_usd = _usd("min_cost_usd", params.get("min_cost_usd")), _usd("max_cost_usd",
                                                                             params.get("max_cost_usd"))
    _between("min_cost_usd", min_usd, max_usd)
    limit = whole_number("limit", params.get("limit"), 1, MAX_LIMIT) or DEFAULT_LIMIT
    before = None if "cursor" not in params else decode_cursor(params["cursor"])
    bodies = _bool("include_bodies", params.get("include_bodies")) or lookup
    tenant, scoped = _scope(access, params)
    text = params.get("q")
    query = LogQuery(
        since=since, until=until, request_id=params.get("request_id"), key_id=params.get("key"),
        user_id=params.get("user"), model=params.get("model"), deployment=params.get("deployment"),
        provider=params.get("provider"), status=status, status_class=status_class,
        error_code=params.get("error_code"), min_latency_ms=min_ms, max_latency_ms=max_ms,
        min_cost_usd=min_usd, max_cost_usd=max_usd, abandoned=_flag("abandoned", params.get("abandoned")),
        text=None if text is None else text.strip(),
        before=before, limit=limit, include_bodies=bodies, **scoped,
    )
    store = request.app.state.services.stores().log_search
    page = await store.search(tenant, query)
    data = [public(entry) for entry in page.entries]
    last = page.entries[-1].record if page.entries and page.has_more else None
    return {
        "object": "list",
        "data": data,
        "has_more": page.has_more,
        "next_cursor": None if last is None else encode_cursor(last.created_at, last.request_id,
                                                               last.entry_id),
        "from": None if since is None else _iso(since),
        "to": None if until is None else _iso(until),
    }
