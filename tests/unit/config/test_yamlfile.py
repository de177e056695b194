"""The YAML reader: duplicate keys are errors, plain scalars keep the text they were written as."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.config.yamlfile import YamlFileError, parse_yaml, plain, read_yaml


def test_duplicate_key_names_the_line_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(
        "providers:\n"
        "  - name: a\n"
        "    type: openai\n"
        "    api_base: http://one/v1\n"
        "    api_base: http://two/v1\n"
    )
    with pytest.raises(YamlFileError) as exc:
        read_yaml(path)
    assert str(exc.value) == "line 5, column 5: invalid YAML: duplicate key 'api_base' (first on line 4)"


def test_duplicate_top_level_key(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("auth: {master_key: abcdefgh}\nserver: {}\nauth: {master_key: ijklmnop}\n")
    with pytest.raises(YamlFileError, match=r"^line 3, column 1: .*duplicate key 'auth' \(first on line 1\)"):
        read_yaml(path)


def test_merge_key_override_is_not_a_duplicate() -> None:
    data = parse_yaml("base: &b {a: 1, b: 2}\nx:\n  <<: *b\n  a: 3\n")
    assert data["x"] == {"a": 3, "b": 2}


def test_scalars_keep_their_text_and_their_value() -> None:
    data = parse_yaml("date: 2024-10-21\nf: 2.10\ni: 0x1F\nb: yes\nn: null\nq: '7'\n")
    assert data["date"] == "2024-10-21" and type(data["date"]) is str
    assert data["f"] == 2.1 and str(data["f"]) == "2.10"
    assert data["i"] == 31 and str(data["i"]) == "0x1F"
    assert data["b"] == 1 and bool(data["b"]) is True and str(data["b"]) == "yes"
    assert data["n"] is None and data["q"] == "7"


def test_plain_turns_the_carriers_back_into_plain_values() -> None:
    data = parse_yaml("a: {b: [true, 0x1F, 2.10, off], c: text}\n7: yes\n")
    made = plain(data)
    assert made == {"a": {"b": [True, 31, 2.1, False], "c": "text"}, 7: True}
    assert [type(v) for v in made["a"]["b"]] == [bool, int, float, bool]
    assert [type(k) for k in made] == [str, int]
    untouched = {"x": ["y"]}
    assert plain(untouched) is untouched  # nothing to convert: nothing rebuilt


def test_an_alias_inside_the_node_it_names_is_refused_naming_the_line(tmp_path: Path) -> None:
    for text in ("a: &a [*a]\n", "x: 1\nb: &b {c: *b}\n"):
        path = tmp_path / "loop.yaml"
        path.write_text(text)
        expected = r"^line \d+, column \d+: invalid YAML: an alias refers to a node that contains it"
        with pytest.raises(YamlFileError, match=expected + r" \(a recursive structure\)$"):
            read_yaml(path)


def test_aliases_of_aliases_are_refused_before_they_are_expanded(tmp_path: Path) -> None:
    """A few hundred bytes of aliases ("billion laughs") would expand to 9**9 values."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(YamlFileError, match=r"^invalid YAML: its aliases add \d+ values when expanded "
                                            r"\(at most 100000\)$"):
        read_yaml(path)


def test_aliases_that_reuse_a_base_stay_accepted() -> None:
    base = "base: &b {timeouts: {connect: 1, total: 2}, headers: {x-a: '1'}}\n"
    entries = "".join(f"e{i}: {{<<: *b, name: n{i}}}\n" for i in range(1000))
    data = parse_yaml(base + entries)
    assert data["e999"] == {"timeouts": {"connect": 1, "total": 2}, "headers": {"x-a": "1"}, "name": "n999"}


@pytest.mark.parametrize("depth", [101, 2000])
def test_nesting_deeper_than_a_hundred_levels_is_refused(tmp_path: Path, depth: int) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * depth + "]" * depth + "\n")
    with pytest.raises(YamlFileError, match=r"invalid YAML: nested more than 100 levels deep$"):
        read_yaml(path)
    assert parse_yaml("a: " + "[" * 99 + "]" * 99 + "\n")["a"] is not None
