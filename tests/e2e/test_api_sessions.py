"""Sessions of multi-turn prompt APIs (x-switchboard-session), end to end over HTTP: turns
remembered between calls (complete and streamed), placed between the prompt's system message
and the new turn; another key's same session id sees nothing; the history trimmed to the
model's context window; sessions expire; bad session ids are 400. Every test runs on the
embedded default (SQLite, in-process state) and on a cluster (PostgreSQL and Redis)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.e2e.tenancy_world import Admin
from tests.servers import Gateway, Mock, captured, new_marker, openai_config, start_gateway

TINY = "tiny-window"  # a model whose catalog context window holds about one turn of history
SESSION = "x-switchboard-session"
TURNS = "x-switchboard-session-turns"


def sessions_config(mock: Mock) -> dict[str, Any]:
    config = openai_config(mock)
    config["models"].append({"name": TINY, "provider": "local-openai", "model": "gpt-4o-mini",
                             "info": {"context_window": 400, "max_output_tokens": 60}})
    # Names routed at call time, one of whose groups is the tiny window.
    config["router"] = {
        "rules": [{"name": "tiny-when-asked", "model": "tiny-rule", "when": {"headers": {"x-tier": "tiny"}},
                   "to": TINY},
                  {"name": "else-mini", "model": "tiny-rule", "to": "gpt-4o-mini"}],
        "semantic": [{"model": "tiny-semantic", "embedding_model": "text-embedding-3-small",
                      "default": "gpt-4o-mini",
                      "routes": [{"to": TINY, "examples": ["summarize this legal contract clause"]}]}],
    }
    return config


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Deployment:
    kind: str
    gateway: Gateway
    admin: Admin

    def key(self) -> str:
        return str(self.admin.ok("POST", "/admin/v1/keys", {"models": ["*"]}, status=201)["key"])

    def api(self, *, model: str = "gpt-4o-mini", sessions: dict[str, Any] | None = None,
            max_tokens: int | None = None) -> str:
        prompt = unique("chat")
        body: dict[str, Any] = {
            "name": prompt, "model": model,
            "messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": "{{ text }}"}],
            "variables": {"type": "object", "properties": {"text": {"type": "string"}},
                          "required": ["text"]},
        }
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        self.admin.ok("POST", "/admin/v1/prompts", body, status=201)
        api: dict[str, Any] = {"name": unique("chat-api"), "prompt": prompt, "version": 1}
        if sessions is not None:
            api["sessions"] = sessions
        return str(self.admin.ok("POST", "/admin/v1/apis", api, status=201)["name"])

    def say(self, api: str, key: str, text: str, session: str | None, *,
            stream: bool = False) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"}
        if session is not None:
            headers[SESSION] = session
        url = f"{self.gateway.url}/apis/{api}" + ("?stream=true" if stream else "")
        return httpx.post(url, json={"text": text}, headers=headers, timeout=30)


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def deployment(request: pytest.FixtureRequest, mock_upstream: Mock,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    config = sessions_config(mock_upstream)
    if request.param == "cluster":
        postgres = request.getfixturevalue("postgres")
        config["database"] = {"url": postgres.create_database(f"sessions_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": request.getfixturevalue("redis_server").url}
    gw = start_gateway(config, tmp_path_factory.mktemp(f"sessions-{request.param}"))
    yield Deployment(request.param, gw, Admin(gw.url))
    gw.process.stop()


def sent(mock: Mock, marker: str) -> list[dict[str, Any]]:
    """The messages the upstream received for the call marked ``marker``."""
    records = captured(mock, marker)
    assert records, f"no request captured under {marker}"
    return list(records[-1]["body"]["messages"])


def test_two_turns_are_remembered_and_another_key_sees_nothing(deployment: Deployment,
                                                               mock_upstream: Mock) -> None:
    api = deployment.api(sessions={"max_turns": 10, "ttl_seconds": 3600})
    key, other = deployment.key(), deployment.key()
    session = unique("conv")
    first = deployment.say(api, key, "my name is Ada", session)
    assert first.status_code == 200, first.text
    assert (first.headers[SESSION], first.headers[TURNS]) == (session, "0")
    answer = first.json()["output"]
    assert answer.endswith("my name is Ada")
    marker = new_marker()
    second = deployment.say(api, key, f"what is my name? mock:capture={marker}", session)
    assert second.status_code == 200, second.text
    assert second.headers[TURNS] == "1"
    # The stored turn sits between the prompt's system message and the new user turn.
    assert [(m["role"], m["content"]) for m in sent(mock_upstream, marker)] == [
        ("system", "Be brief."), ("user", "my name is Ada"), ("assistant", answer),
        ("user", f"what is my name? mock:capture={marker}"),
    ]
    # A streamed turn is remembered too.
    streamed = deployment.say(api, key, "streamed turn", session, stream=True)
    assert streamed.status_code == 200 and '"done": true' in streamed.text.replace('":true', '": true')
    marker = new_marker()
    assert deployment.say(api, key, f"again mock:capture={marker}", session).headers[TURNS] == "3"
    assert [m["content"] for m in sent(mock_upstream, marker) if m["role"] == "user"][2] == "streamed turn"
    # Another key sending the same session id gets a new, empty session of its own.
    marker = new_marker()
    theirs = deployment.say(api, other, f"who am I? mock:capture={marker}", session)
    assert theirs.status_code == 200 and theirs.headers[TURNS] == "0"
    assert [m["role"] for m in sent(mock_upstream, marker)] == ["system", "user"]
    # Without the header, no history either.
    marker = new_marker()
    plain = deployment.say(api, key, f"no session mock:capture={marker}", None)
    assert plain.status_code == 200 and SESSION not in plain.headers
    assert len(sent(mock_upstream, marker)) == 2


def test_a_rotated_key_keeps_its_sessions(deployment: Deployment, mock_upstream: Mock) -> None:
    api = deployment.api(sessions={"max_turns": 10})
    created = deployment.admin.ok("POST", "/admin/v1/keys", {"models": ["*"]}, status=201)
    session = unique("rotated")
    first = deployment.say(api, created["key"], "my name is Ada", session)
    assert first.status_code == 200, first.text
    rotated = deployment.admin.ok("POST", f"/admin/v1/keys/{created['id']}/rotate",
                                  {"grace_seconds": 0}, status=201)
    # The successor continues the conversation its predecessor started.
    marker = new_marker()
    again = deployment.say(api, rotated["key"], f"what is my name? mock:capture={marker}", session)
    assert again.status_code == 200, again.text
    assert again.headers[TURNS] == "1"
    assert [(m["role"], m["content"]) for m in sent(mock_upstream, marker)][:2] == [
        ("system", "Be brief."), ("user", "my name is Ada")]
    # Still nobody else's: another key of the tenant gets an empty session under the same id.
    assert deployment.say(api, deployment.key(), "who am I?", session).headers[TURNS] == "0"


def assert_trimmed(deployment: Deployment, mock: Mock, model: str) -> list[dict[str, Any]]:
    """Five long turns of a session of an API on ``model``, then a sixth: the model saw only the
    most recent turns that fit the tiny window, in order, with nothing older in between. The
    messages the upstream received for the sixth."""
    api = deployment.api(model=model, max_tokens=40, sessions={"max_turns": 50})
    key, session = deployment.key(), unique("long")
    texts = [f"turn {i}: " + " ".join(["lorem ipsum dolor sit amet"] * 8) for i in range(5)]
    for text in texts:
        assert deployment.say(api, key, text, session).status_code == 200
    marker = new_marker()
    last = deployment.say(api, key, f"and now? mock:capture={marker}", session)
    assert last.status_code == 200, last.text
    used = int(last.headers[TURNS])
    assert 1 <= used < len(texts)
    messages = sent(mock, marker)
    users = [m["content"] for m in messages if m["role"] == "user"]
    assert users == [*texts[len(texts) - used:], f"and now? mock:capture={marker}"]
    return messages


def test_history_is_trimmed_to_the_model_context_window(deployment: Deployment, mock_upstream: Mock) -> None:
    messages = assert_trimmed(deployment, mock_upstream, TINY)
    assert messages[0] == {"role": "system", "content": "Be brief."}  # the system message stays


@pytest.mark.parametrize("routed", ["tiny-rule", "tiny-semantic"])
def test_a_routed_name_is_trimmed_to_the_smallest_window_it_may_reach(
        deployment: Deployment, mock_upstream: Mock, routed: str) -> None:
    """The session step runs before the routing rules: a rule's or a semantic router's name is
    trimmed for every group it may go to, one of which has the tiny window."""
    assert_trimmed(deployment, mock_upstream, routed)


def test_sessions_expire(deployment: Deployment, mock_upstream: Mock) -> None:
    ttl = 2  # long enough for the second turn to find the session on a loaded machine
    api = deployment.api(sessions={"ttl_seconds": ttl})
    key, session = deployment.key(), unique("short")
    assert deployment.say(api, key, "remember me", session).status_code == 200
    assert deployment.say(api, key, "still there?", session).headers[TURNS] == "1"
    # A session lives ttl_seconds after its last turn (stored before its answer came back): wait
    # that long from then, then it is gone.
    stored_at = time.monotonic()
    while time.monotonic() < stored_at + ttl + 1.0:
        time.sleep(0.1)
    marker = new_marker()
    later = deployment.say(api, key, f"hello again mock:capture={marker}", session)
    assert later.status_code == 200 and later.headers[TURNS] == "0"
    assert [m["role"] for m in sent(mock_upstream, marker)] == ["system", "user"]


@pytest.mark.parametrize("bad", ["", "has space", "x" * 129, "a/b", "semi;colon", "ünï"])
def test_bad_session_ids_are_400(deployment: Deployment, bad: str) -> None:
    api = deployment.api(sessions={})
    headers = {"Authorization": f"Bearer {deployment.key()}", SESSION: bad}
    resp = httpx.post(f"{deployment.gateway.url}/apis/{api}", json={"text": "x"},
                      headers={k: v.encode() if k == SESSION else v for k, v in headers.items()}, timeout=30)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "invalid_session_id"


def test_a_session_id_sent_twice_is_400(deployment: Deployment) -> None:
    """Two x-switchboard-session headers (the same id or two): which session was meant is not
    guessed, as with a key header sent twice."""
    api = deployment.api(sessions={})
    key = deployment.key()
    for ids in (("s1", "s2"), ("s1", "s1")):
        resp = httpx.post(f"{deployment.gateway.url}/apis/{api}", json={"text": "x"}, timeout=30,
                          headers=[("Authorization", f"Bearer {key}"), (SESSION, ids[0]), (SESSION, ids[1])])
        assert resp.status_code == 400, resp.text
        error = resp.json()["error"]
        assert (error["type"], error["code"]) == ("invalid_request_error", "duplicate_header")
        assert error["message"] == f"the '{SESSION}' header may be sent only once"


def test_a_session_id_for_an_api_without_sessions_is_400(deployment: Deployment) -> None:
    api = deployment.api()
    resp = deployment.say(api, deployment.key(), "hi", "s1")
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "sessions_not_enabled"
    assert deployment.say(api, deployment.key(), "hi", None).status_code == 200


def test_the_admin_api_validates_and_shows_session_settings(deployment: Deployment) -> None:
    api = deployment.api(sessions={"max_turns": 3})
    shown = deployment.admin.ok("GET", f"/admin/v1/apis/{api}")["sessions"]
    assert shown == {"max_turns": 3, "ttl_seconds": 86400, "max_bytes": 1048576}
    for bad in ({"max_turns": 0}, {"ttl_seconds": 0}, {"max_bytes": 10}, {"nope": 1}, "yes"):
        resp = deployment.admin.call("PATCH", f"/admin/v1/apis/{api}", {"sessions": bad})
        assert resp.status_code == 400, resp.text
    off = deployment.admin.ok("PATCH", f"/admin/v1/apis/{api}", {"sessions": None})
    assert off["sessions"] is None
    resp = deployment.say(api, deployment.key(), "hi", "s1")
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "sessions_not_enabled"
