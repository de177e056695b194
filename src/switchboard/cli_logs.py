"""``switchboard logs``: search and tail the request log of a running gateway
(``GET /admin/v1/logs``); ``switchboard logs show <request_id>`` prints one record with its
bodies.

``--follow`` polls: every ``--interval`` seconds it asks for the records from a little before the
newest one seen (``FOLLOW_LAG``: a record is stored when its request ends, under the time it
started) and prints those it has not printed yet, oldest first. Ctrl-C ends it. A poll that fails
for a while (no answer, or 408, 429, 5xx: a gateway restarting or waiting on its database) is
a warning on standard error and is tried again, the wait doubling up to ``FOLLOW_BACKOFF_MAX``;
a refusal (401, 403, 404, a bad filter) ends the follow with exit code 1, as does any error of
the first page (a wrong --url or key shows at once).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from switchboard.admin_client import AdminClient, AdminError
from switchboard.cli_output import err, error, line, out, printable, table

Url = Annotated[str, typer.Option("--url", envvar="SWITCHBOARD_URL", help="The gateway's base URL.")]
Key = Annotated[str, typer.Option("--key", envvar="SWITCHBOARD_KEY", help="An admin key (the master key).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DEFAULT_URL = "http://127.0.0.1:4000"
PATH = "/admin/v1/logs"
FOLLOW_LAG = timedelta(minutes=2)  # how far back each poll looks for records stored late
FOLLOW_PAGES = 5  # pages of up to 1000 records read per poll at most
SEEN = 100_000  # records remembered while following
FOLLOW_BACKOFF_MAX = 30.0  # seconds: the longest wait between polls that keep failing (or --interval)
COLUMNS = ("created_at", "request_id", "tenant", "key", "model", "deployment", "status", "error_code",
           "latency_ms", "prompt_tokens", "completion_tokens", "cost_usd")

logs_app = typer.Typer(help="Search and tail the request log.", no_args_is_help=False)


def _fail(exc: AdminError) -> typer.Exit:
    error(exc)
    return typer.Exit(1)


def _table(records: list[dict[str, Any]], title: str | None = None) -> Table:
    rows = ([Text(printable(record.get(c))) for c in COLUMNS] for record in records)
    return table(COLUMNS, rows, title=title)


@logs_app.callback(invoke_without_command=True)
def logs(
    ctx: typer.Context,
    request_id: Annotated[str | None, typer.Option("--request-id", help="One request.")] = None,
    since: Annotated[str | None, typer.Option(
        "--from", help="RFC 3339 time with a zone (default: 24 h ago).")] = None,
    until: Annotated[str | None, typer.Option(
        "--to", help="RFC 3339 time with a zone (default: now).")] = None,
    tenant: Annotated[str | None, typer.Option(help="One tenant (platform admin).")] = None,
    team: Annotated[str | None, typer.Option(help="Only this team.")] = None,
    key_id: Annotated[str | None, typer.Option("--key-id", help="Only this key.")] = None,
    user: Annotated[str | None, typer.Option(help="Only this user.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model (as requested).")] = None,
    deployment: Annotated[str | None, typer.Option(help="Only this deployment.")] = None,
    provider: Annotated[str | None, typer.Option(help="Only this provider.")] = None,
    status: Annotated[str | None, typer.Option(help="A status (429) or a class (5xx).")] = None,
    error_code: Annotated[str | None, typer.Option("--error-code", help="Only this error code.")] = None,
    min_latency_ms: Annotated[int | None, typer.Option("--min-latency-ms")] = None,
    max_latency_ms: Annotated[int | None, typer.Option("--max-latency-ms")] = None,
    min_cost_usd: Annotated[str | None, typer.Option("--min-cost-usd")] = None,
    max_cost_usd: Annotated[str | None, typer.Option("--max-cost-usd")] = None,
    abandoned: Annotated[bool | None, typer.Option(
        "--abandoned/--not-abandoned", help="Only streams the client left (or only the others).")] = None,
    q: Annotated[str | None, typer.Option("--q", "-q", help="Words in the stored bodies.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Records per page.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="The next_cursor of a previous page.")] = None,
    bodies: Annotated[bool, typer.Option(
        "--bodies", help="Include the stored bodies (with --json).")] = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new records.")] = False,
    interval: Annotated[float, typer.Option(min=0.2, max=60, help="Seconds between polls (--follow).")] = 2.0,
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
    key: Key = "",
) -> None:
    """The newest records matching the filters (a table, or JSON); --follow tails new ones."""
    if ctx.invoked_subcommand is not None:
        return
    query: dict[str, Any] = {name: value for name, value in (
        ("request_id", request_id), ("from", since), ("to", until), ("tenant", tenant), ("team", team),
        ("key", key_id), ("user", user), ("model", model), ("deployment", deployment),
        ("provider", provider), ("status", status), ("error_code", error_code),
        ("min_latency_ms", min_latency_ms), ("max_latency_ms", max_latency_ms),
        ("min_cost_usd", min_cost_usd), ("max_cost_usd", max_cost_usd), ("q", q),
        ("abandoned", None if abandoned is None else str(abandoned).lower()),
        ("include_bodies", "true" if bodies else None)) if value is not None}
    client = AdminClient(url, key)
    if follow:
        if cursor is not None or until is not None:
            raise typer.BadParameter("--follow reads up to now: no --cursor or --to", param_hint="--follow")
        _follow(client, query, limit, interval, as_json)
        return
    try:
        page: dict[str, Any] = client.call("GET", PATH, query={
            **query, "limit": limit, **({"cursor": cursor} if cursor else {})})
    except AdminError as exc:
        raise _fail(exc) from None
    if as_json:
        out.print_json(json.dumps(page))
        return
    out.print(_table(page["data"], title=f"request log {page.get('from') or ''} .. {page.get('to') or ''}"))
    if page.get("has_more"):
        out.print(line(f"more: --cursor {page['next_cursor']}"))


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _key(record: dict[str, Any]) -> tuple[str, str]:
    return record.get("entry_id") or record["request_id"], record["created_at"]


def _follow(client: AdminClient, query: dict[str, Any], limit: int, interval: float, as_json: bool) -> None:
    # A record is its entry id and time (the ledger's key): callers who send the same
    # X-Request-Id (a retrying proxy) have a record each, and each is printed, even two that
    # started in the same microsecond (a server from before entry ids: its request id stands in).
    seen: OrderedDict[tuple[str, str], None] = OrderedDict()
    newest: datetime | None = None
    header = True

    def show(records: list[dict[str, Any]]) -> None:
        nonlocal newest, header
        fresh = [r for r in reversed(records) if _key(r) not in seen]
        fresh.sort(key=lambda r: (r["created_at"], r["request_id"], r.get("entry_id") or ""))
        for record in fresh:
            seen[_key(record)] = None
            if len(seen) > SEEN:
                seen.popitem(last=False)
            at = _time(record["created_at"])
            newest = at if newest is None else max(newest, at)
            if as_json:
                out.print(Text(json.dumps(record, separators=(",", ":"))), soft_wrap=True)
        if fresh and not as_json:
            table = _table(fresh)
            table.show_header, header = header, False
            out.print(table)

    try:
        first = client.call("GET", PATH, query={**query, "limit": limit})
        show(first["data"])
        start = _time(first["to"]) if first.get("to") else datetime.now(UTC)
        failures = 0  # polls failed in a row
        while True:
            wait = _backoff(interval, failures)
            time.sleep(wait)
            since = (newest if newest is not None and newest > start else start) - FOLLOW_LAG
            try:
                found, cut = _poll(client, {**query, "from": since.isoformat(), "limit": 1000})
            except AdminError as exc:
                if not exc.transient:
                    raise
                failures += 1
                err.print(line(("warning: ", "bold yellow"), f"{exc}; trying again in "
                               f"{_backoff(interval, failures):g} s"))
                continue
            if failures:
                err.print(line(f"following again after {failures} failed "
                               f"{'poll' if failures == 1 else 'polls'}"))
                failures = 0
            if cut:  # newest first: what is left unread is the oldest of the time polled
                err.print(line(("warning: ", "bold yellow"), f"more records than one poll reads "
                               f"({FOLLOW_PAGES * 1000}) since {since.isoformat()}: the oldest were "
                               f"skipped; search them with --from {since.isoformat()}"))
            show(found)
    except AdminError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def _poll(client: AdminClient, params: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """The records from ``params["from"]`` on, up to FOLLOW_PAGES pages (all or nothing: a page
    that fails fails the poll, and the next one asks again from the same time), and whether
    more were left unread."""
    found: list[dict[str, Any]] = []
    for _ in range(FOLLOW_PAGES):
        page = client.call("GET", PATH, query=params)
        found += page["data"]
        if not page["has_more"]:
            return found, False
        params = {**params, "cursor": page["next_cursor"]}
    return found, True


def _backoff(interval: float, failures: int) -> float:
    """Seconds before the next poll: --interval, doubled for each poll failed in a row, up to
    FOLLOW_BACKOFF_MAX (or --interval when that is longer)."""
    return min(interval * 2 ** min(failures, 16), max(interval, FOLLOW_BACKOFF_MAX))


@logs_app.command("show")
def show(
    request_id: Annotated[str, typer.Argument(help="The request id (the x-request-id header).")],
    tenant: Annotated[str | None, typer.Option(help="The tenant (platform admin: not needed).")] = None,
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
    key: Key = "",
) -> None:
    """One record, every field, with its stored request and response bodies (each record, when
    callers sent the same request id)."""
    query = {"request_id": request_id, **({"tenant": tenant} if tenant else {})}
    try:
        page: dict[str, Any] = AdminClient(url, key).call("GET", PATH, query=query)
    except AdminError as exc:
        raise _fail(exc) from None
    records = page["data"]
    if not records:
        err.print(line(f"no request '{request_id}' in the log (or not within your reach)"))
        raise typer.Exit(1)
    if as_json:
        out.print_json(json.dumps(records[0]))
    else:
        # Callers who send the same X-Request-Id (a retrying proxy) have a record each: all shown.
        for record in records:
            _show(record)
    if len(records) > 1:
        note = f"{len(records)} records have the request id '{request_id}' (callers sent the same id)"
        if as_json:
            note += f"; the newest shown, all with: switchboard logs --request-id {request_id} --json"
        err.print(line(note))


def _show(record: dict[str, Any]) -> None:
    fields = ((name, Text(printable(value))) for name, value in record.items()
              if name not in ("request", "response", "request_headers", "object"))
    out.print(table(("field", "value"), fields, show_header=False))
    for name in ("request_headers", "request", "response"):
        if record.get(name) is None:
            continue
        out.print(Text(name, style="bold"))
        out.print(line(_pretty(record[name])))
    if "request" not in record:
        out.print(Text("(no body stored for this request)"))


def _pretty(value: Any) -> str:
    """A body as readable text: JSON indented, anything else as stored."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, indent=2, ensure_ascii=False)
