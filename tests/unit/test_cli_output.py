"""How the commands print (cli_output.py): other people's text (names, descriptions, the
server's messages) is shown as written, never read as Rich markup, with control characters made
visible. The commands that talk to a gateway are covered end to end (tests/e2e/test_cli_*.py and
the CLI tests of test_tenancy, test_providers, test_budgets_admin, test_routing_groups,
test_mcp_loop); ``usage`` here, with the admin API answered in-process."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from switchboard import cli_output, cli_usage
from switchboard.cli import app

MARKUP = ("[/oops]", "[bold]x[/bold]", "[bold red]desc[/] [/x]", "[link=http://x]y[/link]")


def _captured(monkeypatch: pytest.MonkeyPatch, module: Any, width: int = 250) -> Console:
    # A console that reads markup, as Rich's default does: the cells must not depend on it.
    console = Console(width=width, highlight=False, markup=True)
    monkeypatch.setattr(module, "out", console)
    return console


def test_a_table_shows_every_cell_title_and_header_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    console = _captured(monkeypatch, cli_output)
    with console.capture() as captured:
        rows = [[m, None] for m in MARKUP] + [[["[/l]", "z"], {"k": 1}]]
        console.print(cli_output.table(["[/h]", "b"], rows, title="[/title]"))
    text = captured.get()
    for expected in (*MARKUP, "[/h]", "[/title]", "[/l], z", '{"k": 1}'):
        assert expected in text, expected
    assert "-" in text  # nothing


def test_control_characters_are_shown_escaped() -> None:
    assert cli_output.cell("a\x1b[31mred\x07").plain == "a\\x1b[31mred\\x07"
    assert cli_output.line("x\ny\tz\x00").plain == "x\ny\tz\\x00"


def test_the_consoles_read_no_markup() -> None:
    for shared in (cli_output.out, cli_output.err):
        with shared.capture() as captured:
            shared.print("[/x] [bold]y[/bold]")
            shared.print(cli_output.line(("error: ", "bold red"), "[/x] closing"))
        assert captured.get() == "[/x] [bold]y[/bold]\nerror: [/x] closing\n"


class _Answers:
    def __init__(self, url: str, key: str) -> None:
        pass

    def call(self, method: str, path: str, body: Any = None, query: Any = None) -> Any:
        return {"group_by": ["model"], "since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z",
                "data": [{"model": m, "requests": 1} for m in MARKUP]}


def test_the_usage_table_shows_model_names_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_usage, "AdminClient", _Answers)
    console = _captured(monkeypatch, cli_usage, width=1000)  # every metric is a column
    with console.capture() as captured:
        result = CliRunner().invoke(app, ["usage", "--key", "k"])
    assert result.exit_code == 0, result.output
    for name in MARKUP:
        assert name in captured.get(), captured.get()
