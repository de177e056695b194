"""Reading one YAML file, with its problems as plain sentences (no tracebacks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class YamlFileError(Exception):
    """The file cannot be read or is not valid YAML; the message says why."""


def read_yaml(path: str | Path) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise YamlFileError("file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlFileError(f"cannot read file: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlFileError(f"{where}invalid YAML: {problem}") from None
