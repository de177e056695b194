"""Prompt templates in the sandbox: what saving reports, what rendering produces and refuses,
variables against their schema, and the reference a chat request makes (prompts/)."""

from __future__ import annotations

from typing import Any

import pytest

from switchboard.errors import InvalidRequest
from switchboard.prompts.reference import PromptRef, parse_reference
from switchboard.prompts.templates import RenderError, compile_prompt, render, validate_variables
from switchboard.stores.protocols import PromptVersion

SCHEMA = {
    "type": "object",
    "properties": {
        "text": {"type": "string"},
        "n": {"type": "integer"},
        "items": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["text"],
}


def version(*contents: str) -> PromptVersion:
    return PromptVersion(
        tenant_id="t",
        name="p",
        version=1,
        variables=SCHEMA,
        model="m",
        messages=[{"role": "user", "content": c} for c in contents],
    )


def test_a_valid_prompt_has_no_problems() -> None:
    messages = [
        {"role": "system", "content": "Be {{ 'brief' }}."},
        {"role": "user", "content": "{% for i in items %}{{ loop.index }}. {{ i }}\n{% endfor %}{{ text }}"},
    ]
    assert compile_prompt(messages, SCHEMA) == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("one\ntwo\n{{ text", "messages[0] line 3:"),
        ("{% for x in items %}", "messages[0] line 1:"),
        ("ok\n{{ typo }}", "messages[0] line 2: variable 'typo' is not declared"),
        ("{% set local = 1 %}{{ local }}{{ text }}", None),  # assigned in the template: fine
    ],
)
def test_problems_name_the_message_and_line(content: str, expected: str | None) -> None:
    problems = compile_prompt([{"role": "user", "content": content}], SCHEMA)
    if expected is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_roles_content_and_schema_are_checked() -> None:
    assert compile_prompt([{"role": "tool", "content": "x"}], SCHEMA) == [
        "messages[0].role: must be one of system, developer, user, assistant"
    ]
    assert compile_prompt([{"role": "user", "content": ["x"]}], SCHEMA) == [
        "messages[0].content: must be a string (a template)"
    ]
    assert compile_prompt([], {"type": "nope"})[0].startswith("variables: not a valid JSON schema")
    assert compile_prompt([], {"type": "array"}) == [
        'variables: the schema must describe an object ("type": "object")'
    ]


def test_render_produces_the_messages() -> None:
    rendered = render(
        version("{% if n %}({{ n }}) {% endif %}{{ text | upper }}", "{{ items | join(', ') }}"),
        {"text": "héllo", "n": 2, "items": ["a", "b"]},
    )
    assert rendered == [{"role": "user", "content": "(2) HÉLLO"}, {"role": "user", "content": "a, b"}]
    # An optional variable left out is false in an if, an error when printed.
    assert render(version("{% if n %}x{% endif %}{{ text }}"), {"text": "t"})[0]["content"] == "t"
    with pytest.raises(RenderError, match="'n' is undefined"):
        render(version("{{ n }}"), {"text": "t"})


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__ }}",
        "{{ text.__class__.__mro__[1].__subclasses__() }}",
        "{{ range.__globals__ }}",
        "{{ text|attr('__class__') }}",
        "{{ namespace.__init__.__globals__ }}",
        "{% set x = [] %}{{ x.append(1) }}",
    ],
)
def test_the_sandbox_refuses_internals_and_mutation(template: str) -> None:
    with pytest.raises(RenderError) as refused:
        render(version(template), {"text": "t"})
    assert refused.value.code == "prompt_render_failed"


@pytest.mark.parametrize(
    "template",
    [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% for i in items %}{% for j in items %}{% for k in items %}{% endfor %}{% endfor %}{% endfor %}",
        "{{ range(10**8) | list }}",
        "{{ 'x' * 10**9 }}",
        "{{ [1] * 10**9 }}",
        "{{ 9 ** 100000000 }}",
        "{{ text.center(10**9) }}",
        "{{ text | center(10**9) }}",
        "{{ text | indent(900000, true) * 3 }}",
        "{{ '%0999999999d' % 1 }}",
        "{{ '{:>999999999}'.format(text) }}",
        "{{ ('x' * 100000) | replace('x', 'yyyyyyyyyyyyyyy') }}",
        "{% set a = 'x' * 1000 %}{% set a = a ~ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a %}"
        "{% set a = a ~ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a %}{{ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a }}",
        "{% for i in range(50000) %}{{ 'abcdefghijklmnopqrstuvwxyz' }}{% endfor %}",
    ],
)
def test_loops_and_output_are_bounded(template: str) -> None:
    items = ["x"] * 1000
    with pytest.raises(RenderError):
        render(version(template), {"text": "t", "items": items})


def test_validate_variables_names_each_field() -> None:
    assert validate_variables(SCHEMA, {"text": "ok", "n": 3}) == []
    found = validate_variables(SCHEMA, {"n": "3", "items": ["a", 1]})
    assert ("text", "required") in found
    assert any(path == "n" and "not of type 'integer'" in message for path, message in found)
    assert any(path == "items.1" for path, _ in found)
    assert validate_variables(SCHEMA, [1])[0][0] == ""


@pytest.mark.parametrize(
    ("value", "param"),
    [
        ("name", "prompt"),
        ({}, "prompt.id"),
        ({"id": "a b"}, "prompt.id"),
        ({"id": "x" * 65}, "prompt.id"),
        ({"id": "p", "label": "a", "version": 1}, "prompt.label"),
        ({"id": "p", "label": ""}, "prompt.label"),
        ({"id": "p", "version": 0}, "prompt.version"),
        ({"id": "p", "version": True}, "prompt.version"),
        ({"id": "p", "variables": "x"}, "prompt.variables"),
        ({"id": "p", "other": 1}, "prompt.other"),
    ],
)
def test_malformed_references_are_400_naming_the_field(value: Any, param: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_reference(value)
    assert refused.value.param == param and refused.value.code == "invalid_prompt_reference"


def test_a_reference() -> None:
    assert parse_reference({"id": "p", "label": "production", "variables": {"a": 1}}) == PromptRef(
        "p", None, "production", {"a": 1}
    )
    assert parse_reference({"id": "p", "version": 3}) == PromptRef("p", 3, None, {})
