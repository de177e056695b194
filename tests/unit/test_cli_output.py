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
from switchboard.http.admin.usage import METRICS

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


def test_non_ascii_text_is_shown_as_written_bidi_controls_escaped() -> None:
    """A masked value in a mapping cell reads "sk-…wxyz", not "sk-\\u2026wxyz"; a right-to-left
    override (which would reorder the rest of the line) stays escaped, in a mapping or not."""
    masked = {"X-Custom": "sk-…wxyz", "x-é": "日本"}
    assert cli_output.cell(masked).plain == '{"X-Custom": "sk-…wxyz", "x-é": "日本"}'
    assert cli_output.cell([{"k": "…"}, "ü"]).plain == '{"k": "…"}, ü'
    assert cli_output.cell({"n": "a\u202egnp.exe\x1b"}).plain == '{"n": "a\\u202egnp.exe\\u001b"}'
    assert cli_output.cell("evil\u202etxt.exe\u2066x\u200f").plain == "evil\\u202etxt.exe\\u2066x\\u200f"
    assert cli_output.line("\u061c ok \x85").plain == "\\u061c ok \\x85"


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


# -- tables at the terminal's width: every header word whole, headers wrapped before cells are
# folded, else one block per row


def _printed(built: Any, width: int) -> list[str]:
    console = Console(width=width, highlight=False, markup=False)
    with console.capture() as captured:
        console.print(built)
    return captured.get().splitlines()


def _cells_of(lines: list[str]) -> set[str]:
    return {part.strip() for text in lines for part in text.replace("┃", "│").split("│")}


def _header_lines(lines: list[str]) -> list[str]:
    """The lines of a table's header row (it may wrap onto several)."""
    return [text for text in lines[:lines.index(next(t for t in lines if t.startswith("┡")))]
            if text.startswith("┃")]


def _words_of(lines: list[str]) -> set[str]:
    return {word for part in _cells_of(lines) for word in part.split()}


def _header_words(columns: list[str]) -> set[str]:
    """The words a header shows: its name's parts between spaces or underscores."""
    return {word for column in columns for word in column.replace("_", " ").split()}


def test_fit_widths_cuts_the_widest_first_never_below_a_header() -> None:
    assert cli_output.fit_widths([40, 5, 10], [2, 5, 8], 30) == [15, 5, 10]
    assert cli_output.fit_widths([40, 30, 5], [2, 20, 5], 40) == [15, 20, 5]
    assert cli_output.fit_widths([10, 10], [8, 8], 15) is None
    assert cli_output.fit_widths([3, 4], [3, 4], 10) == [3, 4]


def test_a_narrowed_table_keeps_every_header_and_id_whole() -> None:
    columns = ["id", "name", "created_at", "created_by"]
    ident = "key_0123456789abcdef0123"
    rows = [[ident, "a rather long descriptive name", "2026-12-04T17:10:43.409895+00:00", "master"]]
    lines = _printed(cli_output.table(columns, rows), 60)
    assert all(len(text) <= 60 for text in lines)
    assert _header_words(columns) <= _words_of(_header_lines(lines))  # each word whole
    first_column = "".join(text.split("│")[1].strip() for text in lines if text.startswith("│"))
    assert first_column == ident  # folded onto lines of its column, never cut with an ellipsis
    assert "…" not in "".join(lines)


def test_a_table_whose_header_words_cannot_fit_shows_a_block_per_row() -> None:
    columns = ["model", "requests", "completion_tokens", "cache_write_tokens", "image_output_tokens",
               "audio_output_tokens", "latency_ms_avg"]
    rows = [["gpt-4o-mini", 3, 16, 0, 0, 0, 2.5], ["gpt-4o", 1, 2, 0, 0, 0, None]]
    lines = _printed(cli_output.table(columns, rows, title="usage"), 60)
    assert lines[0].strip() == "usage" and all(len(text) <= 60 for text in lines)
    found = [[part.strip() for part in text.split("│")[1:3]] for text in lines if "│" in text]
    expected = [[c.replace("_", " "), "-" if v is None else str(v)]
                for row in rows for c, v in zip(columns, row, strict=True)]
    assert found == expected
    # At 80 columns the headers wrap between their words: one table, each value on one line.
    lines = _printed(cli_output.table(columns, rows), 80)
    assert all(len(text) <= 80 for text in lines) and len(_header_lines(lines)) > 1
    assert _header_words(columns) <= _words_of(_header_lines(lines))
    assert [text.count("│") for text in lines if text.startswith("│")] == [len(columns) + 1] * 2
    assert {"gpt-4o-mini", "gpt-4o", "2.5"} <= _cells_of(lines)
    # Wide enough, one header line, the words still separated by spaces.
    wide = _printed(cli_output.table(columns, rows), 200)
    assert len(_header_lines(wide)) == 1 and "completion tokens" in _cells_of(wide)


def test_a_usage_report_is_a_table_at_200_columns() -> None:
    """Sixteen columns whose headers side by side would need some 230 columns: they wrap."""
    columns = ["model", *METRICS]
    rows = [["gpt-4o-mini", 3, 0, 16, 123, 0, 0, 0, 0, 0, 0, 0, "0.000123", False, 2.5, 1.2]]
    lines = _printed(cli_output.table(columns, rows, title="usage"), 200)
    assert all(len(text) <= 200 for text in lines)
    assert sum(text.startswith("┏") for text in lines) == 1  # one table, not a block per row
    assert _header_words(columns) <= _words_of(_header_lines(lines))
    assert {"gpt-4o-mini", "0.000123", "False"} <= _cells_of(lines)  # every value on one line
    assert "…" not in "".join(lines)
