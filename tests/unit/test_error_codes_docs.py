"""docs/api.md's error tables agree with the codes the source produces.

Both directions: every code the tables name is one the gateway can answer (a string in its
source, the mock upstream left out), and every code raised on the model API's path (an error
class's ``code``, or ``code="..."`` where an error is built) is in a table, but for the few
that never reach a client, listed below with the reason. The class table names each class of
``ERROR_TABLE`` with its code.

Codes a provider adapter gives an upstream's error (``content_filter`` for Cohere's 498, ...) are
the "upstream 4xx" row's "upstream's" and are listed per provider in docs/providers.md.

The admin API, MCP, services, files and prompt APIs have their codes on their own pages
(``SURFACES``), checked both ways too. The Anthropic and Gemini APIs answer the model API's
errors (their modules are in ``MODEL_API``) in shapes without a code: their pages' tables of
statuses and error types (Anthropic) or status names (Gemini) are checked against the mapping.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

from switchboard.errors import ANTHROPIC_TYPE_BY_STATUS, ERROR_TABLE, anthropic_type
from switchboard.http.gemini.errors import status_name

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


@functools.cache
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


# The other surfaces, each with the modules that answer on it and the pages that document it.
# A code is documented on a page when it is in backticks there (in a table row, after its
# status, or in the text); docs/api.md's error tables count for every surface, since their
# general rows (`invalid_value`, `unknown_url`, `store_unavailable`...) apply to all of them. The
# admin API's routes are documented with the feature they manage, so its pages are several.
SURFACES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "admin API": (("http/admin/",),
                  ("api.md", "access.md", "budgets.md", "limits.md", "routing.md", "providers.md",
                   "prompts.md", "prompt-apis.md", "services.md", "mcp.md", "observability.md")),
    "MCP": (("http/mcp/", "http/mcp_oauth.py", "http/mcp_consent.py", "mcp/"), ("mcp.md",)),
    "services": (("http/services/", "services/"), ("services.md",)),
    "files and batches": (("http/files/",), ("api-files.md",)),
    "prompt APIs": (("http/apis/", "apis/"), ("prompt-apis.md",)),
}

_SPAN = re.compile(r"`([^`\n]+)`")
# A markdown code span in running text: a run of backticks, up to a run of as many (```` ```json ````
# holds a fence's backticks).
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)([^\n]+?)(?<!`)\1(?!`)")
_WORD = re.compile(r"[a-z][a-z0-9_]*")
# Where a page names a code it answers: after its HTTP status (`404 api_not_found`, 409
# `api_exists`, 400 `invalid_type` / `invalid_value`), or in a JSON-RPC error table's row.
_ANSWERED = (re.compile(r"`[45]\d\d ([a-z][a-z0-9_]*)`"),
             re.compile(r"\b[45]\d\d ((?:`[a-z][a-z0-9_]*`(?: / |, | or )?)+)"),
             re.compile(r"\| -32\d{3}(?: / -32\d{3})* \| ((?:`[a-z][a-z0-9_]*`(?: / )?)+)"))


def _page(name: str) -> str:
    return (ROOT / "docs" / name).read_text()


def _block(line: str) -> bool:
    """A line that is not part of a paragraph's running text: blank, a table row, a fence."""
    stripped = line.strip()
    return not stripped or stripped.startswith(("|", "```"))


@functools.cache
def _prose(name: str) -> str:
    return _joined(_page(name))


def _joined(text: str) -> str:
    """``text`` with each paragraph's lines joined by a space, as markdown renders them: a code
    span broken across two lines (its opening backtick on one, its closing one on the next) is
    one span, and a status at the end of one line with its code in backticks at the start of the
    next is read as if on one line. Table rows and fenced code stay line by line."""
    out: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
        elif not fenced and out and not _block(line) and not _block(out[-1]):
            out[-1] = out[-1].rstrip() + " " + line.strip()
            continue
        out.append(line)
    return "\n".join(out)


def _named_on(pages: tuple[str, ...]) -> set[str]:
    """Every word in backticks on the pages."""
    return {word for page in pages for _, span in _CODE_SPAN.findall(_prose(page))
            for word in _WORD.findall(span)}


def _answered_on(pages: tuple[str, ...]) -> set[str]:
    """The codes the pages say a request is answered with."""
    return {word for page in pages for pattern in _ANSWERED for found in pattern.findall(_prose(page))
            for word in _WORD.findall(found)}


