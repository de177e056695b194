"""Rate limits end to end, with the official SDK, on the embedded default (one instance) and on
a cluster (two instances sharing PostgreSQL and Redis, requests split across both): RPM and TPM
limits hold exactly under concurrency, refusals are 429 with Retry-After, the code and the
scope, the OpenAI-style headers count down, limits on keys, per key and model and through the
admin API apply, bad input is 400, and the Redis-down policy does what it says."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.e2e.periods import zone_far_from_period_end
from tests.e2e.sdk import ask
from tests.servers import MASTER_KEY, UPSTREAM_KEY, Gateway, Mock, openai_config, start_gateway
from tests.services import Postgres, start_redis

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
PER_KEY_MODEL = "gpt-3.5-turbo-instruct"  # each key may send it 2 requests per minute


def _config(mock: Mock) -> dict[str, Any]:
    config = openai_config(mock)
    config["limits"] = {"per_key_model": {PER_KEY_MODEL: {"rpm": 2}}}
    return config


@dataclass
class Pair:
    """Two instances of one deployment (embedded: the same instance twice)."""

    kind: str
    first: Gateway
    second: Gateway

    def admin(self, method: str, path: str, json: Any = None, on: Gateway | None = None) -> httpx.Response:
        gw = on or self.first
        return httpx.request(method, f"{gw.url}{path}", json=json, headers=ADMIN, timeout=10)

    def key(self, **extra: Any) -> dict[str, Any]:
        resp = self.admin("POST", "/admin/v1/keys", {"models": ["*"], **extra})
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    def clients(self, key: str) -> list[openai.AsyncOpenAI]:
        return [openai.AsyncOpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30)
                for gw in (self.first, self.second)]

    def sdk(self, key: str, on: Gateway | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=(on or self.first).base_url, api_key=key, max_retries=0, timeout=30)


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def pair(request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Pair]:
    config = _config(mock_upstream)
    if request.param == "embedded":
        gw = start_gateway(config, tmp_path_factory.mktemp("limits-embedded"))
        yield Pair("embedded", gw, gw)
        gw.process.stop()
        return
    postgres, redis = request.getfixturevalue("postgres"), request.getfixturevalue("redis_server")
    config["database"] = {"url": postgres.create_database(f"limits_{uuid.uuid4().hex[:8]}")}
    config["redis"] = {"url": redis.url}
    first = start_gateway(config, tmp_path_factory.mktemp("limits-a"))
    second = start_gateway(config, tmp_path_factory.mktemp("limits-b"))
    yield Pair("cluster", first, second)
    first.process.stop()
    second.process.stop()


@dataclass
class Outcome:
    ok: int
    refused: list[openai.RateLimitError]
    tokens: int  # total tokens of the answered requests, as reported


async def _burst(pair: Pair, key: str, n: int, **request: Any) -> Outcome:
    clients = pair.clients(key)

    async def one(i: int) -> tuple[int, openai.RateLimitError | None]:
        try:
            reply = await clients[i % 2].chat.completions.create(
                model="gpt-4o-mini", messages=ask(f"request {i}"), **request)
        except openai.RateLimitError as exc:
            return 0, exc
        assert reply.usage is not None
        return reply.usage.total_tokens, None

    try:
        results = await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        for c in clients:
            await c.close()
    refused = [exc for _, exc in results if exc is not None]
    return Outcome(n - len(refused), refused, sum(t for t, exc in results if exc is None))


def _check_refusal(exc: openai.RateLimitError, scope: str, window: int = 60) -> None:
    assert exc.status_code == 429
    body: Any = exc.body
    assert body["code"] == "rate_limit_exceeded" and body["type"] == "rate_limit_error"
    assert f"the {scope}" in body["message"]
    retry = exc.response.headers["retry-after"]
    # Units come back one window after they were taken, at most one slot (1/60) later.
    assert retry.isdigit() and 1 <= int(retry) <= window + window // 60 + 1
    assert exc.response.headers["x-ratelimit-scope"] == scope


def test_an_rpm_limit_of_60_holds_across_instances(pair: Pair) -> None:
    key = pair.key(rpm_limit=60)
    assert key["rpm_limit"] == 60 and key["tpm_limit"] is None
    outcome = asyncio.run(_burst(pair, key["key"], 80))
    # Burst 0 (the default): exactly the limit within the window, never more.
    assert outcome.ok == 60 and len(outcome.refused) == 20
    for exc in outcome.refused:
        _check_refusal(exc, "key")
        assert exc.response.headers["x-ratelimit-limit-requests"] == "60"
        assert exc.response.headers["x-ratelimit-remaining-requests"] == "0"
        assert "x-should-retry" not in exc.response.headers  # a minute's wait: the SDK may retry


def _logged(pair: Pair, request_id: str) -> dict[str, Any]:
    """The request log's record of one request, once the ledger has it (written behind the response)."""
    deadline = time.monotonic() + 20
    while True:
        resp = pair.admin("GET", f"/admin/v1/logs?request_id={request_id}")
        assert resp.status_code == 200, resp.text
        if resp.json()["data"]:
            return dict(resp.json()["data"][0])
        assert time.monotonic() < deadline, f"{request_id} never reached the request log"
        time.sleep(0.1)


