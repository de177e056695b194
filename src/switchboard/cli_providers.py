"""``switchboard providers …`` and ``switchboard models …``: providers, their credentials and
models, managed through the admin API of a running gateway (this machine's or a remote one), as
tables or, with ``--json``, as JSON. A key is read from standard input (``--api-key-stdin``),
never from the command line, where shell history and process lists would keep it."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote

import typer
from pydantic import TypeAdapter, ValidationError

from switchboard.admin_client import AdminClient
from switchboard.cli_output import print_records, run_admin
from switchboard.config.base import scalar_kind
from switchboard.providers import registry

providers_app = typer.Typer(no_args_is_help=True, help="List, add, change, test and remove providers.")
models_app = typer.Typer(no_args_is_help=True, help="List, add, change and remove models.")

Url = Annotated[str, typer.Option("--url", envvar="SWITCHBOARD_URL", help="The gateway's base URL.")]
Key = Annotated[str, typer.Option("--key", envvar="SWITCHBOARD_KEY", help="An admin key (the master key).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Pairs = Annotated[
    list[str] | None, typer.Option(help="NAME=VALUE (repeat); VALUE is text, or a JSON array or object.")
]
DEFAULT_URL = "http://127.0.0.1:4000"
PROVIDER_COLUMNS = ("name", "type", "api_base", "credentials", "source")
MODEL_COLUMNS = ("name", "provider", "model", "require_approval", "source")
NOTHING_TO_CHANGE = "nothing to change: give at least one option (see --help)"


def _cell(value: Any) -> Any:
    """A credential shows by its mask."""
    if isinstance(value, list):
        return [v.get("mask", v) if isinstance(v, dict) else v for v in value]
    return value


def _masked(column: str) -> Callable[[dict[str, Any]], Any]:
    return lambda row: _cell(row.get(column))


def _show(rows: list[dict[str, Any]], columns: tuple[str, ...], as_json: bool) -> None:
    # In a table a credential shows by its mask; JSON has the records as they came.
    print_records(rows, {column: _masked(column) for column in columns}, as_json)


def _pairs(pairs: list[str] | None, hint: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint=hint)
        found[name] = _value(value)
    return found


def _value(text: str) -> Any:
    """A ``NAME=VALUE``'s value: a JSON array, object or quoted string as JSON, anything else as
    the text written. A number or ``true`` stays text here: sent as a JSON number it would be
    refused where the option is text (``organization=5``); :func:`_typed_options` makes it the
    boolean or number an option of that kind takes."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str | list | dict) else text


_READERS: dict[str, TypeAdapter[Any]] = {"bool": TypeAdapter(bool), "int": TypeAdapter(int),
                                         "float": TypeAdapter(float)}


def _typed_options(options: dict[str, Any], provider_type: str | None) -> dict[str, Any]:
    """``--option`` texts as the provider type's options take them: a boolean or a number where
    the option is one (``safe_prompt=true`` is ``true``), as the configuration file reads it; the
    admin API takes JSON as sent, and refuses text there. An unknown type or option, or a text
    that is no such value, is sent as written, for the gateway to name."""
    spec = registry.providers().get(provider_type or "")
    if spec is None:
        return options
    fields = spec.options.model_fields
    return {name: _typed(value, fields[name].annotation) if isinstance(value, str) and name in fields
            else value for name, value in options.items()}


def _typed(text: str, annotation: Any) -> Any:
    reader = _READERS.get(scalar_kind(annotation) or "")
    if reader is None:
        return text
    try:
        return reader.validate_python(text)
    except ValidationError:
        return text


def _list(client: AdminClient, path: str) -> list[Any]:
    found: list[Any] = []
    after = None
    while True:
        query: dict[str, Any] = {"limit": 1000} if after is None else {"limit": 1000, "after": after}
        page = client.call("GET", path, query=query)
        found.extend(page["data"])
        if not page.get("has_more"):
            return found
        after = page["last_id"]


def _secret_from_stdin() -> str:
    value = sys.stdin.readline().strip()
    if not value:
        raise typer.BadParameter("no key on standard input", param_hint="--api-key-stdin")
    return value


def _name(name: str) -> str:
    return quote(name, safe="")


# -- providers ----------------------------------------------------------------------------


