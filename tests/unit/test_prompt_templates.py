"""Prompt templates in the sandbox: what saving reports, what rendering produces and refuses,
variables against their schema, and the reference a chat request makes (prompts/)."""

from __future__ import annotations

import asyncio
import threading
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from switchboard.errors import InvalidRequest
from switchboard.prompts import bounds, templates
from switchboard.prompts.reference import PromptRef, parse_reference
from switchboard.prompts.templates import (
    MAX_PATH_CHARS,
    RenderError,
    compile_prompt,
    render,
    render_async,
    validate_variables,
)
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


def test_a_field_path_named_by_the_caller_is_cut() -> None:
    """Unexpected and nested names are the caller's own keys: their paths are bounded, as every
    other echo of caller input in an error is."""
    closed = {"type": "object", "properties": {"who": {"type": "object", "properties": {},
                                                       "additionalProperties": False}},
              "additionalProperties": False}
    found = validate_variables(closed, {"k" * 5000: 1, "who": {"n" * 5000: 1}})
    assert [len(path) for path, _ in found] == [MAX_PATH_CHARS, MAX_PATH_CHARS]
    assert found[0][0].startswith("kkk") and found[1][0].startswith("who.nnn")


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


_BIG = "{% set a = 'x' * 1000000 %}"  # one value at the output bound (the default, 1,000,000)
_REFS = "{% set b = [" + ", ".join(["a"] * 100) + "] %}"  # 100 references to it: 100 MB as text


