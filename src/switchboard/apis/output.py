"""A prompt API's output: the text, or JSON checked against the API's output schema, and the
messages that ask the model to repair an invalid answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from switchboard.apis import schemas

# Errors shown to the model (and in the 502) at most; each message bounded.
MAX_ERRORS = 10
MAX_ERROR_CHARS = 300


def schema_problem(schema: Mapping[str, Any]) -> str | None:
    """Why ``schema`` is not a usable JSON schema (draft 2020-12); None when it is."""
    lib = schemas.JSONSCHEMA()
    try:
        lib.Draft202012Validator.check_schema(schema)
    except lib.SchemaError as exc:
        return exc.message[:MAX_ERROR_CHARS]
    return None


def _where(path: Any) -> str:
    parts = [str(p) for p in path]
    return "/".join(parts) if parts else "(root)"


def output_errors(text: str, schema: Mapping[str, Any]) -> tuple[Any, list[str]]:
    """(the parsed output, what is wrong with it): an empty list when ``text`` is JSON that
    satisfies ``schema``. A fenced block (```json ... ```) is read as its content."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.strip("`")
        if stripped.startswith("json"):
            stripped = stripped[4:]
    try:
        value = orjson.loads(stripped)
    except orjson.JSONDecodeError as exc:
        return None, [f"not valid JSON: {str(exc)[:MAX_ERROR_CHARS]}"]
    errors = sorted(schemas.errors(schema, value), key=lambda e: [str(p) for p in e.absolute_path])
    return value, [f"{_where(e.absolute_path)}: {e.message[:MAX_ERROR_CHARS]}" for e in errors[:MAX_ERRORS]]


def repair_messages(answer: str, errors: list[str], schema: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What is appended to the conversation to ask for a corrected answer: the invalid answer,
    then the errors and the schema."""
    listed = "\n".join(f"- {e}" for e in errors)
    return [
        {"role": "assistant", "content": answer[:20_000]},
        {"role": "user", "content": (
            "Your previous answer does not satisfy the required JSON schema:\n"
            f"{listed}\n"
            "Answer again with only the corrected JSON value, no other text. The schema:\n"
            f"{orjson.dumps(schema).decode()}"
        )},
    ]