def test_a_refused_request_is_in_the_ledger_with_its_error(pair: Pair) -> None:
    key = pair.key(rpm_limit=1)
    client = pair.sdk(key["key"])
    answered = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=ask("one"))
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=ask("two"))
    record = _logged(pair, refused.value.response.headers["x-request-id"])
    assert record["status"] == 429 and record["error_code"] == "rate_limit_exceeded"
    assert record["attempts"] is None and record["key"] == key["id"]
    assert float(record["cost_usd"]) == 0
    assert _logged(pair, answered.headers["x-request-id"])["status"] == 200

def test_a_tpm_limit_is_counted_in_tokens(pair: Pair) -> None:
    key = pair.key(tpm_limit=1000)["key"]
    # Each request reserves its prompt estimate + max_tokens (100) and is corrected to the
    # tokens it really used once answered: the answered requests never used more than 1000.
    outcome = asyncio.run(_burst(pair, key, 40, max_tokens=100))
    assert outcome.ok >= 8 and outcome.refused
    assert outcome.tokens <= 1000
    for exc in outcome.refused:
        _check_refusal(exc, "key")
        assert exc.response.headers["x-ratelimit-limit-tokens"] == "1000"


def test_a_request_larger_than_the_token_limit_is_a_400(pair: Pair) -> None:
    client = pair.sdk(pair.key(tpm_limit=50)["key"])
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=ask("hi"), max_tokens=500)
    body: Any = refused.value.body
    assert body["code"] == "request_exceeds_limit" and "tpm" not in body["message"]
    assert refused.value.response.headers["x-ratelimit-scope"] == "key"
    # Nothing was taken: a small request still fits.
    assert client.chat.completions.create(model="gpt-4o-mini", messages=ask("hi"), max_tokens=5).choices


def test_headers_count_down_on_every_response_and_stream(pair: Pair) -> None:
    key = pair.key(rpm_limit=10, tpm_limit=100_000)["key"]
    remaining = []
    for on in (pair.first, pair.second, pair.first):
        raw = pair.sdk(key, on).chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=ask("count"), max_tokens=20)
        h = raw.headers
        assert h["x-ratelimit-limit-requests"] == "10" and h["x-ratelimit-limit-tokens"] == "100000"
        assert h["x-ratelimit-reset-requests"].endswith("s")
        assert 0 < int(h["x-ratelimit-remaining-tokens"]) < 100_000
        remaining.append(int(h["x-ratelimit-remaining-requests"]))
    assert remaining == [9, 8, 7]
    with pair.sdk(key, pair.second).chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=ask("streamed"), stream=True) as stream:
        assert stream.headers["x-ratelimit-remaining-requests"] == "6"
        assert "".join(c.choices[0].delta.content or "" for c in stream.parse() if c.choices)


RATE_HEADERS = tuple(f"x-ratelimit-{what}-{kind}" for what in ("limit", "remaining", "reset")
                     for kind in ("requests", "tokens"))


