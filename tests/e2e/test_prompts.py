"""The prompt registry end to end: versions, labels and rollback, the diff, render, template
errors with their line, the sandbox and its bounds, roles and tenants through the admin API;
prompts from chat through the official OpenAI SDK (``extra_body``) and Anthropic SDK (translated
and pass-through), with the usage record naming the prompt; bad input on every path. Every test
runs on the embedded default (SQLite, in-process state) and on a cluster (PostgreSQL and Redis)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.e2e.sdk import served_during
from tests.e2e.tenancy_world import Admin
from tests.servers import MASTER_KEY, Gateway, Mock, captured, new_marker, openai_config, start_gateway

SENTIMENT: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Classify: {{ text }}"}],
    "variables": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
}
VARIABLES = {
    "type": "object",
    "properties": {
        "text": {"type": "string", "maxLength": 200},
        "tone": {"type": "string", "enum": ["dry", "warm"]},
        "items": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["text"],
}


def unique(prefix: str = "p") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class World:
    gateway: Gateway
    mock: Mock
    admin: Admin

    def openai(self, key: str = MASTER_KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=key, max_retries=0, timeout=30)

    def anthropic(self, key: str = MASTER_KEY) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.gateway.url, api_key=key, max_retries=0, timeout=30)

    def create(self, name: str, **body: Any) -> dict[str, Any]:
        return self.admin.ok("POST", "/admin/v1/prompts", {"name": name, **SENTIMENT, **body}, status=201)

    def label(self, name: str, label: str, version: int, admin: Admin | None = None) -> dict[str, Any]:
        return (admin or self.admin).ok(
            "PUT", f"/admin/v1/prompts/{name}/labels/{label}", {"version": version}
        )

    def log(self, request_id: str, timeout: float = 20.0) -> dict[str, Any]:
        """The request log's record of a call (written behind the response: polled)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.admin.ok("GET", "/admin/v1/logs", params={"request_id": request_id})["data"]
            if found:
                return dict(found[0])
            assert time.monotonic() < deadline, f"{request_id} never reached the request log"
            time.sleep(0.1)