@pytest.mark.parametrize(
    "template",
    [
        _BIG + "{% set b = [a] * 100 %}",  # repetition sized by content, not by item count
        _BIG + _REFS + "{{ b }}",  # printing a container
        _BIG + _REFS + "{{ b ~ '' }}",
        _BIG + _REFS + "{{ b|string|length }}",
        _BIG + _REFS + "{{ b|tojson|length }}",
        _BIG + _REFS + "{{ b|join|length }}",  # join with no separator
        _BIG + _REFS + "{{ b|map('upper')|list|length }}",  # a lazy filter's items together
        _BIG + _REFS + "{{ ('%s' % (b,))|length }}",
        _BIG + "{{ ('{0}' * 100).format(a)|length }}",  # one argument printed by many fields
        _BIG + "{{ ('%(a)s' * 100)|format(a=a)|length }}",
        "{{ ('{0:>999999}' * 100).format('')|length }}",  # widths each allowed, their sum is not
        "{{ ('%(a)999999s' * 100)|format(a='')|length }}",
        "{{ (('%999999s' * 100) % (('',) * 100))|length }}",
        "{{ ('{:{}}' * 50).format('', 999999, '', 999999)|length }}",
        "{% set a = 'x' * 300000 %}{% set d = dict(x=a) %}{{ [" + ", ".join(["d"] * 50) + "] }}",
        "{% set a = 'x' * 300000 %}{% set d = namespace(x=a) %}{{ [" + ", ".join(["d"] * 50) + "] }}",
        "{{ ('\t' * 1000).expandtabs(999999)|length }}",  # each tab up to 999,999 spaces: 1 GB
        "{{ ('\t' * 1000).encode().expandtabs(tabsize=999999)|length }}",
        "{{ ('a' * 1000).translate({97: 'x' * 999999})|length }}",  # each character 999,999
        "{{ ('a' * 1000).translate([''] * 97 + ['x' * 99999])|length }}",  # 100 MB
    ],
)
def test_a_value_is_bounded_by_its_content_before_it_is_built(template: str) -> None:
    """Many references to one large string are weighed as the text they make: refused with the
    render failure before that text is allocated (the peak stays near the one large string)."""
    tracemalloc.start()
    try:
        with pytest.raises(RenderError) as refused:
            render(version(template), {"text": "t"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.code == "prompt_render_failed" and refused.value.status == 400
    assert "exceeds" in refused.value.message
    assert peak < 8_000_000, peak


def test_containers_within_the_bound_still_print_join_and_format() -> None:
    template = ("{% set b = ['ab'] * 3 %}{{ b }}|{{ b|join }}|{{ b|join('-') }}|{{ b|map('upper')|join }}|"
                "{{ '{:>5}{}'.format('x', b|length) }}|{{ '%3s%s'|format('y', 1) }}|{{ dict(k=b) }}")
    assert render(version(template), {"text": "t"})[0]["content"] == (
        "['ab', 'ab', 'ab']|ababab|ab-ab-ab|ABABAB|    x3|  y1|{'k': ['ab', 'ab', 'ab']}")


class _Unprintable:
    def __str__(self) -> str:
        raise MemoryError


def test_running_out_of_memory_is_the_render_failure() -> None:
    with pytest.raises(RenderError) as refused:
        render(version("{{ text }}"), {"text": _Unprintable()})
    assert refused.value.code == "prompt_render_failed" and "MemoryError" in refused.value.message


# -- time ---------------------------------------------------------------------------------------

TWICE = "{% macro f(n) %}{% if n > 0 %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(n) }}"
COSTLY = "{% for i in items %}{{ text.count('ab') }}{% endfor %}"


def _defaults() -> None:
    bounds.configure(bounds.MAX_RENDERED_CHARS, bounds.MAX_LOOP_ITERATIONS, bounds.MAX_RENDER_SECONDS)


@pytest.fixture
def short_deadline() -> Iterator[float]:
    bounds.configure(bounds.MAX_RENDERED_CHARS, bounds.MAX_LOOP_ITERATIONS, 0.2)
    yield 0.2
    _defaults()


@pytest.fixture
def small_budget() -> Iterator[int]:
    bounds.configure(bounds.MAX_RENDERED_CHARS, 1000, 60)
    yield 1000
    _defaults()


@pytest.fixture
def long_deadline() -> Iterator[float]:
    """For a test of another bound: a loaded machine must not reach the deadline first."""
    bounds.configure(bounds.MAX_RENDERED_CHARS, bounds.MAX_LOOP_ITERATIONS, 60)
    yield 60
    _defaults()


@pytest.mark.parametrize(
    ("template", "variables"),
    [
        (COSTLY, {"text": "a" * 900_000, "items": ["x"] * 50_000}),  # within the loop budget
        ("{% for x in [n] recursive %}{% if x > 0 %}{{ loop([x - 1, x - 1]) }}{% endif %}{% endfor %}",
         {"text": "t", "n": 16}),  # a recursive loop, within the budget: 2^17 calls take longer
    ],
)
def test_a_render_stops_at_its_deadline(short_deadline: float, template: str,
                                        variables: dict[str, Any]) -> None:
    began = time.monotonic()
    with pytest.raises(RenderError) as refused:
        render(version(template), variables)
    assert "the render took longer than 0.2 s (prompts.max_render_seconds)" in refused.value.message
    # Not run to its end: the first template would run for minutes; the second would end at
    # the loop budget instead, with that message rather than the deadline's.
    assert time.monotonic() - began < 0.2 + 10


def test_calls_into_template_code_draw_from_the_loop_budget(small_budget: int) -> None:
    with pytest.raises(RenderError) as refused:
        render(version(TWICE), {"text": "t", "n": 30})
    assert f"loops and macro calls ran more than {small_budget} iterations" in refused.value.message
    assert render(version(TWICE + "done"), {"text": "t", "n": 8})[0]["content"] == "done"  # 511 calls


@pytest.mark.parametrize(
    "template",
    [
        "{% macro f(n) %}{% if n > 0 %}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(n) }}",
        "{% for x in [n] recursive %}{% if x > 0 %}{{ loop([x - 1]) }}{% endif %}{% endfor %}",
        "{% block b %}{{ self.b() }}{% endblock %}",
    ],
)
def test_calls_into_template_code_nest_at_most_so_deep(template: str, long_deadline: float) -> None:
    with pytest.raises(RenderError) as refused:
        render(version(template), {"text": "t", "n": 1000})
    assert f"nested more than {templates.MAX_CALL_DEPTH} deep" in refused.value.message


async def test_a_slow_render_leaves_the_event_loop(short_deadline: float) -> None:
    """Past a few milliseconds, a render finishes in a worker thread: the loop keeps turning."""
    costly = {"text": "a" * 900_000, "items": ["x"] * 50_000}
    task = asyncio.ensure_future(render_async(version(COSTLY), costly))
    turns = 0
    while not task.done():
        turns += 1
        await asyncio.sleep(0.005)
    with pytest.raises(RenderError) as refused:
        task.result()
    assert "took longer" in refused.value.message
    # Turns of 5 ms in a render of about 0.2 s (40 when the loop runs freely); a busy machine
    # shares the interpreter lock unevenly between the two threads, so only a few are required.
    assert turns >= 2, turns
    quick = await render_async(version("{{ text }}!"), {"text": "quick"})
    assert quick == [{"role": "user", "content": "quick!"}]


# -- what saving refuses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "statement"),
    [("{% include 'x' %}", "include"), ("{% import 'x' as y %}", "import"),
     ("{% from 'x' import y %}", "from ... import"), ("{% extends 'x' %}", "extends")],
)
def test_loading_other_templates_is_refused_when_saved(content: str, statement: str) -> None:
    problems = compile_prompt([{"role": "user", "content": "{{ text }}\n" + content}], SCHEMA)
    assert problems == [f"messages[0] line 2: {{% {statement} %}} is not supported: a prompt's templates "
                        "cannot load other templates (use a macro)"]


def test_deep_nesting_is_a_problem_not_a_crash() -> None:
    problems = compile_prompt([{"role": "user", "content": "{{ " + "(" * 400 + "text" + ")" * 400 + " }}"}],
                              SCHEMA)
    assert problems == ["messages[0]: expressions or blocks are nested too deeply"]


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"properties": {"a": {"$ref": "https://schemas.test/a.json"}}},
         "/properties/a: $ref 'https://schemas.test/a.json' is not a JSON pointer within the schema"),
        ({"properties": {"a": {"$ref": "#/$defs/missing"}}},
         "/properties/a: $ref '#/$defs/missing' points at nothing"),
        ({"$id": "https://schemas.test/s", "type": "object"}, "(the root): $id is not supported"),
        ({"properties": {"a": {"$anchor": "here"}}}, "/properties/a: $anchor is not supported"),
        ({"properties": {"a": {"$dynamicRef": "#meta"}}}, "/properties/a: $dynamicRef is not supported"),
    ],
)
def test_references_must_point_within_the_schema(schema: dict[str, Any], problem: str) -> None:
    problems = compile_prompt([{"role": "user", "content": "hi"}], {"type": "object", **schema})
    assert len(problems) == 1 and problems[0].startswith(f"variables: {problem}"), problems


