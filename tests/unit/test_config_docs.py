"""Every configuration key the schema accepts is named in the configuration reference.

docs/configuration.md is the reference; a model's catalog record (`models[].info`,
`catalog.models`) is described in docs/catalog.md, which the reference points to. A key added to
the schema without a word in either fails here.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path

import yaml
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


# --- Documented defaults --------------------------------------------------------------------
#
# Each `| key | type | default | meaning |` table of docs/configuration.md is parsed, each row
# mapped to its schema field (the section heading names the Settings field; a row's key is the
# dotted path below it) and the default column compared with the field's default, wherever it
# is a plain literal: a number (with an optional KiB/MiB/GiB unit and a parenthesised note), a
# boolean, a string in backticks, a YAML list or mapping, `none`/`absent` (None) or `required`.

_UNITS = {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_NUMBER = re.compile(r"`?(-?\d[\d,]*(?:\.\d+)?)`?(?: (KiB|MiB|GiB))?(?: \(.*\))?")
_REQUIRED = object()
_PROSE = object()  # a default told in words: not compared, listed in _PROSE_DEFAULTS

# Rows whose default is said in words (or depends on something else), with the reason.
_PROSE_DEFAULTS = {
    "providers.api_base": "per provider type",
    "providers.proxy": "the file's egress.proxy, written into the entry when the file is loaded",
    "models.timeouts": "the provider's timeouts",
    "models.deployment": "derived from provider and model",
    "auth.oidc.algorithms": "every asymmetric algorithm",
    "server.data_dir": "$SWITCHBOARD_DATA_DIR, else ~/.switchboard, resolved at start",
    "redis.url": "required only when the redis section is present",
    "mcp_servers.url": "required for the HTTP transports only",
    "mcp_servers.allowed_tools": "all (no restriction)",
    "mcp_servers.command": "required for stdio only",
    "services.methods": "all methods",
    "alerts.rules.thresholds": "all thresholds",
    "alerts.rules.scopes": "all scopes",
    "alerts.rules.webhooks": "every webhook",
    "alerts.rules.threshold": "required for some kinds, refused for others",
    "router.health_checks": "off, and the interval and timeout of the nested keys",
}

# Rows that are not one schema field (a family of keys, a type's own options), by first key.
_UNMAPPED_ROWS = {
    "providers.*type options*": "each provider type's own options, checked by the type",
    "alerts.webhooks.<name>.url": "a row summarising the receivers' keys, as budgets.webhook",
    "mcp_servers.oauth": "sections described in words below the table and in mcp.md",
    "mcp.permissions.roles.<role>": "entries of mappings, with no default of their own",
    "router.groups.<name>": "an entry of a mapping, with no default of its own",
}


def _literal(cell: str) -> object:
    """A default cell as a Python value, or _PROSE when it is not a plain literal."""
    cell = cell.strip()
    if cell == "required":  # "required (stdio)" is a condition, told in words
        return _REQUIRED
    word = cell.strip("`").split(" (")[0]
    if word in ("none", "absent", "null"):
        return None
    if word in ("true", "false"):
        return word == "true"
    if m := _NUMBER.fullmatch(cell):
        number = float(m[1].replace(",", "")) * _UNITS.get(m[2] or "", 1)
        return int(number) if number.is_integer() else number
    if re.fullmatch(r"`[^`]+`", cell):
        value = yaml.safe_load(cell[1:-1]) if cell[1] in "[{" else cell[1:-1]
        return value
    return _PROSE


def _row_keys(cell: str) -> list[str]:
    """The dotted keys of a key cell: "`a`, `b`" are two, "`x[].a`, `.b`" are x.a and x.b."""
    names = re.findall(r"`([^`]+)`", cell) or [cell.strip()]
    keys: list[str] = []
    for name in names:
        name = name.replace("[]", "")
        if name.startswith(".") and keys:
            name = keys[0].rsplit(".", 1)[0] + name
        keys.append(name)
    return keys


def _sections() -> list[tuple[str, int, list[str]]]:
    """(heading, index of the table within it, row cells) for every defaults table."""
    found: list[tuple[str, int, list[str]]] = []
    heading, index, header, fenced = "", 0, False, False
    for line in (DOCS / "configuration.md").read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif fenced:
            continue  # a YAML comment is no heading
        elif line.startswith("#"):
            heading, index, header = line.lstrip("# "), 0, False
        elif line.startswith("| key | type | default | meaning |"):
            header = True
        elif line.startswith("| key |"):
            raise AssertionError(f"configuration.md, {heading}: a key table without a default column")
        elif header and line.startswith("|---"):
            continue
        elif header and line.startswith("|"):
            cells = re.split(r"(?<!\\)\|", line.strip()[1:-1])  # `a` \| `b` is one cell
            found.append((heading, index, [c.strip() for c in cells]))
        elif header:
            header, index = False, index + 1
    return found


def _section_prefix(heading: str, index: int) -> str:
    """The Settings path a table's keys hang from (`auth.oidc[]`: auth.oidc)."""
    names = [n.replace("[]", "") for n in re.findall(r"`([^`]+)`", heading)]
    if heading == "`mcp_servers` and `mcp`":
        return "mcp_servers" if index == 0 else "mcp"
    assert len(names) == 1, f"configuration.md: cannot tell the section of {heading!r}"
    return names[0]


