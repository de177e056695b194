"""``switchboard tenants|teams|users|service-accounts …``: tenancy managed through the admin API
of a running gateway (this machine's or a remote one), as tables or, with ``--json``, as JSON.
What the key given may do is what the gateway's permission table says (docs/access.md)."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

import typer

from switchboard.admin_client import AdminClient
from switchboard.cli_output import line, out, print_records, run_admin

Url = Annotated[str, typer.Option("--url", envvar="SWITCHBOARD_URL", help="The gateway's base URL.")]
Key = Annotated[str, typer.Option("--key", envvar="SWITCHBOARD_KEY", help="An admin key.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Tenant = Annotated[str | None, typer.Option(help="Another tenant (platform admin only).")]
Name = Annotated[str | None, typer.Option(help="A name for people.")]
Team = Annotated[str | None, typer.Option(help="The team's id.")]
Role = Annotated[str | None, typer.Option(help="tenant_admin, team_admin, developer or viewer.")]
Email = Annotated[str | None, typer.Option(help="An email address.")]
DEFAULT_URL = "http://127.0.0.1:4000"

TENANT_COLUMNS = ("id", "name", "created_at", "created_by")
TEAM_COLUMNS = ("id", "tenant", "name", "created_at")
USER_COLUMNS = ("id", "object", "tenant", "team", "role", "name", "email")


def _given(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


class _Resource:
    """The five commands of one admin collection."""

    def __init__(self, path: str, columns: tuple[str, ...]) -> None:
        self.path = path
        self.columns = columns

    def one(self, ident: str) -> str:
        return f"{self.path}/{quote(ident, safe='')}"

    def list(self, url: str, key: str, query: dict[str, Any], as_json: bool) -> None:
        found = run_admin(lambda: AdminClient(url, key).list_all(self.path, query))
        print_records(found, self.columns, as_json)

    def create(self, url: str, key: str, body: dict[str, Any], as_json: bool) -> None:
        created = run_admin(lambda: AdminClient(url, key).call("POST", self.path, body))
        print_records([created], self.columns, as_json)

    def show(self, url: str, key: str, ident: str, as_json: bool) -> None:
        found = run_admin(lambda: AdminClient(url, key).call("GET", self.one(ident)))
        print_records([found], self.columns, as_json)

    def update(self, url: str, key: str, ident: str, body: dict[str, Any], as_json: bool) -> None:
        if not body:
            raise typer.BadParameter("nothing to change: give at least one option")
        changed = run_admin(lambda: AdminClient(url, key).call("PATCH", self.one(ident), body))
        print_records([changed], self.columns, as_json)

    def delete(self, url: str, key: str, ident: str, as_json: bool) -> None:
        result = run_admin(lambda: AdminClient(url, key).call("DELETE", self.one(ident)))
        if as_json:
            out.print_json(json.dumps(result))
        else:
            out.print(line(f"deleted {ident}"))


# -- tenants ------------------------------------------------------------------------------------

tenants_app = typer.Typer(no_args_is_help=True, help="Tenants (organisations): list, create, show, "
                          "update, delete.")
_tenants = _Resource("/admin/v1/tenants", TENANT_COLUMNS)


@tenants_app.command("list")
def tenants_list(url: Url = DEFAULT_URL, key: Key = "", as_json: AsJson = False) -> None:
    """Every tenant (the platform admin), or the caller's own."""
    _tenants.list(url, key, {}, as_json)


@tenants_app.command("create")
def tenants_create(tenant_id: str, name: Name = None, url: Url = DEFAULT_URL, key: Key = "",
                   as_json: AsJson = False) -> None:
    """Create a tenant with this id (platform admin)."""
    _tenants.create(url, key, _given(id=tenant_id, name=name), as_json)


@tenants_app.command("show")
def tenants_show(tenant_id: str, url: Url = DEFAULT_URL, key: Key = "", as_json: AsJson = False) -> None:
    """One tenant."""
    _tenants.show(url, key, tenant_id, as_json)


@tenants_app.command("update")
def tenants_update(tenant_id: str, name: Name = None, url: Url = DEFAULT_URL, key: Key = "",
                   as_json: AsJson = False) -> None:
    """Rename a tenant."""
    _tenants.update(url, key, tenant_id, _given(name=name), as_json)


