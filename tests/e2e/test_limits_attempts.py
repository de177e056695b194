"""Rate limits of every deployment a request is sent to, end to end with the official SDK: a
retry on another deployment of the group, a fallback group and the deployment tried when the
first pick may not be sent to each take that deployment's own limits (and a fallback group's
model the caller's per-model limits) before the attempt goes; refused, the deployment is passed
over, and a request sent nowhere gets that limit's 429. Tokens taken there are corrected to the
reported usage, or given back when the attempt failed. A first pick whose provider's limit has no
room leaves the request to the group's next deployment with some, and when none has, to the
group's fallbacks. Embedded, and the basic fallback, first-pick and group-of-one cases on a
cluster (the Redis limiter)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.sdk import ask
from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway
from tests.services import Postgres, RedisServer

RUN = uuid.uuid4().hex[:8]  # fault counters are per header value: this run's own


def _provider(mock: Mock, name: str, faults: str | None = None, **limits: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "type": "openai", "api_base": f"{mock.url}/v1",
                             "api_key": "${UPSTREAM_KEY}", **limits}
    if faults is not None:
        entry["headers"] = {"x-mock-faults": f"{faults};run={RUN}-{name}"}
    return entry


def _model(name: str, provider: str, weight: int = 1, model: str = "gpt-4o-mini") -> dict[str, Any]:
    return {"name": name, "provider": provider, "model": model, "deployment": f"{name}@{provider}",
            "weight": weight}


def _config(mock: Mock) -> dict[str, Any]:
    config = openai_config(mock)
    config["providers"] += [
        _provider(mock, "fails", "rate=1;kinds=500"),
        _provider(mock, "fails-tpm", "rate=1;kinds=500", tpm=3000),
        _provider(mock, "one-a-minute", rpm=1),
        _provider(mock, "one-a-minute-too", rpm=1),
        _provider(mock, "one-a-minute-also", rpm=1),
        _provider(mock, "main-account", rpm=1),
        _provider(mock, "standby-account", rpm=1),
        _provider(mock, "tpm-3000", tpm=3000),
        _provider(mock, "solo-account", rpm=1),
        _provider(mock, "solo-standby", rpm=1),
        _provider(mock, "busy-account", rpm=1),
        _provider(mock, "busy-standby", rpm=1),
        # Its first request fails, the next ones are served (seeded).
        _provider(mock, "fails-once", "rate=0.5;kinds=500;seed=14"),
    ]
    config["models"] += [
        # A fallback whose deployment takes one request a minute.
        _model("primary", "fails"), _model("fallback", "one-a-minute"),
        # A group of two: the second (tried only as a retry) takes one request a minute.
        _model("pair", "fails"), _model("pair", "one-a-minute-too", weight=0),
        _model("pair-direct", "one-a-minute-too"),
        # A fallback group whose model callers may use once a minute.
        _model("primary-2", "fails"), _model("counted-model", "local-openai"),
        # Tokens: a fallback that fails, then one that answers, each with its own tpm.
        _model("primary-3", "fails"), _model("tokens-fail", "fails-tpm"), _model("tokens-ok", "tpm-3000"),
        # The first pick may never be sent to (no price, with spend.refuse_unpriced).
        _model("mixed", "local-openai", model="house-llm-7b"), _model("mixed", "one-a-minute-also", weight=0),
        _model("mixed-direct", "one-a-minute-also"),
        # Two accounts, one a minute each: the first always picked while it has room.
        _model("accounts", "main-account"), _model("accounts", "standby-account", weight=0),
        # A fallback group whose one deployment fails once, then answers its retry.
        _model("primary-4", "fails"), _model("retried", "fails-once"),
        # A group of one, one request a minute, with a fallback taking one a minute too.
        _model("solo", "solo-account"), _model("solo-fallback", "solo-standby"),
        # The same, for a caller with a limit of its own.
        _model("busy", "busy-account"), _model("busy-fallback", "busy-standby"),
    ]
    config["router"] = {
        "num_retries": 1,
        "retry": {"backoff_seconds": 0.01, "max_backoff_seconds": 0.02},
        "fallback_on": ["server_error"],
        "fallbacks": {"primary": ["fallback"], "primary-2": ["counted-model"],
                      "primary-3": ["tokens-fail", "tokens-ok"], "primary-4": ["retried"],
                      "solo": ["solo-fallback"], "busy": ["busy-fallback"]},
        "groups": {name: {"num_retries": 0} for name in
                   ("primary", "primary-2", "primary-3", "primary-4", "tokens-fail", "fallback",
                    "counted-model")},
        "cooldown": {"failures": 1000},  # the failing deployments stay in: every attempt is sent
    }
    # tokens-ok's tpm, as the caller's limit on its model too: the headers show a caller's limits.
    config["limits"] = {"models": {"counted-model": {"rpm": 1}, "tokens-ok": {"tpm": 3000},
                                   "retried": {"tpm": 3000}}}
    config["spend"] = {"refuse_unpriced": True}
    return config


@pytest.fixture(scope="module")
def gateway(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(_config(mock_upstream), tmp_path_factory.mktemp("limits-attempts"))
    yield gw
    gw.process.stop()


def _sdk(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def _answered_by(gw: Gateway, model: str, **request: Any) -> tuple[str, str, Any]:
    """(the group that answered, its deployment, the usage) of a request that succeeds."""
    raw = _sdk(gw).chat.completions.with_raw_response.create(model=model, messages=ask("x"), **request)
    reply = raw.parse()
    assert reply.choices[0].message.content
    return raw.headers["x-switchboard-model"], raw.headers["x-switchboard-deployment"], reply.usage


def _failed(gw: Gateway, model: str, **request: Any) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as failed:
        _sdk(gw).chat.completions.create(model=model, messages=ask("x"), **request)
    return failed.value


def _refused(gw: Gateway, model: str, code: str, scope: str) -> None:
    with pytest.raises(openai.RateLimitError) as refused:
        _sdk(gw).chat.completions.create(model=model, messages=ask("x"))
    body: Any = refused.value.body
    assert body["code"] == code, body
    assert refused.value.response.headers["x-ratelimit-scope"] == scope
    assert int(refused.value.response.headers["retry-after"]) >= 1


def _fallback_deployment_with_rpm_1(first: Gateway, second: Gateway) -> None:
    assert _answered_by(first, "primary")[0] == "fallback"
    # The fallback's one request this minute is taken: passed over, the primary's error stands.
    error = _failed(second, "primary")
    assert error.status_code >= 500
    assert error.response.headers["x-switchboard-deployment"] == "primary@fails"
    _refused(first, "fallback", "upstream_rate_limited", "upstream")


def test_a_fallback_deployment_takes_its_own_rpm(gateway: Gateway) -> None:
    _fallback_deployment_with_rpm_1(gateway, gateway)


def test_a_retry_on_another_deployment_takes_its_own_rpm(gateway: Gateway) -> None:
    raw = _sdk(gateway).chat.completions.with_raw_response.create(model="pair", messages=ask("x"))
    assert raw.headers["x-switchboard-deployment"] == "pair@one-a-minute-too"
    assert raw.headers["x-switchboard-attempts"] == "2"
    error = _failed(gateway, "pair")  # its retry goes back to the failing one
    assert error.response.headers["x-switchboard-deployment"] == "pair@fails"
    _refused(gateway, "pair-direct", "upstream_rate_limited", "upstream")


def test_a_fallback_groups_model_takes_the_callers_limit_on_it(gateway: Gateway) -> None:
    assert _answered_by(gateway, "primary-2")[0] == "counted-model"
    error = _failed(gateway, "primary-2")
    assert error.response.headers["x-switchboard-deployment"] == "primary-2@fails"
    _refused(gateway, "counted-model", "rate_limit_exceeded", "model")


def _counts_the_answer(gw: Gateway, model: str, used: int) -> None:
    """The caller's 3000 tpm on ``model`` holds an answer's ``used`` tokens: another 2500 fits
    once the answer's reservation is corrected to its usage (after the response was written:
    polled; a refusal takes nothing), and what is left then counts the answer's usage (and that
    request's own reservation: its small prompt)."""
    sdk = _sdk(gw).chat.completions

    def remaining() -> int | None:
        try:
            raw = sdk.with_raw_response.create(model=model, messages=ask("x"), max_tokens=2500)
        except openai.RateLimitError:
            return None
        return int(raw.headers["x-ratelimit-remaining-tokens"])

    deadline = time.monotonic() + 5
    while (left := remaining()) is None:
        assert time.monotonic() < deadline, "the answer's token reservation was not corrected"
    assert 500 - used - 50 <= left <= 500 - used


