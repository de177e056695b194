"""``GET /admin/v1/usage``: the usage ledger grouped and summed, as JSON or CSV.

Grouped by any of tenant, team, key, user, model, provider, the UTC day or hour, and the prompt
API and its version (``api``, ``api_version``), over a time range (``since`` inclusive, ``until``
exclusive; by default the 24 hours up to now), filtered by model, key, team, user, api and
api_version. The database does the grouping; a report is bounded (``MAX_GROUPS``
rows, else 400 ``too_many_groups``). Who sees what follows the ``usage`` row of the permission
table: the platform admin every tenant (or one, ``?tenant=``), a tenant admin its tenant, a team
admin and a viewer their team, a developer its own user's and keys' calls.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from switchboard.errors import InvalidRequest
from switchboard.http.admin.authz import Access, allow
from switchboard.http.admin.query import query_params, rfc3339, whole_number, within_reach
from switchboard.spend.cost import format_usd
from switchboard.stores.protocols import REPORT_FIELDS, TooManyGroups, UsageReportQuery, UsageReportRow

router = APIRouter(prefix="/admin/v1/usage", tags=["usage"])

MAX_GROUPS = 10_000
DEFAULT_RANGE = timedelta(hours=24)
PARAMETERS = frozenset({"group_by", "since", "until", "format", "model", "key", "team", "user", "tenant",
                        "limit", "api", "api_version"})
METRICS = ("requests", "errors", "prompt_tokens", "completion_tokens", "cache_read_tokens",
           "cache_write_tokens", "reasoning_tokens", "image_input_tokens", "audio_input_tokens",
           "image_output_tokens", "audio_output_tokens", "cost_usd", "unpriced",
           "latency_ms_avg", "ttft_ms_avg")
# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")



def _group_by(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    names = tuple(part.strip() for part in value.split(","))
    for name in names:
        if name not in REPORT_FIELDS:
            raise InvalidRequest(
                f"group_by: unknown field '{name[:64]}' (one of {', '.join(REPORT_FIELDS)})",
                param="group_by", code="invalid_group_by",
            )
    if len(set(names)) != len(names):
        raise InvalidRequest("group_by: a field named twice", param="group_by", code="invalid_group_by")
    return names



def _limit(value: str | None) -> int:
    number = whole_number("limit", value, 1, MAX_GROUPS)
    return MAX_GROUPS if number is None else number


def _scope(access: Access, params: dict[str, str]) -> tuple[str | None, dict[str, Any]]:
    """The tenant to read (None: every tenant) and the filters, narrowed to the caller's reach."""
    filters: dict[str, Any] = {"model": params.get("model"), "key_id": params.get("key"),
                               "team_id": params.get("team"), "user_id": params.get("user")}
    tenant = within_reach(access, params.get("tenant"), filters)
    # Prompt APIs (docs/prompt-apis.md): the calls of one API, of one of its versions.
    filters["api"] = params.get("api")
    version = params.get("api_version")
    if version is not None and not (version.isascii() and version.isdigit() and len(version) <= 9):
        raise InvalidRequest("api_version: expected a whole number", param="api_version",
                             code="invalid_value")
    filters["api_version"] = int(version) if version is not None else None
    return tenant, filters


def _public(row: UsageReportRow) -> dict[str, Any]:
    return {**row.group, "requests": row.requests, "errors": row.errors,
            "prompt_tokens": row.prompt_tokens, "completion_tokens": row.completion_tokens,
            "cache_read_tokens": row.cache_read_tokens, "cache_write_tokens": row.cache_write_tokens,
            "reasoning_tokens": row.reasoning_tokens, "image_input_tokens": row.image_input_tokens,
            "audio_input_tokens": row.audio_input_tokens, "image_output_tokens": row.image_output_tokens,
            "audio_output_tokens": row.audio_output_tokens, "cost_usd": format_usd(row.cost_usd),
            "unpriced": row.unpriced, "latency_ms_avg": row.latency_ms_avg, "ttft_ms_avg": row.ttft_ms_avg}


def neutralise(value: Any) -> str:
    """A CSV cell a spreadsheet shows as text: one that could start a formula gets a leading '."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def to_csv(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([neutralise(row.get(column)) for column in columns])
    return buffer.getvalue()


@router.get("", summary="Usage grouped and summed over a time range (JSON or CSV)")
async def report(request: Request, access: Annotated[Access, Depends(allow("usage", "read"))]) -> Any:
    params = query_params(request, PARAMETERS, nonblank=True)  # a blank filter: a 400, as on logs
    group_by = _group_by(params.get("group_by"))
    output = params.get("format", "json")
    if output not in ("json", "csv"):
        raise InvalidRequest("format: expected json or csv", param="format", code="invalid_format")
    until = rfc3339("until", params.get("until")) or datetime.now(UTC)
    since = rfc3339("since", params.get("since")) or until - DEFAULT_RANGE
    if since > until:
        raise InvalidRequest("since: after until", param="since", code="invalid_time_range")
    limit = _limit(params.get("limit"))
    tenant, filters = _scope(access, params)
    query = UsageReportQuery(since=since, until=until, group_by=group_by, max_groups=MAX_GROUPS, **filters)
    try:
        rows = await request.app.state.services.stores().ledger.report(tenant, query)
    except TooManyGroups:
        raise InvalidRequest(
            f"more than {MAX_GROUPS} groups: narrow the time range, or group by fewer fields",
            param="group_by", code="too_many_groups",
        ) from None
    data = [_public(row) for row in rows[:limit]]
    if output == "csv":
        name = f"usage-{since:%Y%m%dT%H%M%SZ}-{until:%Y%m%dT%H%M%SZ}.csv"
        return Response(to_csv(group_by + METRICS, data), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
    return {"object": "list", "group_by": list(group_by), "since": since.isoformat(),
            "until": until.isoformat(), "tenant": tenant, "data": data,
            "has_more": len(rows) > limit}
