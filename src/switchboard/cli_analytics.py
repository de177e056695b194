"""``switchboard analytics rebuild``: recount the analytics rollups of a time range from the usage
ledger, in the database itself (records stored before the rollups existed, or after a repair).
Idempotent: each UTC hour of the range is deleted and recounted in one transaction."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import rich.markup
import typer
from rich.console import Console

from switchboard.config.schema import Settings
from switchboard.settings.loader import ConfigError, load

analytics_app = typer.Typer(no_args_is_help=True, help="Work with the analytics rollups.")
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _time(name: str, value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise typer.BadParameter("expected an RFC 3339 time with a zone, e.g. 2026-06-01T00:00:00Z",
                                 param_hint=name)
    return parsed.astimezone(UTC)


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
            err.print(f"[bold red]invalid configuration[/] ({len(exc.problems)} problem(s)):")
            for problem in exc.problems:
                err.print(f"  {exc.source}: {problem}", markup=False)
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
        err.print(f"[bold red]cannot open the stores:[/] {rich.markup.escape(str(exc))}")
        raise typer.Exit(1) from None
    out.print(f"rebuilt the analytics rollups from {start:%Y-%m-%dT%H:00:00Z}: {counted} record(s) counted",
              markup=False)
