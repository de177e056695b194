"""Conditional and semantic routing through a running gateway (router.rules, router.semantic)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import ledger
from tests.servers import MASTER_KEY, Gateway, Mock, free_port, start_gateway

ASK = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def gw(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config: dict[str, Any] = {
        "providers": [{"name": "mock", "type": "openai", "api_base": f"{mock_upstream.url}/v1",
                       "api_key": "${UPSTREAM_KEY}"}],
        "models": [
            {"name": "small", "provider": "mock", "model": "gpt-4o-mini"},
            {"name": "big", "provider": "mock", "model": "gpt-4o"},
            {"name": "coder", "provider": "mock", "model": "mock-gpt"},
            {"name": "embedder", "provider": "mock", "model": "text-embedding-3-small"},
            {"name": "pair", "provider": "mock", "model": "gpt-4o-mini", "deployment": "stable"},
            {"name": "pair", "provider": "mock", "model": "gpt-4o", "deployment": "canary"},
            {"name": "duo", "provider": "mock", "model": "mock-gpt", "deployment": "one"},
            {"name": "solo", "provider": "mock", "model": "mock-gpt", "deployment": "solo-one"},
            {"name": "sage", "provider": "mock", "model": "mock-gpt", "deployment": "sage-one"},
        ],
        "router": {
            "rules": [
                {"name": "premium", "model": "auto", "when": {"headers": {"X-Tier": "premium"}}, "to": "big"},
                {"name": "project", "model": "auto", "when": {"metadata": {"project": "atlas"}}, "to": "big"},
                # Anthropic's metadata holds only user_id.
                {"name": "bot", "model": "auto", "when": {"metadata": {"user_id": "bot-7"}}, "to": "coder"},
                {"name": "beta-keys", "model": "auto", "when": {"key_tags": ["beta"]}, "to": "coder"},
                {"name": "json", "model": "auto", "when": {"params": {"temperature": 0}}, "to": "coder"},
                {"name": "long", "model": "small", "when": {"prompt_tokens": {"min": 200}}, "to": "big"},
                {"name": "translate", "model": "auto", "when": {"last_user_matches": "(?i)\\btranslate\\b"},
                 "to": "big"},
                # Names and values beyond ASCII: a header value as clients write it (UTF-8, or
                # latin-1 where it can hold it); a name only UTF-8 can hold, in the route header.
                {"name": "équipe 規則", "model": "auto", "when": {"headers": {"X-Team": "équipe-東京"}},
                 "to": "big"},
                {"name": "café", "model": "auto", "when": {"headers": {"X-Place": "café"}}, "to": "coder"},
                {"name": "fallthrough", "model": "auto", "to": "small"},
                # YAML booleans (the file is written by yaml.safe_dump: `stream: true`).
                {"name": "streamed", "model": "flags", "when": {"params": {"stream": True}}, "to": "big"},
                {"name": "unstored", "model": "flags", "when": {"params": {"store": False}}, "to": "coder"},
                {"name": "plain", "model": "flags", "to": "small"},
                # An operator's pattern that Python's re ran in quadratic time over a long line.
                {"name": "urgent", "model": "triage", "when": {"last_user_matches": ".*(urgent|asap).*"},
                 "to": "big"},
                {"name": "routine", "model": "triage", "to": "small"},
                # A group callers may pin ("solo"), whose long prompts go to "big" (which may not be pinned).
                {"name": "solo-long", "model": "solo", "when": {"prompt_tokens": {"min": 200}}, "to": "big"},
            ],
            "splits": [
                {"name": "ab", "model": "ab-test", "sticky": "key",
                 "arms": [{"to": "small", "percent": 50}, {"to": "big", "percent": 50}]},
                {"name": "canary", "model": "pair", "sticky": "header:x-session",
                 "arms": [{"deployment": "stable", "percent": 80}, {"deployment": "canary", "percent": 20}]},
                {"name": "duo-ab", "model": "duo", "sticky": "none",
                 "arms": [{"to": "duo", "percent": 50}, {"to": "small", "percent": 50}]},
            ],
            # Callers may pin a deployment of "pair", which has a canary split between them, and
            # of "duo", which has a split between it and another group; of "solo", which has a
            # rule to another group, and of "sage", which has a semantic router.
            "groups": {"pair": {"allow_pinning": True}, "duo": {"allow_pinning": True},
                       "solo": {"allow_pinning": True}, "sage": {"allow_pinning": True}},
            "semantic": [{"model": "sage", "embedding_model": "embedder", "threshold": 0.3,
                          "default": "small",
                          "routes": [{"to": "coder", "examples": ["write a python function"]}]}, {
                "model": "smart", "embedding_model": "embedder", "threshold": 0.3, "default": "small",
                "dimensions": 512,
                "routes": [
                    {"to": "coder", "examples": ["write a python function", "fix this python code bug"]},
                    {"to": "big", "examples": ["explain the history of the roman empire in depth"]},
                ],
            }],
        },
        "auth": {"master_key": MASTER_KEY},
        # The request log keeps the bodies of the requests that asked for "triage".
        "request_log": {"bodies": [{"model": "triage"}]},
    }
    g = start_gateway(config, tmp_path_factory.mktemp("rules"))
    yield g
    g.process.stop()


def sdk(gw: Gateway, key: str = MASTER_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30)


def routed(
    gw: Gateway, key: str = MASTER_KEY, headers: dict[str, str] | None = None, **body: Any
) -> tuple[str, str]:
    """(the upstream model that answered, the x-switchboard-route header)."""
    raw = sdk(gw, key).chat.completions.with_raw_response.create(
        **{"model": "auto", "messages": ASK, **body}, extra_headers=headers or {})
    return raw.parse().model, raw.headers.get("x-switchboard-route", "")


def ask_smart(gw: Gateway, text: str) -> tuple[str, str]:
    """A question for the semantic router "smart": (the upstream model that answered, the
    x-switchboard-route header)."""
    raw = sdk(gw).chat.completions.with_raw_response.create(
        model="smart", messages=[{"role": "user", "content": text}])
    return raw.parse().model, raw.headers.get("x-switchboard-route", "")


def key(gw: Gateway, models: list[str], tags: list[str] | None = None) -> str:
    resp = httpx.post(f"{gw.url}/admin/v1/keys", headers={"Authorization": f"Bearer {MASTER_KEY}"},
                      json={"models": models, "tags": tags or []}, timeout=30)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["key"])


def test_header_rule(gw: Gateway) -> None:
    assert routed(gw, headers={"x-tier": "premium"}) == ("gpt-4o", "big (rule premium)")
    assert routed(gw, headers={"x-tier": "basic"}) == ("gpt-4o-mini", "small (rule fallthrough)")


def test_header_rules_beyond_ascii(gw: Gateway) -> None:
    def route(name: bytes, value: bytes) -> httpx.Response:
        resp = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "auto", "messages": ASK},
                          headers=[(b"authorization", f"Bearer {MASTER_KEY}".encode()), (name, value)],
                          timeout=30)
        assert resp.status_code == 200, resp.text
        return resp

    # The value in UTF-8 matches; the rule's name goes in the header as its UTF-8 bytes (latin-1,
    # the header's own encoding, cannot hold it).
    team = route(b"x-team", "équipe-東京".encode())
    assert team.json()["model"] == "gpt-4o"
    assert dict(team.headers.raw)[b"x-switchboard-route"] == "big (rule équipe 規則)".encode()
    # A value latin-1 holds matches in either encoding; the name goes as latin-1, as always.
    for value in ("café".encode(), "café".encode("latin-1")):
        place = route(b"x-place", value)
        assert place.json()["model"] == "mock-gpt"
        assert dict(place.headers.raw)[b"x-switchboard-route"] == "coder (rule café)".encode("latin-1")
    assert route(b"x-place", b"cafe").headers["x-switchboard-route"] == "small (rule fallthrough)"


def test_metadata_rule(gw: Gateway) -> None:
    assert routed(gw, metadata={"project": "atlas"})[1] == "big (rule project)"
    assert routed(gw, metadata={"project": "other"})[1] == "small (rule fallthrough)"


def test_metadata_rule_on_the_responses_and_messages_apis(gw: Gateway) -> None:
    def responses(metadata: dict[str, str]) -> tuple[str, str]:
        raw = sdk(gw).responses.with_raw_response.create(model="auto", input="hello", metadata=metadata)
        return raw.parse().model, raw.headers.get("x-switchboard-route", "")

    assert responses({"project": "atlas"}) == ("gpt-4o", "big (rule project)")
    assert responses({"project": "other"}) == ("gpt-4o-mini", "small (rule fallthrough)")
    client = anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=30)

    def messages(user: str) -> str:
        raw = client.messages.with_raw_response.create(model="auto", max_tokens=10, messages=ASK,
                                                       metadata={"user_id": user})
        return raw.headers.get("x-switchboard-route", "")

    assert messages("bot-7") == "coder (rule bot)"
    assert messages("someone") == "small (rule fallthrough)"


def test_metadata_rule_on_a_messages_request_naming_a_registry_prompt(gw: Gateway) -> None:
    """The prompt is merged into the body after it is decoded (pipeline/prompt.py): the rules
    still see the caller's metadata.user_id, as they do for a chat request naming a prompt."""
    name = f"routed-{time.monotonic_ns()}"
    saved = httpx.post(f"{gw.url}/admin/v1/prompts", headers={"Authorization": f"Bearer {MASTER_KEY}"},
                       json={"name": name, "model": "auto", "messages": ASK}, timeout=30)
    assert saved.status_code == 201, saved.text
    client = anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=30)

    def messages(user: str, stream: bool = False) -> str:
        raw = client.messages.with_raw_response.create(
            model="", max_tokens=10, messages=[], metadata={"user_id": user}, stream=stream,
            extra_body={"prompt": {"id": name}},
        )
        return raw.headers.get("x-switchboard-route", "")

    assert messages("bot-7") == "coder (rule bot)"
    assert messages("bot-7", stream=True) == "coder (rule bot)"
    assert messages("someone") == "small (rule fallthrough)"
    chat = sdk(gw).chat.completions.with_raw_response.create(
        model="", messages=[], metadata={"user_id": "bot-7"}, extra_body={"prompt": {"id": name}}
    )
    assert chat.headers["x-switchboard-route"] == "coder (rule bot)"


