"""Conditional-routing rules and the semantic chooser, as pure functions."""

from __future__ import annotations

import asyncio
import logging
import random
from types import SimpleNamespace
from typing import Any

import pytest

from switchboard.config.schema import RouterConfig, RoutingRule, SemanticRouter, Split
from switchboard.config.yamlfile import parse_yaml
from switchboard.pipeline.rules import RulesStage, reached
from switchboard.routing.rules import Rules, last_user_text
from switchboard.routing.semantic import SemanticChooser, cosine, unit
from switchboard.routing.splits import SplitChooser
from switchboard.settings.loader import ConfigError, validate


def rules(*specs: dict[str, Any]) -> Rules:
    return Rules([RoutingRule.model_validate(s) for s in specs])


def choose(r: Rules, model: str = "auto", headers: dict[str, str] | None = None, tags: tuple[str, ...] = (),
           tokens: int = 10, **request: Any) -> str | None:
    rule = r.choose(model, headers or {}, request, tags, lambda: tokens)
    return None if rule is None else rule.to


def test_targets_are_every_group_a_rule_may_choose_up_to_one_that_always_matches() -> None:
    r = rules({"model": "auto", "when": {"headers": {"X-A": "1"}}, "to": "a"},
              {"model": "*", "when": {"prompt_tokens": {"min": 100}}, "to": "big"},
              {"model": "auto", "to": "b"}, {"model": "auto", "to": "never"}, {"model": "other", "to": "o"})
    # "auto" always ends at a rule (the last one without condition): the name itself is never reached.
    assert r.targets("auto") == (["a", "big", "b"], True)
    # Another name may match the catch-all rule, or none, and go on as it is.
    assert r.targets("gpt-4o") == (["big"], False)
    assert r.targets("other") == (["big", "o"], True)


def test_first_matching_rule_wins_and_model_scopes_it() -> None:
    r = rules({"model": "auto", "when": {"headers": {"X-A": "1"}}, "to": "a"},
              {"model": "auto", "to": "b"}, {"model": "*", "to": "c"})
    assert choose(r, headers={"x-a": "1"}) == "a"
    assert choose(r, headers={"x-a": "2"}) == "b"
    assert choose(r, model="other") == "c"
    assert r.applies("anything")
    scoped = rules({"model": "auto", "to": "b"})
    assert scoped.applies("auto") and not scoped.applies("gpt-4o")
    assert choose(scoped, model="gpt-4o") is None


def test_every_condition_must_hold() -> None:
    r = rules({"when": {"metadata": {"p": "x"}, "key_tags": ["beta"], "params": {"stream": True}}, "to": "t"})
    assert choose(r, tags=("beta", "z"), metadata={"p": "x"}, stream=True) == "t"
    assert choose(r, tags=("z",), metadata={"p": "x"}, stream=True) is None
    assert choose(r, tags=("beta",), metadata={"p": "y"}, stream=True) is None
    assert choose(r, tags=("beta",), metadata="not an object", stream=True) is None
    assert choose(r, tags=("beta",), metadata={"p": "x"}) is None


def test_params_compare_bools_and_numbers_strictly() -> None:
    r = rules({"when": {"params": {"temperature": 0}}, "to": "t"})
    assert choose(r, temperature=0) == "t" and choose(r, temperature=0.0) == "t"
    assert choose(r, temperature=False) is None and choose(r) is None
    flag = rules({"when": {"params": {"stream": True}}, "to": "t"})
    assert choose(flag, stream=1) is None and choose(flag, stream=True) == "t"


def test_prompt_tokens_range_is_counted_only_when_asked() -> None:
    asked: list[int] = []
    r = rules({"when": {"headers": {"x": "1"}, "prompt_tokens": {"min": 5, "max": 9}}, "to": "t"})

    def count() -> int:
        asked.append(1)
        return 7

    assert r.choose("m", {}, {}, (), count) is None and not asked  # the header failed first
    assert r.choose("m", {"x": "1"}, {}, (), count) is not None and asked
    assert choose(r, headers={"x": "1"}, tokens=4) is None
    assert choose(r, headers={"x": "1"}, tokens=10) is None


