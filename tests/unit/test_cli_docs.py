"""Every ``switchboard …`` command line README.md and docs/ show names a command the CLI has, and
every ``--flag`` it passes is one of that command's options: a renamed command or flag fails here
rather than in the hands of someone copying the line. Every ``curl`` line sends a key and a body
that is JSON, as the gateway wants them.

Command lines are read from code spans and code blocks alike (a ``\\`` line continuation joins the
lines); ``create|update`` and ``list/show`` are alternatives, each checked."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import typer.main

from switchboard.cli import app

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

# `switchboard` then a command word, up to the end of the span, the shell command or the line.
_COMMAND = re.compile(r"(?<![\w/.@-])switchboard ([a-z][\w-]*(?:\\\||[^`|;&#)\n])*)")
_FLAG = re.compile(r"\[?(--[a-z][\w-]*|-[a-zA-Z])(?![\w-])")  # `[--json]`: an optional one

# Command lines the docs show on purpose although the CLI lacks them, with the reason.
_ABSENT = {"db downgrade": "configuration.md says there is none"}


def _command_lines() -> list[tuple[str, list[str]]]:
    """(page:line, words after `switchboard`) for every command line shown."""
    found = []
    for page in PAGES:
        text = re.sub(r"\\\n\s*", " ", page.read_text())
        for number, line in enumerate(text.splitlines(), 1):
            for m in _COMMAND.finditer(line):
                found.append((f"{page.relative_to(ROOT)}:{number}", m[1].replace("\\|", "|").split()))
    return found


def _alternatives(words: list[str]) -> list[list[str]]:
    """`keys create|update --region R` as two command lines."""
    for i, word in enumerate(words):
        if not word.startswith("-") and re.fullmatch(r"[a-z][\w-]*(?:[|/][a-z][\w-]*)+", word):
            return [line for alt in re.split(r"[|/]", word)
                    for line in _alternatives([*words[:i], alt, *words[i + 1:]])]
    return [words]


def _problem(cli: Any, words: list[str]) -> str | None:
    """What is wrong with one command line, or None."""
    command, path = cli, []
    for word in words:
        if not hasattr(command, "get_command"):
            break
        sub = command.get_command(None, word)
        if sub is None:
            if path and re.fullmatch(r"[a-z][\w-]*", word) and " ".join([*path, word]) not in _ABSENT:
                return f"`{' '.join(path)}` has no command {word!r}"
            return None  # prose after a group's name (`switchboard keys …`)
        command, path = sub, [*path, word]
    if hasattr(command, "get_command"):
        return None
    options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    unknown = [flag[1] for word in words[len(path):] if (flag := _FLAG.match(word))
               and flag[1] not in options | {"--help"}]
    return f"`{' '.join(path)}` has no option {unknown[0]}" if unknown else None


def test_command_lines_are_found() -> None:
    lines = [" ".join(words) for _, words in _command_lines()]
    assert len(lines) > 50
    assert "config check switchboard.yaml" in lines
    assert _alternatives(["keys", "create|update", "--region", "R"]) == [
        ["keys", "create", "--region", "R"], ["keys", "update", "--region", "R"]]


def test_every_documented_command_line_exists() -> None:
    cli = typer.main.get_command(app)
    wrong = [f"{where}: switchboard {' '.join(words)}: {problem}"
             for where, shown in _command_lines() for words in _alternatives(shown)
             if (problem := _problem(cli, words))]
    assert wrong == [], "command lines in the docs the CLI does not take:\n" + "\n".join(wrong)


def _curl_lines() -> list[tuple[str, str]]:
    """(page:line, command) for every curl command: to the end of its line, a quoted body (which
    may span lines) read whole, or to a backtick, `|`, `;`, `&&` or a `# ` comment outside quotes."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for m in re.finditer(r"(?<![\w-])curl ", text):
            quoted, end = False, m.start()
            while end < len(text):
                char = text[end]
                if text.startswith("\\\n", end):  # a line continuation
                    end += 1
                elif char == "'":
                    quoted = not quoted
                elif not quoted and (char in "`\n|;" or text.startswith(("&&", "# "), end)):
                    break
                end += 1
            where = f"{page.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}"
            found.append((where, re.sub(r"\\\n\s*", " ", text[m.start():end])))
    return found


def test_every_curl_example_sends_a_key_and_json() -> None:
    """Every endpoint the examples call wants a key; a body with `...` in it is elided on purpose."""
    lines = _curl_lines()
    assert len(lines) > 10
    wrong = []
    for where, line in lines:
        if not re.search(r"-H \"(Authorization: Bearer|x-api-key:) ", line):
            wrong.append(f"{where}: no key: {line}")
        for body in re.findall(r"-d '([^']*)'", line):
            if "..." not in body:
                try:
                    json.loads(body)
                except ValueError as exc:
                    wrong.append(f"{where}: the body is no JSON ({exc}): {body}")
    assert wrong == [], "\n".join(wrong)
