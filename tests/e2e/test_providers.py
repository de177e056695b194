"""Providers, credentials and models managed at run time through the admin API, end to end: added,
called with the official SDK without a restart, changed, tested and removed; credentials sealed
and never shown; YAML entries read-only. Every test runs on the embedded default (SQLite,
in-process feed) and on a cluster (PostgreSQL and Redis); the cluster also shows a change made
on one instance served by a second one within a second."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import openai
import pytest
import sqlalchemy as sa
import yaml

from switchboard.stores.sql.tables import provider_credentials
from tests.e2e.sdk import ask
from tests.e2e.test_budgets import audit_refusal, run_sql
from tests.servers import MASTER_KEY, UPSTREAM_KEY, Gateway, Mock, openai_config, spawn, start_gateway
from tests.services import Postgres, RedisServer

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
WRONG_KEY = "sk-wrong-upstream-key-0000000000ZZZZ"
# Configured header values that are credentials under names that do not say so.
HEADER_SECRET = "sk-custom-header-value-0123456789wxyz"
YAML_HEADER_SECRET = "plain words that are a secret all the same"


def uid() -> str:
    return uuid.uuid4().hex[:8]


@dataclass
class Deployment:
    kind: str
    gateway: Gateway
    mock: Mock
    tmp: Path

    def admin(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        url = f"{self.gateway.url}/admin/v1{path}"
        return httpx.request(method, url, json=body, headers=headers or ADMIN, timeout=30)

    def provider(self, **extra: Any) -> dict[str, Any]:
        body = {"name": f"rt-{uid()}", "type": "openai", "api_base": f"{self.mock.url}/v1", **extra}
        resp = self.admin("POST", "/providers", body)
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    def model(self, provider: str, **extra: Any) -> dict[str, Any]:
        body = {"name": f"rt-model-{uid()}", "provider": provider, "model": "gpt-4o-mini", **extra}
        resp = self.admin("POST", "/models", body)
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    def sdk(self, key: str = MASTER_KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=key, max_retries=0, timeout=30)

    def chat(self, model: str, text: str = "hello") -> httpx.Response:
        return httpx.post(f"{self.gateway.base_url}/chat/completions", headers=ADMIN, timeout=30,
                          json={"model": model, "messages": ask(text)})


def cluster_config(mock: Mock, postgres: Postgres, redis: RedisServer) -> dict[str, Any]:
    config = openai_config(mock)
    config["database"] = {"url": postgres.create_database(f"providers_{uid()}")}
    config["redis"] = {"url": redis.url}
    return config


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def deployment(
    request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    if request.param == "embedded":
        config = openai_config(mock_upstream)
    else:
        config = cluster_config(
            mock_upstream, request.getfixturevalue("postgres"), request.getfixturevalue("redis_server")
        )
    tmp = tmp_path_factory.mktemp(f"providers-{request.param}")
    # YAML credentials: several used in turn, and references to the environment and to a file.
    key_file = tmp / "upstream-key"
    key_file.write_text(UPSTREAM_KEY + "\n")
    api_base = f"{mock_upstream.url}/v1"
    config["providers"] += [
        {"name": "yaml-rotating", "type": "openai", "api_base": api_base,
         "api_keys": [WRONG_KEY, "env:UPSTREAM_KEY"]},
        {"name": "yaml-file", "type": "openai", "api_base": api_base, "api_key": f"file:{key_file}"},
        {"name": "yaml-headers", "type": "openai", "api_base": api_base, "api_key": "env:UPSTREAM_KEY",
         "headers": {"X-Custom": HEADER_SECRET, "X-Mock-Reply": YAML_HEADER_SECRET}},
    ]
    config["models"] += [
        {"name": "yaml-rotating-model", "provider": "yaml-rotating", "model": "gpt-4o-mini"},
        {"name": "yaml-file-model", "provider": "yaml-file", "model": "gpt-4o-mini",
         "require_approval": True},
        {"name": "yaml-headers-model", "provider": "yaml-headers", "model": "gpt-4o-mini"},
        # A group of three deployments: three entries of one name.
        *({"name": "yaml-group", "provider": "local-openai", "model": m}
          for m in ("gpt-4o-mini", "gpt-4o", "gpt-3.5-turbo")),
    ]
    config["auth"]["caller_credentials"] = {"enabled": True}
    gw = start_gateway(config, tmp)
    yield Deployment(request.param, gw, mock_upstream, tmp)
    gw.process.stop()


def test_the_models_list_in_pages_shows_each_deployment_of_a_group_once(deployment: Deployment) -> None:
    listed = deployment.admin("GET", "/models?limit=1000").json()["data"]
    entries = [(m["name"], m["provider"], m["model"]) for m in listed]
    assert [e for e in entries if e[0] == "yaml-group"] == [
        ("yaml-group", "local-openai", m) for m in ("gpt-4o-mini", "gpt-4o", "gpt-3.5-turbo")]
    for limit in (1, 2, 3):
        seen, after, sizes = [], None, []
        while True:
            params = {"limit": limit, **({"after": after} if after else {})}
            page = deployment.admin("GET", f"/models?{urlencode(params)}").json()
            seen += [(m["name"], m["provider"], m["model"]) for m in page["data"]]
            sizes.append(len(page["data"]))
            if not page["has_more"]:
                break
            after = page["last_id"]
        assert seen == entries, limit
        # A page holds more than the limit only to keep a group's deployments together.
        assert max(sizes) <= limit + 2, sizes


def test_a_provider_and_model_added_at_run_time_are_served_at_once(deployment: Deployment) -> None:
    provider = deployment.provider(api_key=UPSTREAM_KEY)
    assert (provider["source"], provider["read_only"]) == ("database", False)
    (cred,) = provider["credentials"]
    assert cred["mask"] == "sk-…CDEF" and cred["kind"] == "sealed"
    model = deployment.model(provider["name"], info={"max_output_tokens": 1234})
    client = deployment.sdk()
    reply = client.chat.completions.create(model=model["name"], messages=ask("run time"))
    assert reply.choices[0].message.content.endswith("You said: run time")
    chunks = client.chat.completions.create(model=model["name"], messages=ask("streamed"), stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.endswith("You said: streamed")
    listed = {m.id: m for m in client.models.list()}
    assert model["name"] in listed and "gpt-4o-mini" in listed
    assert listed[model["name"]].owned_by == provider["name"]
    # The catalog's fields, with the entry's own overrides, as for a YAML model.
    url = f"{deployment.gateway.base_url}/models/{model['name']}"
    entry = httpx.get(url, headers=ADMIN, timeout=10).json()
    assert entry["max_output_tokens"] == 1234 and entry["context_window"] > 0
    ready = httpx.get(f"{deployment.gateway.url}/health/ready", timeout=10).json()
    assert ready["models"] == len(listed)
    assert client.models.retrieve(model["name"]).id == model["name"]
    # A key limited to the new model sees it too.
    key = deployment.admin("POST", "/keys", {"models": [model["name"]]}).json()["key"]
    assert [m.id for m in deployment.sdk(key).models.list()] == [model["name"]]
    assert deployment.sdk(key).chat.completions.create(model=model["name"], messages=ask("k")).choices

    # Changed: a new upstream model id, served at once.
    change = {"model": "gpt-4o", "require_approval": True}
    changed = deployment.admin("PATCH", f"/models/{model['name']}", change)
    assert changed.status_code == 200, changed.text
    assert (changed.json()["model"], changed.json()["require_approval"]) == ("gpt-4o", True)
    assert deployment.admin("GET", f"/models/{model['name']}").json()["model"] == "gpt-4o"
    # Removed: gone from the API and the model list at once.
    assert deployment.admin("DELETE", f"/models/{model['name']}").json()["deleted"] is True
    gone = deployment.chat(model["name"])
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "model_not_found"
    assert model["name"] not in {m.id for m in client.models.list()}
    assert deployment.admin("GET", f"/models/{model['name']}").status_code == 404
    assert deployment.admin("DELETE", f"/providers/{provider['name']}").json()["deleted"] is True
    assert deployment.admin("GET", f"/providers/{provider['name']}").status_code == 404


def test_credentials_are_never_shown_and_the_upstream_gets_the_stored_one(deployment: Deployment) -> None:
    provider = deployment.provider(api_key=WRONG_KEY)
    name = provider["name"]
    model = deployment.model(name)["name"]
    refused = deployment.chat(model)
    assert refused.status_code == 502 and refused.json()["error"]["code"] == "upstream_authentication_failed"
    body = {"api_key": UPSTREAM_KEY, "label": "main"}
    added = deployment.admin("POST", f"/providers/{name}/credentials", body)
    assert added.status_code == 201 and added.json()["mask"] == "sk-…CDEF" and added.json()["label"] == "main"
    # Two credentials, used in turn: the right one and the wrong one alternate.
    codes = [deployment.chat(model, f"turn {i}").status_code for i in range(4)]
    assert sorted(codes) == [200, 200, 502, 502] and codes[0] != codes[1] and codes[1] != codes[2]
    wrong_id = provider["credentials"][0]["id"]
    assert deployment.admin("DELETE", f"/providers/{name}/credentials/{wrong_id}").json()["deleted"] is True
    assert [deployment.chat(model, f"again {i}").status_code for i in range(3)] == [200, 200, 200]
    assert deployment.admin("DELETE", f"/providers/{name}/credentials/{wrong_id}").status_code == 404

    # Nowhere in the admin API, the audit log or the server's log.
    answers = [
        deployment.admin("GET", "/providers", None).text,
        deployment.admin("GET", f"/providers/{name}").text,
        deployment.admin("GET", "/audit", None).text,
        added.text,
    ]
    for text in answers:
        assert UPSTREAM_KEY not in text and WRONG_KEY not in text
        assert UPSTREAM_KEY[3:-4] not in text
    audit = deployment.admin("GET", "/audit").json()["data"]
    actions = {e["action"] for e in audit if e["resource_id"] in (name, added.json()["id"], wrong_id)}
    assert {"provider.create", "provider.credential.create", "provider.credential.delete"} <= actions
    # A password in a base URL is masked too.
    port = deployment.mock.url.rsplit(":", 1)[1]
    with_password = deployment.provider(api_base=f"http://ops:pw-0123456789@127.0.0.1:{port}/v1")
    assert with_password["api_base"] == f"http://ops:[hidden]@127.0.0.1:{port}/v1"
    assert "pw-0123456789" not in deployment.admin("GET", f"/providers/{with_password['name']}").text
    deployment.admin("DELETE", f"/providers/{with_password['name']}")
    listed = deployment.admin("GET", "/providers", None).json()["data"]
    yaml_provider = next(p for p in listed if p["name"] == "local-openai")
    assert yaml_provider["credentials"][0]["mask"] == "sk-…CDEF"
    deployment.admin("DELETE", f"/models/{model}")
    deployment.admin("DELETE", f"/providers/{name}")
    output = deployment.gateway.process.output
    assert UPSTREAM_KEY not in output and WRONG_KEY not in output


def test_configured_header_values_are_shown_masked_whatever_the_name(deployment: Deployment) -> None:
    """Any header value may be a credential ("X-Custom: sk-..."): the admin API, the audit log and
    the command line show every configured header by name with its value masked, for stored and
    configuration file providers alike; the upstream still gets the value itself."""
    headers = {"X-Custom": HEADER_SECRET, "X-Mock-Reply": "stored-reply-words"}
    provider = deployment.provider(api_key=UPSTREAM_KEY, headers=headers)
    name = provider["name"]
    assert provider["headers"] == {"X-Custom": "sk-…wxyz", "X-Mock-Reply": "…ords"}
    patched = deployment.admin("PATCH", f"/providers/{name}", {"headers": {**headers, "X-Other": "short"}})
    assert patched.status_code == 200 and patched.json()["headers"]["X-Other"] == "…"
    model = deployment.model(name)["name"]
    reply = deployment.chat(model)  # the mock answers with the X-Mock-Reply it received
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"] == "stored-reply-words"
    yaml_reply = deployment.chat("yaml-headers-model")
    assert yaml_reply.json()["choices"][0]["message"]["content"] == YAML_HEADER_SECRET
    listed = deployment.admin("GET", "/providers").json()["data"]
    yaml_one = next(p for p in listed if p["name"] == "yaml-headers")
    assert yaml_one["headers"] == {"X-Custom": "sk-…wxyz", "X-Mock-Reply": "pla…same"}
    answers = [
        json.dumps(listed), provider, patched.text,
        deployment.admin("GET", f"/providers/{name}").text,
        deployment.admin("GET", "/providers/yaml-headers").text,
        deployment.admin("GET", "/audit").text,
        cli(deployment, "providers", "show", name)[1],
        cli(deployment, "providers", "show", "yaml-headers", "--json")[1],
        cli(deployment, "providers", "list", "--json")[1],
    ]
    for text in map(str, answers):
        assert HEADER_SECRET not in text and HEADER_SECRET[3:-4] not in text
        assert YAML_HEADER_SECRET not in text and "stored-reply-words" not in text
    # The table names it, masked as the API shows it (not "sk-\\u2026wxyz").
    assert '"X-Custom": "sk-…wxyz"' in answers[-3] and "\\u2026" not in answers[-3], answers[-3]
    shown = json.loads(cli(deployment, "providers", "show", name, "--json")[1])[0]["headers"]
    assert shown == {"X-Custom": "sk-…wxyz", "X-Mock-Reply": "…ords", "X-Other": "…"}
    # What GET shows, sent back, would store the masks: refused, naming the header.
    resent = deployment.admin("PATCH", f"/providers/{name}", {"headers": shown})
    assert resent.status_code == 400, resent.text
    assert resent.json()["error"]["param"] == "headers.X-Custom"
    assert "masked" in resent.json()["error"]["message"]
    deployment.admin("DELETE", f"/models/{model}")
    assert deployment.admin("DELETE", f"/providers/{name}").status_code == 200


def test_the_audit_says_which_header_values_changed_when_their_masks_read_the_same(
        deployment: Deployment) -> None:
    """``a1b2c`` and ``z9y8x`` both show as ``…``, and two long values ending alike as the same
    ``sk-…wxyz``: the ``provider.update`` entry names the headers whose value changed
    (``headers_changed``), and never the values; a change that keeps them names none."""
    first = {"X-Short": "a1b2c", "X-Long": HEADER_SECRET, "X-Kept": "kept-value"}
    name = deployment.provider(api_key=UPSTREAM_KEY, headers=first)["name"]
    rotated = "sk-rotated-" + uuid.uuid4().hex + "wxyz"
    second = {"X-Short": "z9y8x", "X-Long": rotated, "X-Kept": "kept-value", "X-New": "new"}
    patched = deployment.admin("PATCH", f"/providers/{name}", {"headers": second})
    assert patched.status_code == 200, patched.text
    assert "headers_changed" not in patched.json()  # the answer is the provider as it now is
    again = deployment.admin("PATCH", f"/providers/{name}", {"headers": second, "rpm": 100})
    assert again.status_code == 200, again.text
    audit = deployment.admin("GET", f"/audit?resource_id={name}&action=provider.update")
    assert audit.status_code == 200, audit.text
    unchanged, changed = audit.json()["data"]  # newest first
    assert changed["before"]["headers"]["X-Short"] == changed["after"]["headers"]["X-Short"] == "…"
    assert changed["before"]["headers"]["X-Long"] == changed["after"]["headers"]["X-Long"] == "sk-…wxyz"
    assert changed["after"]["headers_changed"] == ["X-Long", "X-Short"]
    assert "headers_changed" not in changed["before"] and "headers_changed" not in unchanged["after"]
    for secret in ("a1b2c", "z9y8x", HEADER_SECRET, rotated, "kept-value"):
        assert secret not in audit.text
    assert deployment.admin("DELETE", f"/providers/{name}").status_code == 200


def test_credential_references_env_and_file(deployment: Deployment) -> None:
    key_file = deployment.tmp / f"upstream-key-{uid()}"
    key_file.write_text(UPSTREAM_KEY + "\n")
    by_env = deployment.provider(api_key_ref="env:UPSTREAM_KEY")  # set in the gateway's environment
    assert by_env["credentials"][0]["mask"] == "env:UPSTREAM_KEY"
    by_file = deployment.provider()
    added = deployment.admin("POST", f"/providers/{by_file['name']}/credentials", {"ref": f"file:{key_file}"})
    assert added.status_code == 201 and added.json()["kind"] == "ref"
    missing = deployment.provider(api_key_ref="env:NOT_SET_ANYWHERE")
    for provider, status in ((by_env, 200), (by_file, 200), (missing, 503)):
        model = deployment.model(provider["name"])["name"]
        resp = deployment.chat(model)
        # An unresolvable reference leaves the provider without a credential: refused, naming it.
        assert resp.status_code == status, resp.text
    bad = deployment.admin("POST", f"/providers/{by_file['name']}/credentials", {"ref": "file:relative/path"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "ref"


def test_configuration_file_entries_are_listed_read_only(deployment: Deployment) -> None:
    providers = deployment.admin("GET", "/providers", None).json()["data"]
    yaml_one = next(p for p in providers if p["name"] == "local-openai")
    assert (yaml_one["source"], yaml_one["read_only"]) == ("config", True)
    models = deployment.admin("GET", "/models", None).json()["data"]
    assert next(m for m in models if m["name"] == "gpt-4o-mini")["read_only"] is True
    for method, path, body in (
        ("PATCH", "/providers/local-openai", {"max_connections": 3}),
        ("DELETE", "/providers/local-openai", None),
        ("POST", "/providers/local-openai/credentials", {"api_key": "sk-another-key-1234567890"}),
        ("PATCH", "/models/gpt-4o-mini", {"model": "gpt-4o"}),
        ("DELETE", "/models/gpt-4o-mini", None),
    ):
        resp = deployment.admin(method, path, body)
        assert resp.status_code == 409, (method, path, resp.text)
        assert resp.json()["error"]["code"] == "read_only"
    same_name = {"name": "gpt-4o-mini", "provider": "local-openai", "model": "x"}
    taken = deployment.admin("POST", "/models", same_name)
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "conflict"
    taken = deployment.admin("POST", "/providers", {"name": "local-openai", "type": "openai"})
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "conflict"
    assert deployment.chat("gpt-4o-mini").status_code == 200


def test_lists_page_by_name(deployment: Deployment) -> None:
    made = sorted(deployment.provider()["name"] for _ in range(3))
    seen: list[str] = []
    after = None
    while True:
        query = f"?limit=2{'&after=' + after if after else ''}"
        page = deployment.admin("GET", f"/providers{query}").json()
        seen += [p["name"] for p in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert seen == sorted(seen) and set(made) <= set(seen) and "local-openai" in seen
    for name in made:
        deployment.admin("DELETE", f"/providers/{name}")


def test_test_connection(deployment: Deployment) -> None:
    good = deployment.provider(api_key=UPSTREAM_KEY)
    ok = deployment.admin("POST", f"/providers/{good['name']}/test", {"model": "gpt-4o-mini"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["ok"] is True and ok.json()["status"] == 200 and ok.json()["error"] is None
    assert isinstance(ok.json()["latency_ms"], int)
    wrong = deployment.provider(api_key=WRONG_KEY)
    deployment.model(wrong["name"])  # the test picks the model the provider serves
    failed = deployment.admin("POST", f"/providers/{wrong['name']}/test")
    assert failed.status_code == 200 and failed.json()["ok"] is False and failed.json()["status"] == 401
    assert "rejected" in failed.json()["error"] and WRONG_KEY not in failed.text
    nowhere = deployment.admin("POST", "/providers/nowhere/test", {"model": "gpt-4o-mini"})
    assert nowhere.json()["ok"] is False and nowhere.json()["status"] is None and nowhere.json()["error"]
    no_model = deployment.admin("POST", f"/providers/{good['name']}/test")
    assert no_model.status_code == 400 and no_model.json()["error"]["param"] == "model"
    assert deployment.admin("POST", "/providers/no-such-provider/test").status_code == 404


def test_a_stream_started_before_a_change_finishes(deployment: Deployment) -> None:
    provider = deployment.provider(api_key=UPSTREAM_KEY)
    model = deployment.model(provider["name"])["name"]
    words = "_".join(f"w{i}" for i in range(10))
    stream = deployment.sdk().chat.completions.create(
        model=model, messages=ask(f"mock:chunk_delay_ms=100 mock:reply={words}"), stream=True
    )
    pieces = iter(stream)
    first = next(pieces)
    # The provider changes (a new client) and the model goes away while the stream runs.
    patched = deployment.admin("PATCH", f"/providers/{provider['name']}", {"headers": {"x-team": "b"}})
    assert patched.status_code == 200, patched.text
    assert deployment.admin("DELETE", f"/models/{model}").status_code == 200
    assert deployment.chat(model).status_code == 404
    text = "".join(c.choices[0].delta.content or "" for c in [first, *pieces] if c.choices)
    assert text == words.replace("_", " ")


def test_bad_input_is_refused_and_the_server_keeps_serving(deployment: Deployment) -> None:
    base = {"name": f"bad-{uid()}", "type": "openai", "api_base": f"{deployment.mock.url}/v1"}
    cases: list[tuple[str, str, Any, str, str | None]] = [
        ("POST", "/providers", {**base, "type": "no-such-type"}, "invalid_provider_type", "type"),
        ("POST", "/providers", {**base, "api_base": "ftp://example.com"}, "invalid_value", "api_base"),
        ("POST", "/providers", {**base, "api_base": "not a url"}, "invalid_value", "api_base"),
        ("POST", "/providers", {**base, "api_base": "http://127.0.0.1:9/v1?key=sk-in-the-url-123"},
         "invalid_value", "api_base"),
        ("POST", "/providers", {**base, "api_base": "http://2130706433:9/v1"}, "invalid_value", "api_base"),
        ("POST", "/providers", {**base, "colour": "red"}, "unknown_parameter", "colour"),
        ("POST", "/providers", {**base, "name": "x" * 200}, "invalid_value", "name"),
        ("POST", "/providers", {**base, "name": "has space"}, "invalid_value", "name"),
        ("POST", "/providers", {**base, "max_connections": "many"}, "invalid_value", "max_connections"),
        ("POST", "/providers", {**base, "options": {"colour": "red"}}, "unknown_parameter", "options.colour"),
        ("POST", "/providers", {**base, "options": {"organization": ["x"]}}, "invalid_value",
         "options.organization"),
        # A number where a text option goes is a wrong type (the YAML reads it as text), on
        # create and on update, a list's item named as in any other error.
        ("POST", "/providers", {**base, "options": {"organization": 5}}, "invalid_value",
         "options.organization"),
        ("POST", "/providers", {**base, "options": {"project": 1.5}}, "invalid_value", "options.project"),
        ("POST", "/providers", {**base, "type": "anthropic", "options": {"anthropic_beta": ["a", 7]}},
         "invalid_value", "options.anthropic_beta[1]"),
        ("PATCH", "/providers/{stored}", {"options": {"organization": 5}}, "invalid_value",
         "options.organization"),
        # Text where a boolean option goes is a wrong type too: JSON says true.
        ("POST", "/providers", {**base, "type": "openai-compatible", "options": {"inline_images": "true"}},
         "invalid_value", "options.inline_images"),
        ("POST", "/providers", {**base, "headers": {"Authorization": "Bearer x"}}, "secret_header",
         "headers.Authorization"),
        ("POST", "/providers", {**base, "api_key": "k" * 5000}, "invalid_value", "api_key"),
        ("POST", "/providers", {**base, "timeouts": {"total": -1}}, "invalid_value", "timeouts.total"),
        ("POST", "/providers", [1, 2], "invalid_json", None),
        ("POST", "/providers", {"type": "openai"}, "missing_required_parameter", "name"),
        ("POST", "/providers/local-openai/test", {"model": "x", "extra": 1}, "unknown_parameter", "extra"),
        ("POST", "/models", {"name": "m", "provider": "no-such-provider", "model": "x"}, "provider_not_found",
         "provider"),
        ("POST", "/models", {"name": "m", "provider": "local-openai", "model": "x", "bogus": 1},
         "unknown_parameter", "bogus"),
        ("POST", "/models", {"name": "m", "provider": "local-openai", "model": "x" * 300}, "invalid_value",
         "model"),
        ("POST", "/models", {"name": "m", "provider": "local-openai", "model": "x", "drop_params": "maybe"},
         "invalid_value", "drop_params"),
        ("POST", "/models", {"name": "m", "provider": "local-openai", "model": "x", "info": {"nope": 1}},
         "unknown_parameter", "info.nope"),
        # A number where text goes is a wrong type (the YAML reads it as text), and a list's item
        # is named as in any other error.
        ("POST", "/models", {"name": "m", "provider": "local-openai", "model": "x", "info": {"as_of": 2026}},
         "invalid_value", "info.as_of"),
        ("POST", "/models", {"name": "m", "provider": "local-openai", "model": "x",
                             "info": {"base_model": 4}}, "invalid_value", "info.base_model"),
        ("POST", "/models", {"name": "m", "provider": "local-openai", "model": "x",
                             "info": {"capabilities": ["tools", "telepathy"]}},
         "invalid_value", "info.capabilities[1]"),
    ]
    stored = deployment.provider()
    for method, path, body, code, param in cases:
        resp = deployment.admin(method, path.format(stored=stored["name"]), body)
        assert resp.status_code == 400, (body, resp.text)
        error = resp.json()["error"]
        assert (error["code"], error["param"]) == (code, param), (body, error)
        assert "k" * 100 not in resp.text
    assert deployment.admin("GET", f"/providers/{stored['name']}").json()["options"] == {}
    for body, code in (({}, "invalid_value"), ({"api_key": "a", "ref": "env:X"}, "invalid_value"),
                       ({"api_key": ""}, "invalid_value"), ({"secret": "x"}, "unknown_parameter")):
        resp = deployment.admin("POST", f"/providers/{stored['name']}/credentials", body)
        assert resp.status_code == 400 and resp.json()["error"]["code"] == code, resp.text
    patch = deployment.admin("PATCH", f"/providers/{stored['name']}", {"api_base": "gopher://x"})
    assert patch.status_code == 400 and patch.json()["error"]["param"] == "api_base"
    # Only the platform admin manages providers; a developer key may not even read them.
    key = deployment.admin("POST", "/keys", {"models": ["*"]}).json()["key"]
    denied = deployment.admin("GET", "/providers", headers={"Authorization": f"Bearer {key}"})
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "permission_denied"
    assert deployment.chat("gpt-4o-mini").status_code == 200


def test_a_blank_credential_is_refused_naming_it(deployment: Deployment) -> None:
    """Before, "   " was sealed as a provider's key and sent upstream on every call (the file
    already refused it): now a 400 naming it, and nothing is stored. A PATCH takes no
    credential at all; the command line refuses a blank key before it sends anything."""
    name = f"blank-{uid()}"
    base = {"name": name, "type": "openai", "api_base": f"{deployment.mock.url}/v1"}
    for blank in ("   ", "\t \t"):
        resp = deployment.admin("POST", "/providers", {**base, "api_key": blank})
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"] == {
            "message": "api_key: empty or only whitespace, which is no credential",
            "type": "invalid_request_error", "param": "api_key", "code": "invalid_value"}
    assert deployment.admin("GET", f"/providers/{name}").status_code == 404
    stored = deployment.provider()
    resp = deployment.admin("POST", f"/providers/{stored['name']}/credentials", {"api_key": "  "})
    assert resp.status_code == 400, resp.text
    assert (resp.json()["error"]["code"], resp.json()["error"]["param"]) == ("invalid_value", "api_key")
    resp = deployment.admin("PATCH", f"/providers/{stored['name']}", {"api_key": "  "})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "unknown_parameter", resp.text
    assert deployment.admin("GET", f"/providers/{stored['name']}").json()["credentials"] == []
    target = ["--url", deployment.gateway.url, "--key", MASTER_KEY]
    for args in (["providers", "add", name, "--type", "openai", "--api-key-stdin", *target],
                 ["providers", "add-credential", stored["name"], "--api-key-stdin", *target]):
        proc = subprocess.run([sys.executable, "-m", "switchboard", *args], input=" \t \n", text=True,
                              capture_output=True, timeout=60, env={**os.environ, "COLUMNS": "250"})
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "no key on standard input" in proc.stderr, proc.stderr
    assert deployment.admin("GET", f"/providers/{name}").status_code == 404
    assert deployment.admin("GET", f"/providers/{stored['name']}").json()["credentials"] == []


def test_options_named_like_a_credential_are_refused_and_a_token_count_is_not(deployment: Deployment) -> None:
    """Secret options are kept out of the API (their values would be stored in clear); an
    option that only counts tokens is an ordinary one, set and shown as given."""
    base = {"api_base": f"{deployment.mock.url}/v1"}
    for kind, option in (("bedrock", "aws_session_token"), ("bedrock", "aws_secret_access_key"),
                         ("azure", "azure_ad_token")):
        resp = deployment.admin("POST", "/providers", {**base, "name": f"sec-{uid()}", "type": kind,
                                                       "options": {option: "x"}})
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["code"] == "secret_option", resp.text
    name = f"anth-{uid()}"
    made = deployment.admin("POST", "/providers", {**base, "name": name, "type": "anthropic",
                                                   "options": {"default_max_tokens": 1000}})
    assert made.status_code == 201, made.text
    shown = deployment.admin("GET", f"/providers/{name}").json()["options"]
    assert shown == {"default_max_tokens": 1000}, shown


@pytest.fixture(scope="module")
def two_instances(
    mock_upstream: Mock,
    postgres: Postgres,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Deployment, Deployment]]:
    config = cluster_config(mock_upstream, postgres, redis_server)
    tmp_a, tmp_b = tmp_path_factory.mktemp("routing-a"), tmp_path_factory.mktemp("routing-b")
    first = start_gateway(config, tmp_a)
    second = start_gateway(config, tmp_b)
    yield (Deployment("cluster", first, mock_upstream, tmp_a),
           Deployment("cluster", second, mock_upstream, tmp_b))
    first.process.stop()
    second.process.stop()


def _within(seconds: float, check: Any) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < seconds, f"not within {seconds} s"
    return time.monotonic() - start


def test_a_change_on_one_instance_is_served_by_the_other_within_a_second(
    two_instances: tuple[Deployment, Deployment],
) -> None:
    first, second = two_instances
    provider = first.provider(api_key=UPSTREAM_KEY)
    model = first.model(provider["name"])["name"]
    _within(1.0, lambda: second.chat(model).status_code == 200)
    assert model in {m.id for m in second.sdk().models.list()}
    assert first.admin("DELETE", f"/models/{model}").status_code == 200
    _within(1.0, lambda: second.chat(model).status_code == 404)
    assert model not in {m.id for m in second.sdk().models.list()}
    # The second instance also manages what the first stored.
    assert second.admin("DELETE", f"/providers/{provider['name']}").status_code == 200
    _within(1.0, lambda: first.admin("GET", f"/providers/{provider['name']}").status_code == 404)


def test_yaml_credentials_from_references_and_used_in_turn(deployment: Deployment) -> None:
    assert deployment.chat("yaml-file-model").status_code == 200
    codes = [deployment.chat("yaml-rotating-model", f"yaml turn {i}").status_code for i in range(4)]
    assert sorted(codes) == [200, 200, 502, 502] and codes[0] != codes[1] and codes[1] != codes[2]
    listed = {p["name"]: p for p in deployment.admin("GET", "/providers", None).json()["data"]}
    masks = [c["mask"] for c in listed["yaml-rotating"]["credentials"]]
    assert masks == ["sk-…ZZZZ", "env:UPSTREAM_KEY"]
    assert listed["yaml-file"]["credentials"][0]["kind"] == "ref"
    assert deployment.admin("GET", "/models/yaml-file-model").json()["require_approval"] is True
    output = deployment.gateway.process.output
    assert UPSTREAM_KEY not in output and WRONG_KEY not in output


def test_a_missing_yaml_reference_is_a_config_error_naming_it(tmp_path: Path, mock_upstream: Mock) -> None:
    config = openai_config(mock_upstream)
    config["providers"][0]["api_key"] = "env:SB_TEST_UNSET_VARIABLE"
    config["providers"][1]["api_keys"] = [f"file:{tmp_path / 'absent'}"]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = spawn(["config", "check", str(path)], env={"SWITCHBOARD_MASTER_KEY": MASTER_KEY,
                                                      "UPSTREAM_KEY": UPSTREAM_KEY})
    assert proc.wait_exit(60) == 2
    assert "providers[0].api_key: environment variable SB_TEST_UNSET_VARIABLE is not set" in proc.output
    assert "providers[1].api_keys[0]: cannot read" in proc.output


def cli(deployment: Deployment, *args: str) -> tuple[int, str]:
    proc = spawn([*args, "--url", deployment.gateway.url, "--key", MASTER_KEY], env={"COLUMNS": "250"})
    code = proc.wait_exit(60)
    return code, proc.output


def test_the_command_line(deployment: Deployment) -> None:
    name = f"cli-{uid()}"
    code, output = cli(deployment, "providers", "add", name, "--type", "openai",
                       "--api-base", f"{deployment.mock.url}/v1", "--ref", "env:UPSTREAM_KEY", "--json")
    assert code == 0, output
    assert json.loads(output)[0]["credentials"][0]["mask"] == "env:UPSTREAM_KEY"
    code, output = cli(deployment, "models", "add", f"{name}-model", "--provider", name,
                       "--model", "gpt-4o-mini")
    assert code == 0 and f"{name}-model" in output, output
    assert deployment.chat(f"{name}-model").status_code == 200
    # --option VALUE is read as the option's type: a text option keeps it as written, a boolean
    # option is sent as one (the admin API refuses the text "true" there), on add and on update.
    code, output = cli(deployment, "providers", "update", name, "--option", "organization=5", "--json")
    assert code == 0 and json.loads(output)[0]["options"] == {"organization": "5"}, output
    code, output = cli(deployment, "providers", "add", f"{name}-mistral", "--type", "mistral",
                       "--api-base", deployment.mock.url, "--option", "safe_prompt=true", "--json")
    assert code == 0 and json.loads(output)[0]["options"] == {"safe_prompt": True}, output
    code, output = cli(deployment, "providers", "update", f"{name}-mistral", "--option", "safe_prompt=false",
                       "--json")
    assert code == 0 and json.loads(output)[0]["options"] == {"safe_prompt": False}, output
    code, output = cli(deployment, "providers", "update", f"{name}-mistral", "--option", "safe_prompt=maybe")
    assert code != 0 and "options.safe_prompt" in output, output  # no boolean: the gateway names it
    assert cli(deployment, "providers", "remove", f"{name}-mistral")[0] == 0
    # A label is free text, printed as written (never read as Rich markup).
    code, output = cli(deployment, "providers", "add-credential", name, "--ref", "env:UPSTREAM_KEY",
                       "--label", "[/c] [bold]backup")
    assert code == 0 and "[/c] [bold]backup" in output and "Traceback" not in output, output
    code, output = cli(deployment, "providers", "list")
    assert code == 0 and name in output and "local-openai" in output and "sk-…CDEF" in output
    assert UPSTREAM_KEY not in output
    code, output = cli(deployment, "models", "list", "--json")
    assert code == 0 and {m["name"] for m in json.loads(output)} >= {f"{name}-model", "gpt-4o-mini"}
    code, output = cli(deployment, "providers", "test", name, "--json")
    assert code == 0 and json.loads(output)[0]["ok"] is True
    code, output = cli(deployment, "models", "update", f"{name}-model", "--require-approval", "--json")
    assert code == 0 and json.loads(output)[0]["require_approval"] is True
    # No option at all is a usage error (exit 2), as on the other update commands: nothing sent.
    for kind, target in (("providers", name), ("models", f"{name}-model")):
        code, output = cli(deployment, kind, "update", target)
        assert code == 2 and "nothing to change" in output, output
    code, output = cli(deployment, "providers", "remove", name)
    assert code == 1 and "provider_in_use" in output and "Traceback" not in output
    code, output = cli(deployment, "models", "remove", f"{name}-model")
    assert code == 0
    code, output = cli(deployment, "providers", "remove", name)
    assert code == 0
    code, output = cli(deployment, "providers", "update", "local-openai", "--max-connections", "2")
    assert code == 1 and "read_only" in output
    code, output = cli(deployment, "providers", "test", "nowhere", "--model", "gpt-4o-mini")
    assert code == 1


OLD_SECRET = "old-server-secret-for-rotation-0123456789abcdef"
NEW_SECRET = "new-server-secret-for-rotation-0123456789abcdef"


@pytest.mark.parametrize("kind", ["embedded", "cluster"])
def test_secrets_rotate(
    kind: str, request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path: Path
) -> None:
    if kind == "embedded":
        config = openai_config(mock_upstream)
    else:
        config = cluster_config(mock_upstream, request.getfixturevalue("postgres"),
                                request.getfixturevalue("redis_server"))
    gw = start_gateway(config, tmp_path, env={"SWITCHBOARD_SECRET_KEY": OLD_SECRET})
    first = Deployment(kind, gw, mock_upstream, tmp_path)
    api_key = first.admin("POST", "/keys", {"models": ["*"]}).json()["key"]
    provider = first.provider(api_key=UPSTREAM_KEY)
    model = first.model(provider["name"])["name"]
    assert first.sdk(api_key).chat.completions.create(model=model, messages=ask("before")).choices
    # A stored REST service whose sealed header is the mock's key (docs/services.md).
    service = {"name": f"svc-{uid()}", "url": f"{mock_upstream.url}/v1",
               "headers": {"Authorization": f"Bearer {UPSTREAM_KEY}"}}
    assert first.admin("POST", "/services", service).status_code == 201
    gw.process.stop()

    def works(env: dict[str, str], rotations: int = 0) -> None:
        again = Deployment(kind, start_gateway(config, tmp_path, env=env), mock_upstream, tmp_path)
        try:
            reply = again.sdk(api_key).chat.completions.create(model=model, messages=ask("after"))
            assert reply.choices[0].message.content.endswith("You said: after")
            listed = httpx.get(f"{again.gateway.url}/services/{service['name']}/models", timeout=10,
                               headers={"Authorization": f"Bearer {api_key}"})
            assert listed.status_code == 200, listed.text  # the mock took the unsealed header
            # Each rotation that re-sealed something is an admin change in the audit log.
            audit = again.admin("GET", "/audit?action=secrets.rotate")
            assert audit.status_code == 200, audit.text
            entries = audit.json()["data"]
            assert len(entries) == rotations, entries
            for entry in entries:
                assert (entry["actor"], entry["actor_role"], entry["resource_type"]) == (
                    "cli", "platform_admin", "server_secret")
                assert entry["after"]["credentials"] == 1 and entry["after"]["service_headers"] == 1
                assert OLD_SECRET not in audit.text and NEW_SECRET not in audit.text
        finally:
            again.gateway.process.stop()

    # A new secret alone does not open what the old one sealed: start-up says what to do.
    with pytest.raises(RuntimeError, match="previous_secret_keys"):
        start_gateway(config, tmp_path, env={"SWITCHBOARD_SECRET_KEY": NEW_SECRET})
    both = {"SWITCHBOARD_SECRET_KEY": NEW_SECRET, "SWITCHBOARD_PREVIOUS_SECRET_KEYS": OLD_SECRET}
    works(both)

    def rotate() -> str:
        proc = spawn(["secrets", "rotate", "--config", str(gw.config_path)], env={
            "SWITCHBOARD_MASTER_KEY": MASTER_KEY, "UPSTREAM_KEY": UPSTREAM_KEY,
            "SWITCHBOARD_DATA_DIR": str(tmp_path / "data"), **both})
        assert proc.wait_exit(60) == 0, proc.output
        return proc.output

    assert "1 provider credential(s), 1 server secret(s), 1 service(s)' headers" in rotate()
    assert "0 provider credential(s), 0 server secret(s), 0 service(s)' headers" in rotate()  # idempotent
    works({"SWITCHBOARD_SECRET_KEY": NEW_SECRET}, rotations=1)  # the old secret is no longer needed


@pytest.mark.parametrize("kind", ["embedded", "cluster"])
def test_a_rotation_whose_audit_entry_is_refused_leaves_the_credentials_under_the_old_key(
    kind: str, request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path: Path
) -> None:
    # Before, the credentials were re-sealed and committed, then audited on their own: a refused
    # entry left a rotation done but not in the audit log.
    if kind == "embedded":
        config = openai_config(mock_upstream)
    else:
        config = cluster_config(mock_upstream, request.getfixturevalue("postgres"),
                                request.getfixturevalue("redis_server"))
    gw = start_gateway(config, tmp_path, env={"SWITCHBOARD_SECRET_KEY": OLD_SECRET})
    first = Deployment(kind, gw, mock_upstream, tmp_path)
    api_key = first.admin("POST", "/keys", {"models": ["*"]}).json()["key"]
    provider = first.provider(api_key=UPSTREAM_KEY)["name"]
    model = first.model(provider)["name"]
    gw.process.stop()
    database = config.get("database", {}).get("url")

    def sql(*statements: Any) -> Any:
        return run_sql(database, tmp_path / "data", *statements)

    def sealed() -> str:
        return str(sql(sa.select(provider_credentials.c.ciphertext)
                       .where(provider_credentials.c.provider == provider)))

    both = {"SWITCHBOARD_SECRET_KEY": NEW_SECRET, "SWITCHBOARD_PREVIOUS_SECRET_KEYS": OLD_SECRET}

    def rotate() -> tuple[int, str]:
        proc = spawn(["secrets", "rotate", "--config", str(gw.config_path)], env={
            "SWITCHBOARD_MASTER_KEY": MASTER_KEY, "UPSTREAM_KEY": UPSTREAM_KEY,
            "SWITCHBOARD_DATA_DIR": str(tmp_path / "data"), **both})
        return proc.wait_exit(60), proc.output

    before = sealed()
    with audit_refusal(sql, kind == "cluster", "default", ("secrets.rotate",)):
        code, output = rotate()
    assert code == 1, output
    assert "nothing rotated" in output and "did not store" in output and "previous key" in output, output
    assert "Traceback" not in output and OLD_SECRET not in output and NEW_SECRET not in output, output
    assert sealed() == before  # the credential is still sealed under the old key
    # So is the key that hashes API keys: the new secret alone still does not open it.
    with pytest.raises(RuntimeError, match="previous_secret_keys"):
        start_gateway(config, tmp_path, env={"SWITCHBOARD_SECRET_KEY": NEW_SECRET})

    code, output = rotate()  # the entries taken again: the same run goes through, audited once
    assert code == 0 and "1 provider credential(s), 1 server secret(s)" in output, output
    assert sealed() != before
    again = Deployment(kind, start_gateway(config, tmp_path, env={"SWITCHBOARD_SECRET_KEY": NEW_SECRET}),
                       mock_upstream, tmp_path)
    try:
        reply = again.sdk(api_key).chat.completions.create(model=model, messages=ask("after"))
        assert reply.choices[0].message.content.endswith("You said: after")
        entries = again.admin("GET", "/audit?action=secrets.rotate").json()["data"]
        assert [(e["after"]["credentials"], e["after"]["complete"]) for e in entries] == [(1, True)], entries
    finally:
        again.gateway.process.stop()


def test_a_rotation_step_the_database_refuses_is_one_line_and_exit_1(
    mock_upstream: Mock, tmp_path: Path
) -> None:
    """The database refusing the services' step or the MCP step (a trigger on the table) stops
    the run with one line naming the step, exit 1, no traceback; that step and those after it
    stay under the old key, and a run once the database takes them finishes the rest."""
    config = openai_config(mock_upstream)
    gw = start_gateway(config, tmp_path, env={"SWITCHBOARD_SECRET_KEY": OLD_SECRET})
    first = Deployment("embedded", gw, mock_upstream, tmp_path)
    provider = first.provider(api_key=UPSTREAM_KEY)["name"]
    service = {"name": f"svc-{uid()}", "url": f"{mock_upstream.url}/v1", "headers": {"X-Token": UPSTREAM_KEY}}
    assert first.admin("POST", "/services", service).status_code == 201
    mcp = {"name": f"mcp{uid()}", "url": "http://127.0.0.1:9/mcp?token=t"}
    assert first.admin("POST", "/mcp/servers", mcp).status_code == 201
    gw.process.stop()

    def sql(*statements: Any) -> Any:
        return run_sql(None, tmp_path / "data", *statements)

    def sealed() -> str:
        return str(sql(sa.select(provider_credentials.c.ciphertext)
                       .where(provider_credentials.c.provider == provider)))

    def rotate() -> tuple[int, str]:
        proc = spawn(["secrets", "rotate", "--config", str(gw.config_path)], env={
            "SWITCHBOARD_MASTER_KEY": MASTER_KEY, "UPSTREAM_KEY": UPSTREAM_KEY,
            "SWITCHBOARD_DATA_DIR": str(tmp_path / "data"), "SWITCHBOARD_SECRET_KEY": NEW_SECRET,
            "SWITCHBOARD_PREVIOUS_SECRET_KEYS": OLD_SECRET})
        return proc.wait_exit(60), proc.output

    def rotate_refused_on(table: str) -> tuple[int, str]:
        sql(sa.text(f"CREATE TRIGGER {table}_refuse BEFORE UPDATE ON {table} "
                    "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"))
        try:
            return rotate()
        finally:
            sql(sa.text(f"DROP TRIGGER {table}_refuse"))

    before = sealed()
    for table, head, step in (("services", "nothing rotated", "REST services' headers"),
                              ("mcp_servers", "partly rotated", "MCP")):
        code, output = rotate_refused_on(table)
        assert code == 1, output
        assert "Traceback" not in output and "sqlalchemy" not in output.lower(), output
        said = [ln for ln in output.splitlines() if "rotated:" in ln]
        assert len(said) == 1 and said[0].startswith(f"{head}:"), output
        assert step in said[0] and "refused by the test" in said[0] and "previous key" in said[0], output
        assert OLD_SECRET not in output and NEW_SECRET not in output and UPSTREAM_KEY not in output
        assert sealed() == before  # the provider credentials' step never ran
    assert "1 service(s)' headers" in output  # the services' step was done by the second run

    code, output = rotate()  # the database taking them again: the rest is done
    assert code == 0, output
    assert "1 provider credential(s), 1 server secret(s), 0 service(s)' headers, 1 MCP server secret(s)" in (
        output), output


PADDED_SECRET = f"  {NEW_SECRET}\n"  # as read from a file or a secret mount


def test_a_secret_key_with_whitespace_around_it_is_the_same_secret_without(
    mock_upstream: Mock, tmp_path: Path
) -> None:
    """``SWITCHBOARD_SECRET_KEY`` is used without the whitespace around it: instances given it
    with and without a trailing newline share one database, each one's API keys and sealed
    provider credentials working on the other; the padded one's start-up warns, naming the
    variable, never its value."""
    config = openai_config(mock_upstream)

    def start(secret: str) -> Deployment:
        return Deployment("embedded", start_gateway(config, tmp_path, env={"SWITCHBOARD_SECRET_KEY": secret}),
                          mock_upstream, tmp_path)

    padded = start(PADDED_SECRET)
    warnings = [line for line in padded.gateway.process.lines if "SWITCHBOARD_SECRET_KEY" in line]
    assert len(warnings) == 1 and "whitespace" in warnings[0], padded.gateway.process.output
    assert NEW_SECRET not in padded.gateway.process.output
    first_key = padded.admin("POST", "/keys", {"models": ["*"]}).json()["key"]
    model = padded.model(padded.provider(api_key=UPSTREAM_KEY)["name"])["name"]  # its key sealed
    padded.gateway.process.stop()

    trimmed = start(NEW_SECRET)
    assert not any("SWITCHBOARD_SECRET_KEY" in line for line in trimmed.gateway.process.lines)
    reply = trimmed.sdk(first_key).chat.completions.create(model=model, messages=ask("trimmed"))
    assert reply.choices[0].message.content.endswith("You said: trimmed")
    second_key = trimmed.admin("POST", "/keys", {"models": ["*"]}).json()["key"]
    trimmed.gateway.process.stop()

    again = start(PADDED_SECRET)
    try:
        for key in (first_key, second_key):
            reply = again.sdk(key).chat.completions.create(model=model, messages=ask("padded"))
            assert reply.choices[0].message.content.endswith("You said: padded")
    finally:
        again.gateway.process.stop()


def test_a_secret_key_referencing_a_padded_variable_is_the_same_secret_without(
        mock_upstream: Mock, tmp_path: Path) -> None:
    """``auth.secret_key: env:SWITCHBOARD_SECRET_KEY`` (a reference in the file) follows the
    variable's own rule: a value with whitespace around it is used without it, so what an
    instance so configured issued and sealed works on one given the trimmed variable directly;
    its start-up warns, naming the variable, never its value. (That the value as given still
    opens what it sealed: tests/unit/config/test_secret.py.)"""
    referenced = {**openai_config(mock_upstream), "auth": {
        "master_key": "${SWITCHBOARD_MASTER_KEY}", "secret_key": "env:SWITCHBOARD_SECRET_KEY"}}
    padded = {"SWITCHBOARD_SECRET_KEY": PADDED_SECRET}
    before = Deployment("embedded", start_gateway(referenced, tmp_path, env=padded), mock_upstream, tmp_path)
    warnings = [line for line in before.gateway.process.lines if "SWITCHBOARD_SECRET_KEY" in line]
    assert len(warnings) == 1 and "whitespace" in warnings[0], before.gateway.process.output
    assert NEW_SECRET not in before.gateway.process.output
    api_key = before.admin("POST", "/keys", {"models": ["*"]}).json()["key"]
    model = before.model(before.provider(api_key=UPSTREAM_KEY)["name"])["name"]
    before.gateway.process.stop()
    now = Deployment("embedded", start_gateway(openai_config(mock_upstream), tmp_path,
                                               env={"SWITCHBOARD_SECRET_KEY": NEW_SECRET}),
                     mock_upstream, tmp_path)
    try:
        reply = now.sdk(api_key).chat.completions.create(model=model, messages=ask("still"))
        assert reply.choices[0].message.content.endswith("You said: still")
    finally:
        now.gateway.process.stop()


def test_stored_entries_take_part_in_approval_and_caller_credentials(deployment: Deployment) -> None:
    # A stored model that requires approval: a team's key is held back until subscribed.
    provider = deployment.provider(api_key=UPSTREAM_KEY)
    gated = deployment.model(provider["name"], require_approval=True)["name"]
    team_key = deployment.admin("POST", "/keys", {"models": ["*"], "team": f"team-{uid()}"}).json()["key"]
    with pytest.raises(openai.PermissionDeniedError) as held:
        deployment.sdk(team_key).chat.completions.create(model=gated, messages=ask("x"))
    assert held.value.body["code"] == "subscription_required"  # type: ignore[index]
    # A stored provider that lets callers bring their own credential (its stored one is wrong).
    own = deployment.provider(api_key=WRONG_KEY, allow_caller_credentials=True)
    assert own["allow_caller_credentials"] is True
    model = deployment.model(own["name"])["name"]
    assert deployment.chat(model).status_code == 502
    url = f"{deployment.gateway.base_url}/chat/completions"
    headers = {**ADMIN, "x-provider-authorization": UPSTREAM_KEY}
    mine = httpx.post(url, headers=headers, json={"model": model, "messages": ask("mine")}, timeout=30)
    assert mine.status_code == 200, mine.text
    closed = deployment.provider(api_key=UPSTREAM_KEY)  # not allowed: the header is refused
    other = deployment.model(closed["name"])["name"]
    refused = httpx.post(url, headers=headers, json={"model": other, "messages": ask("x")}, timeout=30)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "caller_credentials_disabled"


def _with_user_info(url: str) -> str:
    return url.replace("http://", "http://proxyuser:PROXYPASS4455667788@", 1)


def test_user_info_in_api_base_never_travels_with_a_key_sent_in_authorization(deployment: Deployment) -> None:
    """User info in api_base is sent as Authorization: Basic. A key the provider sends in
    Authorization as well cannot go with it: refused with a 400 naming api_base, however the two
    meet; a key in a header of its own goes with it; a caller's own credential replaces it. No
    path is a 500, and the server keeps serving."""
    base = _with_user_info(f"{deployment.mock.url}/v1")

    def refused(resp: httpx.Response) -> None:
        assert resp.status_code == 400, resp.text
        error = resp.json()["error"]
        assert (error["code"], error["param"], error["type"]) == ("invalid_value", "api_base",
                                                                  "invalid_request_error"), error
        assert error["message"].startswith("api_base: its user info (user:password@) is sent as "
                                           "Authorization: Basic, and a provider of type openai sends its "
                                           "credential in Authorization"), error
        assert "PROXYPASS4455667788" not in resp.text and UPSTREAM_KEY not in resp.text

    for key in ({"api_key": UPSTREAM_KEY}, {"api_key_ref": "env:UPSTREAM_KEY"}):
        refused(deployment.admin("POST", "/providers", {"name": f"ui-{uid()}", "type": "openai",
                                                        "api_base": base, **key}))
    # Without a key it is a provider (the upstream is called with the user info as Basic).
    keyless = deployment.provider(api_base=base)
    assert keyless["api_base"] == _with_user_info(f"{deployment.mock.url}/v1").replace(
        "PROXYPASS4455667788", "[hidden]")
    refused(deployment.admin("POST", f"/providers/{keyless['name']}/credentials", {"api_key": UPSTREAM_KEY}))
    model = deployment.model(keyless["name"])["name"]
    unauthorized = deployment.chat(model)  # the mock wants its key as a Bearer: a clean refusal
    assert unauthorized.status_code == 502, unauthorized.text
    assert unauthorized.json()["error"]["code"] == "upstream_authentication_failed"
    tested = deployment.admin("POST", f"/providers/{keyless['name']}/test")
    assert tested.status_code == 200 and tested.json()["ok"] is False and tested.json()["status"] == 401
    # A provider with a key may not take user info later.
    keyed = deployment.provider(api_key=UPSTREAM_KEY)
    refused(deployment.admin("PATCH", f"/providers/{keyed['name']}", {"api_base": base}))
    assert deployment.chat(deployment.model(keyed["name"])["name"]).status_code == 200
    # A caller's own credential, sent in Authorization, replaces the user info for its request.
    own = deployment.provider(api_base=base, allow_caller_credentials=True)
    mine = httpx.post(f"{deployment.gateway.base_url}/chat/completions", timeout=30,
                      headers={**ADMIN, "x-provider-authorization": UPSTREAM_KEY},
                      json={"model": deployment.model(own["name"])["name"], "messages": ask("mine")})
    assert mine.status_code == 200, mine.text
    # A provider sending its key in a header of its own (Anthropic's x-api-key) takes both.
    anthropic = deployment.provider(type="anthropic", api_base=_with_user_info(deployment.mock.url),
                                    api_key=UPSTREAM_KEY)
    claude = deployment.model(anthropic["name"], model="claude-sonnet-4-5")["name"]
    reply = httpx.post(f"{deployment.gateway.base_url}/chat/completions", headers=ADMIN, timeout=30,
                       json={"model": claude, "messages": ask("through the proxy")})
    assert reply.status_code == 200, reply.text
    assert deployment.chat("gpt-4o-mini").status_code == 200
