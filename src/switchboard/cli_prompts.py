"""``switchboard prompts …``: the prompt registry through the admin API of a running gateway
(``/admin/v1/prompts``, docs/prompts.md): save versions from a file, show them, list versions,
diff two, move labels, and render the exact messages a set of variables produces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
import yaml

from switchboard.admin_client import AdminClient
from switchboard.cli_output import json_text, line, out, run_admin, table
from switchboard.config.yamlfile import parse_yaml, plain

prompts_app = typer.Typer(no_args_is_help=True, help="The prompt registry: create versions, show, "
                          "list versions, diff, label and render prompts.")

Url = Annotated[str, typer.Option("--url", envvar="SWITCHBOARD_URL", help="The gateway's base URL.")]
Key = Annotated[str, typer.Option("--key", envvar="SWITCHBOARD_KEY", help="An admin key.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
Version = Annotated[int | None, typer.Option("--version", "-v", min=1, help="A version number.")]
Label = Annotated[str | None, typer.Option("--label", "-l", help="A label (e.g. production).")]
Tenant = Annotated[str | None, typer.Option(help="Another tenant (platform admin only).")]
DEFAULT_URL = "http://127.0.0.1:4000"
PATH = "/admin/v1/prompts"
MAX_FILE_BYTES = 4 * 1024 * 1024


def _run(url: str, key: str, method: str, path: str, body: Any = None,
         query: dict[str, Any] | None = None) -> Any:
    return run_admin(lambda: AdminClient(url, key).call(method, path, body, query))


def _read(path: Path, what: str) -> Any:
    """A YAML or JSON file (JSON is YAML), read as the config file is: a plain date is the text
    written (``2026-06-01``; safe_load's date has no JSON form), a key written twice is refused.
    A value JSON cannot hold (``!!binary``, ``!!set``) is refused here, naming the file."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise typer.BadParameter(f"{path}: larger than {MAX_FILE_BYTES} bytes", param_hint=what)
        loaded = plain(parse_yaml(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise typer.BadParameter(f"{path}: {exc.strerror or exc}", param_hint=what) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"{path}: not YAML or JSON: {str(exc)[:200]}", param_hint=what) from None
    try:
        json.dumps(loaded)
    except TypeError as exc:
        raise typer.BadParameter(f"{path}: a value JSON cannot hold: {exc}", param_hint=what) from None
    return loaded


def _name(name: str) -> str:
    return f"{PATH}/{quote(name, safe='')}"


def _in(tenant: str | None) -> dict[str, Any]:
    """The query that reads another tenant's prompt (the platform admin's ``?tenant=``)."""
    return {} if tenant is None else {"tenant": tenant}


def _version_query(version: int | None, label: str | None) -> dict[str, Any]:
    if version is not None and label is not None:
        raise typer.BadParameter("give --version or --label, not both", param_hint="--label")
    return {"version": version} if version is not None else {"label": label} if label is not None else {}


def _print_json(value: Any) -> None:
    out.print_json(json.dumps(value))


def _print_messages(messages: list[dict[str, Any]]) -> None:
    for message in messages:
        out.print(line((str(message.get("role")), "bold"), ":"))
        out.print(line(str(message.get("content"))))
        out.print()


@prompts_app.command("create")
def create(
    file: Annotated[Path, typer.Argument(help="YAML or JSON: the body of POST /admin/v1/prompts.")],
    url: Url = DEFAULT_URL,
    key: Key = "",
    as_json: AsJson = False,
) -> None:
    """Save a prompt: version 1, or the next version of its name."""
    body = _read(file, "FILE")
    if not isinstance(body, dict):
        raise typer.BadParameter(f"{file}: expected a mapping (name, model, messages, variables, ...)",
                                 param_hint="FILE")
    saved = _run(url, key, "POST", PATH, body)
    if as_json:
        _print_json(saved)
    else:
        out.print(line(f"saved {saved['name']} version {saved['version']}"))


@prompts_app.command("list")
def list_prompts(
    tenant: Tenant = None,
    team: Annotated[str | None, typer.Option(help="Only this team's prompts.")] = None,
    url: Url = DEFAULT_URL,
    key: Key = "",
    as_json: AsJson = False,
) -> None:
    """The tenant's prompts (or --tenant's): the latest version of each, with its labels."""
    query = {**_in(tenant), **({} if team is None else {"team": team})}
    found = run_admin(lambda: AdminClient(url, key).list_all(PATH, query))  # every page, not the first
    if as_json:
        _print_json(found)
        return
    # Every label of the prompt, those on older versions too (``labels``: the latest's only).
    out.print(table(("name", "version", "model", "team", "labels", "description"), (
        (p["name"], p["version"], p["model"], p.get("team"),
         [f"{k}={v}" for k, v in sorted(p.get("prompt_labels", {}).items())], p.get("description") or None)
        for p in found)))


@prompts_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="The prompt's name.")],
    version: Version = None,
    label: Label = None,
    tenant: Tenant = None,
    url: Url = DEFAULT_URL,
    key: Key = "",
    as_json: AsJson = False,
) -> None:
    """A version: the latest, or --version N, or --label L."""
    found = _run(url, key, "GET", _name(name), query={**_version_query(version, label), **_in(tenant)})
    if as_json:
        _print_json(found)
        return
    labels = ", ".join(found.get("labels") or []) or "-"
    out.print(line(f"{found['name']} version {found['version']} (labels: {labels})"))
    out.print(line(f"model: {found['model']}   team: {found.get('team') or '-'}   "
              f"created: {found['created_at']} by {found.get('created_by') or '-'}"))
    if found.get("description"):
        out.print(line(f"description: {found['description']}"))
    if found.get("params"):
        out.print(line(f"params: {json_text(found['params'])}"))
    out.print(line(f"variables: {json_text(found['variables'])}"))
    if found.get("output_schema") is not None:
        out.print(line(f"output_schema: {json_text(found['output_schema'])}"))
    out.print()
    _print_messages(found["messages"])