def test_a_refusal_carries_every_rate_limit_header(pair: Pair) -> None:
    """As OpenAI does, a 429 carries the requests and the tokens headers whichever limit
    refused it, the refusing one at 0 and the other as it stands (the refusal took nothing)."""
    key = pair.key(rpm_limit=1, tpm_limit=100_000)["key"]
    ok = pair.sdk(key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=ask("one"), max_tokens=20)
    assert all(name in ok.headers for name in RATE_HEADERS)
    assert not [name for name in ok.headers if name.startswith("anthropic-ratelimit-")]  # Messages API only
    with pytest.raises(openai.RateLimitError) as by_requests:
        pair.sdk(key, pair.second).chat.completions.create(model="gpt-4o-mini", messages=ask("two"))
    h = by_requests.value.response.headers
    assert all(name in h for name in RATE_HEADERS), dict(h)
    assert (h["x-ratelimit-limit-requests"], h["x-ratelimit-remaining-requests"]) == ("1", "0")
    assert h["x-ratelimit-limit-tokens"] == "100000"
    assert 99_000 < int(h["x-ratelimit-remaining-tokens"]) < 100_000
    assert h["x-ratelimit-reset-requests"].endswith("s") and h["x-ratelimit-reset-tokens"].endswith("s")
    key = pair.key(rpm_limit=10, tpm_limit=1000)["key"]
    pair.sdk(key).chat.completions.create(model="gpt-4o-mini", messages=ask("one"), max_tokens=900)
    with pytest.raises(openai.RateLimitError) as by_tokens:
        pair.sdk(key, pair.second).chat.completions.create(
            model="gpt-4o-mini", messages=ask("two"), max_tokens=990)
    h = by_tokens.value.response.headers
    assert all(name in h for name in RATE_HEADERS), dict(h)
    assert (h["x-ratelimit-limit-tokens"], h["x-ratelimit-remaining-tokens"]) == ("1000", "0")
    assert (h["x-ratelimit-limit-requests"], h["x-ratelimit-remaining-requests"]) == ("10", "9")


ANTHROPIC_HEADERS = tuple(f"anthropic-ratelimit-{kind}-{what}" for kind in ("requests", "tokens")
                          for what in ("limit", "remaining", "reset"))


def _reset_at(headers: Any, kind: str) -> datetime:
    """An Anthropic reset header: an RFC 3339 time in UTC."""
    value = headers[f"anthropic-ratelimit-{kind}-reset"]
    assert value.endswith("Z"), value
    at = datetime.fromisoformat(value)
    assert at.utcoffset() == timedelta(0)
    return at


def test_the_messages_api_carries_anthropics_rate_limit_headers_too(pair: Pair) -> None:
    """/v1/messages answers with Anthropic's rate-limit headers (resets as RFC 3339 times), on
    success and on a 429, beside the OpenAI-style ones."""
    key = pair.key(rpm_limit=1, tpm_limit=100_000)["key"]
    sdks = [anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0, timeout=30)
            for gw in (pair.first, pair.second)]
    before = datetime.now(UTC).replace(microsecond=0)
    raw = sdks[0].messages.with_raw_response.create(model="gpt-4o-mini", max_tokens=20, messages=ask("one"))
    h = raw.headers
    assert all(name in h for name in (*ANTHROPIC_HEADERS, *RATE_HEADERS)), dict(h)
    assert h["anthropic-ratelimit-requests-limit"] == "1"
    assert h["anthropic-ratelimit-requests-remaining"] == "0"
    assert h["anthropic-ratelimit-tokens-limit"] == "100000"
    assert h["anthropic-ratelimit-tokens-remaining"] == h["x-ratelimit-remaining-tokens"]
    for kind in ("requests", "tokens"):  # back within the window (61 s at most), rounded up to the second
        assert before < _reset_at(h, kind) <= datetime.now(UTC) + timedelta(seconds=62)
    with pytest.raises(anthropic.RateLimitError) as refused:
        sdks[1].messages.create(model="gpt-4o-mini", max_tokens=20, messages=ask("two"))
    h = refused.value.response.headers
    assert all(name in h for name in (*ANTHROPIC_HEADERS, *RATE_HEADERS)), dict(h)
    assert h["anthropic-ratelimit-requests-limit"] == "1"
    assert h["anthropic-ratelimit-requests-remaining"] == "0"
    assert 99_000 < int(h["anthropic-ratelimit-tokens-remaining"]) < 100_000
    # Room is back by the reset time, and Retry-After says the same wait.
    back = _reset_at(h, "requests")
    assert before < back <= datetime.now(UTC) + timedelta(seconds=int(h["retry-after"]) + 1)


def test_limits_per_key_and_model(pair: Pair) -> None:
    first, other = pair.key()["key"], pair.key()["key"]
    client = pair.sdk(first)
    for on in (pair.first, pair.second):
        assert pair.sdk(first, on).completions.create(model=PER_KEY_MODEL, prompt="hi").choices
    with pytest.raises(openai.RateLimitError) as refused:
        pair.sdk(first, pair.second).completions.create(model=PER_KEY_MODEL, prompt="hi")
    _check_refusal(refused.value, "key_model")
    # Other models, and other keys on that model, are not affected.
    assert client.chat.completions.create(model="gpt-4o-mini", messages=ask("hi")).choices
    assert pair.sdk(other).completions.create(model=PER_KEY_MODEL, prompt="hi").choices