def test_boolean_param_rules_written_in_yaml(gw: Gateway) -> None:
    assert routed(gw, model="flags", store=False)[1] == "coder (rule unstored)"
    assert routed(gw, model="flags", store=True)[1] == "small (rule plain)"
    stream = sdk(gw).chat.completions.with_raw_response.create(model="flags", messages=ASK, stream=True)
    assert stream.headers["x-switchboard-route"] == "big (rule streamed)"
    assert {chunk.model for chunk in stream.parse()} == {"gpt-4o"}
    body = {"model": "flags", "max_tokens": 10, "stream": True, "messages": ASK}
    with httpx.stream("POST", f"{gw.url}/v1/messages", json=body, timeout=30,
                      headers={"x-api-key": MASTER_KEY, "anthropic-version": "2023-06-01"}) as resp:
        assert resp.status_code == 200 and resp.headers["x-switchboard-route"] == "big (rule streamed)"
    responses = sdk(gw).responses.with_raw_response.create(model="flags", input="hello", stream=True)
    assert responses.headers["x-switchboard-route"] == "big (rule streamed)"
    assert [e.type for e in responses.parse()][-1] == "response.completed"


def test_key_tag_rule_and_access_to_the_target(gw: Gateway) -> None:
    beta = key(gw, ["auto", "coder"], tags=["beta", "x"])
    assert routed(gw, beta) == ("mock-gpt", "coder (rule beta-keys)")
    # A rule never reaches a group the key may not use.
    blocked = key(gw, ["auto"], tags=["beta"])
    with pytest.raises(openai.PermissionDeniedError) as info:
        routed(gw, blocked)
    assert info.value.code == "model_not_allowed"
    assert "coder" in info.value.message


