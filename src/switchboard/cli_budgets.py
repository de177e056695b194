"""``switchboard budgets list|set|show|delete``: budgets managed through the admin API of a
running gateway (``/admin/v1/budgets``, docs/budgets.md), as tables or, with ``--json``, JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote

import typer

from switchboard.admin_client import AdminClient
from switchboard.cli_output import line, out, print_records, run_admin

Url = Annotated[str, typer.Option("--url", envvar="SWITCHBOARD_URL", help="The gateway's base URL.")]
Key = Annotated[str, typer.Option("--key", envvar="SWITCHBOARD_KEY", help="An admin key.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Tenant = Annotated[str | None, typer.Option(help="Another tenant (platform admin only).")]
DEFAULT_URL = "http://127.0.0.1:4000"
PATH = "/admin/v1/budgets"

budgets_app = typer.Typer(no_args_is_help=True, help="Budgets of tenants, teams, users and keys: list, set, "
                          "show, delete.")


def _downgrade(budget: dict[str, Any]) -> Any:
    d = budget.get("downgrade")
    return None if d is None else f"{d['model']} at {d['at_percent']}%"


def _status(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda budget: (budget.get("status") or {}).get(name)


COLUMNS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "id": lambda b: b["id"],
    "tenant": lambda b: b["tenant"],
    "scope": lambda b: b["scope"],
    "subject": lambda b: b["subject"],
    "max": lambda b: f"{b['max_amount']} {b['unit']}",
    "period": lambda b: b["period"],
    "timezone": lambda b: b.get("timezone"),
    "thresholds": lambda b: None if b.get("thresholds") is None else ",".join(map(str, b["thresholds"])),
    "downgrade": _downgrade,
    "spent": _status("spent"),
    "used %": _status("percent_used"),
}


def _one(budget_id: str) -> str:
    return f"{PATH}/{quote(budget_id, safe='')}"


@budgets_app.command("list")
def list_budgets(
    tenant: Tenant = None,
    scope: Annotated[str | None, typer.Option(help="Only this scope: tenant, team, user or key.")] = None,
    url: Url = DEFAULT_URL,
    key: Key = "",
    as_json: AsJson = False,
) -> None:
    """The budgets of the caller's tenant (or of --tenant), each with its current period."""
    query = {name: value for name, value in (("tenant", tenant), ("scope", scope)) if value is not None}
    budgets = run_admin(lambda: AdminClient(url, key).call("GET", PATH, query=query))["data"]
    print_records(budgets, COLUMNS, as_json)


@budgets_app.command("set")
def set_budget(
    scope: Annotated[str, typer.Option(help="tenant, team, user or key.")],
    max_amount: Annotated[str, typer.Option("--max", help="USD (e.g. 25.00), or tokens with --unit tokens.")],
    subject: Annotated[str | None, typer.Option(help="The team, user or key id (tenant: itself).")] = None,
    unit: Annotated[str | None, typer.Option(help="usd (default) or tokens.")] = None,
    period: Annotated[str | None, typer.Option(help="daily, weekly, monthly (default) or total.")] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA time zone of resets (default: config).")] = None,
    threshold: Annotated[list[int] | None, typer.Option(
        "--threshold", help="A percent that fires the webhook (repeat; default: config).")] = None,
    downgrade_model: Annotated[str | None, typer.Option(help="Past --downgrade-at %: this model.")] = None,
    downgrade_at: Annotated[int | None, typer.Option(help="The percent where the downgrade starts.")] = None,
    tenant: Tenant = None,
    url: Url = DEFAULT_URL,
    key: Key = "",
    as_json: AsJson = False,
) -> None:
    """Set a budget; one already set for the same scope, subject, unit and period is replaced."""
    if (downgrade_model is None) != (downgrade_at is None):
        raise typer.BadParameter("give --downgrade-model and --downgrade-at together",
                                 param_hint="--downgrade-model")
    # The amount goes as the string given: the gateway reads it exactly (no float rounding).
    body: dict[str, Any] = {"scope": scope, "max_amount": max_amount}
    for name, value in (("subject", subject), ("unit", unit), ("period", period), ("timezone", timezone),
                        ("tenant", tenant)):
        if value is not None:
            body[name] = value
    if threshold:
        body["thresholds"] = threshold
    if downgrade_model is not None:
        body["downgrade"] = {"model": downgrade_model, "at_percent": downgrade_at}
    print_records([run_admin(lambda: AdminClient(url, key).call("PUT", PATH, body))], COLUMNS, as_json)


@budgets_app.command("show")
def show(budget_id: str, url: Url = DEFAULT_URL, key: Key = "", as_json: AsJson = False) -> None:
    """One budget and its current period."""
    print_records([run_admin(lambda: AdminClient(url, key).call("GET", _one(budget_id)))], COLUMNS, as_json)


@budgets_app.command("delete")
def delete(budget_id: str, url: Url = DEFAULT_URL, key: Key = "", as_json: AsJson = False) -> None:
    """Remove a budget."""
    result = run_admin(lambda: AdminClient(url, key).call("DELETE", _one(budget_id)))
    if as_json:
        out.print_json(json.dumps(result))
    else:
        out.print(line(f"deleted {budget_id}"))