# The literal text of an f-string that builds a code: code characters, a letter among them (an
# f-string of placeholders alone, ``f"{kind}_{name}"``, would match any word).
_CODE_PART = re.compile(r"[a-z0-9_]*[a-z][a-z0-9_]*")


def _formatted(tree: ast.Module) -> list[re.Pattern[str]]:
    """The f-strings of a module as patterns (``f"{kind}_not_found"``: ``[a-z_]+_not_found``):
    a code built from a name is documented by its instances."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            literal = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
            if not _CODE_PART.fullmatch(literal):
                continue
            parts = [re.escape(v.value) if isinstance(v, ast.Constant) else "[a-z_]+" for v in node.values]
            out.append(re.compile("".join(parts)))
    return out


def test_a_code_broken_across_lines_is_read_as_markdown_renders_it() -> None:
    text = _joined("A clash answers `409\napi_exists`, a gone one 410\n`api_retired`; see\n`limits`.\n\n"
                   "| 404 `x_not_found` |\n| `y_z` |\n\n```yaml\nkey: `not_a_code`\n```\n"
                   "A fence is written ```` ```json ```` in\ntext, then `ok_code`.")
    answered = {word for pattern in _ANSWERED for found in pattern.findall(text)
                for word in _WORD.findall(found)}
    assert answered == {"api_exists", "api_retired", "x_not_found"}
    spans = [span for _, span in _CODE_SPAN.findall(text)]
    assert spans == ["409 api_exists", "api_retired", "limits", "x_not_found", "y_z", "not_a_code",
                     " ```json ", "ok_code"]


@pytest.mark.parametrize("surface", SURFACES)
def test_every_code_documented_for_a_surface_is_one_it_answers(surface: str) -> None:
    gateway = [tree for path, tree in _sources().items() if not path.startswith("mock/")]
    strings = set().union(*(_strings(tree) for tree in gateway))
    patterns = [p for tree in gateway for p in _formatted(tree)]
    _, pages = SURFACES[surface]
    unknown = sorted(code for code in _answered_on(pages) - strings
                     if not any(p.fullmatch(code) for p in patterns))
    assert unknown == [], f"{', '.join(pages)} name error codes the source never produces: {unknown}"


@pytest.mark.parametrize("surface", SURFACES)
def test_every_code_of_a_surface_is_documented_on_its_pages(surface: str) -> None:
    modules, pages = SURFACES[surface]
    raised: dict[str, str] = {}
    for path, tree in _sources().items():
        if path.startswith(modules):
            raised |= {code: path for code in _raised(tree)}
    documented = _named_on(pages) | _documented()
    undocumented = {code: path for code, path in sorted(raised.items()) if code not in documented}
    assert undocumented == {}, f"{surface}: error codes missing from {', '.join(pages)}: {undocumented}"


def _status_rows(page: str, section: str) -> dict[int, str]:
    """A page's table of statuses and the name each is answered with (the first backticked
    word of the row's second cell): ``| 500, 502 | `api_error` | ...`` -> {500: ..., 502: ...}."""
    text = _page(page).split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[int, str] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) >= 2 and (name := _SPAN.search(cells[1])):
            for status in re.findall(r"\b[1-5]\d\d\b", re.sub(r"\([^)]*\)", "", cells[0])):
                rows[int(status)] = name.group(1)
    return rows


# The statuses a client of the Anthropic or Gemini API can be answered with: those of the error
# classes but 409 and 410 (admin and prompt-API conflicts and retirements, never a model call),
# and 405 (a method a path does not answer).
_MODEL_STATUSES = {row.status for row in ERROR_TABLE.values()} - {409, 410} | {405}


def test_the_anthropic_error_types_are_those_answered() -> None:
    rows = _status_rows("api-anthropic.md", "Errors")
    assert {s: anthropic_type(s) for s in rows} == rows
    # Each status with a type of its own has a row (529 is Anthropic's own "overloaded": the
    # gateway answers 503); the other 4xx share the 400 row ("and other 4xx"), every 5xx is named.
    assert set(rows) >= set(ANTHROPIC_TYPE_BY_STATUS) - {529}
    server_side = {s for s in _MODEL_STATUSES if s >= 500}
    assert set(rows) >= server_side, sorted(server_side - set(rows))


def test_the_gemini_error_statuses_are_those_answered() -> None:
    rows = _status_rows("api-gemini.md", "Errors")
    assert {s: status_name(s) for s in rows} == rows
    assert set(rows) >= _MODEL_STATUSES, sorted(_MODEL_STATUSES - set(rows))
