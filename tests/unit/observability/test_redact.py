"""The request log's redaction, body cutting, stream assembly and policy matching, and the
validation of its configuration (``request_log`` in the YAML)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from switchboard.config.schema import BodyPolicy, RedactConfig
from switchboard.observability.redact import REDACTED, Redactor
from switchboard.observability.request_log import Keep, Policies
from switchboard.pipeline.capture import Assembled, cut, without_vectors
from switchboard.settings.loader import ConfigError, validate


def test_headers_listed_and_credentials_are_redacted_whatever_their_case() -> None:
    redactor = Redactor(RedactConfig(headers=["X-Customer-Secret"], patterns=[r"tok-\d+"]))
    out = redactor.headers({
        "authorization": "Bearer sk-sb-abc", "X-API-Key": "k", "api-key": "k", "Cookie": "c=1",
        "proxy-authorization": "p", "x-customer-secret": "s", "user-agent": "sdk tok-123",
    })
    assert out == {"authorization": REDACTED, "X-API-Key": REDACTED, "api-key": REDACTED, "Cookie": REDACTED,
                   "proxy-authorization": REDACTED, "x-customer-secret": REDACTED,
                   "user-agent": f"sdk {REDACTED}"}


def test_a_field_is_redacted_at_any_depth_and_a_path_only_where_it_leads() -> None:
    redactor = Redactor(RedactConfig(fields=["ssn", "messages.content", "metadata.a.b"]))
    body: dict[str, Any] = {
        "ssn": "1", "nested": {"deeper": [{"ssn": {"any": "value"}}]},
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}, {"role": "system"}],
        "choices": [{"message": {"content": "not on the path"}}],
        "content": "top-level content is not messages.content",
        "metadata": {"a": {"b": 2, "c": 3}, "b": 4},
    }
    original = copy.deepcopy(body)
    assert redactor.json(body) == {
        "ssn": REDACTED, "nested": {"deeper": [{"ssn": REDACTED}]},
        "messages": [{"role": "user", "content": REDACTED}, {"role": "system"}],
        "choices": [{"message": {"content": "not on the path"}}],
        "content": "top-level content is not messages.content",
        "metadata": {"a": {"b": REDACTED, "c": 3}, "b": 4},
    }
    assert body == original  # a copy: the reply the client gets is untouched


def test_patterns_replace_matches_in_every_string_value_and_leave_keys_and_numbers() -> None:
    redactor = Redactor(RedactConfig(patterns=[r"\b\d{3}-\d{2}-\d{4}\b", r"sk-[A-Za-z0-9]{8,}"]))
    body = {"a": "ssn 123-45-6789 and key sk-ABCDEFGH12", "123-45-6789": [1, 2.5, None, True, "x"]}
    assert redactor.json(body) == {"a": f"ssn {REDACTED} and key {REDACTED}",
                                   "123-45-6789": [1, 2.5, None, True, "x"]}
    assert Redactor(RedactConfig()).json(body) == body


def test_each_pattern_runs_as_it_does_alone_and_overlapping_matches_become_one() -> None:
    # Inline global flags, backreferences and a group name used by two patterns: each pattern's
    # own (joined into one regex they would crash the start or point at another's group).
    redactor = Redactor(RedactConfig(patterns=[
        r"(\d{3})-\d{2}-\d{4}", r"<(\w+)>[^<]*</\1>", r"(?i)password=\S+", r"(?P<n>ab)c", r"(?P<n>cd)e",
    ]))
    text = "ssn 123-45-6789, <pw>hunter2</pw>, PassWord=x1 and abcde"
    assert redactor.text(text) == f"ssn {REDACTED}, {REDACTED}, {REDACTED} and {REDACTED}"
    assert redactor.text("<a>b</c> nothing here") == "<a>b</c> nothing here"


def test_a_path_ending_inside_another_redacts_the_shorter_one_whole() -> None:
    redactor = Redactor(RedactConfig(fields=["a.b.c", "a.b"]))
    assert redactor.json({"a": {"b": {"c": 1, "d": 2}}}) == {"a": {"b": REDACTED}}


def test_cut_keeps_whole_utf8_characters() -> None:
    assert cut("short", 1024) == ("short", False)
    text, was_cut = cut("é" * 1000, 1025)  # two bytes each: the 513th would straddle the limit
    assert was_cut and text == "é" * 512 and len(text.encode()) == 1024
    assert cut("é" * 512, 1024) == ("é" * 512, False)


def _delta(**delta: Any) -> dict[str, Any]:
    return {"id": "c1", "choices": [{"index": 0, "delta": delta}]}


def test_a_stream_assembles_to_one_reply_with_its_tool_calls() -> None:
    s = Assembled(1000)
    s.batch([{**_delta(role="assistant"), "model": "m", "created": 1}])
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get", "arguments": '{"a"'}}
    s.batch([_delta(content="Hel"), _delta(content="lo", tool_calls=[call])])
    end = _delta(tool_calls=[{"index": 0, "function": {"arguments": ":1}"}}])
    end["choices"][0]["finish_reason"] = "tool_calls"
    s.batch([end, {"id": "c1", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}])
    assembled_call = {"id": "call_1", "type": "function", "function": {"name": "get", "arguments": '{"a":1}'}}
    assert s.reply() == {
        "id": "c1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Hello", "tool_calls": [assembled_call],
        }}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }
    assert not s.truncated


def test_a_long_stream_is_collected_up_to_the_limit() -> None:
    s = Assembled(10)
    for piece in ("12345", "6789", "abc", "d"):
        s.batch([{"choices": [{"index": 0, "text": piece}]}])
    assert s.truncated
    assert s.reply()["object"] == "text_completion" and s.reply()["choices"][0]["text"] == "123456789"


def test_every_condition_of_a_policy_must_match_and_matching_policies_add_up() -> None:
    policies = Policies([
        BodyPolicy(tenant="acme", team="t1", model="gpt-*", response=False),
        BodyPolicy(key="key_1", request=False, headers=True),
    ])
    assert policies.decide("acme", "t1", "key_9", "gpt-4o") == Keep(True, False, False)
    assert policies.decide("acme", "t2", "key_9", "gpt-4o") is None
    assert policies.decide("acme", "t1", "key_9", "claude") is None
    assert policies.decide("other", None, "key_1", "claude") == Keep(False, True, True)
    assert policies.decide("acme", "t1", "key_1", "gpt-4o") == Keep(True, True, True)
    assert policies.decide("acme", "t1", "key_1", "gpt-4o") == Keep(True, True, True)  # remembered
    assert not Policies([]) and Policies([]).decide("acme", None, None, "m") is None


def test_a_long_model_name_is_decided_but_not_remembered() -> None:
    # Any name may reach the policies (a "*" routing rule takes whatever a caller sends): long
    # ones are decided each time, so callers cannot fill the memory with them.
    policies = Policies([BodyPolicy(model="gpt-*")])
    names = [f"gpt-{i:04d}-" + "x" * 100_000 for i in range(50)]
    assert all(policies.decide("acme", None, None, name) == Keep(True, True, False) for name in names)
    assert policies.decide("acme", None, None, "claude-" + "x" * 100_000) is None
    assert not policies._memo
    assert policies.decide("acme", None, None, "gpt-4o") == Keep(True, True, False)
    assert list(policies._memo) == [("acme", None, None, "gpt-4o")]


def _problems(request_log: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate({"auth": {"master_key": "m" * 20}, "request_log": request_log}, "switchboard.yaml")
    return info.value.problems


@pytest.mark.parametrize(("request_log", "expected"), [
    ({"redact": {"patterns": ["(unclosed"]}},
     "request_log.redact.patterns[0]: not a valid regular expression"),
    ({"redact": {"patterns": ["ok", "a*"]}}, "request_log.redact.patterns[1]: matches the empty string"),
    ({"redact": {"patterns": ["x" * 513]}}, "request_log.redact.patterns[0]: String should have at most 512"),
    ({"redact": {"patterns": [f"p{n}" for n in range(33)]}},
     "request_log.redact.patterns: List should have at most 32"),
    ({"redact": {"fields": ["a..b"]}}, "request_log.redact.fields[0]: String should match pattern"),
    ({"redact": {"headers": ["bad header"]}}, "request_log.redact.headers[0]: String should match pattern"),
    ({"redact": {"header": ["x"]}}, "request_log.redact.header: unknown key"),
    ({"bodies": [{"key": "k", "everything": True}]}, "request_log.bodies[0].everything: unknown key"),
    ({"bodies": [{}] * 257}, "request_log.bodies: List should have at most 256"),
    ({"bodies": [{"request": "sometimes"}]},
     "request_log.bodies[0].request: Input should be a valid boolean"),
    ({"max_body_bytes": 10}, "request_log.max_body_bytes: Input should be greater than or equal to 1024"),
    ({"retention": {"days": 0}}, "request_log.retention.days: Input should be greater than or equal to 1"),
    ({"retention": {"max_bytes": 1000}}, "request_log.retention.max_bytes: Input should be greater than"),
    ({"retention": {"interval_seconds": -1}},
     "request_log.retention.interval_seconds: Input should be greater"),
    ({"keep_everything": True}, "request_log.keep_everything: unknown key"),
])
def test_bad_request_log_settings_are_refused_naming_the_key(request_log: Any, expected: str) -> None:
    problems = _problems(request_log)
    assert any(p.startswith(expected) for p in problems), problems


def test_good_request_log_settings_are_taken() -> None:
    settings = validate({"auth": {"master_key": "m" * 20}, "request_log": {
        "bodies": [{"tenant": "acme", "model": "gpt-*", "headers": True}],
        "redact": {"headers": ["x-secret"], "fields": ["ssn", "messages.content"], "patterns": [r"\d{16}"]},
        "retention": {"days": 7, "max_bytes": 10 * 1024 * 1024, "records_days": 400},
    }}, "switchboard.yaml")
    log = settings.request_log
    assert log.bodies[0].model == "gpt-*" and log.bodies[0].request and not log.bodies[0].key
    assert (log.retention.days, log.retention.records_days, log.max_body_bytes) == (7, 400, 64 * 1024)


def test_an_embeddings_reply_is_kept_without_its_vectors() -> None:
    reply = {"object": "list", "model": "e", "usage": {"prompt_tokens": 2},
             "data": [{"object": "embedding", "index": 0, "embedding": [0.1] * 1536},
                      {"object": "embedding", "index": 1, "embedding": "AAAA"}]}
    assert without_vectors(reply) == {
        "object": "list", "model": "e", "usage": {"prompt_tokens": 2},
        "data": [{"object": "embedding", "index": 0, "embedding": "[1536 dimensions]"},
                 {"object": "embedding", "index": 1, "embedding": "[base64, 4 characters]"}]}
    assert len(reply["data"][0]["embedding"]) == 1536  # the client's reply is untouched


def test_patterns_run_under_a_time_bound_and_a_string_not_searched_in_time_is_kept_out_whole() -> None:
    """An operator's pattern over a body's text: `.*TOPSECRET.*` over a long line of JSON text
    was quadratic in Python's re; with the bounded engine it is fast, and a string that one
    that backtracks without end could not search in time is redacted whole, never kept."""
    long_line = "word " * 40_000
    quick = Redactor(RedactConfig(patterns=[r".*TOPSECRET.*"]))
    assert quick.json({"a": long_line, "b": "x TOPSECRET y"}) == {"a": long_line, "b": REDACTED}
    slow = Redactor(RedactConfig(patterns=[r"^(a|a)+$", r"tok-\d+"]))
    assert slow.json({"a": "a" * 40 + "! tok-1", "n": 1}) == {"a": REDACTED, "n": 1}
    assert slow.text("aaaa tok-22") == f"aaaa {REDACTED}"
    assert slow.headers({"x-note": "a" * 40 + "!"}) == {"x-note": REDACTED}


@pytest.mark.parametrize(("pattern", "text", "kept"), [
    ("token={id}", "a token={id} b", "a [REDACTED] b"),  # the regex engine: "expected }"
    ("pin{d}", "pin{d} and pin", "[REDACTED] and pin"),  # regex: fuzzy, any "pin" (its "{d}" shown)
])
def test_a_redaction_pattern_with_literal_braces_redacts_what_python_re_matched(pattern: str, text: str,
                                                                                kept: str) -> None:
    assert Redactor(RedactConfig(patterns=[pattern])).text(text) == kept
