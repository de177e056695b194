"""One capability matrix: for each chat request field (and each response feature), per provider
type, what the gateway does with it.

The adapters take their decisions from here (:func:`check`), the table in ``docs/providers.md``
is generated from it (``python -m switchboard.providers.capabilities.docs``), and a parametrised
test checks every cell against the adapter, so the three cannot drift apart.

A cell is one of:

- ``translated``: mapped to the provider's own field (``to`` names where it lands upstream);
- ``passed``: sent upstream as written (same dialect);
- ``refused``: a clear 400 naming the field, unless ``drop_params`` is asked for (model entry or
  request), in which case the field is removed and the request goes on. Nothing is ever dropped
  without that policy.

Each provider type has its own module here (``capabilities/<type>.py``) exposing ``TABLE``: a
cell for every row of :data:`switchboard.providers.capabilities.rows.ROWS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from switchboard.errors import UnsupportedParameter
from switchboard.providers.capabilities.rows import REQUEST_ROWS, Row
from switchboard.providers.params import drops
from switchboard.providers.target import Target

Kind = Literal["translated", "passed", "refused"]


@dataclass(frozen=True, slots=True)
class Cell:
    kind: Kind
    # translated: where the field lands in the upstream body (dot path, e.g. "generationConfig.topK"),
    # checked by the matrix test; "" when it lands in no single field (say how in ``note``).
    to: str = ""
    note: str = ""  # one short phrase for the docs table


def translated(to: str = "", note: str = "") -> Cell:
    return Cell("translated", to, note)


def passed(note: str = "") -> Cell:
    return Cell("passed", "", note)


def refused(note: str = "") -> Cell:
    return Cell("refused", "", note)


Table = dict[str, Cell]


def seed(translates: Iterable[str], **cells: Cell) -> Table:
    """A table where the rows named in ``translates`` are translated to the field of the same
    name, ``cells`` are as given (keyed by row name, '.' and ':' written as '__' and '_is_'),
    and every other row is refused."""
    from switchboard.providers.capabilities.rows import REQUEST_ROWS, RESPONSE_ROWS

    given = {k.replace("_is_", ":").replace("__", "."): v for k, v in cells.items()}
    names = set(translates)
    out: Table = {}
    for row in REQUEST_ROWS:
        out[row.name] = given.get(row.name) or (translated(row.name) if row.name in names else refused())
    for name in RESPONSE_ROWS:
        out[name] = given.get(name) or refused("not reported")
    return out


@cache
def table(provider_type: str) -> Table:
    module = importlib.import_module(f"switchboard.providers.capabilities.{provider_type}")
    result: Table = module.TABLE
    return result


@cache
def _refused(key: str) -> tuple[Row, ...]:
    cells = table(key)
    return tuple(row for row in REQUEST_ROWS if cells[row.name].kind == "refused")


def check(request: dict[str, Any], target: Target, key: str | None = None) -> dict[str, Any]:
    """``request`` without the refused features it uses when ``drop_params`` asks for that, else a
    400 naming the first one. Features the provider translates or passes are left alone.

    ``key`` names the table when it is not the provider type's own (e.g. a preset's). Only the
    refused rows are looked at, so a provider that refuses nothing pays nothing per request."""
    for row in _refused(key or target.provider_type):
        if not row.present(request):
            continue
        if not drops(request, target):
            raise UnsupportedParameter(
                f"{row.what} is not supported by provider type '{target.provider_type}' "
                f"(model '{target.name}'); set drop_params: true on the model, or send "
                '"drop_params": true, to drop it instead',
                param=row.param,
            )
        request = row.drop(request)
    return request