def test_param_rule_matches_types_exactly(gw: Gateway) -> None:
    assert routed(gw, temperature=0)[1] == "coder (rule json)"
    assert routed(gw, temperature=0.5)[1] == "small (rule fallthrough)"


def test_prompt_length_rule_on_a_real_group(gw: Gateway) -> None:
    long = [{"role": "user", "content": "word " * 400}]
    reply = sdk(gw).chat.completions.with_raw_response.create(model="small", messages=long)
    assert (reply.parse().model, reply.headers["x-switchboard-route"]) == ("gpt-4o", "big (rule long)")
    short = sdk(gw).chat.completions.with_raw_response.create(model="small", messages=ASK)
    assert short.parse().model == "gpt-4o-mini" and "x-switchboard-route" not in short.headers


def test_last_user_message_pattern(gw: Gateway) -> None:
    messages = [{"role": "user", "content": "Please translate this"}, {"role": "assistant", "content": "ok"},
                {"role": "user", "content": [{"type": "text", "text": "Now TRANSLATE: bonjour"}]}]
    assert routed(gw, messages=messages)[1] == "big (rule translate)"
    messages[-1] = {"role": "user", "content": "no pattern here"}
    assert routed(gw, messages=messages)[1] == "small (rule fallthrough)"


def test_a_pattern_over_a_long_line_is_searched_with_the_bounded_engine(gw: Gateway) -> None:
    """`.*(urgent|asap).*` over a 95,000-character line without either word: about 90 s of a
    frozen gateway with Python's re (the client gave up first); the bounded engine answers at once."""
    line = "word " * 19_000
    for text, route in ((line, "small (rule routine)"), (line + "asap", "big (rule urgent)")):
        assert routed(gw, model="triage", messages=[{"role": "user", "content": text}])[1] == route


