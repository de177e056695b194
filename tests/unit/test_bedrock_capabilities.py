"""Every request cell of the bedrock capability table against the adapter: refused rows are a 400
naming the parameter (or dropped with drop_params), translated rows land where the cell says."""

from __future__ import annotations

from typing import Any

import pytest

from switchboard.errors import UnsupportedParameter
from switchboard.providers.capabilities import MISSING, at, example, table
from switchboard.providers.capabilities.rows import REQUEST_ROWS, Row
from tests.unit.test_bedrock_request import build, target

CELLS = table("bedrock")


def request(row: Row) -> dict[str, Any]:
    # The table's own probe (EXAMPLES in capabilities/bedrock.py) where the generic one cannot ask.
    return {"messages": [{"role": "user", "content": "hi"}], **example("bedrock", row)}


def lands(body: Any, path: str) -> bool:
    """Whether the dot path (the framework's: digit segments index lists) exists in the body."""
    return not path or at(body, path) is not MISSING


REFUSED = [r for r in REQUEST_ROWS if CELLS[r.name].kind == "refused"]
TRANSLATED = [r for r in REQUEST_ROWS if CELLS[r.name].kind == "translated"]


@pytest.mark.parametrize("row", REFUSED, ids=lambda r: r.name)
def test_refused_rows_are_a_400_or_dropped(row: Row) -> None:
    with pytest.raises(UnsupportedParameter) as err:
        build(request(row))
    assert err.value.param == row.param_in(request(row))
    # drop_params sends what the request without the feature sends.
    assert build(request(row), target(drop_params=True))[1] == build(row.drop(request(row)))[1]


@pytest.mark.parametrize("row", TRANSLATED, ids=lambda r: r.name)
def test_translated_rows_land_where_the_cell_says(row: Row) -> None:
    _, body, _ = build(request(row))
    assert lands(body, CELLS[row.name].to), body


def test_every_row_has_a_cell() -> None:
    assert {r.name for r in REQUEST_ROWS} <= set(CELLS)
    assert all(cell.kind != "passed" for cell in CELLS.values())  # Converse is never the same dialect
