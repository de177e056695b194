"""Command line: parse arguments, load settings, run. Nothing else happens here.

Only what the command line names is imported and built: the command groups defined in modules of
their own (``_GROUPS``) are loaded when a command line or a help page reaches them, and the
settings' schema when a command reads settings. Building every command's parameters and importing
every command's module was most of the start-up of each process, a gateway's included.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.main
from typer.core import TyperGroup
from typer.models import TyperInfo

from switchboard import __version__
from switchboard.cli_output import err, error, line, out
from switchboard.cli_usage import usage

if TYPE_CHECKING:
    from switchboard.config.schema import Settings
    from switchboard.crypto.rotate import Rotated
    from switchboard.settings.embedded import MasterKey
    from switchboard.settings.loader import ConfigError

# The command groups, in the order help lists them (after the plain commands): None for those
# defined below, "module:attribute" for the Typer app of one defined in a module of its own.
_GROUPS: dict[str, str | None] = {
    "config": None,
    "db": None,
    "keys": "switchboard.cli_keys:keys_app",
    "providers": "switchboard.cli_providers:providers_app",
    "models": "switchboard.cli_providers:models_app",
    "secrets": None,
    "tenants": "switchboard.cli_tenancy:tenants_app",
    "teams": "switchboard.cli_tenancy:teams_app",
    "users": "switchboard.cli_tenancy:users_app",
    "service-accounts": "switchboard.cli_tenancy:service_accounts_app",
    "logs": "switchboard.cli_logs:logs_app",
    "budgets": "switchboard.cli_budgets:budgets_app",
    "routing": "switchboard.cli_routing:routing_app",
    "analytics": "switchboard.cli_analytics:analytics_app",
    "prompts": "switchboard.cli_prompts:prompts_app",
    "mcp": "switchboard.cli_mcp:mcp_app",
    "tokens": "switchboard.cli_tokens:tokens_app",
}


class _Commands(dict[str, Any]):
    """A group's commands by name; a group named by ``_GROUPS`` is imported and built on its first
    lookup (Typer and Click look commands up with ``get``; they only list the names)."""

    def get(self, name: str, default: Any = None) -> Any:
        found = super().get(name, default)
        if isinstance(found, str):
            found = self[name] = _build_group(name, found)
        return found


def _build_group(name: str, where: str) -> TyperGroup:
    module, attribute = where.split(":")
    # As app.add_typer(sub_app, name=name) would have built it, with the top-level app's settings.
    return typer.main.get_group_from_info(
        TyperInfo(getattr(importlib.import_module(module), attribute), name=name),
        pretty_exceptions_short=app.pretty_exceptions_short,
        rich_markup_mode=app.rich_markup_mode,
        suggest_commands=app.suggest_commands,
    )


class _LazyGroup(TyperGroup):
    """The top-level group: the plain commands, then ``_GROUPS`` in their order, each built when
    first looked up."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        built = dict(self.commands)
        commands = _Commands({n: c for n, c in built.items() if n not in _GROUPS})
        for name, where in _GROUPS.items():
            commands[name] = built[name] if where is None else where
        self.commands = commands


app = typer.Typer(
    cls=_LazyGroup, add_completion=False, no_args_is_help=True, help="Switchboard, a self-hosted LLM gateway."
)
config_app = typer.Typer(no_args_is_help=True, help="Work with configuration files.")
app.add_typer(config_app, name="config")
db_app = typer.Typer(no_args_is_help=True, help="Work with the database.")
app.add_typer(db_app, name="db")
secrets_app = typer.Typer(no_args_is_help=True, help="Work with the secrets stored in the database.")
app.add_typer(secrets_app, name="secrets")
app.command("usage")(usage)