@prompts_app.command("versions")
def versions(
    name: Annotated[str, typer.Argument(help="The prompt's name.")],
    tenant: Tenant = None,
    url: Url = DEFAULT_URL,
    key: Key = "",
    as_json: AsJson = False,
) -> None:
    """Every version of a prompt, oldest first, with the labels on each."""
    found = _run(url, key, "GET", _name(name) + "/versions", query=_in(tenant))
    if as_json:
        _print_json(found)
        return
    out.print(table(("version", "model", "labels", "created_at", "created_by", "description"), (
        (v["version"], v["model"], v.get("labels"), v["created_at"], v.get("created_by") or None,
         v.get("description") or None)
        for v in found["data"])))


@prompts_app.command("diff")
def diff(
    name: Annotated[str, typer.Argument(help="The prompt's name.")],
    a: Annotated[int, typer.Argument(min=1, help="The older version.")],
    b: Annotated[int, typer.Argument(min=1, help="The newer version.")],
    tenant: Tenant = None,
    url: Url = DEFAULT_URL,
    key: Key = "",
    as_json: AsJson = False,
) -> None:
    """What changed between two versions, as a unified diff."""
    found = _run(url, key, "GET", _name(name) + "/diff", query={"from": a, "to": b, **_in(tenant)})
    if as_json:
        _print_json(found)
    elif found["diff"]:
        out.print(line(found["diff"]))
    else:
        out.print(line(f"{name}: versions {a} and {b} are the same"))


@prompts_app.command("label")
def label(
    name: Annotated[str, typer.Argument(help="The prompt's name.")],
    label_name: Annotated[str, typer.Argument(metavar="LABEL", help="The label, e.g. production.")],
    version: Annotated[int, typer.Argument(min=1, help="The version it points at from now on.")],
    tenant: Tenant = None,
    url: Url = DEFAULT_URL,
    key: Key = "",
    as_json: AsJson = False,
) -> None:
    """Point a label at a version (moving it back is a rollback)."""
    found = _run(url, key, "PUT", f"{_name(name)}/labels/{quote(label_name, safe='')}", {"version": version},
                 query=_in(tenant))
    if as_json:
        _print_json(found)
        return
    previous = found.get("previous")
    moved = f" (was {previous})" if previous is not None else ""
    out.print(line(f"{name}: {label_name} -> version {version}{moved}"))


def _variables(pairs: list[str], file: Path | None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if file is not None:
        loaded = _read(file, "--vars")
        if not isinstance(loaded, dict):
            raise typer.BadParameter(f"{file}: expected a mapping of variables", param_hint="--vars")
        found.update(loaded)
    for pair in pairs:
        if pair.split("=", 1)[0].endswith(":"):  # NAME:=JSON
            name, _, raw = pair.partition(":=")
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                raise typer.BadParameter(f"{pair!r}: the value after := must be JSON",
                                         param_hint="--var") from None
        else:
            name, sep, value = pair.partition("=")
            if not sep:
                raise typer.BadParameter(f"expected NAME=VALUE or NAME:=JSON, got {pair!r}",
                                         param_hint="--var")
        if not name:
            raise typer.BadParameter(f"a variable needs a name: {pair!r}", param_hint="--var")
        found[name] = value
    return found


@prompts_app.command("render")
def render(
    name: Annotated[str, typer.Argument(help="The prompt's name.")],
    var: Annotated[list[str] | None,
                   typer.Option("--var", help="NAME=VALUE (a string) or NAME:=JSON (repeat).")] = None,
    vars_file: Annotated[Path | None,
                         typer.Option("--vars", help="A YAML or JSON file of variables.")] = None,
    version: Version = None,
    label: Label = None,
    tenant: Tenant = None,
    url: Url = DEFAULT_URL,
    key: Key = "",
    as_json: AsJson = False,
) -> None:
    """The exact messages a set of variables produces."""
    variables = _variables(var or [], vars_file)
    body: dict[str, Any] = {"variables": variables, **_version_query(version, label)}
    found = _run(url, key, "POST", _name(name) + "/render", body, query=_in(tenant))
    if as_json:
        _print_json(found)
        return
    out.print(line(f"# {found['name']} version {found['version']}, model {found['model']}"))
    _print_messages(found["messages"])