def test_semantic_routing_picks_the_most_similar_route(gw: Gateway) -> None:
    def ask(text: str) -> tuple[str, str]:
        return ask_smart(gw, text)

    model, why = ask("write a python function that adds numbers")
    assert model == "mock-gpt" and why.startswith("coder (semantic ")
    model, why = ask("explain the roman empire history")
    assert model == "gpt-4o" and why.startswith("big (semantic ")
    # Nothing similar enough: the default.
    assert ask("zebra quantum marmalade") == ("gpt-4o-mini", "small (default)")


class _Embeddings(BaseHTTPRequestHandler):
    """An embedding upstream answering every text with one vector, but the text ``MALFORMED``
    with a string where the numbers belong (as a base64 answer to a caller that did not ask for
    one would be)."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        data = [{"object": "embedding", "index": i,
                 "embedding": "AACAPwAAAAA=" if text == MALFORMED else [1.0, 0.0]}
                for i, text in enumerate(body["input"])]
        out = json.dumps({"object": "list", "data": data, "model": body["model"],
                          "usage": {"prompt_tokens": 1, "total_tokens": 1}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: Any) -> None:
        pass


MALFORMED = "malformed, please"


def test_a_malformed_embedding_answer_sends_the_request_to_the_default(
        mock_upstream: Mock, tmp_path: Any) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Embeddings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config: dict[str, Any] = {
        "providers": [{"name": "mock", "type": "openai", "api_base": f"{mock_upstream.url}/v1",
                       "api_key": "${UPSTREAM_KEY}"},
                      {"name": "vectors", "type": "openai", "api_base": f"http://127.0.0.1:{server.server_port}/v1",
                       "api_key": "unused"}],
        "models": [{"name": "small", "provider": "mock", "model": "gpt-4o-mini"},
                   {"name": "big", "provider": "mock", "model": "gpt-4o"},
                   {"name": "embedder", "provider": "vectors", "model": "text-embedding-3-small"}],
        "router": {"semantic": [{"model": "smart", "embedding_model": "embedder", "threshold": 0.5,
                                 "default": "small", "routes": [{"to": "big", "examples": ["anything"]}]}]},
        "auth": {"master_key": MASTER_KEY},
    }
    g = start_gateway(config, tmp_path)
    try:
        def ask(text: str) -> tuple[str, str]:
            return ask_smart(g, text)

        assert ask(MALFORMED) == ("gpt-4o-mini", "small (default)")  # was a 500
        assert ask("well formed") == ("gpt-4o", "big (semantic 1.000)")  # and the gateway serves on
    finally:
        g.process.stop()
        server.shutdown()
        server.server_close()


def test_streams_are_routed_too(gw: Gateway) -> None:
    stream = sdk(gw).chat.completions.create(model="auto", messages=ASK, stream=True,
                                             extra_headers={"x-tier": "premium"})
    models = {chunk.model for chunk in stream}
    assert models == {"gpt-4o"}


def test_unknown_virtual_name_without_a_match_is_a_404(gw: Gateway) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        sdk(gw).chat.completions.create(model="nothing-routes-this", messages=ASK)
    assert info.value.code == "model_not_found"


def ledger_tags(gw: Gateway, ids: set[str]) -> dict[str, tuple[str, ...]]:
    """Each request's usage-record tags, once every id is recorded."""
    found = ledger.wait_for(ledger.database_of({}, gw.config_path.parent), ids)
    return {i: tuple(found[i].tags or ()) for i in ids}