@providers_app.command("list")
def providers_list(url: Url = DEFAULT_URL, key: Key = "", as_json: AsJson = False) -> None:
    """Every provider: the configuration file's (read-only) and the stored ones."""
    _show(run_admin(lambda: _list(AdminClient(url, key), "/admin/v1/providers")), PROVIDER_COLUMNS, as_json)


@providers_app.command("show")
def providers_show(name: str, url: Url = DEFAULT_URL, key: Key = "", as_json: AsJson = False) -> None:
    """One provider; its credentials by mask only."""
    record = run_admin(lambda: AdminClient(url, key).call("GET", f"/admin/v1/providers/{_name(name)}"))
    _show([record], (*PROVIDER_COLUMNS, "options", "headers", "max_connections"), as_json)


@providers_app.command("add")
def providers_add(
    name: str,
    type: Annotated[str, typer.Option("--type", help="A provider type (openai, anthropic, ...).")],
    api_base: Annotated[str | None, typer.Option(help="The provider's base URL.")] = None,
    api_key_stdin: Annotated[bool, typer.Option(help="Read a first key from standard input.")] = False,
    ref: Annotated[str | None, typer.Option(help="Or a key reference: env:NAME or file:/path.")] = None,
    option: Pairs = None,
    header: Pairs = None,
    max_connections: Annotated[int | None, typer.Option(help="Pooled connections.")] = None,
    allow_caller_credentials: Annotated[bool, typer.Option(help="Callers may send their own key.")] = False,
    url: Url = DEFAULT_URL,
    key: Key = "",
    as_json: AsJson = False,
) -> None:
    """Add a provider; usable at once on every instance."""
    options = _typed_options(_pairs(option, "--option"), type)
    body: dict[str, Any] = {"name": name, "type": type, "options": options,
                            "headers": _pairs(header, "--header")}
    if api_base is not None:
        body["api_base"] = api_base
    if max_connections is not None:
        body["max_connections"] = max_connections
    if allow_caller_credentials:
        body["allow_caller_credentials"] = True
    if api_key_stdin:
        body["api_key"] = _secret_from_stdin()
    if ref is not None:
        body["api_key_ref"] = ref
    record = run_admin(lambda: AdminClient(url, key).call("POST", "/admin/v1/providers", body))
    _show([record], PROVIDER_COLUMNS, as_json)


@providers_app.command("update")
def providers_update(
    name: str,
    api_base: Annotated[str | None, typer.Option(help="The provider's base URL.")] = None,
    option: Pairs = None,
    header: Pairs = None,
    max_connections: Annotated[int | None, typer.Option(help="Pooled connections.")] = None,
    url: Url = DEFAULT_URL,
    key: Key = "",
    as_json: AsJson = False,
) -> None:
    """Change a stored provider (options and headers given replace the stored ones)."""
    body: dict[str, Any] = {}
    if api_base is not None:
        body["api_base"] = api_base
    if header:
        body["headers"] = _pairs(header, "--header")
    if max_connections is not None:
        body["max_connections"] = max_connections
    path = f"/admin/v1/providers/{_name(name)}"
    options = _pairs(option, "--option") if option else None
    if not body and options is None:
        raise typer.BadParameter(NOTHING_TO_CHANGE)

    def update() -> Any:
        client = AdminClient(url, key)
        if options is not None:  # typed by the provider's type, which the record says
            body["options"] = _typed_options(options, client.call("GET", path).get("type"))
        return client.call("PATCH", path, body)

    record = run_admin(update)
    _show([record], PROVIDER_COLUMNS, as_json)


@providers_app.command("remove")
def providers_remove(name: str, url: Url = DEFAULT_URL, key: Key = "", as_json: AsJson = False) -> None:
    """Remove a stored provider and its credentials (refused while a model uses it)."""
    done = run_admin(lambda: AdminClient(url, key).call("DELETE", f"/admin/v1/providers/{_name(name)}"))
    _show([done], ("name", "deleted"), as_json)


@providers_app.command("test")
def providers_test(
    name: str,
    model: Annotated[str | None, typer.Option(help="The upstream model id to try.")] = None,
    url: Url = DEFAULT_URL,
    key: Key = "",
    as_json: AsJson = False,
) -> None:
    """Test connection: one small real call with the provider's credential. Exit 1 if it failed."""
    body = {"model": model} if model else None
    path = f"/admin/v1/providers/{_name(name)}/test"
    result = run_admin(lambda: AdminClient(url, key).call("POST", path, body))
    _show([result], ("ok", "status", "latency_ms", "error"), as_json)
    if not result.get("ok"):
        raise typer.Exit(1)


