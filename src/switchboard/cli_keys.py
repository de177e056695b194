"""``switchboard keys …``: the gateway's API keys, managed through the admin API of a running
gateway (this machine's or a remote one), as tables or, with ``--json``, as JSON."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from switchboard.admin_client import AdminClient
from switchboard.cli_output import line, out, print_records, run_admin

keys_app = typer.Typer(no_args_is_help=True, help="Issue, list, show, update, revoke and rotate API keys.")

Url = Annotated[str, typer.Option("--url", envvar="SWITCHBOARD_URL", help="The gateway's base URL.")]
Key = Annotated[str, typer.Option("--key", envvar="SWITCHBOARD_KEY", help="An admin key (the master key).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DEFAULT_URL = "http://127.0.0.1:4000"
COLUMNS = ("id", "prefix", "name", "models", "tenant", "team", "user", "role", "enabled", "expires_at")


def _client(url: str, key: str) -> AdminClient:
    return AdminClient(url, key)


def _metadata(pairs: list[str]) -> dict[str, str]:
    found = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--metadata")
        found[name] = value
    return found


@keys_app.command("create")
def create(
    model: Annotated[list[str], typer.Option("--model", "-m", help="A model name or * pattern (repeat).")],
    name: Annotated[str | None, typer.Option(help="A label for people.")] = None,
    team: Annotated[str | None, typer.Option(help="The owning team's id.")] = None,
    user: Annotated[str | None, typer.Option(help="The owning user's id.")] = None,
    expires_at: Annotated[str | None, typer.Option(help="RFC 3339 time with a zone.")] = None,
    metadata: Annotated[list[str] | None, typer.Option(help="NAME=VALUE (repeat).")] = None,
    role: Annotated[str | None, typer.Option(help="The key's role (default developer).")] = None,
    service_account: Annotated[str | None, typer.Option(help="The owning service account's id.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A label (repeat).")] = None,
    tenant: Annotated[str | None, typer.Option(help="Another tenant (platform admin only).")] = None,
    rpm_limit: Annotated[int | None, typer.Option(help="Requests per minute (docs/limits.md).")] = None,
    tpm_limit: Annotated[int | None, typer.Option(help="Tokens per minute.")] = None,
    max_budget_usd: Annotated[str | None, typer.Option(help="The key's own budget in USD.")] = None,
    budget_period: Annotated[str | None, typer.Option(help="daily, weekly, monthly or total.")] = None,
    region: Annotated[list[str] | None, typer.Option(
        "--region", help="A region its requests may be served in (repeat; default anywhere).")] = None,
    url: Url = DEFAULT_URL,
    key: Key = "",
    as_json: AsJson = False,
) -> None:
    """Issue a key; the key itself is printed this once."""
    body: dict[str, Any] = {"models": model}
    for field, value in (("name", name), ("team", team), ("user", user), ("expires_at", expires_at),
                         ("role", role), ("service_account", service_account), ("tenant", tenant),
                         ("rpm_limit", rpm_limit), ("tpm_limit", tpm_limit),
                         # sent as written: the gateway reads the exact decimal
                         ("max_budget_usd", max_budget_usd), ("budget_period", budget_period)):
        if value is not None:
            body[field] = value
    if metadata:
        body["metadata"] = _metadata(metadata)
    if tag:
        body["tags"] = tag
    if region:
        body["allowed_regions"] = region
    created = run_admin(lambda: _client(url, key).create_key(body))
    if as_json:
        out.print_json(json.dumps(created))
        return
    print_records([created], COLUMNS, False)
    out.print(f"key (shown once, keep it now): {created['key']}")


@keys_app.command("list")
def list_keys(
    tenant: Annotated[str | None, typer.Option(help="Another tenant (platform admin only).")] = None,
    team: Annotated[str | None, typer.Option(help="Only this team's keys.")] = None,
    user: Annotated[str | None, typer.Option(help="Only this user's keys.")] = None,
    service_account: Annotated[str | None, typer.Option(help="Only this service account's keys.")] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Only the keys with this tag.")] = None,
    url: Url = DEFAULT_URL,
    key: Key = "",
    as_json: AsJson = False,
) -> None:
    """Every key of the tenant (or of --tenant) within reach, without secrets."""
    filters = {name: value for name, value in (("tenant", tenant), ("team", team), ("user", user),
                                               ("service_account", service_account), ("tag", tag))
               if value is not None}
    print_records(run_admin(lambda: _client(url, key).list_keys(filters)), COLUMNS, as_json)


@keys_app.command("show")
def show(key_id: str, url: Url = DEFAULT_URL, key: Key = "", as_json: AsJson = False) -> None:
    """One key, without its secret."""
    print_records([run_admin(lambda: _client(url, key).show_key(key_id))], COLUMNS, as_json)


@keys_app.command("update")
def update(
    key_id: str,
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", help="A model name or * pattern (repeat; replaces the list).")] = None,
    name: Annotated[str | None, typer.Option(help="A label for people.")] = None,
    clear_name: Annotated[bool, typer.Option("--clear-name", help="Remove the label.")] = False,
    expires_at: Annotated[str | None, typer.Option(help="RFC 3339 time with a zone.")] = None,
    no_expiry: Annotated[bool, typer.Option("--no-expiry", help="Never expires.")] = False,
    metadata: Annotated[list[str] | None, typer.Option(
        help="NAME=VALUE (repeat; replaces every entry).")] = None,
    clear_metadata: Annotated[bool, typer.Option("--clear-metadata", help="Remove every entry.")] = False,
    tag: Annotated[list[str] | None, typer.Option(
        "--tag", help="A label (repeat; replaces the tags).")] = None,
    clear_tags: Annotated[bool, typer.Option("--clear-tags", help="Remove every tag.")] = False,
    region: Annotated[list[str] | None, typer.Option(
        "--region", help="A region its requests may be served in (repeat; replaces the list).")] = None,
    any_region: Annotated[bool, typer.Option(
        "--any-region", help="No list of its own (its team's and tenant's still apply).")] = False,
    block: Annotated[bool | None, typer.Option(
        "--block/--unblock", help="Refuse the key until unblocked (revoking is final; this is not).")] = None,
    url: Url = DEFAULT_URL,
    key: Key = "",
    as_json: AsJson = False,
) -> None:
    """Change a key in place; its secret stays. Only the options given change."""
    body: dict[str, Any] = {}
    for field, value, clear, flag in (
        ("name", name, clear_name, "--clear-name"), ("expires_at", expires_at, no_expiry, "--no-expiry"),
        ("metadata", _metadata(metadata) if metadata else None, clear_metadata, "--clear-metadata"),
        ("tags", tag, clear_tags, "--clear-tags"), ("allowed_regions", region, any_region, "--any-region"),
    ):
        if value is not None and clear:
            raise typer.BadParameter(f"give either a value or {flag}, not both", param_hint=flag)
        if value is not None:
            body[field] = value
        elif clear:
            body[field] = {"metadata": {}, "tags": []}.get(field)
    if model:
        body["models"] = model
    if block is not None:
        body["enabled"] = not block
    if not body:
        raise typer.BadParameter("nothing to change: give at least one option (see --help)")
    updated = run_admin(lambda: _client(url, key).update_key(key_id, body))
    print_records([updated], COLUMNS, as_json)


@keys_app.command("revoke")
def revoke(key_id: str, url: Url = DEFAULT_URL, key: Key = "", as_json: AsJson = False) -> None:
    """Revoke a key: every instance refuses it within a second."""
    result = run_admin(lambda: _client(url, key).revoke_key(key_id))
    if as_json:
        out.print_json(json.dumps(result))
    else:
        out.print(line(f"revoked {key_id}"))


@keys_app.command("rotate")
def rotate(
    key_id: str,
    grace_seconds: Annotated[int, typer.Option(help="How long the old key keeps working.")] = 3600,
    url: Url = DEFAULT_URL,
    key: Key = "",
    as_json: AsJson = False,
) -> None:
    """A new key in place of this one; the old one works for the grace period."""
    rotated = run_admin(lambda: _client(url, key).rotate_key(key_id, grace_seconds))
    if as_json:
        out.print_json(json.dumps(rotated))
        return
    print_records([rotated], COLUMNS, False)
    out.print(f"new key (shown once): {rotated['key']}")
    out.print(f"the old key works until {rotated['previous_expires_at']}")