def test_a_split_between_groups_is_sticky_per_key_and_tagged(gw: Gateway) -> None:
    arms: dict[str, set[str]] = {}
    ids: dict[str, str] = {}
    for _ in range(24):
        k = key(gw, ["ab-test", "small", "big"])
        for _ in range(2):
            raw = sdk(gw, k).chat.completions.with_raw_response.create(model="ab-test", messages=ASK)
            arms.setdefault(k, set()).add(raw.headers["x-switchboard-split"])
            ids[raw.headers["x-request-id"]] = raw.headers["x-switchboard-split"]
    assert all(len(seen) == 1 for seen in arms.values())  # sticky
    assert {next(iter(seen)) for seen in arms.values()} == {"ab=small", "ab=big"}  # both arms drawn
    tags = ledger_tags(gw, set(ids))
    assert tags == {i: (f"split:{arm}",) for i, arm in ids.items()}


def test_a_canary_between_deployments_is_sticky_per_session_header(gw: Gateway) -> None:
    seen: dict[str, set[str]] = {}
    for n in range(60):
        session = f"s-{n % 30}"
        raw = sdk(gw).chat.completions.with_raw_response.create(
            model="pair", messages=ASK, extra_headers={"x-session": session})
        assert raw.headers["x-switchboard-split"] in ("canary=stable", "canary=canary")
        model = raw.parse().model
        assert (model == "gpt-4o") == (raw.headers["x-switchboard-split"] == "canary=canary")
        seen.setdefault(session, set()).add(model)
    assert all(len(models) == 1 for models in seen.values())
    chosen = [next(iter(m)) for m in seen.values()]
    assert 0 < chosen.count("gpt-4o") < 30  # 20 % of 30 sessions: both arms, not all on one


def assert_served_undrawn(gw: Gateway, model: str, pin: dict[str, str], upstream: str,
                          deployment: str) -> None:
    """20 pinned requests for ``model`` (each its own session), each answered by ``deployment``
    (``upstream``'s model), neither headed nor tagged with a split's arm."""
    ids: set[str] = set()
    for n in range(20):
        raw = sdk(gw).chat.completions.with_raw_response.create(
            model=model, messages=ASK, extra_headers={"x-session": f"pinned-{n}", **pin})
        assert raw.parse().model == upstream
        assert raw.headers["x-switchboard-deployment"] == deployment
        assert raw.headers.get("x-switchboard-split") is None, raw.headers.get("x-switchboard-split")
        ids.add(raw.headers["x-request-id"])
    assert ledger_tags(gw, ids) == {i: () for i in ids}