def _field(path: str) -> typing.Any:
    """The pydantic field at a dotted path (`<name>` steps into a mapping's values)."""
    model: type[BaseModel] = Settings
    parts = path.split(".")
    for i, part in enumerate(parts):
        if part.startswith("<"):
            continue
        fields = {f.alias or n: f for n, f in model.model_fields.items()}
        field = fields[part]
        if i == len(parts) - 1:
            return field
        (model,) = _models_in(field.annotation)[:1]
    raise AssertionError(path)


def _plain(value: object) -> object:
    if isinstance(value, BaseModel):
        return _plain(value.model_dump(by_alias=True))
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return getattr(value, "value", value)


def _documented_defaults() -> list[tuple[str, object, str]]:
    """(dotted path, the documented default, the cell as written), one per key of every row."""
    rows = []
    for heading, index, cells in _sections():
        assert len(cells) == 4, f"configuration.md, {heading}: a row of {len(cells)} cells: {cells}"
        prefix = _section_prefix(heading, index)
        keys = _row_keys(cells[0])
        if f"{prefix}.{keys[0]}" in _UNMAPPED_ROWS:
            rows.append((f"{prefix}.{keys[0]}", _PROSE, cells[2]))
            continue
        defaults = [cells[2]]
        if len(keys) > 1 and len(parts := cells[2].split(", ")) == len(keys):
            defaults = parts  # `a`, `b` | `1`, `2`: one default each
        for i, key in enumerate(keys):
            cell = defaults[i] if len(defaults) > 1 else defaults[0]
            rows.append((f"{prefix}.{key}", _literal(cell), cell))
    return rows


def test_the_defaults_tables_are_found() -> None:
    paths = {path for path, _, _ in _documented_defaults()}
    assert {"server.port", "providers.timeouts.connect", "auth.oidc.leeway_seconds", "mcp.public_url",
            "request_log.bodies.team", "router.retry.max_backoff_seconds"} <= paths
    assert len(paths) > 240  # every table, auth's included


def test_every_documented_default_is_the_schema_default() -> None:
    wrong, prose = [], []
    for path, documented, cell in _documented_defaults():
        if path in _UNMAPPED_ROWS:
            continue
        if documented is _PROSE:
            _field(path)  # the row is still a key of the schema
            prose.append(path)
            continue
        field = _field(path)
        if documented is _REQUIRED:
            if not field.is_required():
                wrong.append(f"{path}: documented required, schema default {field.get_default()!r}")
            continue
        if field.is_required():
            wrong.append(f"{path}: documented {cell}, schema: required")
            continue
        actual = _plain(field.get_default(call_default_factory=True))
        if isinstance(documented, dict) and isinstance(actual, dict):
            actual = {k: actual.get(k) for k in documented}  # the keys the row names
        if _plain(documented) != actual:
            wrong.append(f"{path}: documented {cell}, schema default {actual!r}")
    assert wrong == [], "docs/configuration.md defaults disagree with the schema:\n" + "\n".join(wrong)
    assert sorted(prose) == sorted(_PROSE_DEFAULTS), "defaults in words not (or no longer) allow-listed"


def test_the_allow_listed_rows_exist() -> None:
    documented = {path for path, _, _ in _documented_defaults()}
    assert set(_UNMAPPED_ROWS) <= documented


