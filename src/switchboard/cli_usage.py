"""``switchboard usage``: the usage report of a running gateway (``GET /admin/v1/usage``) as a
table, JSON or CSV."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from switchboard.admin_client import AdminClient
from switchboard.cli_output import out, run_admin, table

Url = Annotated[str, typer.Option("--url", envvar="SWITCHBOARD_URL", help="The gateway's base URL.")]
Key = Annotated[str, typer.Option("--key", envvar="SWITCHBOARD_KEY", help="An admin key (the master key).")]
DEFAULT_URL = "http://127.0.0.1:4000"


def usage(
    group_by: Annotated[str, typer.Option(
        "--group-by", help="Comma-separated: tenant, team, key, user, model, provider, deployment, day, "
                           "hour, api, api_version."
    )] = "model",
    since: Annotated[str | None, typer.Option(help="RFC 3339 time with a zone (default: 24 h ago).")] = None,
    until: Annotated[str | None, typer.Option(help="RFC 3339 time with a zone (default: now).")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    key_id: Annotated[str | None, typer.Option("--key-id", help="Only this key.")] = None,
    team: Annotated[str | None, typer.Option(help="Only this team.")] = None,
    user: Annotated[str | None, typer.Option(help="Only this user.")] = None,
    tenant: Annotated[
        str | None, typer.Option(help="One tenant (platform admin; default every tenant).")
    ] = None,
    api: Annotated[str | None, typer.Option(help="Only the calls of this prompt API.")] = None,
    api_version: Annotated[str | None, typer.Option(
        "--api-version", help="Only the calls of this version of it.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")] = False,
    url: Url = DEFAULT_URL,
    key: Key = "",
) -> None:
    """Requests, tokens, cost and errors, grouped (by model unless told)."""
    if as_json and as_csv:
        raise typer.BadParameter("--json or --csv, not both", param_hint="--csv")
    query = {name: value for name, value in (
        ("group_by", group_by), ("since", since), ("until", until), ("model", model), ("key", key_id),
        ("team", team), ("user", user), ("tenant", tenant), ("api", api), ("api_version", api_version))
        if value}
    report: dict[str, Any] = run_admin(
        lambda: AdminClient(url, key).call("GET", "/admin/v1/usage", query=query))
    # Here, not at the top: the admin app's modules take a second to import, and every other
    # command would pay for it.
    from switchboard.http.admin.usage import METRICS, to_csv

    columns = (*report["group_by"], *METRICS)
    if as_json:
        out.print_json(json.dumps(report))
    elif as_csv:
        sys.stdout.write(to_csv(columns, report["data"]))
    else:
        out.print(table(columns, ([row.get(c) for c in columns] for row in report["data"]),
                        title=f"usage {report['since']} .. {report['until']}"))