def _print_version(value: bool) -> None:
    if value:
        out.print(__version__)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Switchboard, a self-hosted LLM gateway."""


def _fail_config(exc: ConfigError) -> None:
    err.print(line(("invalid configuration", "bold red"), f" ({len(exc.problems)} problem(s)):"))
    for problem in exc.problems:
        err.print(line(f"  {exc.source}: {problem}"))
    for skipped in exc.skipped:
        err.print(line(f"  not checked: {skipped}"))
    raise typer.Exit(2)


@app.command()
def serve(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default 4000).")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes (default 1).")] = None,
) -> None:
    """Start the gateway. Without --config it runs the embedded default with a demo model."""
    _exit_on_unsupported_libraries()
    from switchboard.server import ServeOptions, listen_problem, resolve_settings
    from switchboard.server import serve as run
    from switchboard.settings.embedded import master_key, url_host
    from switchboard.settings.loader import ConfigError

    opts = ServeOptions(str(config) if config else None, host, port, workers)
    try:
        # Before the settings: they read the key file this creates on the first start.
        key = master_key() if config is None else None
        settings = resolve_settings(opts)
    except ConfigError as exc:
        _fail_config(exc)
        return
    problem = listen_problem(settings.server.host, settings.server.port) or _metrics_listen_problem(settings)
    if problem:
        error(problem)
        raise typer.Exit(1)
    _open_stores_or_exit(settings)
    s = settings.server
    base = f"http://{url_host(s.host)}:{s.port}"
    models = ", ".join(m.name for m in settings.models) or "(none)"
    if s.log_format == "json":  # every line of the process is a JSON object, the banner too
        from switchboard.observability.logs import configure as configure_logs

        configure_logs(s.log_level, s.log_format)
        banner = logging.getLogger("switchboard.serve")
        banner.info("Switchboard %s on %s/v1 (%d worker(s))", __version__, base, s.workers)
        banner.info("models: %s", models)
    else:
        out.print(line((f"Switchboard {__version__}", "bold"), f" on {base}/v1  ({s.workers} worker(s))"))
        out.print(line(f"models: {models}"))
    if key is not None:
        out.print(line(f"embedded default: data in {s.data_dir}"))
        _print_master_key(key)
        out.print(
            "add a real provider: write a config file (see docs/configuration.md) and run "
            "'switchboard serve --config switchboard.yaml'"
        )
    run(settings)


def _print_master_key(key: MasterKey) -> None:
    """Where the embedded default's master key is; the key itself only when it was just created
    (on the terminal of the command that created it, never in a log), as it is never shown again."""
    if key.origin == "generated":
        out.print(line(f"master key (Bearer), generated and saved in {key.path}: {key.value}"))
    elif key.origin == "file":
        out.print(line(f"master key (Bearer): in {key.path}"))
    else:
        out.print("master key (Bearer): the value of SWITCHBOARD_MASTER_KEY")


@config_app.command("check")
def config_check(file: Annotated[Path, typer.Argument(help="YAML config file to validate.")]) -> None:
    """Validate a config file; exit 0 when valid, 2 with every problem listed otherwise (and the
    checks that could not run because what they read has problems)."""
    from switchboard.settings.loader import ConfigError, check

    try:
        settings = check(file)
    except ConfigError as exc:
        _fail_config(exc)
        return
    out.print(line(f"{file}: OK ({len(settings.providers)} provider(s), {len(settings.models)} model(s))"))


def _exit_on_unsupported_libraries() -> None:
    """Before the server's modules are imported (they import the internals checked): a library
    release whose internals differ from the ones the gateway relies on is refused here, by name,
    rather than failing at import or on the first request."""
    from switchboard.deps import unsupported

    problems = unsupported()
    for problem in problems:
        error(problem)
    if problems:
        raise typer.Exit(1)


def _metrics_listen_problem(settings: Settings) -> str | None:
    """Why the metrics listener (``metrics.port``) cannot be opened, or None: said before
    anything starts, as for the gateway's own port, not as a traceback at start-up."""
    from switchboard.server import listen_problem

    m = settings.metrics
    problem = listen_problem(m.host, m.port) if m.enabled and m.port else None
    return None if problem is None else f"metrics.port: {problem}"


def _open_stores_or_exit(settings: Settings | None, upgrade_only: bool = False) -> None:
    import asyncio

    from switchboard.stores import StoreError

    try:
        if upgrade_only:
            from switchboard.stores.factory import upgrade_database

            database, revision = asyncio.run(upgrade_database(settings))
            out.print(line(f"{database}: schema at revision {revision} (the newest)"))
        else:
            # Only serve checks what the gateway needs (importing it is most of `db upgrade`).
            from switchboard.gateway import check_serving

            assert settings is not None
            asyncio.run(check_serving(settings))
    except StoreError as exc:
        err.print(line(("cannot open the stores:", "bold red"), f" {exc}"))
        raise typer.Exit(1) from None


@db_app.command("upgrade")
def db_upgrade(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")] = None,
) -> None:
    """Apply pending database migrations (serve does this too at start). Without --config: the
    SQLite file in the data dir."""
    from switchboard.settings.loader import ConfigError, load

    settings = None
    if config is not None:
        try:
            settings = load(config)
        except ConfigError as exc:
            _fail_config(exc)
            return
    _open_stores_or_exit(settings, upgrade_only=True)