# --- Documented bounds ----------------------------------------------------------------------
#
# The type column of every row whose key is a number (int or float) states its bounds in one of
# a few forms: a range (`0 to 65535`, `64 KiB to 1 GiB`, `60 s to 7 days`, `64 to 10^7`, written
# with an en dash or "to"), or comparisons (`> 0, ≤ 86400`, `≥ 1024`, `0 < s ≤ 300`, `> 0` to
# `10`). Each bound read there is
# checked against the schema's own validation of the field: the bound itself accepted (unless
# exclusive) and the nearest value past it refused.

_SCALES = {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "s": 1, "day": 86_400, "days": 86_400}
_AMOUNT = r"(\d[\d,]*(?:\.\d+)?(?:\^\d+)?)(?:\s?(KiB|MiB|GiB|days?|s)(?![\w]))?"
_RANGE = re.compile(rf"(>\s?)?{_AMOUNT}\s?(?:\u2013|-|to)\s?{_AMOUNT}")
_BETWEEN = re.compile(rf"{_AMOUNT} < s ≤ {_AMOUNT}")
_COMPARE = re.compile(rf"(>|≥|≤|<)\s?{_AMOUNT}")

# Numeric rows whose type column states no bound, with the reason (none: every one does).
_UNBOUNDED_ROWS: dict[str, str] = {}


def _amount(number: str, unit: str | None) -> float:
    base, _, power = number.replace(",", "").partition("^")
    value = float(base) ** int(power) if power else float(base)
    return value * _SCALES.get(unit or "", 1)


class _Bounds(typing.NamedTuple):
    low: float | None
    low_open: bool
    high: float | None
    high_open: bool


def _bounds(cell: str) -> _Bounds | None:
    """The bounds a type cell states, or None when it states none."""
    text = re.sub(r"\([^)]*\)|`[^`]*`", "", cell)  # notes, and bounds by another key's value
    if m := _BETWEEN.search(text):
        return _Bounds(_amount(m[1], m[2]), True, _amount(m[3], m[4]), False)
    if m := _RANGE.search(text):
        return _Bounds(_amount(m[2], m[3]), bool(m[1]), _amount(m[4], m[5]), False)
    low = high = None
    low_open = high_open = False
    for sign, number, unit in _COMPARE.findall(text):
        if sign in (">", "≥"):
            low, low_open = _amount(number, unit), sign == ">"
        else:
            high, high_open = _amount(number, unit), sign == "<"
    return None if low is None and high is None else _Bounds(low, low_open, high, high_open)


def _numeric_rows() -> list[tuple[str, str, str]]:
    """(dotted path, kind, type cell) of every documented key typed int or float."""
    from switchboard.config.base import scalar_kind

    rows = []
    for heading, index, cells in _sections():
        prefix = _section_prefix(heading, index)
        keys = _row_keys(cells[0])
        if f"{prefix}.{keys[0]}" in _UNMAPPED_ROWS:
            continue
        for key in keys:
            kind = scalar_kind(_field(f"{prefix}.{key}").annotation)
            if kind in ("int", "float"):
                rows.append((f"{prefix}.{key}", kind, cells[1]))
    return rows


def _accepts(path: str, value: float, kind: str) -> bool:
    from pydantic import TypeAdapter, ValidationError

    field = _field(path)
    annotation = typing.Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    adapter: TypeAdapter[typing.Any] = TypeAdapter(annotation)
    try:
        adapter.validate_python(int(value) if kind == "int" else value)
    except ValidationError:
        return False
    return True


def test_the_documented_bounds_are_read() -> None:
    rows = {path: _bounds(cell) for path, _, cell in _numeric_rows()}
    assert len(rows) > 100
    assert rows["server.port"] == _Bounds(0, False, 65535, False)
    assert rows["server.header_timeout_seconds"] == _Bounds(0, True, 86_400, False)
    assert rows["mcp.client_session_seconds"] == _Bounds(60, False, 7 * 86_400, False)
    assert rows["mcp.list_timeout_seconds"] == _Bounds(0, True, 300, False)
    assert rows["redis.publish_timeout_seconds"] == _Bounds(0, True, 10, False)
    assert rows["prompts.max_template_chars"] == _Bounds(64, False, 10**7, False)
    assert rows["server.max_body_bytes"] == _Bounds(1024, False, None, False)


