"""docs/api.md's error tables agree with the codes the source produces.

Both directions: every code the tables name is one the gateway can answer (a string in its
source, the mock upstream left out), and every code raised on the model API's path (an error
class's ``code``, or ``code="..."`` where an error is built) is in a table, but for the few
that never reach a client, listed below with the reason. The class table names each class of
``ERROR_TABLE`` with its code.

Codes a provider adapter gives an upstream's error (``content_filter`` for Cohere's 498, ...) are
the "upstream 4xx" row's "upstream's" and are listed per provider in docs/providers.md; the
admin API, MCP, services, files and prompt APIs have their codes on their own pages.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from switchboard.errors import ERROR_TABLE

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "switchboard"

# The modules a model call (/v1/*, the Anthropic and Gemini APIs) runs through.
MODEL_API = ("errors.py", "http/endpoint.py", "http/errors.py", "http/protocol.py", "http/openai_api.py",
             "http/validate.py", "http/anthropic/", "http/gemini/", "http/media/", "http/responses/",
             "pipeline/", "routing/", "access/", "limits/", "spend/", "tokens/", "upstream/",
             "providers/base.py")

# Codes raised on that path that no client ever reads.
INTERNAL = {
    "client_closed": "recorded for an attempt the client abandoned: the client is gone, nothing is written",
    "check_not_answered": "a health check the gateway's shutdown cut short; health checks have no client",
}

# Error classes the class table does not name in a row of their own.
UNNAMED_CLASSES = {"UpstreamError": "the base of the upstream classes: the 'an upstream 4xx' row"}


def _errors_section() -> str:
    return (ROOT / "docs" / "api.md").read_text().split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]


def _rows(width: int) -> list[list[str]]:
    """The rows of the section's tables of ``width`` columns, header and rule left out."""
    rows = []
    for line in _errors_section().splitlines():
        cells = [c.strip() for c in line.strip()[1:-1].split(" | ")] if line.startswith("| ") else []
        if len(cells) == width and not cells[0].startswith(("condition", "class", "---")):
            rows.append(cells)
    return rows


def _codes(cell: str) -> set[str]:
    """The codes a code cell names: before any `;` (headers follow), outside parentheses."""
    head = re.sub(r"\([^)]*\)", "", cell.split(";", 1)[0])
    return set(re.findall(r"`([a-z][a-z0-9_]*)`", head))


def _documented() -> set[str]:
    return {code for row in _rows(4) for code in _codes(row[3])} | \
           {code for row in _rows(7) for code in _codes(row[4])}


def _sources() -> dict[str, ast.Module]:
    return {str(path.relative_to(SRC)): ast.parse(path.read_text()) for path in SRC.rglob("*.py")}


def _code_positions(tree: ast.Module) -> dict[str, int]:
    """The module's own helpers and error classes taking a ``code`` argument: name -> its
    position in a call (a class by its ``__init__``)."""
    positions = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names = [a.arg for a in node.args.args]
            if "code" in names:
                positions[node.name] = names.index("code") - (names[0] in ("self", "cls"))
        elif isinstance(node, ast.ClassDef):
            for init in node.body:
                if isinstance(init, ast.FunctionDef) and init.name == "__init__":
                    names = [a.arg for a in init.args.args]
                    if "code" in names:
                        positions[node.name] = names.index("code") - 1
    return positions


def _raised(tree: ast.Module) -> set[str]:
    """Codes an error is given: ``code="..."`` in a call, a code passed by position to one of
    the module's helpers (``fail(param, message, "invalid_type")``), ``code = "..."`` in a class
    body."""
    found: set[str] = set()
    helpers = _code_positions(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            found |= {text for kw in node.keywords if kw.arg == "code" and (text := _text(kw.value))}
            at = helpers.get(getattr(node.func, "id", getattr(node.func, "attr", "")), len(node.args))
            if at < len(node.args) and (text := _text(node.args[at])):
                found.add(text)
        elif isinstance(node, ast.ClassDef):
            for statement in node.body:
                target: ast.expr
                if isinstance(statement, ast.AnnAssign):
                    target, value = statement.target, statement.value
                elif isinstance(statement, ast.Assign):
                    target, value = statement.targets[0], statement.value
                else:
                    continue
                if isinstance(target, ast.Name) and target.id == "code" and (text := _text(value)):
                    found.add(text)
    return found


def _text(node: ast.AST | None) -> str | None:
    """The string a node is, when it is a string literal."""
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _strings(tree: ast.Module) -> set[str]:
    return {text for node in ast.walk(tree) if (text := _text(node))}


def test_the_tables_are_found() -> None:
    assert len(_rows(4)) > 50 and len(_rows(7)) > 15
    assert {"invalid_json", "upstream_timeout", "token_expired", "budget_exceeded"} <= _documented()


def test_every_documented_code_is_one_the_gateway_answers() -> None:
    gateway = [tree for path, tree in _sources().items() if not path.startswith("mock/")]
    strings = set().union(*(_strings(tree) for tree in gateway))
    unknown = sorted(_documented() - strings)
    assert unknown == [], f"docs/api.md names error codes the source never produces: {unknown}"


def test_every_code_of_the_model_api_is_documented() -> None:
    raised: dict[str, str] = {}
    for path, tree in _sources().items():
        if path.startswith(MODEL_API):
            raised |= {code: path for code in _raised(tree)}
    undocumented = {code: path for code, path in sorted(raised.items())
                    if code not in _documented() and code not in INTERNAL}
    assert undocumented == {}, f"error codes missing from docs/api.md's error table: {undocumented}"
    assert set(INTERNAL) <= set(raised), "an internal code no longer raised: drop it from INTERNAL"


def test_the_class_table_names_each_class_with_its_code() -> None:
    by_name = {cls.__name__: row for cls, row in ERROR_TABLE.items()}
    named: set[str] = set()
    for row in _rows(7):
        classes = re.findall(r"\b([A-Z][A-Za-z]+)\b", re.sub(r"\([^)]*\)", "", row[0]))
        for name in classes:
            assert name in by_name, f"docs/api.md's class table: no error class {name}"
            code = by_name[name].code
            assert code is None or code in _codes(row[4]), f"{name}: its code {code!r} is not in {row[4]!r}"
            assert row[1] == str(by_name[name].status), f"{name}: status {row[1]} in the docs"
        named |= set(classes)
    assert set(by_name) - named == set(UNNAMED_CLASSES)
