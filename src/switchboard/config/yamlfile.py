"""Reading one YAML file, with its problems as plain sentences (no tracebacks).

Two departures from ``yaml.safe_load``, both so that a file means what it looks like:

- A key written twice in one mapping is an error naming the line (YAML's loaders keep the last).
- Plain scalars keep the text they were written as. Dates stay strings
  (``api_version: 2024-10-21``), and numbers and booleans are numbers carrying their text, so
  a string field takes them as written (``api_version: 2.10`` is ``"2.10"``, not ``"2.1"``;
  ``token: yes`` is ``"yes"``) while an int, float or bool field still gets its value. The
  config models opt in with pydantic's ``coerce_numbers_to_str``, which reads that text through
  ``str()``. A boolean is carried as an ``int`` (0 or 1) because ``bool`` cannot be subclassed;
  pydantic turns it back into ``True``/``False`` for bool fields.

A value no field type converts (a field typed ``Any``, such as a routing rule's ``params``)
would keep these carriers, and a boolean would then compare as the integer it carries: every
config model turns them back into plain ``bool``, ``int`` and ``float`` once validated
(:func:`plain`, applied by ``config.base.Strict``), so ``true`` is ``True`` and never ``1``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode


class YamlFileError(Exception):
    """The file cannot be read or is not valid YAML; the message says why."""


class ScalarInt(int):
    """An int as written in YAML (``0x1F``, ``1_000``); ``str()`` gives that text."""

    text: str

    def __new__(cls, value: int, text: str) -> ScalarInt:
        obj = super().__new__(cls, value)
        obj.text = text
        return obj

    def __str__(self) -> str:
        return self.text


class ScalarFloat(float):
    """A float as written in YAML (``2.10``, ``1e3``); ``str()`` gives that text."""

    text: str

    def __new__(cls, value: float, text: str) -> ScalarFloat:
        obj = super().__new__(cls, value)
        obj.text = text
        return obj

    def __str__(self) -> str:
        return self.text


class ScalarBool(ScalarInt):
    """A YAML boolean (``true``, ``yes``, ``off``) as 1 or 0; ``str()`` gives its text."""

    def __repr__(self) -> str:
        return repr(bool(self))


def plain(value: Any) -> Any:
    """``value`` with this loader's scalars as the plain ``bool``, ``int`` and ``float`` they
    stand for, through lists, tuples and mappings (keys too); anything else as it is. The
    containers are rebuilt only when they hold such a scalar."""
    if isinstance(value, ScalarBool):
        return bool(value)
    if isinstance(value, ScalarInt):
        return int(value)
    if isinstance(value, ScalarFloat):
        return float(value)
    if isinstance(value, dict):
        items = [(plain(k), plain(v)) for k, v in value.items()]
        if any(k is not k0 or v is not v0 for (k, v), (k0, v0) in zip(items, value.items(), strict=True)):
            return dict(items)
        return value
    if isinstance(value, list | tuple):
        converted = [plain(v) for v in value]
        if any(v is not v0 for v, v0 in zip(converted, value, strict=True)):
            return converted if isinstance(value, list) else tuple(converted)
        return value
    return value


# Bounds on the shape a file may build. Aliases of aliases ("billion laughs": a few hundred bytes)
# expand to billions of values and would hold the process for hours; an alias inside the node it
# names is a structure with no end (the constructors recurse until the interpreter gives up), and
# so is nesting deeper than any configuration needs.
MAX_DEPTH = 100
MAX_ALIAS_VALUES = 100_000


class _Loader(yaml.SafeLoader):
    def construct_document(self, node: Node) -> Any:
        _check_shape(node)
        return super().construct_document(node)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            _check_duplicates(self, node)
        return super().construct_mapping(node, deep=deep)

    def _int(self, node: ScalarNode) -> ScalarInt:
        return ScalarInt(self.construct_yaml_int(node), node.value)

    def _float(self, node: ScalarNode) -> ScalarFloat:
        return ScalarFloat(self.construct_yaml_float(node), node.value)

    def _bool(self, node: ScalarNode) -> ScalarBool:
        return ScalarBool(int(self.construct_yaml_bool(node)), node.value)

    def _timestamp(self, node: ScalarNode) -> str:
        return str(self.construct_scalar(node))


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader._int)
_Loader.add_constructor("tag:yaml.org,2002:float", _Loader._float)
_Loader.add_constructor("tag:yaml.org,2002:bool", _Loader._bool)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader._timestamp)


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def _check_shape(root: Node) -> None:
    """Refuse a document nested deeper than ``MAX_DEPTH``, holding an alias inside the node it
    names, or whose aliases add more than ``MAX_ALIAS_VALUES`` values: checked on the composed
    nodes, before anything is built (an alias is the very node its anchor names)."""
    expanded: dict[int, int] = {}  # a node's values, its aliases expanded
    open_nodes: set[int] = set()  # the node being walked and its parents
    stack: list[tuple[Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, closing = stack.pop()
        key = id(node)
        if closing:
            open_nodes.discard(key)
            expanded[key] = 1 + sum(expanded[id(child)] for child in _children(node))
            continue
        if key in expanded:
            continue
        if key in open_nodes:
            raise ConstructorError(None, None, "an alias refers to a node that contains it (a recursive "
                                   "structure)", node.start_mark)
        if depth > MAX_DEPTH:
            raise ConstructorError(None, None, f"nested more than {MAX_DEPTH} levels deep", node.start_mark)
        open_nodes.add(key)
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in _children(node))
    added = expanded[id(root)] - len(expanded)
    if added > MAX_ALIAS_VALUES:
        raise ConstructorError(None, None, f"its aliases add {added} values when expanded (at most "
                               f"{MAX_ALIAS_VALUES})", None)


def _check_duplicates(loader: _Loader, node: MappingNode) -> None:
    first: dict[Any, Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # ``<<: *base`` then an explicit key is an override, as YAML intends
        key = loader.construct_object(key_node, deep=True)
        try:
            other = first.setdefault(key, key_node)
        except TypeError:
            continue  # an unhashable key: the constructor reports it
        if other is not key_node:
            raise ConstructorError(
                None,
                None,
                f"duplicate key {str(key)!r} (first on line {other.start_mark.line + 1})",
                key_node.start_mark,
            )


def parse_yaml(text: str) -> Any:
    """Parse YAML text as described above; raises ``yaml.YAMLError``."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except RecursionError:
        # PyYAML's composer recurses per level: nesting far past MAX_DEPTH fails there, before
        # the shape is checked.
        raise yaml.YAMLError(f"nested more than {MAX_DEPTH} levels deep") from None


def read_yaml(path: str | Path) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise YamlFileError("file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlFileError(f"cannot read file: {exc}") from None
    try:
        return parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        if mark is not None and text[mark.index - 1 : mark.index + 1] == "${":
            # Interpolation comes after parsing, and inside {...} or [...] the reference's `{`
            # is YAML's own: the parser's "got '{'" alone does not tell the fix.
            problem += ' (a ${...} reference inside {...} or [...] must be quoted: "${NAME}")'
        raise YamlFileError(f"{where}invalid YAML: {problem}") from None