def test_local_references_validate_and_nothing_is_fetched() -> None:
    schema = {"type": "object", "properties": {"a": {"$ref": "#/$defs/a"}, "self": {"$ref": "#"}},
              "$defs": {"a": {"type": "string", "minLength": 2}, "a/b~c": {"type": "integer"}}}
    assert compile_prompt([{"role": "user", "content": "{{ a }}"}], schema) == []
    assert compile_prompt([], {**schema, "properties": {"b": {"$ref": "#/$defs/a~1b~0c"}}}) == []
    assert validate_variables(schema, {"a": "ab", "self": {"a": "cd"}}) == []
    assert validate_variables(schema, {"a": "x"}) == [("a", "'x' is too short")]
    # A schema saved before references were checked: one error, never a fetch (port 9: discard).
    stored = {"type": "object", "properties": {"a": {"$ref": "http://127.0.0.1:9/a.json"}}}
    [(where, why)] = validate_variables(stored, {"a": 1})
    assert where == "" and "resolves nowhere" in why


async def test_large_templates_compile_off_the_event_loop_and_outside_the_deadline(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiling 200,000 characters of template takes seconds: saving checks it in a worker
    thread, and a render compiles it there before its deadline starts (no render budget is
    running while it compiles, so the compile never counts against the deadline)."""
    budgets_at_compile: list[object] = []
    compile_text = templates._env.from_string

    def compile_noting_budget(text: str) -> Any:
        budgets_at_compile.append(templates._current.get())
        return compile_text(text)

    monkeypatch.setattr(templates._env, "from_string", compile_noting_budget)
    big = "{{ text }}" * 20_000
    check = asyncio.ensure_future(templates.check_prompt([{"role": "user", "content": big}], SCHEMA))
    turns = 0
    while not check.done():
        turns += 1
        await asyncio.sleep(0.005)
    assert check.result() == [] and turns >= 5, turns
    rendered = await render_async(version(big + "!"), {"text": "a"})
    assert rendered[0]["content"] == "a" * 20_000 + "!"
    assert budgets_at_compile and all(budget is None for budget in budgets_at_compile)


async def test_slow_renders_beyond_the_bound_are_refused_at_once(
        short_deadline: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slow renders handed to the worker threads are bounded: one more is 503, not a wait of
    minutes; the count goes down as the threads finish, so later renders run again."""
    monkeypatch.setattr(templates, "MAX_WAITING_RENDERS", 2)
    # The two renders handed to the threads wait there until the other two have been refused:
    # on a loaded machine a thread could otherwise reach its deadline (and leave the count)
    # while the loop still tries the later renders inline.
    release = threading.Event()
    in_thread = templates._in_thread

    def held(version: Any, variables: Any) -> Any:
        release.wait(60)
        return in_thread(version, variables)

    monkeypatch.setattr(templates, "_in_thread", held)
    costly = {"text": "a" * 900_000, "items": ["x"] * 50_000}
    tasks = [asyncio.ensure_future(render_async(version(COSTLY), costly)) for _ in range(4)]
    pending: set[asyncio.Future[Any]] = set(tasks)
    while len(pending) > 2:
        _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    busy = [r for r in results if isinstance(r, templates.RenderBusy)]
    assert len(busy) == 2 and busy[0].status == 503 and busy[0].headers == {"retry-after": "1"}
    assert all(isinstance(r, RenderError) for r in results if r not in busy)
    assert templates._waiting == 0
    with pytest.raises(RenderError, match="took longer"):
        await render_async(version(COSTLY), costly)