def test_every_documented_bound_is_what_the_schema_enforces() -> None:
    wrong, unbounded = [], []
    for path, kind, cell in _numeric_rows():
        bounds = _bounds(cell)
        if bounds is None:
            unbounded.append(path)
            continue
        step = 1.0 if kind == "int" else None
        for edge, is_open, outward in ((bounds.low, bounds.low_open, -1), (bounds.high, bounds.high_open, 1)):
            if edge is None:
                continue
            # The nearest value past the edge, and the nearest one inside an open edge.
            nudge = step or max(abs(edge) * 1e-9, 1e-9)
            inside = edge - outward * nudge if is_open else edge
            outside = edge if is_open else edge + outward * nudge
            if not _accepts(path, inside, kind):
                wrong.append(f"{path} ({cell}): {inside:g} is refused")
            if _accepts(path, outside, kind):
                wrong.append(f"{path} ({cell}): {outside:g} is accepted")
    assert wrong == [], "docs/configuration.md bounds disagree with the schema:\n" + "\n".join(wrong)
    assert sorted(unbounded) == sorted(_UNBOUNDED_ROWS), "numeric rows with no bound stated"


# --- The examples -----------------------------------------------------------------------------
#
# Every ```yaml block of README.md and docs/ is read as the gateway reads a config file and,
# when its top-level keys are configuration sections, validated as a file would be at start-up:
# someone copying an example gets a file that loads. An example is often a fragment of a file
# (a `router` section naming groups of a `models` section not shown, a path on the reader's
# machine), so the problems only a whole file can avoid are left out (_FRAGMENT); every ${VAR}
# is set, and an `auth` section added where the block has none.

ROOT = DOCS.parent
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]

# Blocks that are no configuration file, by their first key: checked as what they are, or not.
_OTHER_FILES = {
    "sections": "a catalog file (catalog.md): checked with the catalog's reader",
    "scrape_configs": "a Prometheus scrape job",
    "groups": "Prometheus alerting rules",
}
# Problems a fragment has because the rest of its file is not shown.
_FRAGMENT = re.compile(
    r"unknown provider '|unknown model group '|has no deployment '"  # defined in the rest of the file
    r"|does not exist|cannot read '|file not found"  # a path on the reader's machine
)


class _AnyVariable(dict[str, str]):
    """An environment where every variable is set."""

    def get(self, name: str, default: object = None) -> str:  # type: ignore[override]
        return f"placeholder-{name.lower()}"

    def __getitem__(self, name: str) -> str:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return True


def _yaml_blocks() -> list[tuple[str, str]]:
    """(page:line, text) of every ```yaml block, a block indented under a list item dedented."""
    blocks = []
    for page in PAGES:
        lines = page.read_text().splitlines()
        start = None
        for number, line in enumerate(lines, 1):
            if start is None and line.strip() == "```yaml":
                start, indent = number, len(line) - len(line.lstrip())
            elif start is not None and line.strip() == "```":
                text = "\n".join(raw[indent:] for raw in lines[start:number - 1])
                blocks.append((f"{page.relative_to(ROOT)}:{start}", text))
                start = None
    return blocks


def test_the_yaml_examples_are_found() -> None:
    where = [place for place, _ in _yaml_blocks()]
    assert len(where) > 40
    assert any(place.startswith("README.md:") for place in where)
    assert any(place.startswith("docs/providers/bedrock.md:") for place in where)


def test_every_yaml_example_loads() -> None:
    from switchboard import catalog
    from switchboard.config.yamlfile import parse_yaml
    from switchboard.settings.loader import ConfigError, validate

    wrong = []
    for where, text in _yaml_blocks():
        try:
            data = parse_yaml(text)
        except yaml.YAMLError as exc:
            wrong.append(f"{where}: not YAML: {' '.join(str(exc).split())}")
            continue
        first = next(iter(data), None) if isinstance(data, dict) else None
        if first == "sections":
            try:
                catalog.parse(data, where)
            except ValueError as exc:
                wrong.append(f"{where}: {exc}")
            continue
        if first in _OTHER_FILES:
            continue
        if not isinstance(data, dict) or not set(data) <= set(Settings.model_fields):
            wrong.append(f"{where}: neither a config file nor one of {sorted(_OTHER_FILES)}")
            continue
        data.setdefault("auth", {"master_key": "sk-placeholder-master-key"})
        try:
            validate(data, where, _AnyVariable())
        except ConfigError as exc:
            wrong.extend(f"{where}: {p}" for p in exc.problems if not _FRAGMENT.search(p))
    assert wrong == [], "YAML examples that do not load:\n" + "\n".join(wrong)