@providers_app.command("add-credential")
def providers_add_credential(
    name: str,
    api_key_stdin: Annotated[bool, typer.Option(help="Read the key from standard input.")] = False,
    ref: Annotated[str | None, typer.Option(help="Or a reference: env:NAME or file:/path.")] = None,
    label: Annotated[str | None, typer.Option(help="A label for people.")] = None,
    url: Url = DEFAULT_URL,
    key: Key = "",
    as_json: AsJson = False,
) -> None:
    """Add a credential; a provider's credentials are used in turn."""
    body: dict[str, Any] = {"label": label} if label else {}
    if api_key_stdin:
        body["api_key"] = _secret_from_stdin()
    if ref is not None:
        body["ref"] = ref
    path = f"/admin/v1/providers/{_name(name)}/credentials"
    added = run_admin(lambda: AdminClient(url, key).call("POST", path, body))
    _show([added], ("id", "kind", "mask", "label"), as_json)


@providers_app.command("remove-credential")
def providers_remove_credential(
    name: str, credential_id: str, url: Url = DEFAULT_URL, key: Key = "", as_json: AsJson = False
) -> None:
    """Remove one credential of a stored provider."""
    path = f"/admin/v1/providers/{_name(name)}/credentials/{_name(credential_id)}"
    _show([run_admin(lambda: AdminClient(url, key).call("DELETE", path))], ("id", "deleted"), as_json)


# -- models -------------------------------------------------------------------------------


@models_app.command("list")
def models_list(url: Url = DEFAULT_URL, key: Key = "", as_json: AsJson = False) -> None:
    """Every model: the configuration file's (read-only) and the stored ones."""
    _show(run_admin(lambda: _list(AdminClient(url, key), "/admin/v1/models")), MODEL_COLUMNS, as_json)


@models_app.command("show")
def models_show(name: str, url: Url = DEFAULT_URL, key: Key = "", as_json: AsJson = False) -> None:
    """One model entry."""
    record = run_admin(lambda: AdminClient(url, key).call("GET", f"/admin/v1/models/{_name(name)}"))
    _show([record], (*MODEL_COLUMNS, "drop_params", "timeouts"), as_json)


@models_app.command("add")
def models_add(
    name: str,
    provider: Annotated[str, typer.Option(help="The provider's name.")],
    model: Annotated[str, typer.Option(help="The provider's model id.")],
    drop_params: Annotated[bool, typer.Option(help="Drop parameters the provider does not take.")] = False,
    require_approval: Annotated[bool, typer.Option(help="Keys need an approved subscription.")] = False,
    url: Url = DEFAULT_URL,
    key: Key = "",
    as_json: AsJson = False,
) -> None:
    """Add a model; callable at once on every instance."""
    body = {"name": name, "provider": provider, "model": model, "drop_params": drop_params,
            "require_approval": require_approval}
    added = run_admin(lambda: AdminClient(url, key).call("POST", "/admin/v1/models", body))
    _show([added], MODEL_COLUMNS, as_json)


@models_app.command("update")
def models_update(
    name: str,
    provider: Annotated[str | None, typer.Option(help="The provider's name.")] = None,
    model: Annotated[str | None, typer.Option(help="The provider's model id.")] = None,
    drop_params: Annotated[bool | None, typer.Option("--drop-params/--keep-params")] = None,
    require_approval: Annotated[bool | None, typer.Option("--require-approval/--no-approval")] = None,
    url: Url = DEFAULT_URL,
    key: Key = "",
    as_json: AsJson = False,
) -> None:
    """Change a stored model."""
    given = {"provider": provider, "model": model, "drop_params": drop_params,
             "require_approval": require_approval}
    body = {k: v for k, v in given.items() if v is not None}
    if not body:
        raise typer.BadParameter(NOTHING_TO_CHANGE)
    path = f"/admin/v1/models/{_name(name)}"
    _show([run_admin(lambda: AdminClient(url, key).call("PATCH", path, body))], MODEL_COLUMNS, as_json)


@models_app.command("remove")
def models_remove(name: str, url: Url = DEFAULT_URL, key: Key = "", as_json: AsJson = False) -> None:
    """Remove a stored model."""
    done = run_admin(lambda: AdminClient(url, key).call("DELETE", f"/admin/v1/models/{_name(name)}"))
    _show([done], ("name", "deleted"), as_json)