def test_last_user_text_forms() -> None:
    parts = [{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}]
    msgs = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "x"},
            {"role": "user", "content": parts}]
    assert last_user_text({"messages": msgs}) == "a\nb"
    assert last_user_text({"messages": [{"role": "system", "content": "s"}]}) == ""
    assert last_user_text({"prompt": "p"}) == "p" and last_user_text({"input": "i"}) == "i"
    assert last_user_text({"messages": [{"role": "user", "content": "x" * 50}]}, limit=10) == "x" * 10
    r = rules({"when": {"last_user_matches": "(?i)^a$"}, "to": "t"})
    assert choose(r, messages=[{"role": "user", "content": "A"}]) == "t"


def _config(**router: Any) -> dict[str, Any]:
    provider = {"name": "p", "type": "openai", "api_base": "http://127.0.0.1:9/v1", "api_key": "k"}
    return {"providers": [provider],
            "models": [{"name": "a", "provider": "p", "model": "m"},
                       {"name": "e", "provider": "p", "model": "e"}],
            "auth": {"master_key": "sk-test-master-key-0123456789"}, "router": router}


@pytest.mark.parametrize(("router", "needle"), [
    ({"rules": [{"to": "missing"}]}, "router.rules[0].to: unknown model group 'missing'"),
    ({"rules": [{"to": "a", "when": {"last_user_matches": "("}}]}, "not a valid regular expression"),
    ({"rules": [{"to": "a", "when": {"bogus": 1}}]}, "bogus"),
    ({"semantic": [{"model": "s", "embedding_model": "nope", "routes": [{"to": "a", "examples": ["x"]}]}]},
     "unknown model group 'nope'"),
    ({"semantic": [{"model": "s", "embedding_model": "e", "routes": []}]}, "routes"),
    ({"semantic": [{"model": "s", "embedding_model": "e", "threshold": 2,
                    "routes": [{"to": "a", "examples": ["x"]}]}]}, "threshold"),
])
def test_bad_rules_are_config_errors(router: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate(_config(**router), "test", env={})
    assert needle in str(info.value)


def _semantic(**extra: Any) -> SemanticRouter:
    return SemanticRouter.model_validate({
        "model": "smart", "embedding_model": "e", "threshold": 0.5, "default": "d",
        "routes": [{"to": "x", "examples": ["x1", "x2"]}, {"to": "y", "examples": ["y1"]}], **extra})


VECTORS = {"x1": [1.0, 0.0], "x2": [0.9, 0.1], "y1": [0.0, 1.0], "qx": [1.0, 0.05], "qy": [0.1, 1.0],
           "mid": [-1.0, -1.0]}


def test_semantic_best_route_threshold_and_default() -> None:
    calls: list[list[str]] = []

    async def embed(model: str, texts: list[str], dims: int | None,
                    regions: frozenset[str] | None = None) -> list[list[float]]:
        calls.append(texts)
        return [VECTORS[t] for t in texts]

    async def run() -> None:
        chooser = SemanticChooser(_semantic(), embed)
        assert (await chooser.choose("qx"))[0] == "x"
        group, score = await chooser.choose("qy")
        assert group == "y" and score is not None and score > 0.9
        assert await chooser.choose("mid") == ("d", None)  # below the threshold
        assert await chooser.choose("") == ("d", None)
        assert calls.count(["x1", "x2", "y1"]) == 1  # the examples embedded once

    asyncio.run(run())


def test_semantic_failures_fall_back_to_the_default() -> None:
    async def broken(model: str, texts: list[str], dims: int | None, regions: object) -> list[list[float]]:
        raise ConnectionError("embedding upstream down")

    async def short(model: str, texts: list[str], dims: int | None, regions: object) -> list[list[float]]:
        return [[1.0, 0.0]]  # one vector for three examples

    async def run() -> None:
        assert await SemanticChooser(_semantic(), broken).choose("qx") == ("d", None)
        assert await SemanticChooser(_semantic(), short).choose("qx") == ("d", None)

    asyncio.run(run())


def test_semantic_malformed_vectors_fall_back_to_the_default() -> None:
    """An embedding answer that is not a list of finite numbers (a base64 string read as a list,
    strings, booleans, an empty vector) sends the request to the default, never to a 500."""
    answers: dict[str, Any] = {"chars": list("abc"), "strings": ["0.1", "0.2"], "bools": [True, False],
                               "empty": [], "huge": [1e308, float("inf")], "dict": {"a": 1.0}}

    async def embed(model: str, texts: list[str], dims: int | None, regions: object) -> list[Any]:
        return [answers.get(t, VECTORS.get(t)) for t in texts]

    async def run() -> None:
        chooser = SemanticChooser(_semantic(), embed)
        for text in answers:
            assert await chooser.choose(text) == ("d", None), text
        assert (await chooser.choose("qx"))[0] == "x"  # the chooser itself still works

    asyncio.run(run())


def test_semantic_examples_embedded_once_for_requests_waiting_together() -> None:
    """While the embedding model hangs, requests waiting together share one call for the
    examples, each gives up within timeout_seconds, and a failed call is not made again before
    retry_seconds have passed."""
    calls: list[list[str]] = []
    hang = True

    async def embed(model: str, texts: list[str], dims: int | None, regions: object) -> list[list[float]]:
        calls.append(texts)
        if hang:
            await asyncio.Event().wait()
        return [VECTORS[t] for t in texts]

    async def run() -> None:
        nonlocal hang
        chooser = SemanticChooser(_semantic(timeout_seconds=0.05), embed)
        results = await asyncio.gather(*(chooser.choose("qx") for _ in range(8)))
        assert results == [("d", None)] * 8
        assert calls == [["x1", "x2", "y1"]]  # one call, not one per request
        assert await chooser.choose("qx") == ("d", None)  # within retry_seconds: no call at all
        assert len(calls) == 1
        hang = False
        chooser.retry_seconds = 0
        assert (await chooser.choose("qx"))[0] == "x"  # tried again once the wait is over
        assert calls[1:] == [["x1", "x2", "y1"], ["qx"]]

    asyncio.run(run())


def test_semantic_fallbacks_are_logged_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(model: str, texts: list[str], dims: int | None, regions: object) -> list[list[float]]:
        raise ConnectionError("embedding upstream down")

    async def run() -> None:
        chooser = SemanticChooser(_semantic(), broken)
        for _ in range(5):
            assert await chooser.choose("qx") == ("d", None)

    with caplog.at_level(logging.WARNING, logger="switchboard.routing"):
        asyncio.run(run())
    warnings = [r.getMessage() for r in caplog.records if "fell back" in r.getMessage()]
    assert len(warnings) == 1 and "embedding upstream down" in warnings[0]


def test_a_semantic_timeout_is_named_in_its_warning(caplog: pytest.LogCaptureFixture) -> None:
    async def hanging(model: str, texts: list[str], dims: int | None, regions: object) -> list[list[float]]:
        await asyncio.Event().wait()
        return []

    async def run() -> None:
        assert await SemanticChooser(_semantic(timeout_seconds=0.01), hanging).choose("qx") == ("d", None)

    with caplog.at_level(logging.WARNING, logger="switchboard.routing"):
        asyncio.run(run())
    (warning,) = [r.getMessage() for r in caplog.records if "fell back" in r.getMessage()]
    assert warning.endswith("fell back to its default: TimeoutError")


def test_cosine_of_unit_vectors() -> None:
    assert cosine(unit([3.0, 4.0]), unit([3.0, 4.0])) == pytest.approx(1.0)
    assert cosine(unit([1.0, 0.0]), unit([0.0, 2.0])) == pytest.approx(0.0)
    assert unit([0.0, 0.0]) == [0.0, 0.0]


def _split(**extra: Any) -> Split:
    return Split.model_validate({"name": "s", "model": "a", "arms": [
        {"to": "x", "percent": 30}, {"to": "y", "percent": 70}], **extra})


def test_split_shares_follow_the_percentages() -> None:
    chooser = SplitChooser(_split(sticky="none"), rng=random.Random(7))
    draws = [chooser.choose(chooser.identity("k", None, {})).label for _ in range(20_000)]
    # 30 % of 20,000 is 6,000 with a standard deviation of about 65: 5 sigma.
    assert abs(draws.count("x") - 6000) < 330
    sticky = SplitChooser(_split())
    labels = [sticky.choose(f"key-{i}").label for i in range(20_000)]
    assert abs(labels.count("x") - 6000) < 330


def test_split_stickiness_and_identities() -> None:
    chooser = SplitChooser(_split())
    assert len({chooser.choose("key-1").label for _ in range(50)}) == 1
    assert chooser.identity("k", "u", {}) == "k"
    assert SplitChooser(_split(sticky="user")).identity("k", "u", {}) == "u"
    by_header = SplitChooser(_split(sticky="header:X-Session"))
    assert by_header.identity("k", "u", {"x-session": "abc"}) == "abc"
    assert by_header.identity("k", "u", {}) is None  # drawn at random then
    # Another split's name draws independently.
    other = SplitChooser(_split(name="t"))
    assert any(chooser.bucket(f"k{i}") != other.bucket(f"k{i}") for i in range(10))


@pytest.mark.parametrize(("split", "needle"), [
    ({"name": "s", "model": "a", "arms": [{"to": "a", "percent": 50}, {"to": "e", "percent": 40}]},
     "not 100"),
    ({"name": "s", "model": "a", "arms": [{"to": "a", "percent": 50}, {"to": "zz", "percent": 50}]},
     "unknown model group 'zz'"),
    ({"name": "s", "model": "a", "arms": [{"deployment": "p/m", "percent": 50},
                                          {"deployment": "nope", "percent": 50}]}, "no deployment 'nope'"),
    ({"name": "s", "model": "a", "arms": [{"to": "a", "deployment": "p/m", "percent": 100}]}, "not both"),
    ({"name": "s", "model": "a", "sticky": "cookie", "arms": [{"to": "a", "percent": 50},
                                                              {"to": "e", "percent": 50}]}, "sticky"),
    ({"name": "s", "model": "a", "arms": [{"to": "a", "percent": 100}]}, "arms"),
])
def test_bad_splits_are_config_errors(split: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate(_config(splits=[split]), "test", env={})
    assert needle in str(info.value)


def test_two_splits_on_one_model_are_refused() -> None:
    split = {"name": "s", "model": "a", "arms": [{"to": "a", "percent": 50}, {"to": "e", "percent": 50}]}
    with pytest.raises(ConfigError) as info:
        validate(_config(splits=[split, {**split, "name": "t"}]), "test", env={})
    assert "has a split already" in str(info.value)


def test_yaml_booleans_in_params_are_booleans_not_integers() -> None:
    text = ("providers: [{name: p, type: openai, api_base: 'http://127.0.0.1:9/v1', api_key: k}]\n"
            "models: [{name: a, provider: p, model: m}]\n"
            "auth: {master_key: sk-test-master-key-0123456789}\n"
            "router:\n"
            "  rules:\n"
            "    - {model: auto, when: {params: {stream: true, n: 2, top_p: 0.5}}, to: a}\n")
    settings = validate(parse_yaml(text), "test", env={})
    params = settings.router.rules[0].when.params
    assert [(type(v), v) for v in params.values()] == [(bool, True), (int, 2), (float, 0.5)]
    r = Rules(settings.router.rules)
    assert choose(r, stream=True, n=2, top_p=0.5) == "a"
    assert choose(r, stream=1, n=2, top_p=0.5) is None  # true is not 1


def test_a_pattern_is_searched_under_a_time_bound(caplog: pytest.LogCaptureFixture) -> None:
    """An operator's pattern runs over the caller's text (up to 100,000 characters) with the
    bounded engine: `.*(urgent|asap).*` over a long line was quadratic in Python's re (about
    100 s for 100,000 characters); one that runs out of time does not match, and says so once."""
    r = rules({"name": "urgent", "when": {"last_user_matches": ".*(urgent|asap).*"}, "to": "big"},
              {"name": "slow", "when": {"last_user_matches": "^(a|a)*$"}, "to": "never"},
              {"to": "small"})
    long_line = "word " * 19_000  # the search reads the first 100,000 characters
    assert choose(r, messages=[{"role": "user", "content": long_line}]) == "small"
    assert choose(r, messages=[{"role": "user", "content": long_line + " asap"}]) == "big"
    with caplog.at_level(logging.WARNING, logger="switchboard.routing"):
        for _ in range(2):
            assert choose(r, messages=[{"role": "user", "content": "a" * 40 + "!"}]) == "small"
    assert choose(r, messages=[{"role": "user", "content": "aaaa"}]) == "never"
    slow = [rec for rec in caplog.records if "'slow'" in rec.getMessage()]
    assert len(slow) == 1 and "ran past" in slow[0].getMessage()


@pytest.mark.parametrize(("pattern", "text", "other"), [
    ("user {id}", "for user {id} please", "for user 7 please"),  # the regex engine: "expected }"
    ("token={secret}", "token={secret}", "token=x"),
    ("ticket{s}", "see ticket{s}", "see tickets"),  # the regex engine: a fuzzy match, any one char
])
def test_a_pattern_python_re_reads_with_literal_braces_keeps_its_meaning(pattern: str, text: str,
                                                                         other: str) -> None:
    # Accepted and matched as before the rules ran on the regex engine: braces that are no
    # repetition count are literal text.
    validate(_config(rules=[{"to": "a", "when": {"last_user_matches": pattern}}]), "test", env={})
    r = rules({"when": {"last_user_matches": pattern}, "to": "t"})
    assert choose(r, messages=[{"role": "user", "content": text}]) == "t"
    assert choose(r, messages=[{"role": "user", "content": other}]) is None


def test_a_splits_arm_to_its_own_group_is_the_name_asked_through_an_alias() -> None:
    """The groups a request may be sent to (what publishing a prompt API checks a key against)
    agree with the split's draw: an arm naming the split's own group keeps a request through an
    alias on the alias, so the alias is listed, not the group; arms at 0 % count when asked."""
    from types import SimpleNamespace

    from switchboard.config.schema import RouterConfig
    from switchboard.pipeline.rules import RulesStage

    chooser = SplitChooser(Split.model_validate({"name": "s", "model": "a", "arms": [
        {"to": "a", "percent": 50}, {"to": "y", "percent": 50}]}), percents={"a": 0, "y": 100})
    table = SimpleNamespace(current=SimpleNamespace(splits={"a": chooser, "a-alias": chooser}))
    stage = RulesStage(RouterConfig(), None, table)  # type: ignore[arg-type]
    assert stage.targets("a") == ["y"]
    assert stage.targets("a", every_arm=True) == ["a", "y"]
    assert stage.targets("a-alias", every_arm=True) == ["a-alias", "y"]


def test_reached_follows_a_split_groups_own_fallbacks() -> None:
    """A request pinning one of a split group's deployments stays on that group (not drawn to an
    arm), so what a prompt API on it may reach includes the group's own fallbacks even when no
    arm names the group."""
    arms = [{"to": "small", "percent": 50}, {"to": "big", "percent": 50}]
    split = SplitChooser(Split.model_validate({"name": "duo-ab", "model": "duo", "arms": arms}))
    table = SimpleNamespace(current=SimpleNamespace(splits={"duo": split}))
    groups = {"duo": SimpleNamespace(name="duo", fallbacks=("spare",), context_window_fallbacks=()),
              "small": SimpleNamespace(name="small", fallbacks=(), context_window_fallbacks=()),
              "big": SimpleNamespace(name="big", fallbacks=(), context_window_fallbacks=()),
              "spare": SimpleNamespace(name="spare", fallbacks=(), context_window_fallbacks=())}
    router = SimpleNamespace(group=groups.get)
    stage = RulesStage(RouterConfig(), embed=None, table=table)  # type: ignore[arg-type]
    found = [group for group, _ in reached("duo", stage, router)]  # type: ignore[arg-type]
    assert found == ["small", "big", "spare"]


@pytest.mark.parametrize("router", [
    {"rules": [{"model": "solo", "to": "big"}]},  # always matches: unpinned, never "solo" itself
    {"semantic": [{"model": "solo", "embedding_model": "e", "default": "big",
                   "routes": [{"to": "big", "examples": ["x"]}]}]},
])
def test_reached_follows_the_groups_own_fallbacks_past_its_rule_or_semantic_router(
        router: dict[str, Any]) -> None:
    """A request pinning a deployment (or a strategy) of the group it names stays on it, whatever
    its rules or semantic router would choose, so the group's own fallbacks are within reach."""
    table = SimpleNamespace(current=SimpleNamespace(splits={}))
    groups = {"solo": SimpleNamespace(name="solo", fallbacks=("spare",), context_window_fallbacks=()),
              "big": SimpleNamespace(name="big", fallbacks=(), context_window_fallbacks=()),
              "spare": SimpleNamespace(name="spare", fallbacks=(), context_window_fallbacks=())}
    stage = RulesStage(RouterConfig.model_validate(router), embed=None, table=table)  # type: ignore[arg-type]
    router = SimpleNamespace(group=groups.get)
    found = [group for group, _ in reached("solo", stage, router)]  # type: ignore[arg-type]
    assert found == ["big", "spare"]