def test_tokens_are_corrected_where_answered_and_given_back_where_failed(gateway: Gateway) -> None:
    # tokens-fail fails after reserving, tokens-ok answers: 2500 + the prompt taken from each
    # (tokens-ok: from its deployment's tpm and from the caller's on its model).
    group, _, usage = _answered_by(gateway, "primary-3", max_tokens=2500)
    assert group == "tokens-ok"
    _counts_the_answer(gateway, "tokens-ok", usage.total_tokens)
    # The failed attempt gave its reservation back at once: another 2500 is admitted (and sent).
    error = _failed(gateway, "tokens-fail", max_tokens=2500)
    assert error.status_code >= 500, error


def test_a_retry_on_a_fallback_deployment_counts_the_tokens_of_its_answer(gateway: Gateway) -> None:
    # primary-4 fails; its fallback's deployment fails once (its reservation given back), then
    # answers the retry: that answer's tokens count on the caller's limit on the fallback model.
    raw = _sdk(gateway).chat.completions.with_raw_response.create(
        model="primary-4", messages=ask("x"), max_tokens=2500)
    assert raw.headers["x-switchboard-model"] == "retried"
    assert raw.headers["x-switchboard-attempts"] == "3"
    _counts_the_answer(gateway, "retried", raw.parse().usage.total_tokens)


