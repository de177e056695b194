"""One capability matrix: for each chat request field (and each response feature), per provider
type, what the gateway does with it.

The adapters take their decisions from here (:func:`check`), the table in ``docs/providers.md``
is generated from it (``python -m switchboard.providers.capabilities.docs``), and a parametrised
test (``tests/unit/test_capability_matrix.py``) checks every cell against the adapter, so the
three cannot drift apart.

A cell is one of:

- ``translated``: mapped to the provider's own field (``to`` names where it lands upstream);
- ``passed``: sent upstream as written (same dialect);
- ``refused``: a clear 400 naming the field, unless ``drop_params`` is asked for (model entry or
  request), in which case the field is removed and the request goes on. Nothing is ever dropped
  without that policy, so there is no "dropped" kind.

Each provider type has its own module here (``capabilities/<type>.py``, ``-`` written ``_``)
exposing:

- ``TABLE``: a cell for every row of :data:`rows.REQUEST_ROWS` (keyed by ``Row.name``) and every
  key of :data:`rows.RESPONSE_ROWS`;
- ``SAMPLES`` (needed as soon as a response row is ``translated``): ``{response row name: the
  upstream's non-stream reply body as a dict}``, a canned reply that carries the feature;
- ``EXAMPLES`` (optional): ``{request row name: fragment}`` replacing ``row.example`` for this
  provider type (and its variants) when the generic example cannot probe the cell: e.g. a row
  the provider translates for some values and refuses for the example's (Bedrock's
  ``response_format``: json_schema translated, json_object refused as a value), or an example
  the provider needs more context for (``tool_choice`` without ``tools``). Only the probe
  changes; the cell, the 400 and ``row.present``/``row.drop`` are the row's own;
- ``VARIANTS`` (optional): ``{variant: Table}`` for tables a provider type switches between
  (``openai-compatible`` presets). The table key is then ``"<type>:<variant>"``, e.g.
  ``"openai-compatible:groq"``; the adapter passes it to :func:`check` as ``key``, and the 400
  names the variant as ``VARIANT_LABEL`` (default "variant") says: "with preset 'groq'".

What the matrix test checks, per (table, row), with a minimal request (``model``, one user
message ``"hi"``) merged with ``row.example`` (or the type's ``EXAMPLES`` entry), sent
through the adapter's ``chat_request``:

- request row, ``translated(to)``: no 400, and the dot path ``to`` exists in the upstream JSON
  body (segments are keys; a segment of digits indexes a list: ``"messages.0.content.0.x"``).
  Empty ``to``: only "no 400" is checked (say where the field went in ``note``);
- request row, ``passed``: every key of the example arrives in the upstream body unchanged;
- request row, ``refused``: :class:`UnsupportedParameter` with ``param == row.param_in(request)``; with
  ``drop_params`` the request succeeds and the upstream body equals the one sent for
  ``row.drop(request)`` (the feature is gone, nothing else changed);
- response row, ``translated(to)``: ``SAMPLES[row]`` (JSON-encoded) parsed by the adapter's
  ``chat_response`` gives a canonical reply in which the dot path ``to`` exists and is not
  empty (e.g. ``"choices.0.message.reasoning_content"``,
  ``"usage.prompt_tokens_details.cached_tokens"``);
- response row, ``refused("not reported")``: nothing to probe (documented only).

Message-level rows (``messages.audio``, ``messages.name``, ...; ``Row.message_key``) name the
message in the 400 (``messages[1].audio``, ``Row.param_in``), and :func:`check` looks at them only
when some message carries their key, collected in one pass over the messages.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from switchboard.errors import UnsupportedParameter
from switchboard.providers.capabilities.rows import REQUEST_ROWS, Row, message_keys
from switchboard.providers.params import HINTS, drop_advice, drops
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

# ``user`` where the provider has no end-user field: accepted and not sent. An end-user id does
# not change the output, and clients send it unasked (Claude Code's metadata.user_id arrives as
# ``user`` through /v1/messages), so refusing it would fail those clients for nothing.
NOT_SENT_USER = translated(note="no end-user field upstream: not sent")

# ``parallel_tool_calls: false`` where the provider has no control: sent without it, and the
# gateway keeps the first tool call of each choice in the reply (providers/tool_calls.py).
ENFORCED = "enforced by the gateway: only the first tool call of a reply is kept"

# ``safety_settings`` (Gemini's safety thresholds) where the provider has no per-request
# thresholds: accepted and not sent. The Gemini CLI sends them on every request, so refusing them
# would break it; the provider's own policies apply.
NOT_SENT_SAFETY = translated(note="no per-request safety thresholds upstream: not sent")


def seed(translates: Iterable[str], **cells: Cell) -> Table:
    """A table where the rows named in ``translates`` are translated to the field of the same
    name, ``cells`` are as given (keyed by row name, '.' and ':' written as '__' and '_is_'),
    and every other row is refused."""
    from switchboard.providers.capabilities.rows import REQUEST_ROWS, RESPONSE_ROWS

    given = {_row_name(k): v for k, v in cells.items()}
    names = set(translates)
    known = {row.name for row in REQUEST_ROWS} | set(RESPONSE_ROWS)
    if unknown := (set(given) | names) - known:  # a misspelt row would silently read as refused
        raise KeyError(f"no such capability rows: {sorted(unknown)}")
    out: Table = {}
    for row in REQUEST_ROWS:
        out[row.name] = given.get(row.name) or (translated(row.name) if row.name in names else refused())
    for name in RESPONSE_ROWS:
        out[name] = given.get(name) or refused("not reported")
    return out


def module_name(provider_type: str) -> str:
    return provider_type.replace("-", "_")


def _module_path(provider_type: str) -> str:
    return f"switchboard.providers.capabilities.{module_name(provider_type)}"


def _row_name(keyword: str) -> str:
    # "tool_choice_is_none" (or "tool_choice__is_none") -> "tool_choice:none";
    # "tools__strict" -> "tools.strict"
    return keyword.replace("__is_", ":").replace("_is_", ":").replace("__", ".")


@cache
def table(key: str) -> Table:
    """The table of a provider type (``"gemini"``) or of a variant of one (``"openai-compatible:groq"``)."""
    provider_type, _, variant = key.partition(":")
    module = importlib.import_module(f"switchboard.providers.capabilities.{module_name(provider_type)}")
    result: Table = module.VARIANTS[variant] if variant else module.TABLE
    return result


def samples(provider_type: str) -> dict[str, dict[str, Any]]:
    """Canned upstream replies per response row (see the module docstring)."""
    module = importlib.import_module(f"switchboard.providers.capabilities.{module_name(provider_type)}")
    result: dict[str, dict[str, Any]] = getattr(module, "SAMPLES", {})
    return result


def example(key: str, row: Row) -> dict[str, Any]:
    """The fragment the matrix test probes ``row`` with for table ``key``: the provider type's
    ``EXAMPLES`` entry if it has one, else ``row.example`` (see the module docstring)."""
    module = importlib.import_module(_module_path(key.partition(":")[0]))
    given: dict[str, dict[str, Any]] = getattr(module, "EXAMPLES", {})
    if unknown := set(given) - {r.name for r in REQUEST_ROWS}:  # a misspelt name would silently not apply
        raise KeyError(f"EXAMPLES names no request row: {sorted(unknown)}")
    return given.get(row.name, row.example)


MISSING = object()


def at(obj: Any, path: str) -> Any:
    """The value at the dot path ``path`` in ``obj`` (digit segments index lists), or ``MISSING``."""
    for segment in path.split("."):
        if isinstance(obj, list) and segment.isdigit() and int(segment) < len(obj):
            obj = obj[int(segment)]
        elif isinstance(obj, dict) and segment in obj:
            obj = obj[segment]
        else:
            return MISSING
    return obj



@cache
def _refused(key: str) -> tuple[Row, ...]:
    cells = table(key)
    return tuple(
        row for row in REQUEST_ROWS
        if cells[row.name].kind == "refused" and not (row.within and cells[row.within].kind == "refused")
    )


@cache
def _looked_at(key: str) -> tuple[frozenset[str], tuple[Row, ...]]:
    """The request keys the refused rows of table ``key`` look at (``Row.param``: a row is
    present or idle only when its key is there), and the rows."""
    rows = _refused(key)
    return frozenset(row.param for row in rows), rows


def check(request: dict[str, Any], target: Target, key: str | None = None) -> dict[str, Any]:
    """``request`` without the refused features it uses when ``drop_params`` asks for that, else a
    400 naming the first one. Features the provider translates or passes are left alone.

    ``key`` names the table when it is not the provider type's own (e.g. a preset's). Only the
    refused rows are looked at, and only when the request carries one of their keys, so a request
    using none of them (nearly all, on most providers) pays one set look.
    A refused key sent with a value that asks for nothing (``logprobs: false``, ``n: 1``, null) is
    removed: it means the default, which the provider gives without it.

    Message-level rows are looked at only when some message carries their key: the keys of all
    messages are collected once, on the first such row (one pass over the messages).

    The fields named in the request's ``switchboard_hints`` (params.HINTS) are removed where refused instead
    of answering 400: the inbound API they came from documents them as hints, the answer is the
    same without them. The list itself is never sent."""
    if HINTS in request:  # only translated inbound APIs set it: one look for every other request
        request = _unhinted(request, key or target.provider_type)
    params, rows = _looked_at(key or target.provider_type)
    if params.isdisjoint(request):  # the common case: none of their keys (one look in C)
        return request
    keys: set[str] | None = None
    for row in rows:
        if row.message_key:
            if keys is None:
                keys = message_keys(request)
            if row.message_key not in keys:
                continue
        if not row.present(request):
            if row.idle(request):
                request = row.drop(request)
            continue
        if not drops(request, target):
            raise UnsupportedParameter(
                f"{row.what} is not supported by provider type '{target.provider_type}'{_variant(key)} "
                f"(model '{target.name}'); {drop_advice()}",
                param=row.param_in(request),
            )
        request = row.drop(request)
    return request


def _unhinted(request: dict[str, Any], key: str) -> dict[str, Any]:
    """``request`` without its ``switchboard_hints`` list and without the hinted fields table
    ``key`` refuses."""
    hints, cells = request[HINTS], table(key)
    if not isinstance(hints, list | tuple):
        hints = ()
    return {
        k: v for k, v in request.items()
        if k != HINTS and not (k in hints and k in cells and cells[k].kind == "refused")
    }


def _variant(key: str | None) -> str:
    if not key or ":" not in key:
        return ""
    provider_type, _, variant = key.partition(":")
    module = importlib.import_module(f"switchboard.providers.capabilities.{module_name(provider_type)}")
    return f" with {getattr(module, 'VARIANT_LABEL', 'variant')} '{variant}'"