@tenants_app.command("delete")
def tenants_delete(tenant_id: str, url: Url = DEFAULT_URL, key: Key = "", as_json: AsJson = False) -> None:
    """Delete a tenant without teams, users or unrevoked keys."""
    _tenants.delete(url, key, tenant_id, as_json)


# -- teams --------------------------------------------------------------------------------------

teams_app = typer.Typer(no_args_is_help=True, help="Teams of a tenant: list, create, show, update, delete.")
_teams = _Resource("/admin/v1/teams", TEAM_COLUMNS)


@teams_app.command("list")
def teams_list(tenant: Tenant = None, url: Url = DEFAULT_URL, key: Key = "", as_json: AsJson = False) -> None:
    """The tenant's teams within reach."""
    _teams.list(url, key, _given(tenant=tenant), as_json)


@teams_app.command("create")
def teams_create(name: str, tenant: Tenant = None, url: Url = DEFAULT_URL, key: Key = "",
                 as_json: AsJson = False) -> None:
    """Create a team; its id is generated."""
    _teams.create(url, key, _given(name=name, tenant=tenant), as_json)


@teams_app.command("show")
def teams_show(team_id: str, url: Url = DEFAULT_URL, key: Key = "", as_json: AsJson = False) -> None:
    """One team."""
    _teams.show(url, key, team_id, as_json)


@teams_app.command("update")
def teams_update(team_id: str, name: Name = None, url: Url = DEFAULT_URL, key: Key = "",
                 as_json: AsJson = False) -> None:
    """Rename a team."""
    _teams.update(url, key, team_id, _given(name=name), as_json)


@teams_app.command("delete")
def teams_delete(team_id: str, url: Url = DEFAULT_URL, key: Key = "", as_json: AsJson = False) -> None:
    """Delete a team without members or unrevoked keys."""
    _teams.delete(url, key, team_id, as_json)


# -- users and service accounts -----------------------------------------------------------------


def _user_commands(app: typer.Typer, resource: _Resource, what: str) -> None:
    @app.command("list")
    def list_(tenant: Tenant = None, team: Team = None, role: Role = None,
              kind: Annotated[str | None, typer.Option(help="user or service_account.")] = None,
              url: Url = DEFAULT_URL, key: Key = "", as_json: AsJson = False) -> None:
        """The ones within reach, filtered."""
        resource.list(url, key, _given(tenant=tenant, team=team, role=role, kind=kind), as_json)

    @app.command("create")
    def create(name: str, role: Role = None, team: Team = None, email: Email = None, tenant: Tenant = None,
               service_account: Annotated[bool, typer.Option(
                   "--service-account", help="A service account (an application), not a person.")] = False,
               url: Url = DEFAULT_URL, key: Key = "", as_json: AsJson = False) -> None:
        """Create one; its id is generated."""
        target = _service_accounts if service_account else resource
        target.create(url, key, _given(name=name, role=role, team=team, email=email, tenant=tenant), as_json)

    @app.command("show")
    def show(ident: str, url: Url = DEFAULT_URL, key: Key = "", as_json: AsJson = False) -> None:
        """One of them."""
        resource.show(url, key, ident, as_json)

    @app.command("update")
    def update(ident: str, name: Name = None, role: Role = None, team: Team = None, email: Email = None,
               url: Url = DEFAULT_URL, key: Key = "", as_json: AsJson = False) -> None:
        """Change the name, role, team or email."""
        resource.update(url, key, ident, _given(name=name, role=role, team=team, email=email), as_json)

    @app.command("delete")
    def delete(ident: str, url: Url = DEFAULT_URL, key: Key = "", as_json: AsJson = False) -> None:
        """Delete one that holds no unrevoked key."""
        resource.delete(url, key, ident, as_json)

    app.info.help = f"{what}: list, create, show, update, delete."


_users = _Resource("/admin/v1/users", USER_COLUMNS)
_service_accounts = _Resource("/admin/v1/service-accounts", USER_COLUMNS)
users_app = typer.Typer(no_args_is_help=True)
service_accounts_app = typer.Typer(no_args_is_help=True)
_user_commands(users_app, _users, "Users: people, and service accounts (--service-account, --kind)")
_user_commands(service_accounts_app, _service_accounts, "Service accounts (applications)")
