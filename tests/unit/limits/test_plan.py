"""Which limits apply to a request, the pre-call estimate, and the header format."""

from __future__ import annotations

import time

from switchboard import tokens
from switchboard.config.schema import LimitsConfig, LimitValues
from switchboard.context import Principal, RequestContext
from switchboard.http.openai_api import CHAT
from switchboard.limits.estimate import estimate_request_tokens, used_tokens
from switchboard.limits.headers import duration, rate_headers
from switchboard.limits.plan import plan
from switchboard.stores.protocols import BucketState

KEY = Principal(id="key_1", role="developer", key_id="key_1", tenant_id="t1", team_id="team1",
                user_id="u1", rpm_limit=10)


def _config(**values: object) -> LimitsConfig:
    return LimitsConfig.model_validate(values)


def test_every_scope_in_force_applies_widest_first() -> None:
    config = _config(**{
        "global": {"rpm": 1000}, "models": {"m": {"tpm": 500}}, "per_tenant": {"rpm": 100},
        "per_team": {"rpm": 50}, "per_user": {"tpd": 10_000}, "per_key_model": {"*": {"rpm": 5}},
    })
    limits = plan(config, KEY, "m", {("model", "m"): LimitValues(rpm=7)})
    assert [(x.scope, x.name, x.limit) for x in limits] == [
        ("global", "rpm", 1000), ("model", "tpm", 500), ("tenant", "rpm", 100), ("model", "rpm", 7),
        ("team", "rpm", 50), ("user", "tpd", 10_000), ("key", "rpm", 10), ("key_model", "rpm", 5),
    ]
    assert len({x.key for x in limits}) == len(limits)  # every bucket is its own
    tpd = next(x for x in limits if x.name == "tpd")
    assert tpd.window == 86_400 and tpd.key == "user:t1:u1:tpd"


def test_a_request_naming_no_model_has_no_per_model_limit() -> None:
    # Files and batches: the caller's own limits apply, none of a model's.
    config = _config(**{"global": {"rpm": 1000}, "models": {"m": {"rpm": 1}}, "per_tenant": {"rpm": 100},
                        "per_key_model": {"*": {"rpm": 5}}})
    limits = plan(config, KEY, "", {("model", ""): LimitValues(rpm=7)})
    assert [(x.scope, x.name, x.limit) for x in limits] == [
        ("global", "rpm", 1000), ("tenant", "rpm", 100), ("key", "rpm", 10),
    ]


def test_stored_and_key_limits_replace_the_defaults_field_by_field() -> None:
    config = _config(per_team={"rpm": 50, "tpm": 9000}, per_key={"rpm": 20, "tpm": 100})
    limits = plan(config, KEY, "m", {("team", "team1"): LimitValues(rpm=3)})
    assert [(x.scope, x.name, x.limit) for x in limits] == [
        ("team", "rpm", 3), ("team", "tpm", 9000), ("key", "rpm", 10), ("key", "tpm", 100),
    ]


def test_a_rotated_key_is_counted_under_its_lineage() -> None:
    # The successor of key_1 (rotated): the same buckets, and the key_model limit set on key_1.
    rotated = Principal(id="key_9", role="developer", key_id="key_9", tenant_id="t1", rpm_limit=10,
                        key_lineage="key_1")
    limits = plan(_config(), rotated, "m", {("key_model", "key_1:m"): LimitValues(rpm=2)})
    assert [(x.key, x.limit) for x in limits] == [("key:key_1:rpm", 10), ("key_model:key_1:m:rpm", 2)]
    assert [x.key for x in plan(_config(), KEY, "m", {("key_model", "key_1:m"): LimitValues(rpm=2)})] == [
        "key:key_1:rpm", "key_model:key_1:m:rpm"]


def test_no_limits_means_an_empty_plan_and_burst_adds_room() -> None:
    assert plan(_config(), Principal(id="key_2", key_id="key_2", tenant_id="t1"), "m", {}) == []
    assert plan(_config(), Principal(id="master"), "m", {}) == []
    burst = plan(_config(burst=0.5, window_seconds=1, **{"global": {"rpm": 10}}), None, "m", {})
    assert (burst[0].limit, burst[0].capacity, burst[0].window) == (10, 15, 1)


def _ctx(request: dict[str, object]) -> RequestContext:
    ctx = RequestContext("r", "chat", CHAT, {}, b"", time.perf_counter())
    ctx.request = request
    return ctx


async def test_the_estimate_is_the_counted_prompt_plus_max_tokens() -> None:
    messages = [{"role": "user", "content": "hello " * 100}]
    prompt = tokens.estimate({"model": "gpt-4o", "messages": messages}, "chat", model="gpt-4o")
    assert 100 <= prompt < 120
    asked = {"model": "gpt-4o", "messages": messages, "max_tokens": 50}
    assert await estimate_request_tokens(_ctx(asked)) == prompt + 50
    both = {"model": "gpt-4o", "messages": messages, "max_completion_tokens": 7, "max_tokens": 50}
    assert await estimate_request_tokens(_ctx(both)) == prompt + 7


def test_used_tokens_reads_the_reported_usage() -> None:
    assert used_tokens({"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}) == 12
    assert used_tokens({"prompt_tokens": 5}) == 5
    assert used_tokens(None) is None and used_tokens({}) is None


def test_headers_name_the_most_restrictive_limit_of_each_kind() -> None:
    config = _config(**{"global": {"rpm": 100, "tpm": 1000}, "per_key": {"rpm": 10}})
    limits = plan(config, KEY, "m", {})
    states = [BucketState(100, 50, 30.0, 1), BucketState(1000, 10, 61.0, 1), BucketState(10, 2, 0.25, 1)]
    assert rate_headers(limits, states) == {
        "x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "8",
        "x-ratelimit-reset-requests": "250ms",
        "x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "990",
        "x-ratelimit-reset-tokens": "1m1s",
    }


def test_durations_are_written_like_openai() -> None:
    assert [duration(s) for s in (0.02, 1, 1.5, 59.9991, 60, 360, 3723)] == [
        "20ms", "1s", "1.5s", "1m0s", "1m0s", "6m0s", "1h2m3s"]


def test_a_reset_just_under_a_second_or_a_minute_is_written_as_the_one_it_rounds_to() -> None:
    """They were ``1000ms`` and ``60s``: no duration OpenAI writes (it carries to the next unit)."""
    assert [duration(s) for s in (0, 0.0001, 0.999, 0.9991, 0.99999, 59.999, 59.99999, 3599.9999)] == [
        "0ms", "1ms", "999ms", "1s", "1s", "59.999s", "1m0s", "1h0m0s"]