def test_a_request_pinning_a_deployment_is_not_drawn_into_a_canary_between_deployments(gw: Gateway) -> None:
    """The pin decides which deployment serves: the split's arm is neither claimed in the header
    nor in the usage record's tags (it used to say "canary=canary" for an answer from "stable",
    counting stable's usage and latency as the canary's)."""
    assert_served_undrawn(gw, "pair", {"x-switchboard-deployment": "stable"}, "gpt-4o-mini", "stable")


def test_a_request_pinning_a_deployment_is_not_drawn_into_a_split_between_groups(gw: Gateway) -> None:
    """The pin names a deployment of the group asked for: a split of that group sending a share
    of its requests to another group does not take it there (where the pin was refused, 403
    pinning_not_allowed or 400 deployment_not_found, for the requests drawn to the other arm)."""
    assert_served_undrawn(gw, "duo", {"x-switchboard-deployment": "one"}, "mock-gpt", "one")


def test_a_request_pinning_a_strategy_is_not_drawn_into_a_split_to_another_group(gw: Gateway) -> None:
    """Drawn to "small", which does not allow pinning, the strategy pin of a request for "duo"
    (which does) was refused: 403 pinning_not_allowed for about half the requests."""
    assert_served_undrawn(gw, "duo", {"x-switchboard-strategy": "latency"}, "mock-gpt", "one")


def test_a_request_pinning_a_strategy_still_takes_part_in_a_canary_between_deployments(gw: Gateway) -> None:
    raw = sdk(gw).chat.completions.with_raw_response.create(
        model="pair", messages=ASK, extra_headers={"x-session": "s-1", "x-switchboard-strategy": "latency"})
    arm = raw.headers["x-switchboard-split"]
    assert raw.headers["x-switchboard-deployment"] == arm.removeprefix("canary="), arm


LONG = [{"role": "user", "content": "word " * 400}]


@pytest.mark.parametrize(("model", "messages", "away"), [
    ("solo", LONG, "big (rule solo-long)"),
    ("sage", [{"role": "user", "content": "write a python function that adds"}], "coder (semantic "),
    ("sage", [{"role": "user", "content": "zebra quantum marmalade"}], "small (default)"),
])
@pytest.mark.parametrize("pin", [{"x-switchboard-deployment": "{model}-one"},
                                 {"x-switchboard-strategy": "latency"}])
def test_a_request_pinning_its_group_is_not_routed_away_by_a_rule_or_a_semantic_router(
        gw: Gateway, model: str, messages: list[dict[str, str]], away: str, pin: dict[str, str]) -> None:
    """A pin applies to the group named: a rule or semantic router of that group sent the pinned
    request to another group, where the pin was judged and refused (403 pinning_not_allowed naming
    "big", "coder" or "small", though the caller pinned "solo"'s or "sage"'s own deployment)."""
    unpinned = sdk(gw).chat.completions.with_raw_response.create(model=model, messages=messages)
    assert unpinned.headers["x-switchboard-route"].startswith(away)  # unpinned, routed away
    headers = {name: value.format(model=model) for name, value in pin.items()}
    raw = sdk(gw).chat.completions.with_raw_response.create(model=model, messages=messages,
                                                            extra_headers=headers)
    served = (raw.headers["x-switchboard-model"], raw.headers["x-switchboard-deployment"])
    assert served == (model, f"{model}-one")
    assert "x-switchboard-route" not in raw.headers