def _config(mock: Mock) -> dict[str, Any]:
    config = openai_config(mock)
    config["providers"].append(
        {"name": "anth", "type": "anthropic", "api_base": mock.url, "api_key": "${UPSTREAM_KEY}"}
    )
    config["models"].append({"name": "claude-native", "provider": "anth", "model": "claude-sonnet-4-5"})
    config["spend"] = {"flush_seconds": 0.1}
    return config


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def world(
    request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    config = _config(mock_upstream)
    if request.param == "cluster":
        postgres = request.getfixturevalue("postgres")
        config["database"] = {"url": postgres.create_database(f"prompts_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": request.getfixturevalue("redis_server").url}
    gw = start_gateway(config, tmp_path_factory.mktemp(f"prompts-{request.param}"))
    yield World(gw, mock_upstream, Admin(gw.url))
    gw.process.stop()


@pytest.fixture(scope="module")
def admin(world: World) -> Admin:
    return world.admin


def error_of(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text[:500]
    return dict(resp.json()["error"])


# -- the registry -------------------------------------------------------------------------------


def test_the_minimal_contract_saves_versions(admin: Admin) -> None:
    name = unique("sentiment")
    first = admin.ok("POST", "/admin/v1/prompts", {"name": name, **SENTIMENT}, status=201)
    assert first["name"] == name and first["version"] == 1
    assert first["messages"] == SENTIMENT["messages"] and first["model"] == "gpt-4o-mini"
    assert first["variables"] == SENTIMENT["variables"]
    second = admin.ok(
        "POST",
        "/admin/v1/prompts",
        {"name": name, **SENTIMENT, "temperature": 0.1, "description": "v2"},
        status=201,
    )
    assert second["version"] == 2 and second["params"] == {"temperature": 0.1}
    latest = admin.ok("GET", f"/admin/v1/prompts/{name}")
    assert latest["version"] == 2 and latest["description"] == "v2"
    one = admin.ok("GET", f"/admin/v1/prompts/{name}", params={"version": 1})
    assert one["version"] == 1 and one["params"] == {}
    missing = admin.call("GET", f"/admin/v1/prompts/{name}", params={"version": 3})
    assert error_of(missing, 404)["code"] == "prompt_not_found"
    # A version past the database's integer column is a bad value, wherever it is given.
    for method, path, body, params, param in (
        ("GET", f"/admin/v1/prompts/{name}", None, {"version": 2**31}, "version"),
        ("GET", f"/admin/v1/prompts/{name}/diff", None, {"to": 2**31}, "to"),
        ("GET", f"/admin/v1/prompts/{name}/diff", None, {"from": 2**63, "to": 1}, "from"),
        ("PUT", f"/admin/v1/prompts/{name}/labels/x", {"version": 2**31}, None, "version"),
        ("POST", f"/admin/v1/prompts/{name}/render", {"version": 10**20}, None, "version"),
    ):
        bad = error_of(admin.call(method, path, body, params=params), 400)
        assert (bad["code"], bad["param"]) == ("invalid_value", param), bad
    assert admin.call("GET", f"/admin/v1/prompts/{unique()}").status_code == 404


def test_labels_versions_rollback_and_the_list(world: World, admin: Admin) -> None:
    name = unique("labels")
    for text in ("one", "two", "three"):
        world.create(name, description=text)
    moved = world.label(name, "production", 2)
    assert moved["version"] == 2 and moved["previous"] is None
    world.label(name, "staging", 3)
    assert (
        admin.ok("GET", f"/admin/v1/prompts/{name}", params={"label": "production"})["description"] == "two"
    )
    rollback = world.label(name, "production", 1)
    assert rollback["previous"] == 2 and rollback["labels"] == {"production": 1, "staging": 3}
    shown = admin.ok("GET", f"/admin/v1/prompts/{name}", params={"label": "production"})
    assert shown["version"] == 1 and shown["labels"] == ["production"]
    versions = admin.ok("GET", f"/admin/v1/prompts/{name}/versions")
    assert [v["version"] for v in versions["data"]] == [1, 2, 3]
    assert versions["labels"] == {"production": 1, "staging": 3}
    assert [v["labels"] for v in versions["data"]] == [["production"], [], ["staging"]]
    # A prompt in the list has the shape of one version: the labels on it, and every label.
    listed = {p["name"]: p for p in admin.ok("GET", "/admin/v1/prompts", params={"limit": 1000})["data"]}
    assert listed[name]["version"] == 3 and listed[name]["labels"] == ["staging"]
    assert listed[name]["prompt_labels"] == {"production": 1, "staging": 3}
    assert shown["prompt_labels"] == {"production": 1, "staging": 3}
    # A label on a version that does not exist; a label name out of bounds; both version and label.
    assert (
        error_of(admin.call("PUT", f"/admin/v1/prompts/{name}/labels/x", {"version": 9}), 404)["code"]
        == "prompt_not_found"
    )
    assert admin.call("PUT", f"/admin/v1/prompts/{name}/labels/{'x' * 65}", {"version": 1}).status_code in (
        400,
        404,
    )
    assert admin.call("PUT", f"/admin/v1/prompts/{name}/labels/bad%20label", {"version": 1}).status_code in (
        400,
        404,
    )
    assert error_of(admin.call("PUT", f"/admin/v1/prompts/{name}/labels/x", {"version": 0}), 400)
    assert error_of(admin.call("PUT", f"/admin/v1/prompts/{name}/labels/x", {}), 400)
    both = admin.call("GET", f"/admin/v1/prompts/{name}", params={"label": "production", "version": 1})
    assert error_of(both, 400)["param"] == "label"
    # Ten moves at once: each answer and audit entry names the version it replaced, so they
    # form one history ending at the label's final version.
    raced = unique("raced")
    for _ in range(10):
        world.create(raced)
    with ThreadPoolExecutor(10) as pool:
        moves = list(pool.map(lambda n: world.label(raced, "production", n), range(1, 11)))
    final = admin.ok("GET", f"/admin/v1/prompts/{raced}", params={"label": "production"})["version"]
    previous = [m["previous"] for m in moves]
    assert previous.count(None) == 1
    assert sorted(p for p in previous if p) == sorted(set(range(1, 11)) - {final})
    label = f"{raced}:production"
    audited = admin.ok("GET", "/admin/v1/audit", params={"resource_id": label, "limit": 1000})["data"]
    history = [(e["before"]["version"], e["after"]["version"]) for e in audited
               if e["resource_id"] == f"{raced}:production"]
    assert sorted(history, key=str) == sorted(((m["previous"], m["version"]) for m in moves), key=str)
    # Every change is audited.
    entries = admin.ok("GET", "/admin/v1/audit", params={"limit": 1000})["data"]
    actions = {(e["action"], e["resource_id"]) for e in entries}
    assert ("prompt.create", f"{name}@1") in actions and ("prompt.label", f"{name}:production") in actions


def test_the_diff_between_two_versions(world: World, admin: Admin) -> None:
    name = unique("diff")
    world.create(name, temperature=0.2)
    world.create(
        name,
        model="claude-native",
        temperature=0.7,
        max_tokens=99,
        messages=[
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Classify: {{ text }}"},
        ],
        output_schema={"type": "object", "properties": {"label": {"type": "string"}}},
    )
    diff = admin.ok("GET", f"/admin/v1/prompts/{name}/diff", params={"from": 1, "to": 2})
    text = diff["diff"]
    assert f"--- {name}@1" in text and f"+++ {name}@2" in text
    assert "-model: gpt-4o-mini" in text and "+model: claude-native" in text
    assert "+messages[0].content: Be terse." in text
    assert '+output_schema:   "type": "object"' in text or "+output_schema:" in text
    fields = {c["field"]: c for c in diff["changes"]}
    assert fields["model"] == {"field": "model", "from": "gpt-4o-mini", "to": "claude-native"}
    assert fields["params.temperature"]["from"] == 0.2 and fields["params.temperature"]["to"] == 0.7
    assert fields["params.max_tokens"] == {"field": "params.max_tokens", "from": None, "to": 99}
    assert "messages[0]" in fields and "output_schema" in fields and "variables" not in fields
    same = admin.ok("GET", f"/admin/v1/prompts/{name}/diff", params={"from": 2, "to": 2})
    assert same["diff"] == "" and same["changes"] == []
    assert admin.call("GET", f"/admin/v1/prompts/{name}/diff", params={"from": 1, "to": 5}).status_code == 404
    defaults = admin.ok("GET", f"/admin/v1/prompts/{name}/diff")  # the latest against the one before
    assert (defaults["from"], defaults["to"]) == (1, 2) and defaults["diff"] == text
    assert admin.ok("GET", f"/admin/v1/prompts/{name}/diff", params={"from": 1})["to"] == 2
    for bad in ({"from": 0}, {"to": "x"}, {"from": -1, "to": 2}):
        assert error_of(admin.call("GET", f"/admin/v1/prompts/{name}/diff", params=bad), 400)


def test_render_shows_the_exact_messages(world: World, admin: Admin) -> None:
    name = unique("render")
    world.create(
        name,
        variables=VARIABLES,
        temperature=0.5,
        messages=[
            {"role": "system", "content": "Tone: {{ tone | default('dry') }}."},
            {
                "role": "user",
                "content": "{% for i in items | default([]) %}[{{ i }}]{% endfor %}{{ text | upper }}",
            },
        ],
    )
    shown = admin.ok(
        "POST",
        f"/admin/v1/prompts/{name}/render",
        {"variables": {"text": "héllo", "items": [1, 2], "tone": "warm"}},
    )
    assert (
        shown["version"] == 1 and shown["model"] == "gpt-4o-mini" and shown["params"] == {"temperature": 0.5}
    )
    assert shown["messages"] == [
        {"role": "system", "content": "Tone: warm."},
        {"role": "user", "content": "[1][2]HÉLLO"},
    ]
    # Each invalid variable is named.
    bad = admin.call(
        "POST", f"/admin/v1/prompts/{name}/render", {"variables": {"tone": "loud", "items": ["x"]}}
    )
    error = error_of(bad, 400)
    assert error["code"] == "invalid_variables"
    assert "text: required" in error["message"] and "tone:" in error["message"]
    assert "items.0:" in error["message"]
    assert (
        admin.call(
            "POST", f"/admin/v1/prompts/{name}/render", {"variables": {"text": "x"}, "label": "nope"}
        ).status_code
        == 404
    )
    assert admin.call("POST", f"/admin/v1/prompts/{name}/render", {"variables": [1]}).status_code == 400
    # Variables larger than a prompt API call may send (apis.max_body_bytes, 1 MiB) are refused
    # as that call would be, before any render.
    big = admin.call("POST", f"/admin/v1/prompts/{name}/render", {"variables": {"text": "x" * (1 << 20)}})
    error = error_of(big, 413)
    assert (error["code"], error["param"]) == ("request_too_large", "variables"), error
    assert "apis.max_body_bytes" in error["message"]


def test_template_errors_name_the_message_and_line(admin: Admin) -> None:
    body = {
        **SENTIMENT,
        "name": unique(),
        "messages": [
            {"role": "system", "content": "fine"},
            {"role": "user", "content": "line one\nline two {% if text %}\n{{ text }"},
        ],
    }
    error = error_of(admin.call("POST", "/admin/v1/prompts", body), 400)
    assert error["code"] == "invalid_template"
    assert "messages[1] line 3" in error["message"]
    body["messages"] = [{"role": "user", "content": "Hi\n\n{{ text }} and {{ undeclared }}"}]
    error = error_of(admin.call("POST", "/admin/v1/prompts", body), 400)
    assert "messages[0] line 3: variable 'undeclared' is not declared" in error["message"]
    body["messages"] = [{"role": "user", "content": "{% for x in text %}{{ x }}"}]
    assert "messages[0] line 1" in error_of(admin.call("POST", "/admin/v1/prompts", body), 400)["message"]
    body["messages"] = SENTIMENT["messages"]
    body["variables"] = {"type": "object", "properties": {"text": {"type": "nonsense"}}}
    assert (
        "variables: not a valid JSON schema"
        in error_of(admin.call("POST", "/admin/v1/prompts", body), 400)["message"]
    )
    body["variables"] = {"type": "array"}
    error = error_of(admin.call("POST", "/admin/v1/prompts", body), 400)
    assert (error["code"], error["param"]) == ("invalid_template", "variables"), error
    assert admin.call("GET", f"/admin/v1/prompts/{body['name']}").status_code == 404  # nothing saved


def test_the_sandbox_refuses_internals_and_bounds_loops_and_output(world: World, admin: Admin) -> None:
    name = unique("sandbox")
    escapes = [
        "{{ ''.__class__ }}",
        "{{ text.__class__.__mro__ }}",
        "{{ range.__globals__ }}",
        "{{ (text|attr('__class__')) }}",
        "{{ namespace.__init__ }}",
    ]
    huge = [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% for i in range(10000000) %}{% endfor %}",
        "{{ 'x' * 100000000 }}",
        "{{ text.ljust(1000000000) }}",
        "{{ '%999999999s' % text }}",
        "{{ '{:>999999999}'.format(text) }}",
        "{% for i in range(100000) %}{{ 'abcdefghij' * 100 }}{% endfor %}",
        "{% set a = 'x' * 1000 %}{% set a = a ~ a ~ a ~ a ~ a ~ a ~ a ~ a %}"
        "{% set a = a ~ a ~ a ~ a ~ a ~ a ~ a ~ a %}{% set a = a ~ a ~ a ~ a ~ a ~ a ~ a ~ a %}"
        "{% set a = a ~ a ~ a ~ a ~ a ~ a ~ a ~ a %}{{ a }}",
        "{{ 9 ** 99999999 }}",
    ]
    for index, template in enumerate(escapes + huge):
        world.create(name, messages=[{"role": "user", "content": template}])
        resp = admin.call(
            "POST", f"/admin/v1/prompts/{name}/render", {"variables": {"text": "hi"}, "version": index + 1}
        )
        error = error_of(resp, 400)
        assert error["code"] == "prompt_render_failed", (template, error)
        expected = "unsafe" if template in escapes else "refused"
        assert expected in error["message"] or "undefined" in error["message"], (template, error)


def test_infinite_numbers_render(world: World, admin: Admin) -> None:
    """A constant Jinja folds when compiling is written into the compiled code as it prints, so
    an infinite one was the name ``inf``, undefined there: every render of the template was a
    500."""
    name = unique("numbers")
    template = "{% set a = 'inf'|float %}{{ a }} {{ ('nan'|float) + 1 }} {{ -1e999 }} {{ text }}"
    world.create(name, messages=[{"role": "user", "content": template}])
    shown = admin.ok("POST", f"/admin/v1/prompts/{name}/render", {"variables": {"text": "hi"}})
    assert shown["messages"][0]["content"] == "inf nan -inf hi"


def test_a_filter_given_the_wrong_kind_of_value_is_a_400(world: World, admin: Admin) -> None:
    """``xmlattr`` wants a mapping, ``truncate`` a length of at least its ellipsis: otherwise each
    raised what no render failure covered (a 500); it is the template's failure, 400."""
    name = unique("filters")
    for version, template in enumerate(["<p{{ text|xmlattr }}>", "{{ text|truncate(1) }}"], start=1):
        world.create(name, messages=[{"role": "user", "content": template}])
        resp = admin.call("POST", f"/admin/v1/prompts/{name}/render",
                          {"variables": {"text": "hi there"}, "version": version})
        error = error_of(resp, 400)
        assert error["code"] == "prompt_render_failed" and "messages[0]" in error["message"], error


# A macro calling itself twice, as deep as the caller asks: no loop, no output, 2^depth calls.
RECURSION = ("{% macro f(n) %}{% if n > 0 %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}"
             "Depth {{ f(depth) }}")
# Costly work per iteration (a scan of a large string), little output, within the loop budget.
COSTLY_LOOP = "{% for i in range(k) %}{{ x.count('ab') }}{% endfor %}"
BOMB_VARIABLES = {"type": "object", "properties": {
    "depth": {"type": "integer"}, "x": {"type": "string"}, "k": {"type": "integer"}}}


def test_a_costly_render_stops_at_its_deadline_while_others_are_served(world: World, admin: Admin) -> None:
    """Templates that cost time within every other bound are refused once they run past
    prompts.max_render_seconds (1 s by default), and they run off the event loop: /v1/models
    is answered while they run."""
    name = unique("bomb")
    world.create(name, variables=BOMB_VARIABLES, messages=[{"role": "user", "content": RECURSION}])
    world.create(name, variables=BOMB_VARIABLES, messages=[{"role": "user", "content": COSTLY_LOOP}])
    for version, variables in ((1, {"depth": 40}), (2, {"x": "a" * 900_000, "k": 100_000})):
        def render(version: int = version, variables: dict[str, Any] = variables) -> httpx.Response:
            return admin.call("POST", f"/admin/v1/prompts/{name}/render",
                              {"variables": variables, "version": version})

        resp, took, served = served_during(render, world.gateway.url, MASTER_KEY)
        error = error_of(resp, 400)
        assert error["code"] == "prompt_render_failed", error
        assert "refused" in error["message"], error
        assert took < 10, f"version {version} answered after {took:.1f} s"
        assert served >= 1, f"no /v1/models answer while version {version} rendered ({took:.1f} s)"
    # The costly loop stays within the loop budget: the deadline stops it.
    assert "the render took longer than 1 s" in error["message"], error
    # From chat, the same refusal.
    with pytest.raises(openai.BadRequestError) as refused:
        world.openai().chat.completions.create(model="", messages=[], extra_body={
            "prompt": {"id": name, "version": 1, "variables": {"depth": 40}}})
    assert refused.value.body["code"] == "prompt_render_failed"  # type: ignore[index]


def test_recursion_is_bounded_by_the_loop_budget_and_its_depth(world: World, admin: Admin) -> None:
    name = unique("recursion")
    world.create(name, variables=BOMB_VARIABLES, messages=[{"role": "user", "content": RECURSION}])
    deep = "{% macro f(n) %}{% if n > 0 %}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(depth) }}"
    world.create(name, variables=BOMB_VARIABLES, messages=[{"role": "user", "content": deep}])
    path = f"/admin/v1/prompts/{name}/render"
    shallow = admin.ok("POST", path, {"variables": {"depth": 3}, "version": 1})
    assert shallow["messages"][0]["content"] == "Depth "
    too_deep = admin.call("POST", path, {"variables": {"depth": 500}, "version": 2})
    assert "nested more than 64 deep" in error_of(too_deep, 400)["message"]


def test_template_loading_and_deep_nesting_are_refused_when_saved(admin: Admin) -> None:
    body = {**SENTIMENT, "name": unique("load")}
    for statement in ("{% include 'other' %}", "{% import 'other' as o %}", "{% from 'o' import m %}",
                      "{% extends 'base' %}"):
        body["messages"] = [{"role": "user", "content": f"Hi\n{statement}{{{{ text }}}}"}]
        error = error_of(admin.call("POST", "/admin/v1/prompts", body), 400)
        assert error["code"] == "invalid_template" and error["param"] == "messages", error
        assert "messages[0] line 2:" in error["message"] and "cannot load other templates" in error["message"]
    body["messages"] = [{"role": "user", "content": "{{ " + "(" * 500 + "text" + ")" * 500 + " }}"}]
    error = error_of(admin.call("POST", "/admin/v1/prompts", body), 400)
    assert error["code"] == "invalid_template" and "nested too deeply" in error["message"], error
    assert admin.call("GET", f"/admin/v1/prompts/{body['name']}").status_code == 404  # nothing saved


def test_the_bound_model_must_be_served(admin: Admin) -> None:
    error = error_of(admin.call("POST", "/admin/v1/prompts",
                                {**SENTIMENT, "name": unique(), "model": "nonexistent-model"}), 400)
    assert (error["code"], error["param"]) == ("model_not_found", "model"), error
    assert "nonexistent-model" in error["message"]
    assert admin.ok("POST", "/admin/v1/prompts", {**SENTIMENT, "name": unique(), "model": "claude-native"},
                    status=201)["model"] == "claude-native"


def test_schema_references_stay_within_the_schema(world: World, admin: Admin) -> None:
    """A $ref is a JSON pointer within the schema: the gateway fetches no URL a tenant gives,
    and a pointer to nothing is refused when saved, not when called."""
    def refused(**change: Any) -> dict[str, Any]:
        body = {**SENTIMENT, "name": unique(), **change}
        return error_of(admin.call("POST", "/admin/v1/prompts", body), 400)

    remote = {"type": "object", "properties": {"text": {"$ref": f"{world.mock.url}/schema.json"}}}
    error = refused(variables=remote)
    assert error["param"] == "variables" and "not a JSON pointer within the schema" in error["message"], error
    dangling = {"type": "object", "properties": {"text": {"$ref": "#/$defs/missing"}}}
    assert "points at nothing" in refused(variables=dangling)["message"]
    # An index of a digit isdigit takes and int() does not ('²'): a 500 when saved.
    odd = {"type": "object", "properties": {"text": {"$ref": "#/$defs/t/prefixItems/\u00b2"}},
           "$defs": {"t": {"type": "array", "prefixItems": [{"type": "string"}]}}}
    assert "points at nothing" in refused(variables=odd)["message"]
    assert "$id is not supported" in refused(variables={**SENTIMENT["variables"], "$id": "https://x.test/s"})[
        "message"]
    error = refused(output_schema={"type": "object", "properties": {"a": {"$ref": "https://x.test/s"}}})
    assert error["param"] == "output_schema", error
    local = {"type": "object", "properties": {"text": {"$ref": "#/$defs/text"}}, "required": ["text"],
             "$defs": {"text": {"type": "string", "minLength": 2}}}
    name = unique("refs")
    world.create(name, variables=local)
    short = admin.call("POST", f"/admin/v1/prompts/{name}/render", {"variables": {"text": "a"}})
    assert error_of(short, 400)["code"] == "invalid_variables"
    rendered = admin.ok("POST", f"/admin/v1/prompts/{name}/render", {"variables": {"text": "ab"}})
    assert rendered["messages"][0]["content"] == "Classify: ab"


def test_bounds_on_every_field(admin: Admin) -> None:
    def refused(**change: Any) -> dict[str, Any]:
        return error_of(
            admin.call("POST", "/admin/v1/prompts", {**SENTIMENT, "name": unique(), **change}), 400
        )

    assert refused(name="bad name")["param"] == "name"
    assert refused(name="x" * 65)["param"] == "name"
    assert refused(model="")["param"] == "model"
    assert refused(messages=[])["param"] == "messages"
    assert refused(messages=[{"role": "user", "content": "x"}] * 101)["param"] == "messages"
    assert refused(messages=[{"role": "tool", "content": "x"}])["param"] == "messages[0].role"
    assert (
        refused(messages=[{"role": "user", "content": "{{ text }}" * 25_000}])["code"] == "template_too_large"
    )
    big = {
        "type": "object",
        "properties": {f"p{i}": {"type": "string", "description": "x" * 100} for i in range(1000)},
    }
    assert refused(variables=big)["param"] == "variables"
    assert refused(output_schema={"type": 5})["param"] == "output_schema"
    assert refused(temperature=3)["param"] == "temperature"
    assert refused(unknown=1)["code"] == "unknown_parameter"
    assert refused(team="t" * 65)["param"] == "team"
    assert error_of(admin.call("GET", "/admin/v1/prompts/bad name"), 400)["param"] == "name"


def test_default_parameters_a_call_would_refuse_are_refused_when_saved(admin: Admin) -> None:
    """A prompt's defaults become every call's parameters: one no chat request may carry fails
    the save (400 naming it), not every call later (nor the store)."""
    def refused(**change: Any) -> dict[str, Any]:
        return error_of(
            admin.call("POST", "/admin/v1/prompts", {**SENTIMENT, "name": unique(), **change}), 400
        )

    assert refused(tool_choice="bogus")["param"] == "tool_choice"
    assert refused(response_format={})["param"] == "response_format.type"
    assert refused(tools=[{}])["param"] == "tools[0]"
    assert refused(seed=2**70)["param"] == "seed"


# -- roles and tenants --------------------------------------------------------------------------


@dataclass
class Tenant:
    id: str
    team1: str
    team2: str
    keys: dict[str, str]  # role (team1's) -> key


@pytest.fixture(scope="module")
def tenants(admin: Admin) -> tuple[Tenant, Tenant]:
    out = []
    for _ in range(2):
        tenant = unique("tn")
        admin.ok("POST", "/admin/v1/tenants", {"id": tenant, "name": tenant}, status=201)
        team1 = admin.ok("POST", "/admin/v1/teams", {"tenant": tenant, "name": "one"}, status=201)["id"]
        team2 = admin.ok("POST", "/admin/v1/teams", {"tenant": tenant, "name": "two"}, status=201)["id"]
        keys = {}
        for role, team in (
            ("tenant_admin", team1),
            ("team_admin", team1),
            ("developer", team1),
            ("viewer", team1),
            ("team2_admin", team2),
        ):
            body = {
                "tenant": tenant,
                "name": f"{role}",
                "role": role.replace("team2_", "team_"),
                "team": team,
            }
            user = admin.ok("POST", "/admin/v1/users", body, status=201)["id"]
            key = admin.ok(
                "POST",
                "/admin/v1/keys",
                {"models": ["*"], "tenant": tenant, "user": user, "role": body["role"]},
                status=201,
            )
            keys[role] = key["key"]
        out.append(Tenant(tenant, team1, team2, keys))
    return out[0], out[1]


def test_roles_write_their_reach_and_members_read(
    world: World, admin: Admin, tenants: tuple[Tenant, Tenant]
) -> None:
    a, _ = tenants
    team_admin, developer = admin.as_key(a.keys["team_admin"]), admin.as_key(a.keys["developer"])
    name = unique("team")
    created = team_admin.ok("POST", "/admin/v1/prompts", {"name": name, **SENTIMENT}, status=201)
    assert created["team"] == a.team1 and created["tenant"] == a.id
    # Members read; they may not write.
    assert developer.ok("GET", f"/admin/v1/prompts/{name}")["version"] == 1
    assert admin.as_key(a.keys["viewer"]).ok(
        "POST", f"/admin/v1/prompts/{name}/render", {"variables": {"text": "x"}}
    )["messages"]
    denied = developer.call("POST", "/admin/v1/prompts", {"name": unique(), **SENTIMENT})
    assert error_of(denied, 403)["code"] == "permission_denied"
    assert (
        error_of(developer.call("PUT", f"/admin/v1/prompts/{name}/labels/production", {"version": 1}), 403)[
            "code"
        ]
        == "permission_denied"
    )
    # Another team's admin cannot add a version or move a label of team one's prompt.
    other = admin.as_key(a.keys["team2_admin"])
    assert error_of(other.call("POST", "/admin/v1/prompts", {"name": name, **SENTIMENT}), 403)
    assert other.call("PUT", f"/admin/v1/prompts/{name}/labels/production", {"version": 1}).status_code == 404
    assert (
        other.call("POST", "/admin/v1/prompts", {"name": unique(), **SENTIMENT, "team": a.team1}).status_code
        == 404
    )
    # The tenant admin writes every team's prompts.
    tenant_admin = admin.as_key(a.keys["tenant_admin"])
    assert (
        tenant_admin.ok("POST", "/admin/v1/prompts", {"name": name, **SENTIMENT}, status=201)["version"] == 2
    )
    world.label(name, "production", 2, admin=tenant_admin)
    world.label(name, "production", 1, admin=team_admin)


def test_a_prompt_given_to_another_team_has_its_labels_moved_by_that_team_only(
    world: World, admin: Admin, tenants: tuple[Tenant, Tenant]
) -> None:
    """A prompt is its team's (its latest version's): once the tenant admin saves a version of
    it for team two, team one's admin no longer moves its labels, not even onto a version saved
    when it was team one's, and team two's admin moves them onto any of its versions."""
    a, _ = tenants
    first, second = admin.as_key(a.keys["team_admin"]), admin.as_key(a.keys["team2_admin"])
    name = unique("moved")
    assert first.ok("POST", "/admin/v1/prompts", {"name": name, **SENTIMENT}, status=201)["team"] == a.team1
    world.label(name, "production", 1, admin=first)
    moved = admin.as_key(a.keys["tenant_admin"]).ok(
        "POST", "/admin/v1/prompts", {"name": name, **SENTIMENT, "team": a.team2}, status=201)
    assert (moved["version"], moved["team"]) == (2, a.team2)
    world.label(name, "production", 2, admin=second)
    refused = first.call("PUT", f"/admin/v1/prompts/{name}/labels/production", {"version": 1})
    assert error_of(refused, 404)["code"] == "prompt_not_found"
    assert error_of(first.call("PUT", f"/admin/v1/prompts/{name}/labels/production", None), 404)[
        "code"] == "prompt_not_found"
    labels = admin.as_key(a.keys["developer"]).ok("GET", f"/admin/v1/prompts/{name}/versions")["labels"]
    assert labels == {"production": 2}
    world.label(name, "production", 1, admin=second)  # the owner rolls back to the earlier version


def test_another_tenants_prompt_is_not_found(
    world: World, admin: Admin, tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    name = unique("mine")
    admin.as_key(a.keys["tenant_admin"]).ok(
        "POST", "/admin/v1/prompts", {"name": name, **SENTIMENT}, status=201
    )
    theirs = admin.as_key(b.keys["tenant_admin"])
    for method, path, body in (
        ("GET", f"/admin/v1/prompts/{name}", None),
        ("GET", f"/admin/v1/prompts/{name}/versions", None),
        ("GET", f"/admin/v1/prompts/{name}/diff?from=1&to=1", None),
        ("PUT", f"/admin/v1/prompts/{name}/labels/production", {"version": 1}),
        ("POST", f"/admin/v1/prompts/{name}/render", {"variables": {"text": "x"}}),
    ):
        assert error_of(theirs.call(method, path, body), 404)["code"] == "prompt_not_found", path
    assert name not in {p["name"] for p in theirs.ok("GET", "/admin/v1/prompts")["data"]}
    assert theirs.call("GET", f"/admin/v1/prompts/{name}", params={"tenant": a.id}).status_code == 404
    # Calls with b's key cannot use a's prompt by name ...
    b_client = world.openai(b.keys["developer"])
    with pytest.raises(openai.NotFoundError) as missing:
        b_client.chat.completions.create(
            model="", messages=[], extra_body={"prompt": {"id": name, "variables": {"text": "x"}}}
        )
    assert missing.value.body["code"] == "prompt_not_found"  # type: ignore[index]
    # ... while a's own keys can.
    mine = world.openai(a.keys["developer"]).chat.completions.create(
        model="", messages=[], extra_body={"prompt": {"id": name, "variables": {"text": "of a"}}}
    )
    assert str(mine.choices[0].message.content).endswith("Classify: of a")
    # The same name in tenant b is its own prompt, version 1, and b's calls get b's.
    body = {"name": name, **SENTIMENT, "messages": [{"role": "user", "content": "B says {{ text }}"}]}
    assert theirs.ok("POST", "/admin/v1/prompts", body, status=201)["version"] == 1
    reply = b_client.chat.completions.create(
        model="", messages=[], extra_body={"prompt": {"id": name, "variables": {"text": "hi"}}}
    )
    assert str(reply.choices[0].message.content).endswith("B says hi")
    # The platform admin reaches any tenant's.
    assert admin.ok("GET", f"/admin/v1/prompts/{name}", params={"tenant": a.id})["tenant"] == a.id


# -- prompts from chat --------------------------------------------------------------------------


def test_chat_completions_with_a_prompt_reference(world: World) -> None:
    name = unique("chat")
    world.create(
        name,
        variables=VARIABLES,
        temperature=0.3,
        max_tokens=50,
        messages=[
            {"role": "system", "content": "You classify sentiment, {{ tone | default('dry') }}."},
            {"role": "user", "content": "Classify: {{ text }}"},
        ],
    )
    world.label(name, "production", 1)
    marker = new_marker()
    raw = world.openai().chat.completions.with_raw_response.create(
        model="",
        messages=[{"role": "user", "content": f"mock:capture={marker} and answer in one word"}],
        temperature=0.9,
        extra_body={"prompt": {"id": name, "label": "production", "variables": {"text": "great day"}}},
    )
    reply = raw.parse()
    assert reply.choices[0].message.content is not None
    assert reply.choices[0].message.content.endswith("and answer in one word")
    sent = captured(world.mock, marker, outcome="completed")[0]["body"]
    assert sent["messages"] == [
        {"role": "system", "content": "You classify sentiment, dry."},
        {"role": "user", "content": "Classify: great day"},
        {"role": "user", "content": f"mock:capture={marker} and answer in one word"},
    ]
    assert sent["model"] == "gpt-4o-mini"
    assert sent["temperature"] == 0.9  # the caller's wins
    assert sent["max_tokens"] == 50  # the prompt's default
    assert "prompt" not in sent
    record = world.log(raw.headers["x-request-id"])
    assert record["metadata"]["prompt"] == {"name": name, "version": 1}
    assert record["model"] == "gpt-4o-mini" and record["status"] == 200


def test_the_callers_output_limit_wins_under_either_name(world: World) -> None:
    """``max_tokens`` and ``max_completion_tokens`` are one limit: a caller that sets it under
    either name is not overridden by the prompt's default under the other."""
    client = world.openai()
    # The prompt's max_completion_tokens, the caller's max_tokens, an Anthropic deployment.
    name = unique("limit")
    world.create(name, model="claude-native", max_completion_tokens=5)
    marker = new_marker()
    client.chat.completions.create(
        model="", max_tokens=200, messages=[{"role": "user", "content": f"mock:capture={marker}"}],
        extra_body={"prompt": {"id": name, "variables": {"text": "a"}}},
    )
    assert captured(world.mock, marker, outcome="completed")[0]["body"]["max_tokens"] == 200
    # The prompt's max_tokens, the caller's max_completion_tokens, an OpenAI deployment.
    name = unique("limit")
    world.create(name, max_tokens=50)
    marker = new_marker()
    client.chat.completions.create(
        model="", max_completion_tokens=20, messages=[{"role": "user", "content": f"mock:capture={marker}"}],
        extra_body={"prompt": {"id": name, "variables": {"text": "a"}}},
    )
    sent = captured(world.mock, marker, outcome="completed")[0]["body"]
    assert sent["max_completion_tokens"] == 20 and "max_tokens" not in sent


def test_moving_a_label_changes_what_calls_get(world: World) -> None:
    name = unique("moving")
    world.create(name, messages=[{"role": "user", "content": "first {{ text }}"}])
    world.create(name, messages=[{"role": "user", "content": "second {{ text }}"}])
    client = world.openai()

    def said(**ref: Any) -> str:
        reply = client.chat.completions.create(
            model="", messages=[], extra_body={"prompt": {"id": name, "variables": {"text": "x"}, **ref}}
        )
        return str(reply.choices[0].message.content)

    world.label(name, "production", 1)
    assert said(label="production").endswith("first x")
    world.label(name, "production", 2)
    assert said(label="production").endswith("second x")  # seen at once: the cache was told
    world.label(name, "production", 1)  # rollback
    assert said(label="production").endswith("first x")
    assert said(version=2).endswith("second x")
    assert said().endswith("second x")  # no label or version: the latest
    world.create(name, messages=[{"role": "user", "content": "third {{ text }}"}])
    assert said().endswith("third x")


def test_other_apis_keep_their_own_prompt_field(world: World) -> None:
    # The legacy completions API's prompt is its text, not a registry reference.
    done = world.openai().completions.create(model="gpt-3.5-turbo-instruct", prompt="plain text prompt")
    assert done.choices[0].text
    # count_tokens on the Messages API takes no registry prompt (as the Anthropic API refuses it).
    resp = httpx.post(
        f"{world.gateway.url}/v1/messages/count_tokens",
        headers={"x-api-key": MASTER_KEY},
        json={"model": "gpt-4o-mini", "messages": [], "prompt": {"id": "x"}},
        timeout=30,
    )
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"


def test_streaming_with_a_prompt(world: World) -> None:
    name = unique("stream")
    world.create(name)
    stream = world.openai().chat.completions.create(
        model="gpt-4o-mini",
        messages=[],
        stream=True,
        extra_body={"prompt": {"id": name, "variables": {"text": "streamed"}}},
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.endswith("Classify: streamed")


def test_messages_api_with_a_prompt_translated_and_passed_through(world: World) -> None:
    client = world.anthropic()
    for model in ("gpt-4o-mini", "claude-native"):
        name = unique("anth")
        world.create(
            name,
            model=model,
            temperature=1.5,
            max_tokens=40,
            stop=["STOP"],
            messages=[
                {"role": "system", "content": "System for {{ text }}"},
                {"role": "user", "content": "Say {{ text }}"},
            ],
        )
        marker = new_marker()
        raw = client.messages.with_raw_response.create(
            model="",
            max_tokens=64,
            messages=[{"role": "user", "content": f"mock:capture={marker} then {model}"}],
            extra_body={"prompt": {"id": name, "version": 1, "variables": {"text": "hi"}}},
        )
        message = raw.parse()
        assert message.content[0].type == "text" and message.content[0].text.endswith(f"then {model}")
        sent = captured(world.mock, marker, outcome="completed")[0]["body"]
        assert "prompt" not in sent
        if model == "claude-native":  # Anthropic's own wire format, passed through
            assert sent["system"] == "System for hi"
            assert sent["messages"] == [
                {"role": "user", "content": "Say hi"},
                {"role": "user", "content": f"mock:capture={marker} then {model}"},
            ]
            assert sent["max_tokens"] == 64 and sent["temperature"] == 1.0  # clamped to Anthropic's range
            assert sent["stop_sequences"] == ["STOP"] and sent["model"] == "claude-sonnet-4-5"
        else:
            assert sent["messages"][:2] == [
                {"role": "system", "content": "System for hi"},
                {"role": "user", "content": "Say hi"},
            ]
            assert sent["max_completion_tokens"] == 64 and sent["stop"] == ["STOP"]
        record = world.log(raw.headers["request-id"])
        assert record["metadata"]["prompt"] == {"name": name, "version": 1}
    # Streamed, passed through to the Anthropic deployment.
    with client.messages.stream(
        model="",
        max_tokens=64,
        messages=[],
        extra_body={"prompt": {"id": name, "version": 1, "variables": {"text": "streamed"}}},
    ) as events:
        final = events.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text.endswith("Say streamed")
    # max_tokens from the prompt when the body has none (plain HTTP: the SDK requires it).
    name = unique("anth-default")
    world.create(name, model="claude-native", max_tokens=33)
    resp = httpx.post(
        f"{world.gateway.url}/v1/messages",
        headers={"x-api-key": MASTER_KEY},
        json={"prompt": {"id": name, "variables": {"text": "plain"}}},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["content"][0]["text"].endswith("Classify: plain")


def test_chat_bad_input_in_each_apis_format(world: World) -> None:
    name = unique("bad")
    world.create(name, variables=VARIABLES)
    client = world.openai()

    def chat(prompt: Any, **extra: Any) -> Any:
        return client.chat.completions.create(model="", messages=[], extra_body={"prompt": prompt, **extra})

    with pytest.raises(openai.NotFoundError) as missing:
        chat({"id": unique(), "variables": {"text": "x"}})
    assert missing.value.body["code"] == "prompt_not_found"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        chat({"id": name, "label": "nowhere", "variables": {"text": "x"}})
    with pytest.raises(openai.NotFoundError):
        chat({"id": name, "version": 7, "variables": {"text": "x"}})
    with pytest.raises(openai.BadRequestError) as bad:
        chat({"id": name, "variables": {"tone": "loud"}})
    body = bad.value.body
    assert body["code"] == "invalid_variables" and body["param"] == "prompt.variables.text"  # type: ignore[index]
    assert "tone:" in body["message"]  # type: ignore[index]
    # A variable a closed object does not allow is named in param, nested or not.
    strict = unique("strict")
    world.create(strict, variables={**VARIABLES, "additionalProperties": False, "properties": {
        **VARIABLES["properties"], "who": {"type": "object", "additionalProperties": False,
                                           "properties": {"name": {"type": "string"}}}}})
    for variables, param in (({"text": "x", "colour": "red"}, "prompt.variables.colour"),
                             ({"text": "x", "who": {"name": "Ada", "age": 36}}, "prompt.variables.who.age")):
        with pytest.raises(openai.BadRequestError) as unexpected:
            chat({"id": strict, "variables": variables})
        assert unexpected.value.body["code"] == "invalid_variables"  # type: ignore[index]
        assert unexpected.value.body["param"] == param  # type: ignore[index]
    for malformed, param in (
        ("just-a-name", "prompt"),
        ({"variables": {}}, "prompt.id"),
        ({"id": "bad name"}, "prompt.id"),
        ({"id": name, "label": "production", "version": 1}, "prompt.label"),
        ({"id": name, "version": "1"}, "prompt.version"),
        ({"id": name, "version": 2**31}, "prompt.version"),  # past the database's integer column
        ({"id": name, "variables": ["x"]}, "prompt.variables"),
        ({"id": name, "extra": 1}, "prompt.extra"),
    ):
        with pytest.raises(openai.BadRequestError) as refused:
            chat(malformed)
        assert refused.value.body["code"] == "invalid_prompt_reference", malformed  # type: ignore[index]
        assert refused.value.body["param"] == param, malformed  # type: ignore[index]
    # Without a prompt, model and messages stay required.
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="", messages=[])
    # Extra messages are checked as any.
    with pytest.raises(openai.BadRequestError) as extra:
        client.chat.completions.create(
            model="",
            messages=[{"role": "nobody", "content": "x"}],
            extra_body={"prompt": {"id": name, "variables": {"text": "x"}}},
        )
    assert extra.value.body["param"] == "messages[0].role"  # type: ignore[index]

    messages = world.anthropic()
    with pytest.raises(anthropic.NotFoundError) as gone:
        messages.messages.create(
            model="",
            max_tokens=10,
            messages=[],
            extra_body={"prompt": {"id": unique(), "variables": {"text": "x"}}},
        )
    assert gone.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as invalid:
        messages.messages.create(
            model="",
            max_tokens=10,
            messages=[],
            extra_body={"prompt": {"id": name, "variables": {"text": 5}}},
        )
    assert invalid.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "text" in invalid.value.body["error"]["message"]  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError):
        messages.messages.create(model="", max_tokens=10, messages=[], extra_body={"prompt": 5})
    no_max_tokens = httpx.post(
        f"{world.gateway.url}/v1/messages",
        headers={"x-api-key": MASTER_KEY},
        json={"prompt": {"id": name, "variables": {"text": "x"}}},
        timeout=30,
    )
    assert no_max_tokens.status_code == 400, no_max_tokens.text
    assert no_max_tokens.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in no_max_tokens.json()["error"]["message"]
    # A render failure is a 400 too.
    sandbox = unique("sandbox")
    world.create(sandbox, messages=[{"role": "user", "content": "{{ text.__class__ }}"}])
    with pytest.raises(openai.BadRequestError) as unsafe:
        chat({"id": sandbox, "variables": {"text": "x"}})
    assert unsafe.value.body["code"] == "prompt_render_failed"  # type: ignore[index]


def test_chat_variables_are_bounded_as_a_prompt_api_call(world: World) -> None:
    """``prompt.variables`` larger as JSON than a prompt API's call may send
    (``apis.max_body_bytes``, 1 MiB) are 413 ``request_too_large`` naming them, in each API's
    format, before any lookup or render; they were bounded only by the request body's 32 MiB.
    Variables within the bound are served (a variable the template does not print included)."""
    name = unique("bounded")
    world.create(name)
    client = world.openai()
    within = {"text": "x", "notes": "y" * 900_000}
    served = client.chat.completions.create(model="", messages=[], extra_body={
        "prompt": {"id": name, "variables": within}})
    assert served.choices[0].message.content
    past = {"text": "x", "notes": "y" * (1 << 20)}
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model="", messages=[], extra_body={
            "prompt": {"id": name, "variables": past}})
    assert refused.value.status_code == 413
    body = refused.value.body
    assert (body["code"], body["param"]) == ("request_too_large", "prompt.variables"), body  # type: ignore[index]
    assert "apis.max_body_bytes" in body["message"]  # type: ignore[index]
    # Checked before the prompt is looked up: an unknown prompt with such variables is the same 413.
    with pytest.raises(openai.APIStatusError) as unknown:
        client.chat.completions.create(model="", messages=[], extra_body={
            "prompt": {"id": unique(), "variables": past}})
    assert unknown.value.status_code == 413
    with pytest.raises(anthropic.APIStatusError) as messages:
        world.anthropic().messages.create(model="", max_tokens=10, messages=[], extra_body={
            "prompt": {"id": name, "variables": past}})
    assert messages.value.status_code == 413
    assert messages.value.body["error"]["type"] == "request_too_large", messages.value.body  # type: ignore[index]


def test_a_key_limited_to_models_cannot_reach_others_through_a_prompt(world: World, admin: Admin) -> None:
    name = unique("limited")
    world.create(name, model="claude-native")
    key = admin.ok("POST", "/admin/v1/keys", {"models": ["gpt-4o-mini"]}, status=201)["key"]
    with pytest.raises(openai.APIStatusError) as denied:
        world.openai(key).chat.completions.create(
            model="", messages=[], extra_body={"prompt": {"id": name, "variables": {"text": "x"}}}
        )
    assert denied.value.status_code in (403, 404)
    reply = world.openai(key).chat.completions.create(
        model="gpt-4o-mini", messages=[], extra_body={"prompt": {"id": name, "variables": {"text": "ok"}}}
    )
    assert str(reply.choices[0].message.content).endswith("Classify: ok")
