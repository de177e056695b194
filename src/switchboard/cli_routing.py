"""``switchboard routing groups|weight``: model groups and run-time weights through the admin
API of a running gateway (``/admin/v1/routing``, docs/routing.md), as tables or, with
``--json``, JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote

import typer

from switchboard.admin_client import AdminClient
from switchboard.cli_output import line, out, run_admin, table

Url = Annotated[str, typer.Option("--url", envvar="SWITCHBOARD_URL", help="The gateway's base URL.")]
Key = Annotated[str, typer.Option("--key", envvar="SWITCHBOARD_KEY", help="An admin key.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DEFAULT_URL = "http://127.0.0.1:4000"
PATH = "/admin/v1/routing/groups"

routing_app = typer.Typer(no_args_is_help=True, help="Model groups and their deployments: list them with "
                          "their state, change a deployment's weight or a split's shares.")


def _ms(value: Any) -> str | None:
    return None if value is None else f"{value:g} ms"


def _health(d: dict[str, Any]) -> str:
    state = d["state"]
    return state["status"] + (f" until {state['until']}" if state.get("until") else "")


COLUMNS: dict[str, Callable[[dict[str, Any], dict[str, Any]], Any]] = {
    "group": lambda g, d: g["name"],
    "strategy": lambda g, d: g["strategy"],
    "deployment": lambda g, d: d["name"],
    "provider": lambda g, d: d["provider"],
    "model": lambda g, d: d["model"],
    "region": lambda g, d: d["region"],
    "weight": lambda g, d: f"{d['weight']}" + ("*" if d["weight_overridden"] else ""),
    "health": lambda g, d: _health(d),
    "in flight": lambda g, d: d["state"]["in_flight"],
    "latency": lambda g, d: _ms(d["state"]["latency_ms"]),
    "first byte": lambda g, d: _ms(d["state"]["first_byte_ms"]),
    "errors": lambda g, d: len(d["state"]["recent_errors"]),
}


@routing_app.command("groups")
def groups(
    name: Annotated[str | None, typer.Argument(help="Only this group (or alias).")] = None,
    url: Url = DEFAULT_URL,
    key: Key = "",
    as_json: AsJson = False,
) -> None:
    """Every model group (or one) with each deployment's weight and state on that instance
    (* marks a weight set at run time)."""
    client = AdminClient(url, key)
    if name is None:
        data = run_admin(lambda: client.call("GET", PATH))["data"]
    else:
        data = [run_admin(lambda: client.call("GET", f"{PATH}/{quote(name, safe='/')}"))]
    if as_json:
        out.print_json(json.dumps(data))
        return
    rows = ([column(g, d) for column in COLUMNS.values()] for g in data for d in g["deployments"])
    out.print(table(COLUMNS, rows))


@routing_app.command("weight")
def weight(
    group: Annotated[str, typer.Argument(help="The model group (or an alias).")],
    deployment: Annotated[str, typer.Argument(help="The deployment's name in the group.")],
    value: Annotated[str, typer.Argument(help="The new weight (0 to 1000000), or 'reset' for the "
                                               "configured one.")],
    url: Url = DEFAULT_URL,
    key: Key = "",
    as_json: AsJson = False,
) -> None:
    """Set a deployment's weight at run time, on every instance."""
    if value == "reset":
        new: int | None = None
    else:
        try:
            new = int(value)
        except ValueError:
            raise typer.BadParameter("a whole number or 'reset'", param_hint="VALUE") from None
    path = f"{PATH}/{quote(group, safe='/')}/deployments/{quote(deployment, safe='/')}"
    d = run_admin(lambda: AdminClient(url, key).call("PATCH", path, body={"weight": new}))
    if as_json:
        out.print_json(json.dumps(d))
        return
    shown = f"{d['weight']}" + ("" if d["weight_overridden"] else " (configured)")
    out.print(line(f"{group} / {d['name']}: weight {shown}"))


SPLITS = "/admin/v1/routing/splits"


@routing_app.command("splits")
def splits(url: Url = DEFAULT_URL, key: Key = "", as_json: AsJson = False) -> None:
    """Every canary or A/B split with each arm's current share (* marks shares set at run time)."""
    data = run_admin(lambda: AdminClient(url, key).call("GET", SPLITS))["data"]
    if as_json:
        out.print_json(json.dumps(data))
        return
    out.print(table(("split", "model", "sticky", "arm", "kind", "percent", "configured"), (
        (s["name"], s["model"], s["sticky"], arm["name"], arm["kind"],
         f"{arm['percent']:g}" + ("*" if s["overridden"] else ""), f"{arm['configured_percent']:g}")
        for s in data for arm in s["arms"])))


@routing_app.command("split")
def split(
    name: Annotated[str, typer.Argument(help="The split's name (router.splits).")],
    shares: Annotated[list[str], typer.Argument(help="ARM=PERCENT for every arm (adding up to 100), "
                                                     "or 'reset' for the configured shares.")],
    url: Url = DEFAULT_URL,
    key: Key = "",
    as_json: AsJson = False,
) -> None:
    """Set a split's shares at run time, on every instance."""
    path = f"{SPLITS}/{quote(name, safe='')}"
    client = AdminClient(url, key)
    if shares == ["reset"]:
        s = run_admin(lambda: client.call("DELETE", path))
    else:
        percents: dict[str, float] = {}
        for share in shares:
            arm, sep, value = share.rpartition("=")
            if arm in percents:  # a dict keeps the last: the gateway, which refuses it, would not know
                raise typer.BadParameter(f"{share!r}: the arm {arm!r} is named twice", param_hint="SHARES")
            try:
                percents[arm] = float(value)
            except ValueError:
                sep = ""
            if not sep or not arm:
                raise typer.BadParameter(f"{share!r}: expected ARM=PERCENT", param_hint="SHARES")
        s = run_admin(lambda: client.call("PUT", path, body={"percents": percents}))
    if as_json:
        out.print_json(json.dumps(s))
        return
    shown = ", ".join(f"{a['name']} {a['percent']:g} %" for a in s["arms"])
    out.print(line(f"{s['name']}: {shown}" + ("" if s["overridden"] else " (configured)")))