def test_a_pin_stays_judged_against_the_group_named_when_its_rule_would_route_away(gw: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(gw).chat.completions.create(model="solo", messages=LONG,
                                        extra_headers={"x-switchboard-deployment": "nope"})
    assert refused.value.code == "deployment_not_found"
    assert "'solo' has no deployment 'nope'" in refused.value.message


def test_an_empty_sticky_header_draws_at_random(gw: Gateway) -> None:
    """An empty session header is no session: such requests are spread over the arms by their
    shares, not all put on the one arm the empty string hashes to."""
    arms: set[str] = set()
    for _ in range(120):  # 80/20: both arms within 120 draws (one arm only: p ≈ 2e-12)
        arms.add(sdk(gw).chat.completions.with_raw_response.create(
            model="pair", messages=ASK, extra_headers={"x-session": ""}).headers["x-switchboard-split"])
        if len(arms) == 2:
            break
    assert arms == {"canary=stable", "canary=canary"}


def test_metrics_count_a_rerouted_request_under_the_name_it_asked_for(gw: Gateway) -> None:
    """A rule's, a split's and a semantic router's name is the requested model of the metrics,
    whichever group served the request."""
    def counted() -> dict[str, float]:
        resp = httpx.get(f"{gw.url}/metrics", headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10)
        assert resp.status_code == 200, resp.text
        found = {"auto": 0.0, "ab-test": 0.0, "smart": 0.0}
        for family in text_string_to_metric_families(resp.text):
            for sample in family.samples:
                if sample.name == "switchboard_requests_total" and sample.labels["model"] in found:
                    found[sample.labels["model"]] += sample.value
        return found

    before = counted()
    for model in ("auto", "ab-test", "smart"):
        raw = sdk(gw).chat.completions.with_raw_response.create(model=model, messages=ASK)
        assert raw.headers["x-switchboard-model"] != model  # served by another group
    deadline = time.monotonic() + 10
    while (now := counted()) != {name: n + 1 for name, n in before.items()}:  # counted after the answers
        assert time.monotonic() < deadline, f"{before} then {now}"
        time.sleep(0.05)


def test_a_body_policy_selects_a_rerouted_request_by_the_name_it_asked_for(gw: Gateway) -> None:
    raw = sdk(gw).chat.completions.with_raw_response.create(model="triage", messages=ASK)
    assert raw.headers["x-switchboard-model"] == "small"  # rule routine
    request_id = raw.headers["x-request-id"]
    deadline = time.monotonic() + 15
    while True:  # the record, then its bodies, are written behind the response
        resp = httpx.get(f"{gw.url}/admin/v1/logs", params={"request_id": request_id},
                         headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10)
        assert resp.status_code == 200, resp.text
        data = resp.json()["data"]
        if data and data[0].get("request") is not None:
            break
        assert time.monotonic() < deadline, f"no body stored for {request_id}: {data}"
        time.sleep(0.1)
    assert data[0]["model"] == "small" and '"triage"' in data[0]["request"]


def test_a_rerouted_requests_failure_line_names_the_model_it_asked_for(gw: Gateway) -> None:
    raw = sdk(gw).chat.completions.with_raw_response
    with pytest.raises(openai.InternalServerError) as failed:
        raw.create(model="triage", messages=[{"role": "user", "content": "mock:status=500"}])
    request_id = failed.value.response.headers["x-request-id"]
    line = gw.process.wait_for_all(request_id, "request failed", timeout=15)
    assert " model=triage " in line and " upstream_model=gpt-4o-mini " in line, line


def test_a_large_prompt_counts_the_same_tokens_whether_a_rule_rerouted_it_or_not(gw: Gateway) -> None:
    """A rule reading the prompt's tokens is configured, but the rule that reroutes this request
    reads none: a large prompt (counted in a worker thread) takes as many tokens of the key's tpm
    as the same prompt sent to the group directly, as a small one does."""
    def taken(model: str, text: str) -> int:
        resp = httpx.post(f"{gw.url}/admin/v1/keys", headers={"Authorization": f"Bearer {MASTER_KEY}"},
                          json={"models": ["*"], "tpm_limit": 10_000_000}, timeout=30)
        assert resp.status_code == 201, resp.text
        raw = sdk(gw, resp.json()["key"]).chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": text}], max_tokens=10,
            extra_headers={"x-tier": "premium"})
        assert raw.parse().model == "gpt-4o"
        return 10_000_000 - int(raw.headers["x-ratelimit-remaining-tokens"])

    small = "word " * 100
    assert taken("auto", small) == taken("big", small)
    large = "word " * 40_000  # past the size counted off the event loop
    assert taken("auto", large) == taken("big", large)