def test_a_key_by_model_limit_set_through_the_admin_api(pair: Pair) -> None:
    created = pair.key()
    body = {"scope": "key_model", "key": created["id"], "model": "gpt-4o-mini", "rpm": 1}
    resp = pair.admin("PUT", "/admin/v1/limits", body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["subject"] == f"{created['id']}:gpt-4o-mini"
    assert pair.sdk(created["key"]).chat.completions.create(model="gpt-4o-mini", messages=ask("1")).choices
    with pytest.raises(openai.RateLimitError) as refused:
        pair.sdk(created["key"], pair.second).chat.completions.create(model="gpt-4o-mini", messages=ask("2"))
    _check_refusal(refused.value, "key_model")
    # The same key on another model, and the config's per-key-model limit still apply as before.
    assert pair.sdk(created["key"]).embeddings.create(model="text-embedding-3-small", input="x").data


def test_a_rotated_key_keeps_its_limits_and_their_windows(pair: Pair) -> None:
    old = pair.key(rpm_limit=3)
    body = {"scope": "key_model", "key": old["id"], "model": "gpt-4o-mini", "rpm": 1}
    limit = pair.admin("PUT", "/admin/v1/limits", body).json()
    assert pair.sdk(old["key"]).chat.completions.create(model="gpt-4o-mini", messages=ask("1")).choices
    resp = pair.admin("POST", f"/admin/v1/keys/{old['id']}/rotate", {"grace_seconds": 600})
    assert resp.status_code == 201, resp.text
    new = resp.json()
    # The limit set on the old key's id holds its successor, in the same minute's window.
    with pytest.raises(openai.RateLimitError) as refused:
        pair.sdk(new["key"], pair.second).chat.completions.create(model="gpt-4o-mini", messages=ask("2"))
    _check_refusal(refused.value, "key_model")
    # The key's own 3 a minute are shared by the old key and its successor: two more, not three.
    for client in (pair.sdk(new["key"]), pair.sdk(old["key"], pair.second)):
        assert client.embeddings.create(model="text-embedding-3-small", input="x").data
    with pytest.raises(openai.RateLimitError) as refused:
        pair.sdk(new["key"]).embeddings.create(model="text-embedding-3-small", input="x")
    _check_refusal(refused.value, "key")
    # Naming the successor sets the same record.
    again = pair.admin("PUT", "/admin/v1/limits", {**body, "key": new["id"], "rpm": 2}).json()
    assert (again["id"], again["subject"]) == (limit["id"], f"{old['id']}:gpt-4o-mini")


def _wait_for(check: Any, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what


def test_limits_set_through_the_admin_api(pair: Pair) -> None:
    team = pair.admin("POST", "/admin/v1/teams", {"name": f"limited {uuid.uuid4().hex[:6]}"}).json()["id"]
    set_ = pair.admin("PUT", "/admin/v1/limits", {"scope": "team", "subject": team, "rpm": 2})
    assert set_.status_code == 200, set_.text
    record = set_.json()
    assert (record["scope"], record["subject"], record["rpm"], record["tpm"]) == ("team", team, 2, None)
    again = pair.admin("PUT", "/admin/v1/limits", {"scope": "team", "subject": team, "rpm": 3})
    assert again.json()["id"] == record["id"] and again.json()["rpm"] == 3  # replaced, same record
    listed = pair.admin("GET", "/admin/v1/limits", on=pair.second).json()["data"]
    assert record["id"] in {r["id"] for r in listed}
    key = pair.key(team=team)["key"]
    for on in (pair.first, pair.second, pair.first):
        assert pair.sdk(key, on).chat.completions.create(model="gpt-4o-mini", messages=ask("t")).choices
    with pytest.raises(openai.RateLimitError) as refused:
        pair.sdk(key, pair.second).chat.completions.create(model="gpt-4o-mini", messages=ask("t"))
    _check_refusal(refused.value, "team")
    deleted = pair.admin("DELETE", f"/admin/v1/limits/{record['id']}")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert pair.admin("GET", f"/admin/v1/limits/{record['id']}").status_code == 404

    def served() -> bool:
        try:
            pair.sdk(key, pair.second).chat.completions.create(model="gpt-4o-mini", messages=ask("t"))
        except openai.RateLimitError:
            return False
        return True

    _wait_for(served, "the removed limit still applies on the other instance")
    audit = pair.admin("GET", "/admin/v1/audit?resource_id=" + record["id"]).json()["data"]
    assert {"limit.set", "limit.delete"} <= {e["action"] for e in audit}


@pytest.mark.parametrize(("field", "value", "code"), [
    ("rpm_limit", -1, "invalid_value"),
    ("rpm_limit", 0, "invalid_value"),
    ("rpm_limit", 10**12, "invalid_value"),
    ("tpm_limit", 10**13, "invalid_value"),
    ("tpm_limit", "1000", "invalid_value"),
    ("rpm_limit", 1.5, "invalid_value"),
    ("rpm_limit", True, "invalid_value"),
    ("rpm", 5, "unknown_parameter"),
])
def test_bad_limits_on_keys_are_400(pair: Pair, field: str, value: Any, code: str) -> None:
    resp = pair.admin("POST", "/admin/v1/keys", {"models": ["*"], field: value})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == code
    assert error["param"] == field


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"scope": "galaxy", "rpm": 1}, 400, "invalid_value"),
    ({"scope": "team", "subject": "x", "rpm": -5}, 400, "invalid_value"),
    ({"scope": "team", "subject": "x", "tpd": 10**15}, 400, "invalid_value"),
    ({"scope": "team", "subject": "x", "tpm": "many"}, 400, "invalid_value"),
    ({"scope": "model", "subject": "m" * 300, "rpm": 1}, 400, "invalid_value"),
    ({"scope": "model", "subject": "gpt-4o-mini", "rpm": 1, "burst": 2}, 400, "unknown_parameter"),
    ({"scope": "model", "subject": "gpt-4o-mini"}, 400, "invalid_value"),
    ({"scope": "team", "rpm": 1}, 400, "invalid_value"),
    ({"scope": "tenant", "subject": "someone-else", "rpm": 1}, 400, "invalid_value"),
    ({"scope": "user", "subject": "no-such-user", "rpm": 1}, 404, "user_not_found"),
    ({"scope": "team", "subject": "no-such-team", "rpm": 1}, 404, "team_not_found"),
    ({"scope": "key_model", "key": "key_nope", "model": "gpt-4o-mini", "rpm": 1}, 404, "key_not_found"),
    ({"scope": "key_model", "model": "gpt-4o-mini", "rpm": 1}, 400, "invalid_value"),
    ({"scope": "team", "subject": "x", "model": "gpt-4o-mini", "rpm": 1}, 400, "invalid_value"),
])
def test_bad_limit_records_are_refused(pair: Pair, body: dict[str, Any], status: int, code: str) -> None:
    resp = pair.admin("PUT", "/admin/v1/limits", body)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code
    assert pair.admin("GET", "/admin/v1/limits/lim_nope").json()["error"]["code"] == "limit_not_found"
    # The server keeps serving.
    client = pair.sdk(pair.key()["key"])
    assert client.chat.completions.create(model="gpt-4o-mini", messages=ask("ok")).choices


