"""How the commands print: one place, so that no command reads what it shows as Rich markup.

Names, descriptions, labels, model ids and the server's error messages are other people's text:
a description holding ``[/x]`` would make Rich raise (no table, a traceback) and ``[bold]``
would be styled instead of shown. So the consoles here read no markup, every table cell and
title is a plain :class:`~rich.text.Text`, and control characters (an escape sequence in a
name could drive the terminal) are shown as visible escapes. Styling is added as Text styles,
never written into strings.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import typer
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

from switchboard.admin_client import AdminError

T = TypeVar("T")
Record = dict[str, Any]
# A table's columns: field names read from each record, or headers with how to compute the cell.
Columns = Sequence[str] | Mapping[str, Callable[[Record], Any]]

out = Console(highlight=False, soft_wrap=True, markup=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)


# Bidirectional embeddings, overrides, isolates and marks: shown raw they reorder what is printed
# around them (a name that reads as something it is not), so they are escaped like controls.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _shown(c: str) -> bool:
    return c in "\n\t" or (unicodedata.category(c) != "Cc" and c not in _BIDI)


def _escaped(c: str) -> str:
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def json_text(value: Any) -> str:
    """A value as JSON text with other scripts and symbols as written ("sk-…wxyz", not
    "sk-\\u2026wxyz"); what a terminal must not get raw is escaped by :func:`printable`."""
    return json.dumps(value, ensure_ascii=False)


def printable(value: Any) -> str:
    """A value as text a terminal shows as is: control characters (an escape sequence in a
    logged prompt, say) and bidirectional controls become visible escapes; newlines and tabs
    stay."""
    text = "-" if value is None else value if isinstance(value, str) else json_text(value)
    if all(_shown(c) for c in text):
        return text
    return "".join(c if _shown(c) else _escaped(c) for c in text)


def cell(value: Any) -> Text:
    """A table cell: ``-`` for nothing, a list as ``a, b``, a mapping as JSON, anything else as
    its text."""
    if value is None or value == []:
        return Text("-")
    if isinstance(value, list):
        text = ", ".join(json_text(v) if isinstance(v, dict) else str(v) for v in value)
    else:
        text = json_text(value) if isinstance(value, dict) else str(value)
    return Text(printable(text))


def _widest_line(text: Text) -> int:
    return max((Text(line).cell_len for line in text.plain.split("\n")), default=0)


def _longest_word(text: Text) -> int:
    """The narrowest a header can be: it wraps between words, never inside one."""
    return max((Text(word).cell_len for word in text.plain.split()), default=0)


def header_text(name: str) -> str:
    """A column name as a table header: words separated by spaces (``cache read tokens``, not
    ``cache_read_tokens``), so it can wrap between them. JSON and CSV keep the field names."""
    return name.replace("_", " ")


def fit_widths(natural: list[int], minimum: list[int], room: int) -> list[int] | None:
    """Column widths within ``room``: each column's natural width, the widest cut first, none
    below its minimum (its header's longest word); None when even the minimums do not fit."""
    if sum(minimum) > room:
        return None
    widths = list(natural)
    excess = sum(widths) - room
    while excess > 0:
        widest = max((i for i, w in enumerate(widths) if w > minimum[i]), key=lambda i: widths[i])
        cut = min(excess, widths[widest] - minimum[widest],
                  max(1, widths[widest] - max((w for i, w in enumerate(widths) if i != widest), default=0)))
        widths[widest] -= cut
        excess -= cut
    return widths


class FittedTable(Table):
    """A table that keeps every header word whole in the terminal's width (``COLUMNS``).

    Rich shrinks a table that is too wide column by column, headers included, down to one
    letter and an ellipsis: at 80 columns a usage report read ``m… r… e…``. This one narrows a
    column no further than its header's longest word: a header wraps between its words, and
    cells fold onto more lines (so an id stays whole to copy). Only when even the longest words
    side by side do not fit does it show each row as a block of ``header  value`` lines instead.
    A table with no rows is its title and ``(none)`` at any width (an empty frame of headers
    would read as output cut short)."""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if not self.row_count:
            yield from self._records()
            return
        room = options.max_width - (3 * len(self.columns) + 1)  # borders and padding of each column
        headers = [c.header if isinstance(c.header, Text) else Text(str(c.header)) for c in self.columns]
        cells = [max((_widest_line(x) if isinstance(x, Text) else len(str(x)) for x in c.cells), default=0)
                 for c in self.columns]
        words = [_longest_word(h) for h in headers]
        natural = [max(_widest_line(h), w) for h, w in zip(headers, cells, strict=True)]
        if sum(natural) <= room:
            yield from super().__rich_console__(console, options)
            return
        # Headers wrap first, so that every value stays on one line; only then are values folded.
        whole_values = [max(w, c) for w, c in zip(words, cells, strict=True)]
        widths = fit_widths(natural, whole_values, room)
        if widths is None:
            widths = fit_widths(whole_values, words, room)
        if widths is None:
            yield from self._records()
            return
        for column, width in zip(self.columns, widths, strict=True):
            column.width = width
        try:
            yield from super().__rich_console__(console, options)
        finally:
            for column in self.columns:
                column.width = None

    def _records(self) -> RenderResult:
        """Each row as a two-column block, the headers down its left side."""
        if self.title is not None:
            yield self.title
        rows = list(zip(*(list(c.cells) for c in self.columns), strict=True))
        if not rows:
            yield Text("(none)")
        for row in rows:
            block = Table(show_header=False)
            block.add_column(no_wrap=True)
            block.add_column(overflow="fold")
            for column, value in zip(self.columns, row, strict=True):
                block.add_row(column.header, value)
            yield block


def table(columns: Iterable[str | Text], rows: Iterable[Iterable[Any]], *, title: str | None = None,
          show_header: bool = True) -> Table:
    """A table whose headers, title and cells are all plain text (see :func:`cell`), its header
    words whole at any terminal width (see :class:`FittedTable`; a name's underscores are shown
    as spaces, :func:`header_text`)."""
    built = FittedTable(title=Text(printable(title)) if title is not None else None, show_header=show_header)
    for column in columns:
        name = column.plain if isinstance(column, Text) else column
        built.add_column(Text(header_text(name), style=column.style if isinstance(column, Text) else ""),
                         overflow="fold")
    for row in rows:
        built.add_row(*(c if isinstance(c, Text) else cell(c) for c in row))
    return built


def line(*parts: str | tuple[str, str]) -> Text:
    """One line of plain text; a ``(text, style)`` part is styled (e.g. ``("error:", "bold red")``)."""
    return Text.assemble(*((printable(p[0]), p[1]) if isinstance(p, tuple) else printable(p) for p in parts))


def error(message: Any, console: Console | None = None) -> None:
    """``error: <message>`` on standard error, the message as written (often the server's words)."""
    (console or err).print(line(("error: ", "bold red"), str(message)))


def run_admin(call: Callable[[], T]) -> T:
    """What ``call`` returns; when the admin API refuses (or no gateway answers), the
    command prints ``error: <message>`` and exits with status 1."""
    try:
        return call()
    except AdminError as exc:
        error(exc)
        raise typer.Exit(1) from None


def print_records(records: list[Record], columns: Columns, as_json: bool) -> None:
    """``records`` as JSON (as they came) or as a table of ``columns``."""
    if as_json:
        out.print_json(json.dumps(records))
        return
    if isinstance(columns, Mapping):
        rows = ([value(record) for value in columns.values()] for record in records)
    else:
        rows = ([record.get(column) for column in columns] for record in records)
    out.print(table(columns, rows))