def test_semantic_routing_with_more_examples_than_one_openai_call_takes(
        mock_upstream: Mock, tmp_path: Any) -> None:
    """OpenAI embeds at most 2,048 inputs a call (the mock answers 400 above, as OpenAI does):
    2,200 route examples (11 routes of 200, the most a route holds) are embedded in two calls,
    where one call was refused and every request went to the default."""
    coder = ["write a python function", *(f"fix python bug number {n}" for n in range(199))]
    others = [{"to": "small", "examples": [f"gardening topic {r} note {n}" for n in range(200)]}
              for r in range(10)]
    config: dict[str, Any] = {
        "providers": [{"name": "mock", "type": "openai", "api_base": f"{mock_upstream.url}/v1",
                       "api_key": "${UPSTREAM_KEY}"}],
        "models": [{"name": "small", "provider": "mock", "model": "gpt-4o-mini"},
                   {"name": "coder", "provider": "mock", "model": "mock-gpt"},
                   {"name": "embedder", "provider": "mock", "model": "text-embedding-3-small"}],
        "router": {"semantic": [{"model": "smart", "embedding_model": "embedder", "threshold": 0.3,
                                 "default": "small", "timeout_seconds": 30,
                                 "routes": [{"to": "coder", "examples": coder}, *others]}]},
        "auth": {"master_key": MASTER_KEY},
    }
    g = start_gateway(config, tmp_path)
    try:
        model, why = ask_smart(g, "write a python function that adds numbers")
        assert model == "mock-gpt" and why.startswith("coder (semantic "), why  # was "small (default)"
    finally:
        g.process.stop()


@pytest.mark.parametrize("embedder", ["titan", "gemini"])
def test_semantic_routing_with_an_embedding_model_taking_few_inputs_per_call(
        embedder: str, mock_upstream: Mock, tmp_path: Any) -> None:
    """Titan embeds one text per call, Gemini at most 100: the route examples (here 101) are
    embedded all the same, a call per batch the model takes, instead of every request going to
    the default because the examples were refused as one call."""
    coder = ["write a python function", *(f"fix python bug number {n}" for n in range(60))]
    essays = ["explain the history of the roman empire in depth",
              *(f"roman history essay {n}" for n in range(39))]
    embedding_model = {"titan": {"provider": "aws", "model": "amazon.titan-embed-text-v2:0"},
                       "gemini": {"provider": "studio", "model": "text-embedding-004"}}[embedder]
    config: dict[str, Any] = {
        "providers": [
            {"name": "mock", "type": "openai", "api_base": f"{mock_upstream.url}/v1",
             "api_key": "${UPSTREAM_KEY}"},
            {"name": "studio", "type": "gemini", "api_base": mock_upstream.url, "api_key": "${UPSTREAM_KEY}"},
            {"name": "aws", "type": "bedrock", "api_base": mock_upstream.url, "aws_access_key_id": "AKIDTEST",
             "aws_secret_access_key": "${UPSTREAM_KEY}", "aws_region": "us-east-1"},
        ],
        "models": [{"name": "small", "provider": "mock", "model": "gpt-4o-mini"},
                   {"name": "big", "provider": "mock", "model": "gpt-4o"},
                   {"name": "coder", "provider": "mock", "model": "mock-gpt"},
                   {"name": "embedder", **embedding_model}],
        "router": {"semantic": [{"model": "smart", "embedding_model": "embedder", "threshold": 0.3,
                                 "default": "small", "timeout_seconds": 30,
                                 "routes": [{"to": "coder", "examples": coder},
                                            {"to": "big", "examples": essays}]}]},
        "auth": {"master_key": MASTER_KEY},
    }
    g = start_gateway(config, tmp_path)
    try:
        def ask(text: str) -> tuple[str, str]:
            return ask_smart(g, text)

        model, why = ask("write a python function that adds numbers")
        assert model == "mock-gpt" and why.startswith("coder (semantic "), why  # was "small (default)"
        model, why = ask("explain the roman empire history")
        assert model == "gpt-4o" and why.startswith("big (semantic "), why
    finally:
        g.process.stop()