def test_when_the_first_pick_may_not_be_sent_to_the_next_takes_its_limits(gateway: Gateway) -> None:
    # The first pick has no price: never sent; the next deployment takes its one request.
    assert _answered_by(gateway, "mixed")[1] == "mixed@one-a-minute-also"
    # Nothing can be sent now: the deployment's limit is why, and the caller is told so.
    _refused(gateway, "mixed", "upstream_rate_limited", "upstream")
    _refused(gateway, "mixed-direct", "upstream_rate_limited", "upstream")


def _first_pick_without_room(first: Gateway, second: Gateway) -> None:
    assert _answered_by(first, "accounts")[1] == "accounts@main-account"
    # The main account's one request this minute is taken: the other account serves.
    assert _answered_by(second, "accounts")[:2] == ("accounts", "accounts@standby-account")
    # Both are taken now: the first pick's limit is why, and the caller is told so.
    _refused(first, "accounts", "upstream_rate_limited", "upstream")


def test_a_first_pick_without_room_leaves_the_request_to_a_deployment_with_some(gateway: Gateway) -> None:
    _first_pick_without_room(gateway, gateway)


def _one_deployment_without_room(first: Gateway, second: Gateway) -> None:
    assert _answered_by(first, "solo")[:2] == ("solo", "solo@solo-account")
    # Its account's one request this minute is taken: the group's fallback serves (on its own
    # limit: no server_error in fallback_on needed, nothing was sent), without waiting.
    assert _answered_by(second, "solo")[:2] == ("solo-fallback", "solo-fallback@solo-standby")
    # Neither has room now: the provider's limit is why, and the caller is told so.
    _refused(first, "solo", "upstream_rate_limited", "upstream")
    _refused(second, "solo-fallback", "upstream_rate_limited", "upstream")


def test_a_group_of_one_without_room_goes_to_its_fallbacks(gateway: Gateway) -> None:
    _one_deployment_without_room(gateway, gateway)


def _refused_everywhere_counts_nothing(first: Gateway, second: Gateway) -> None:
    assert _answered_by(first, "busy")[0] == "busy"
    assert _answered_by(second, "busy")[0] == "busy-fallback"
    # Neither has room: a caller refused for that (nothing was sent) keeps its own limit whole.
    resp = httpx.post(f"{first.url}/admin/v1/keys", json={"models": ["*"], "rpm_limit": 2},
                      headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10)
    assert resp.status_code == 201, resp.text
    key = resp.json()["key"]
    for gw in (first, second, first):
        with pytest.raises(openai.RateLimitError) as refused:
            openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30
                          ).chat.completions.create(model="busy", messages=ask("x"))
        body: Any = refused.value.body
        assert body["code"] == "upstream_rate_limited", body
        assert refused.value.response.headers["x-ratelimit-scope"] == "upstream"
    raw = openai.OpenAI(base_url=second.base_url, api_key=key, max_retries=0, timeout=30
                        ).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=ask("x"))
    assert raw.headers["x-ratelimit-remaining-requests"] == "1"  # this one alone counted


def test_a_caller_refused_for_its_groups_and_fallbacks_limits_keeps_its_own(gateway: Gateway) -> None:
    _refused_everywhere_counts_nothing(gateway, gateway)


def test_a_fallback_deployment_takes_its_own_rpm_on_a_cluster(
    mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory, postgres: Postgres,
    redis_server: RedisServer,
) -> None:
    config = _config(mock_upstream)
    config["database"] = {"url": postgres.create_database(f"limits_attempts_{uuid.uuid4().hex[:8]}")}
    config["redis"] = {"url": redis_server.url}
    first = start_gateway(config, tmp_path_factory.mktemp("limits-attempts-a"))
    second = start_gateway(config, tmp_path_factory.mktemp("limits-attempts-b"))
    try:
        _fallback_deployment_with_rpm_1(first, second)
        _first_pick_without_room(second, first)
        _one_deployment_without_room(first, second)
        _refused_everywhere_counts_nothing(second, first)
    finally:
        first.process.stop()
        second.process.stop()
