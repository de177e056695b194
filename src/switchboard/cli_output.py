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
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

out = Console(highlight=False, soft_wrap=True, markup=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)


def printable(value: Any) -> str:
    """A value as text a terminal shows as is: control characters (an escape sequence in a
    logged prompt, say) become visible escapes; newlines and tabs stay."""
    text = "-" if value is None else value if isinstance(value, str) else json.dumps(value)
    if all(c in "\n\t" or unicodedata.category(c) != "Cc" for c in text):
        return text
    return "".join(c if c in "\n\t" or unicodedata.category(c) != "Cc" else f"\\x{ord(c):02x}" for c in text)


def cell(value: Any) -> Text:
    """A table cell: ``-`` for nothing, a list as ``a, b``, a mapping as JSON, anything else as
    its text."""
    if value is None or value == []:
        return Text("-")
    if isinstance(value, list):
        text = ", ".join(json.dumps(v) if isinstance(v, dict) else str(v) for v in value)
    else:
        text = json.dumps(value) if isinstance(value, dict) else str(value)
    return Text(printable(text))


def table(columns: Iterable[str], rows: Iterable[Iterable[Any]], *, title: str | None = None,
          show_header: bool = True) -> Table:
    """A table whose headers, title and cells are all plain text (see :func:`cell`)."""
    built = Table(title=Text(printable(title)) if title is not None else None, show_header=show_header)
    for column in columns:
        built.add_column(Text(column))
    for row in rows:
        built.add_row(*(c if isinstance(c, Text) else cell(c) for c in row))
    return built


def line(*parts: str | tuple[str, str]) -> Text:
    """One line of plain text; a ``(text, style)`` part is styled (e.g. ``("error:", "bold red")``)."""
    return Text.assemble(*((printable(p[0]), p[1]) if isinstance(p, tuple) else printable(p) for p in parts))


def error(message: Any, console: Console | None = None) -> None:
    """``error: <message>`` on standard error, the message as written (often the server's words)."""
    (console or err).print(line(("error: ", "bold red"), str(message)))