@pytest.mark.parametrize("scope", ["model", "key_model"])
def test_a_limit_on_a_model_that_is_not_served_is_refused(pair: Pair, scope: str) -> None:
    """A typo in the model name would make a limit that never applies: it is refused."""
    body: dict[str, Any] = {"scope": scope, "rpm": 1}
    if scope == "model":
        body["subject"], param = "gpt4o-mini", "subject"
    else:
        body["key"], body["model"], param = pair.key()["id"], "gpt4o-mini", "model"
    resp = pair.admin("PUT", "/admin/v1/limits", body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error == {"message": f"{param}: no model 'gpt4o-mini' is served (GET /v1/models lists them)",
                     "type": "invalid_request_error", "param": param, "code": "model_not_found"}
    listed = pair.admin("GET", f"/admin/v1/limits?scope={scope}").json()["data"]
    assert not [x for x in listed if x["subject"].endswith("gpt4o-mini")]


@pytest.mark.parametrize(("query", "param", "code"), [
    ("subject=team-x", "subject", "unknown_parameter"),
    ("scope=team&scope=user", "scope", "duplicate_parameter"),
])
def test_a_limits_list_filter_it_does_not_take_is_400(pair: Pair, query: str, param: str, code: str) -> None:
    resp = pair.admin("GET", f"/admin/v1/limits?{query}")
    assert resp.status_code == 400, resp.text
    assert (resp.json()["error"]["param"], resp.json()["error"]["code"]) == (param, code)


def test_when_redis_is_down_the_policy_decides(
    pair: Pair, request: pytest.FixtureRequest, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if pair.kind == "embedded":
        # Embedded limits live in the process: no store can be unreachable; they keep working.
        key = pair.key(rpm_limit=1)["key"]
        assert pair.sdk(key).chat.completions.create(model="gpt-4o-mini", messages=ask("1")).choices
        with pytest.raises(openai.RateLimitError):
            pair.sdk(key).chat.completions.create(model="gpt-4o-mini", messages=ask("2"))
        return
    postgres: Postgres = request.getfixturevalue("postgres")
    redis = start_redis()  # our own, so stopping it leaves the shared one alone
    gateways: list[Gateway] = []
    try:
        config = _config(mock_upstream)
        config["database"] = {"url": postgres.create_database(f"limits_down_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
        for policy in ("open", "closed"):
            config["limits"] = {"on_store_error": policy}
            gateways.append(start_gateway(config, tmp_path_factory.mktemp(f"limits-{policy}")))
        opened, closed = gateways
        created = httpx.post(f"{opened.url}/admin/v1/keys", json={"models": ["*"], "rpm_limit": 1000},
                             headers=ADMIN, timeout=10).json()
        clients = [openai.OpenAI(base_url=g.base_url, api_key=created["key"], max_retries=0, timeout=30)
                   for g in gateways]
        for client in clients:  # both up: limited, with headers
            raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=ask("up"))
            assert raw.headers["x-ratelimit-limit-requests"] == "1000"
        redis.stop()
        raw = clients[0].chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=ask("down"))
        assert raw.parse().choices and "x-ratelimit-limit-requests" not in raw.headers
        with pytest.raises(openai.APIStatusError) as refused:
            clients[1].chat.completions.create(model="gpt-4o-mini", messages=ask("down"))
        assert refused.value.status_code == 503
        assert refused.value.body["code"] == "rate_limiter_unavailable"  # type: ignore[index]
        assert httpx.get(f"{closed.url}/health/live", timeout=5).status_code == 200
    finally:
        for gw in gateways:
            gw.process.stop()
        redis.stop()



# -- a provider deployment's own limits: wait briefly for room, else 429 upstream_rate_limited


def _throttled(pair: Pair, mock: Mock, tmp: pytest.TempPathFactory, request: pytest.FixtureRequest,
               max_wait: float) -> list[Gateway]:
    config = openai_config(mock)
    config["providers"].append({"name": "throttled", "type": "openai", "api_base": f"{mock.url}/v1",
                                "api_key": "${UPSTREAM_KEY}", "rpm": 2})
    config["models"] += [{"name": name, "provider": "throttled", "model": "gpt-4o-mini"}
                         for name in ("throttled-model", "throttled-kept")]
    # A fallback not every caller may use (a key for throttled-kept alone).
    config["router"] = {"fallbacks": {"throttled-kept": ["gpt-4o-mini"]}}
    # A 1 s window, so capacity comes back within the wait.
    config["limits"] = {"window_seconds": 1, "max_wait_seconds": max_wait}
    if pair.kind == "embedded":
        return [start_gateway(config, tmp.mktemp("throttled"))]
    postgres: Postgres = request.getfixturevalue("postgres")
    config["database"] = {"url": postgres.create_database(f"limits_up_{uuid.uuid4().hex[:8]}")}
    config["redis"] = {"url": request.getfixturevalue("redis_server").url}
    return [start_gateway(config, tmp.mktemp(f"throttled-{n}")) for n in "ab"]


async def _timed_burst(gateways: list[Gateway], n: int, model: str = "throttled-model", key: str = MASTER_KEY,
                       ) -> tuple[list[float], list[openai.RateLimitError]]:
    clients = [openai.AsyncOpenAI(base_url=g.base_url, api_key=key, max_retries=0, timeout=30)
               for g in gateways]
    start = time.monotonic()

    async def one(i: int) -> float | openai.RateLimitError:
        try:
            client = clients[i % len(clients)]
            await client.chat.completions.create(model=model, messages=ask("x"))
        except openai.RateLimitError as exc:
            return exc
        return time.monotonic() - start

    try:
        results = await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        for c in clients:
            await c.close()
    done = sorted(r for r in results if isinstance(r, float))
    return done, [r for r in results if not isinstance(r, float)]


def test_a_providers_own_limit_makes_requests_wait_then_refuses(
    pair: Pair, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> None:
    gateways = _throttled(pair, mock_upstream, tmp_path_factory, request, max_wait=2.5)
    try:
        done, refused = asyncio.run(_timed_burst(gateways, 4))
        # rpm 2 per 1 s window: all four are answered, the last two only once the first two
        # have left the window (never earlier).
        assert not refused and len(done) == 4
        assert done[2] >= 1.0
        done, refused = asyncio.run(_timed_burst(gateways, 12))
        # Twelve would need 6 s; the wait is bounded: those that cannot fit are refused.
        assert refused and len(done) >= 2
        assert len(done) <= 2 * (int(done[-1]) + 1)  # never more than 2 in any 1 s window
        for exc in refused:
            body: Any = exc.body
            assert body["code"] == "upstream_rate_limited"
            assert exc.response.headers["x-ratelimit-scope"] == "upstream"
            assert int(exc.response.headers["retry-after"]) >= 1
    finally:
        for gw in gateways:
            gw.process.stop()


def test_a_caller_who_may_not_use_the_groups_fallbacks_waits_for_its_providers_room(
    pair: Pair, mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> None:
    gateways = _throttled(pair, mock_upstream, tmp_path_factory, request, max_wait=2.5)
    try:
        resp = httpx.post(f"{gateways[0].url}/admin/v1/keys", json={"models": ["throttled-kept"]},
                          headers=ADMIN, timeout=10)
        assert resp.status_code == 201, resp.text
        # rpm 2 per 1 s window, and a fallback this key may not use: the last two wait for room,
        # as with no fallback, rather than being refused at once.
        done, refused = asyncio.run(_timed_burst(gateways, 4, "throttled-kept", resp.json()["key"]))
        assert not refused and len(done) == 4, [r.body for r in refused]
        assert done[2] >= 1.0
    finally:
        for gw in gateways:
            gw.process.stop()


def test_a_failed_call_gives_its_token_reservation_back(pair: Pair) -> None:
    key = pair.key(tpm_limit=1000)["key"]
    for on in (pair.first, pair.second):
        with pytest.raises(openai.APIStatusError) as failed:
            pair.sdk(key, on).chat.completions.create(model="unreachable", messages=ask("x"), max_tokens=900)
        assert failed.value.status_code == 502

    def fits() -> bool:  # the refunds run after each response was written: poll, briefly
        try:
            pair.sdk(key).chat.completions.create(model="gpt-4o-mini", messages=ask("x"), max_tokens=900)
        except openai.RateLimitError:
            return False
        return True

    _wait_for(fits, "a failed call's reservation was not given back")


def test_a_daily_token_limit_set_for_a_user(pair: Pair) -> None:
    user = pair.admin("POST", "/admin/v1/users", {"name": "daily"}).json()["id"]
    resp = pair.admin("PUT", "/admin/v1/limits", {"scope": "user", "subject": user, "tpd": 300})
    assert resp.status_code == 200, resp.text
    key = pair.key(user=user)["key"]
    client = pair.sdk(key, pair.second)
    create = client.chat.completions.with_raw_response.create
    raw = create(model="gpt-4o-mini", messages=ask("d"), max_tokens=50)
    assert raw.headers["x-ratelimit-limit-tokens"] == "300"
    used = raw.parse().usage.total_tokens  # type: ignore[union-attr]
    refused: openai.RateLimitError | None = None
    for _ in range(300):  # every answer uses tokens: the day's 300 run out
        try:
            reply = client.chat.completions.create(model="gpt-4o-mini", messages=ask("d"), max_tokens=50)
        except openai.RateLimitError as exc:
            refused = exc
            break
        used += reply.usage.total_tokens  # type: ignore[union-attr]
    assert refused is not None and used <= 300
    _check_refusal(refused, "user", window=86_400)
    assert "per day" in refused.body["message"]  # type: ignore[index]
    # Room comes back in hours: the SDKs are told not to retry (the Anthropic SDK would sleep).
    assert int(refused.response.headers["retry-after"]) > 120
    assert refused.response.headers["x-should-retry"] == "false"


def test_a_streams_reservation_is_corrected_to_its_usage_at_its_end(pair: Pair) -> None:
    key = pair.key(tpm_limit=1000)["key"]
    streamed = 0

    def one_stream() -> bool:
        nonlocal streamed
        try:
            chunks = pair.sdk(key, pair.second).chat.completions.create(
                model="gpt-4o-mini", messages=ask("s"), max_tokens=600, stream=True)
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        except openai.RateLimitError:
            return False  # the previous stream's correction has not run yet
        assert text
        streamed += 1
        return True

    # Each reserves 600+ tokens, two at once would not fit: they only fit one after the other
    # because each stream's reservation drops to the few tokens it used when it ends.
    for _ in range(4):
        _wait_for(one_stream, "a stream's reservation was not corrected at its end")
    assert streamed == 4


def test_a_provider_added_through_the_admin_api_keeps_its_own_limit(pair: Pair, mock_upstream: Mock) -> None:
    name = f"rt-{uuid.uuid4().hex[:8]}"
    resp = pair.admin("POST", "/admin/v1/providers", {
        "name": name, "type": "openai", "api_base": f"{mock_upstream.url}/v1", "api_key": UPSTREAM_KEY,
        "rpm": 2})
    assert resp.status_code == 201, resp.text
    assert resp.json()["rpm"] == 2 and resp.json()["tpm"] is None
    model = f"{name}-model"
    resp = pair.admin("POST", "/admin/v1/models", {"name": model, "provider": name, "model": "gpt-4o-mini"})
    assert resp.status_code == 201, resp.text
    client = pair.sdk(MASTER_KEY)
    for _ in range(2):
        assert client.chat.completions.create(model=model, messages=ask("x")).choices
    with pytest.raises(openai.RateLimitError) as refused:  # the window is a minute: no wait helps
        client.chat.completions.create(model=model, messages=ask("x"))
    body: Any = refused.value.body
    assert body["code"] == "upstream_rate_limited"
    # Raised through the admin API: applies at once on this instance.
    resp = pair.admin("PATCH", f"/admin/v1/providers/{name}", {"rpm": 3})
    assert resp.status_code == 200 and resp.json()["rpm"] == 3
    assert client.chat.completions.create(model=model, messages=ask("x")).choices


@pytest.mark.parametrize("value", [0, -1, 10**13, "60", 1.5])
def test_bad_provider_limits_are_400(pair: Pair, value: Any) -> None:
    resp = pair.admin("POST", "/admin/v1/providers", {"name": f"bad-{uuid.uuid4().hex[:6]}", "type": "openai",
                                                      "rpm": value})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == "rpm" or "rpm" in resp.json()["error"]["message"]


@pytest.mark.parametrize("fault", ["fail_after", "disconnect_after"])
def test_a_stream_the_upstream_breaks_holds_the_tokens_it_is_billed_for(pair: Pair, fault: str) -> None:
    # A translated stream that fails after relaying output (an error event, or the connection
    # dropped) is recorded and budgeted with an estimate of what it produced: the key's token
    # limit settles to that same estimate, instead of giving the whole reservation back.
    key = pair.key(tpm_limit=1_000_000)
    budget = pair.admin("PUT", "/admin/v1/budgets", {"scope": "key", "subject": key["id"], "unit": "tokens",
                                                     "max_amount": 1_000_000, "period": "daily",
                                                     "timezone": zone_far_from_period_end("daily")})
    assert budget.status_code == 200, budget.text

    def settled() -> bool:  # the budget settles in the same callback, after the token limits
        status = pair.admin("GET", f"/admin/v1/budgets/{budget.json()['id']}").json()["status"]
        return bool(status["reserved"] == 0)

    client = pair.sdk(key["key"])

    def probe() -> tuple[int, int]:
        """The tokens left in the key's minute after this call's reservation, and its usage."""
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=ask("probe"), max_tokens=50)
        usage = raw.parse().usage
        assert usage is not None
        return int(raw.headers["x-ratelimit-remaining-tokens"]), usage.total_tokens

    before, probed = probe()
    _wait_for(settled, "the probe was not settled")
    received, request_id = [], f"broken-{uuid.uuid4().hex}"
    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(
                model="gpt-4o-mini", messages=ask(f"mock:reply={'_'.join(['word'] * 100)} mock:{fault}=40"),
                max_tokens=1000, stream=True, extra_headers={"x-request-id": request_id}):
            received += [c.delta.content for c in chunk.choices if c.delta.content]
    assert len(received) > 20  # output was produced before the failure
    _wait_for(settled, "the broken stream was not settled")
    after, _ = probe()
    record = _logged(pair, request_id)
    assert record["metadata"].get("estimated") is True
    cut = record["prompt_tokens"] + record["completion_tokens"]
    assert record["completion_tokens"] > 20
    assert before - after == probed + cut  # the broken stream holds what it was recorded with
