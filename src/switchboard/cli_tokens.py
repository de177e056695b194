"""``switchboard tokens revoke|list|unrevoke``: cutting off JWT callers through the admin API of a
running gateway (``/admin/v1/token-revocations``, docs/access.md "Revoking a JWT caller"), as
tables or, with ``--json``, JSON."""

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
PATH = "/admin/v1/token-revocations"

tokens_app = typer.Typer(no_args_is_help=True, help="JWT callers cut off before their tokens expire: revoke, "
                         "list, unrevoke.")

COLUMNS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "id": lambda r: r["id"],
    "tenant": lambda r: r["tenant"],
    "user": lambda r: r["user"],
    "not before": lambda r: r["not_before"],
    "block": lambda r: "yes" if r["block"] else "no",
    "expires": lambda r: r.get("expires_at"),
    "reason": lambda r: r.get("reason"),
    "by": lambda r: r.get("created_by"),
}


@tokens_app.command("revoke")
def revoke(
    user: Annotated[str, typer.Argument(help="The JWT caller's user id (the issuer's user claim).")],
    not_before: Annotated[str | None, typer.Option(
        help="Refuse tokens issued before this RFC 3339 time (default: now).")] = None,
    block: Annotated[bool, typer.Option("--block", help="Refuse every token of the user, new ones "
                                                       "included, until unrevoked.")] = False,
    reason: Annotated[str | None, typer.Option(help="Why, for the record.")] = None,
    expires_at: Annotated[str | None, typer.Option(help="When it stops applying (RFC 3339).")] = None,
    tenant: Tenant = None,
    url: Url = DEFAULT_URL,
    key: Key = "",
    as_json: AsJson = False,
) -> None:
    """Refuse the user's tokens at once (replaces the user's earlier revocation)."""
    body: dict[str, Any] = {"user": user, "block": block}
    for name, value in (("not_before", not_before), ("reason", reason), ("expires_at", expires_at),
                        ("tenant", tenant)):
        if value is not None:
            body[name] = value
    print_records([run_admin(lambda: AdminClient(url, key).call("POST", PATH, body))], COLUMNS, as_json)


@tokens_app.command("list")
def list_revocations(
    user: Annotated[str | None, typer.Option(help="Only this user's.")] = None,
    tenant: Tenant = None,
    url: Url = DEFAULT_URL,
    key: Key = "",
    as_json: AsJson = False,
) -> None:
    """The token revocations of the caller's tenant (or of --tenant)."""
    query = {name: value for name, value in (("tenant", tenant), ("user", user)) if value is not None}
    print_records(run_admin(lambda: AdminClient(url, key).list_all(PATH, query)), COLUMNS, as_json)


@tokens_app.command("unrevoke")
def unrevoke(revocation_id: str, url: Url = DEFAULT_URL, key: Key = "", as_json: AsJson = False) -> None:
    """Lift a revocation: the user's tokens work again."""
    path = f"{PATH}/{quote(revocation_id, safe='')}"
    result = run_admin(lambda: AdminClient(url, key).call("DELETE", path))
    if as_json:
        out.print_json(json.dumps(result))
    else:
        out.print(line(f"lifted {revocation_id}"))