@secrets_app.command("rotate")
def secrets_rotate(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")] = None,
) -> None:
    """Re-seal stored REST services' headers (one transaction, first), MCP secrets (another) and
    every stored provider credential and the API-key hashing key (a third, last, with the run's
    audit entry) under the current server secret (auth.secret_key), opening them with it or a
    previous one (auth.previous_secret_keys, $SWITCHBOARD_PREVIOUS_SECRET_KEYS). Idempotent."""
    import asyncio

    from switchboard.crypto.keyring import DecryptError, from_settings
    from switchboard.crypto.rotate import PROVIDERS_STEP, Stopped, audit_entry, rotate_all
    from switchboard.server import ServeOptions, resolve_settings
    from switchboard.settings.embedded import master_key
    from switchboard.settings.loader import ConfigError
    from switchboard.stores import StoreError, open_stores

    try:
        # The embedded default's settings create its master key file on a fresh data directory.
        key = master_key() if config is None else None
        settings = resolve_settings(ServeOptions(str(config) if config else None, None, None, None))
    except ConfigError as exc:
        _fail_config(exc)
        return
    if key is not None and key.origin == "generated":
        # Said as serve says it on its first start: this is the only time the key is shown.
        _print_master_key(key)
    keyring = from_settings(settings.auth)
    assert keyring is not None, "resolve_settings always provides a secret"

    async def run() -> Rotated:
        stores = await open_stores(settings)
        try:
            try:
                # An admin change like any other: the run's entry is in its last transaction.
                return await rotate_all(stores.services, stores.providers, stores.mcp, keyring)
            except Stopped as stop:
                # The steps before the one that stopped are committed: a change all the same
                # (unless the database failed, when an entry of its own would fail as well).
                if stop.done.changed and isinstance(stop.cause, DecryptError):
                    await stores.audit.append(audit_entry(stop.done, complete=False))
                raise
        finally:
            await stores.close()

    try:
        done = asyncio.run(run())
    except StoreError as exc:
        err.print(line(("cannot open the stores:", "bold red"), f" {exc}"))
        raise typer.Exit(1) from None
    except Stopped as stop:
        head = "partly rotated:" if stop.done.changed else "nothing rotated:"
        so_far = f" {_resealed(stop.done)} before;" if stop.done.changed else ""
        if isinstance(stop.cause, DecryptError):
            err.print(line((head, "bold red"), f"{so_far} a stored secret does not open ({stop.cause}); "
                           "give the secret it was sealed with in auth.previous_secret_keys and run "
                           "it again"))
        else:
            # The last step's transaction holds the run's audit entry: the database may have
            # refused either.
            last = stop.step == PROVIDERS_STEP
            what = f"{stop.step} with the run's audit entry" if last else stop.step
            stay = "they stay" if last else "they, and what the steps after it hold, stay"
            err.print(line((head, "bold red"), f"{so_far} the database did not store the re-seal of the "
                           f"{what} ({_first_line(stop.cause)}); {stay} sealed under the previous "
                           "key: keep it in auth.previous_secret_keys and run it again"))
        raise typer.Exit(1) from None
    out.print(line(f"{_resealed(done)}; the rest already were"))


def _first_line(exc: Exception) -> str:
    """A database error's cause without the statement and parameters its later lines show."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _resealed(done: Rotated) -> str:
    """What a rotation re-sealed, as its report says it."""
    return (f"re-sealed under key {done.key_id}: {done.credentials} provider credential(s), "
            f"{done.server_secrets} server secret(s), {done.service_headers} service(s)' headers, "
            f"{done.mcp_secrets} MCP server secret(s), {done.mcp_tokens} MCP OAuth token(s)")


def _delay(help_text: str) -> Any:
    return typer.Option(min=0, max=3_600_000, help=help_text)  # at most an hour


@app.command()
def mock(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    # Bounded: the socket would take 99999 as 34463, and a negative delay means nothing.
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 9001,
    latency_ms: Annotated[float, _delay("Delay before each answer.")] = 0.0,
    ttft_ms: Annotated[float, _delay("Delay before the first stream chunk.")] = 0.0,
    chunk_delay_ms: Annotated[float, _delay("Delay between stream chunks.")] = 0.0,
    api_key: Annotated[str | None, typer.Option(help="Require this key, as each provider sends it.")] = None,
) -> None:
    """Run the mock upstream that speaks the providers' wire formats, for development and tests."""
    import uvicorn

    from switchboard.mock.app import create_mock_app
    from switchboard.mock.controls import Controls

    controls = Controls(latency_ms=latency_ms, ttft_ms=ttft_ms, chunk_delay_ms=chunk_delay_ms)
    out.print(line(f"Switchboard mock upstream on http://{host}:{port} (OpenAI base: http://{host}:{port}/v1)"))
    uvicorn.run(
        create_mock_app(controls, api_key),
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=1,
    )


@app.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)


def main() -> None:
    from switchboard.admin_client import AdminError
    from switchboard.config.paths import DataDirError
    from switchboard.settings.variables import VariableError

    try:
        app()
    # An answer that is not the gateway's (see admin_client.Answer), a data directory that cannot
    # be used, a variable set empty: one line, as for the other failures met at run time.
    except (AdminError, DataDirError, VariableError) as exc:
        error(exc)
        raise SystemExit(1) from None
