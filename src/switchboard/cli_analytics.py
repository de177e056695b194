"""``switchboard analytics``: ``show`` prints a running gateway's analytics
(``GET /admin/v1/analytics``) as a table or JSON; ``rebuild`` recounts the analytics rollups of a
time range from the usage ledger, in the database itself (records stored before the rollups
existed, or after a repair). Idempotent: each UTC hour of the range is deleted and recounted in
one transaction."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from switchboard.admin_client import AdminClient
from switchboard.cli_output import err, line, out, printable, run_admin, table
from switchboard.config.schema import Settings
from switchboard.settings.loader import ConfigError, load

analytics_app = typer.Typer(no_args_is_help=True, help="Work with the analytics rollups.")

Url = Annotated[str, typer.Option("--url", envvar="SWITCHBOARD_URL", help="The gateway's base URL.")]
Key = Annotated[str, typer.Option("--key", envvar="SWITCHBOARD_KEY", help="An admin key (the master key).")]
Opt = Annotated[str | None, typer.Option()]
DEFAULT_URL = "http://127.0.0.1:4000"
COLUMNS = ("requests", "errors", "error_rate", "total_tokens", "cost_usd", "latency p50", "p95", "p99",
           "ttft p50")


def _cells(metrics: dict[str, Any]) -> list[str]:
    latency, ttft = metrics["latency_ms"], metrics["ttft_ms"]
    values = (metrics["requests"], metrics["errors"], metrics["error_rate"], metrics["total_tokens"],
              metrics["cost_usd"], latency["p50"], latency["p95"], latency["p99"], ttft["p50"])
    return ["-" if v is None else str(v) for v in values]


@analytics_app.command("show")
def show(
    since: Annotated[str | None, typer.Option(
        "--from", help="RFC 3339 time with a zone (default: 24 h ago).")] = None,
    until: Annotated[str | None, typer.Option(
        "--to", help="RFC 3339 time with a zone (default: now).")] = None,
    interval: Annotated[str, typer.Option(help="hour or day (for --json's points).")] = "hour",
    group_by: Annotated[str | None, typer.Option(
        "--group-by", help="model, deployment, provider, team, key, user, tag or tenant.")] = None,
    model: Opt = None,
    deployment: Opt = None,
    provider: Opt = None,
    team: Opt = None,
    key_id: Annotated[str | None, typer.Option("--key-id", help="Only this key.")] = None,
    user: Opt = None,
    tag: Opt = None,
    tenant: Annotated[str | None, typer.Option(
        help="One tenant (platform admin; default every tenant).")] = None,
    tz: Annotated[str | None, typer.Option(help="The time zone of --interval day (default UTC).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole answer as JSON.")] = False,
    url: Url = DEFAULT_URL,
    key: Key = "",
) -> None:
    """Requests, errors, tokens, cost and latency percentiles over a range, per group."""
    query = {name: value for name, value in (
        ("from", since), ("to", until), ("interval", interval), ("group_by", group_by), ("model", model),
        ("deployment", deployment), ("provider", provider), ("team", team), ("key", key_id),
        ("user", user), ("tag", tag), ("tenant", tenant), ("tz", tz)) if value}
    answer: dict[str, Any] = run_admin(
        lambda: AdminClient(url, key).call("GET", "/admin/v1/analytics", query=query))
    if as_json:
        out.print_json(json.dumps(answer))
        return
    print_table(answer)


def print_table(answer: dict[str, Any]) -> None:
    """One row per series and the totals; every value a plain Text (a group's name, a user id
    from a JWT, may hold brackets that Rich would read as markup)."""
    rows = [[Text(printable("-" if series["group"] is None else str(series["group"]))),
             *_cells(series["totals"])] for series in answer["series"]]
    if answer["group_by"] is not None:
        rows.append(["total", *_cells(answer["totals"])])
    out.print(table((Text(answer["group_by"] or ""), *COLUMNS), rows,
                    title=f"analytics {answer['from']} .. {answer['to']}"))


# The last hour a rebuild can reach: a later time is rounded up to an hour past year 9999.
LAST_HOUR = datetime(9999, 12, 31, 23, tzinfo=UTC)


def _time(name: str, value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise typer.BadParameter("expected an RFC 3339 time with a zone, e.g. 2026-06-01T00:00:00Z",
                                 param_hint=name)
    try:  # an offset can carry a time at the calendar's ends past them
        utc = parsed.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or utc > LAST_HOUR:
        raise typer.BadParameter(
            "out of range: in UTC it must fall within the year 1 to 9999-12-31T23:00:00Z", param_hint=name)
    return utc


@analytics_app.command("rebuild")
def rebuild(
    since: Annotated[str, typer.Option(
        "--from", help="RFC 3339 time with a zone; rounded down to the hour.")],
    until: Annotated[str | None, typer.Option(
        "--to", help="RFC 3339 time with a zone; rounded up to the hour (default: now).")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant (default: every tenant).")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")] = None,
) -> None:
    """Recount the rollups of [--from, --to) from the usage ledger (only ranges whose records the
    ledger still holds: a rebuilt hour counts what is there). Without --config: the SQLite file
    in the data dir."""
    start = _time("--from", since)
    end = _time("--to", until) if until is not None else datetime.now(UTC)
    if start > end:
        raise typer.BadParameter("after --to", param_hint="--from")
    settings: Settings | None = None
    if config is not None:
        try:
            settings = load(config)
        except ConfigError as exc:
            err.print(line(("invalid configuration", "bold red"), f" ({len(exc.problems)} problem(s)):"))
            for problem in exc.problems:
                err.print(line(f"  {exc.source}: {problem}"))
            raise typer.Exit(2) from None

    from switchboard.stores import StoreError
    from switchboard.stores.factory import database_url, open_at

    async def run() -> int:
        stores = await open_at(database_url(settings), None)
        try:
            assert stores.analytics is not None
            return await stores.analytics.rebuild(start, end, tenant)
        finally:
            await stores.close()

    try:
        counted = asyncio.run(run())
    except StoreError as exc:
        err.print(line(("cannot open the stores:", "bold red"), f" {exc}"))
        raise typer.Exit(1) from None
    # The year written with four digits: strftime's %Y does not pad years before 1000.
    out.print(line(f"rebuilt the analytics rollups from {start.year:04d}-{start:%m-%dT%H}:00:00Z: "
                   f"{counted} record(s) counted"))
