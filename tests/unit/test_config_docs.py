"""Every configuration key the schema accepts is named in the configuration reference.

docs/configuration.md is the reference; a model's catalog record (`models[].info`,
`catalog.models`) is described in docs/catalog.md, which the reference points to. A key added to
the schema without a word in either fails here.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path

from pydantic import BaseModel

from switchboard.config.schema import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _models_in(annotation: object) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds (through Optional, list, dict, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found.extend(_models_in(arg))
    return found


def _keys(model: type[BaseModel], prefix: str, seen: set[type[BaseModel]]) -> list[tuple[str, str]]:
    """(dotted path, key as written in YAML) for every field reachable from ``model``."""
    if model in seen:
        return []
    seen.add(model)
    out: list[tuple[str, str]] = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        out.append((prefix + key, key))
        for inner in _models_in(field.annotation):
            out.extend(_keys(inner, f"{prefix}{key}.", seen))
    return out


def test_the_walk_reaches_every_section() -> None:
    paths = {path for path, _ in _keys(Settings, "", set())}
    assert {"server.port", "router.retry.on", "request_log.redact.patterns", "models.info.mode"} <= paths
    assert len(paths) > 300


def test_every_configuration_key_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text() + (DOCS / "catalog.md").read_text()
    missing = [path for path, key in _keys(Settings, "", set())
               if not re.search(rf"(?<![\w-]){re.escape(key)}(?![\w-])", text)]
    assert missing == [], f"configuration keys not named in docs/configuration.md: {missing}"
