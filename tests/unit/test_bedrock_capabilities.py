"""Every request cell of the bedrock capability table against the adapter: refused rows are a 400
naming the parameter (or dropped with drop_params), translated rows land where the cell says."""

from __future__ import annotations

from typing import Any

import pytest

from switchboard.errors import UnsupportedParameter
from switchboard.providers.capabilities import table
from switchboard.providers.capabilities.rows import REQUEST_ROWS, Row
from tests.unit.test_bedrock_request import build, target

CELLS = table("bedrock")
# Where a row's example does not ask for the feature on Converse: json_object is a value Converse
# refuses (json_schema is the feature it translates), and a tool_choice needs tools to choose from.
EXAMPLES: dict[str, dict[str, Any]] = {
    "response_format": {"response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "object"}}}},
    "tool_choice": {"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required"},
}


def request(row: Row) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "hi"}], **EXAMPLES.get(row.name, row.example)}


def lands(body: Any, path: str) -> bool:
    """Whether the dot path exists in the body (lists are walked through)."""
    if not path:
        return True
    head, _, rest = path.partition(".")
    if isinstance(body, list):
        return any(lands(item, path) for item in body)
    return isinstance(body, dict) and head in body and lands(body[head], rest)


REFUSED = [r for r in REQUEST_ROWS if CELLS[r.name].kind == "refused"]
TRANSLATED = [r for r in REQUEST_ROWS if CELLS[r.name].kind == "translated"]


@pytest.mark.parametrize("row", REFUSED, ids=lambda r: r.name)
def test_refused_rows_are_a_400_or_dropped(row: Row) -> None:
    with pytest.raises(UnsupportedParameter) as err:
        build(request(row))
    assert err.value.param == row.param
    # drop_params sends what the request without the feature sends.
    assert build(request(row), target(drop_params=True))[1] == build(row.drop(request(row)))[1]


@pytest.mark.parametrize("row", TRANSLATED, ids=lambda r: r.name)
def test_translated_rows_land_where_the_cell_says(row: Row) -> None:
    _, body, _ = build(request(row))
    assert lands(body, CELLS[row.name].to), body


def test_every_row_has_a_cell() -> None:
    assert {r.name for r in REQUEST_ROWS} <= set(CELLS)
    assert all(cell.kind != "passed" for cell in CELLS.values())  # Converse is never the same dialect
