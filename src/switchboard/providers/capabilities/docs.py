"""The capability matrix as a Markdown table in docs/providers.md, generated from the tables.

``python -m switchboard.providers.capabilities.docs`` rewrites the text between the markers
(``--check`` only reports whether it is current); a unit test fails when the committed table
differs from the generated one.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from switchboard.providers.capabilities import Cell, module_name, table
from switchboard.providers.capabilities.rows import REQUEST_ROWS, RESPONSE_ROWS

BEGIN = "<!-- capability-matrix:begin -->"
END = "<!-- capability-matrix:end -->"

# Columns, in the order of the other tables of docs/providers.md.
PROVIDER_TYPES = (
    "openai", "azure", "openai-compatible", "mistral", "anthropic", "bedrock", "cohere", "gemini", "vertex",
)

DOCS = Path(__file__).resolve().parents[4] / "docs" / "providers.md"


def cell_text(cell: Cell) -> str:
    if cell.kind == "translated":
        text = f"`{cell.to}`" if cell.to else cell.note or "translated"
        return f"{text} ({cell.note})" if cell.to and cell.note else text
    word = "passed" if cell.kind == "passed" else "refused"
    if cell.kind == "refused" and cell.note == "not reported":
        return "not reported"
    return f"{word} ({cell.note})" if cell.note else word


def _variants(provider_type: str) -> dict[str, dict[str, Cell]]:
    module = importlib.import_module(f"switchboard.providers.capabilities.{module_name(provider_type)}")
    variants: dict[str, dict[str, Cell]] = getattr(module, "VARIANTS", {})
    return variants


def _cell(provider_type: str, row: str) -> str:
    base = table(provider_type)[row]
    text = cell_text(base)
    differing: dict[str, list[str]] = {}
    for variant, cells in _variants(provider_type).items():
        if cells[row] != base:
            differing.setdefault(cell_text(cells[row]), []).append(variant)
    for other, names in differing.items():
        text += f"; {', '.join(f'`{n}`' for n in names)}: {other}"
    return text.replace("|", "\\|")


def generated() -> str:
    head = "| feature | " + " | ".join(f"`{t}`" for t in PROVIDER_TYPES) + " |"
    lines = [head, "|" + "---|" * (len(PROVIDER_TYPES) + 1)]
    for row in REQUEST_ROWS:
        lines.append(f"| `{row.name}` | " + " | ".join(_cell(t, row.name) for t in PROVIDER_TYPES) + " |")
    for name, what in RESPONSE_ROWS.items():
        cells = " | ".join(_cell(t, name) for t in PROVIDER_TYPES)
        lines.append(f"| reply: {what} | {cells} |")
    return "\n".join(lines)


def rewrite(text: str) -> str:
    """``text`` with the table between the markers replaced by the generated one."""
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start] + "\n" + generated() + "\n" + text[end:]


def main(argv: list[str]) -> int:
    text = DOCS.read_text()
    new = rewrite(text)
    if "--check" in argv:
        if new != text:
            print(f"{DOCS}: the capability matrix is out of date", file=sys.stderr)
            return 1
        return 0
    DOCS.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
