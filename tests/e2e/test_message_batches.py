"""Anthropic's Message Batches (/v1/messages/batches) end to end with the anthropic SDK, on the
embedded database and on a cluster (PostgreSQL and Redis): the gateway in front of the mock's
Anthropic batches, every batch owned by the key that created it (another key gets 404), models
checked as a chat request's are, bad input refused in Anthropic's error shape, the upstream's
results URL never shown, an ended batch's cost in the usage ledger once, at half price and at the
prices of the model each request was sent for, the caller's anthropic-version and anthropic-beta
forwarded; and Anthropic's Files API (which the gateway does not offer) refused in Anthropic's shape."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from switchboard.stores.factory import open_at
from switchboard.stores.protocols import MESSAGE_BATCH_MODELS
from tests.ledger import database_of, wait_for
from tests.servers import (
    MASTER_KEY,
    UPSTREAM_KEY,
    Gateway,
    Mock,
    captured,
    new_marker,
    openai_config,
    start_gateway,
)

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
MAX_BODY = 8 * 1024 * 1024
PRICES = {"input_cost_per_mtok": 3.0, "output_cost_per_mtok": 15.0}
LATEST_PRICES = {"input_cost_per_mtok": 7.0, "output_cost_per_mtok": 11.0}
# Another entry for claude's upstream id (claude-sonnet-4-5), at its own prices.
DEAR_PRICES = {"input_cost_per_mtok": 30.0, "output_cost_per_mtok": 150.0}
# A long-context surcharge past a prompt of a few words: a batch of short requests sums past it.
LONG_THRESHOLD = 12
LONG_PRICES = {**PRICES, "long_context_threshold_tokens": LONG_THRESHOLD,
               "long_context_input_cost_per_mtok": 6.0, "long_context_output_cost_per_mtok": 22.5}
FILES_BETA = "files-api-2025-04-14"


@dataclass
class World:
    gateway: Gateway
    mock: Mock
    database: str
    tenant: str

    def key(self, models: list[str]) -> dict[str, Any]:
        resp = httpx.post(f"{self.gateway.url}/admin/v1/keys", json={"models": models, "tenant": self.tenant},
                          headers=ADMIN, timeout=30)
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    def sdk(self, key: str) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.gateway.url, api_key=key, max_retries=0, timeout=30)

    def requests_of(self, key_id: str) -> int:
        resp = httpx.get(f"{self.gateway.url}/admin/v1/usage", headers=ADMIN, timeout=30,
                         params={"key": key_id, "group_by": "key"})
        assert resp.status_code == 200, resp.text
        return sum(int(r["requests"]) for r in resp.json()["data"])


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def world(request: pytest.FixtureRequest, mock_upstream: Mock,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    config = openai_config(mock_upstream)
    config["providers"].append({"name": "anth", "type": "anthropic", "api_base": mock_upstream.url,
                                "api_key": "${UPSTREAM_KEY}"})
    # Its account is the callers' own: they may name its files and containers.
    config["providers"].append({"name": "anth-own", "type": "anthropic", "api_base": mock_upstream.url,
                                "api_key": "${UPSTREAM_KEY}", "allow_account_objects": True})
    config["models"] += [
        {"name": "claude", "provider": "anth", "model": "claude-sonnet-4-5", "info": dict(PRICES)},
        {"name": "claude-small", "provider": "anth", "model": "claude-haiku-4-5"},
        {"name": "claude-gated", "provider": "anth", "model": "claude-opus-4-1", "require_approval": True},
        {"name": "claude-own", "provider": "anth-own", "model": "claude-sonnet-4-5"},
        # The mock's results report a "-latest" model by a dated id, as Anthropic's do.
        {"name": "claude-latest", "provider": "anth", "model": "claude-3-7-sonnet-latest",
         "info": dict(LATEST_PRICES)},
        {"name": "claude-long", "provider": "anth", "model": "claude-opus-4-5-20251101",
         "info": dict(LONG_PRICES)},
        {"name": "claude-dear", "provider": "anth", "model": "claude-sonnet-4-5", "info": dict(DEAR_PRICES)},
    ]
    config["files"] = {"poll_seconds": 1, "max_message_batch_bytes": MAX_BODY}
    config["metrics"] = {"labels": ["key"]}  # a test's own batches, in the token and cost counters
    if request.param == "cluster":
        postgres, redis = request.getfixturevalue("postgres"), request.getfixturevalue("redis_server")
        config["database"] = {"url": postgres.create_database(f"msgbatch_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
    tmp: Path = tmp_path_factory.mktemp(f"message-batches-{request.param}")
    gw = start_gateway(config, tmp)
    tenant = f"mb-{uuid.uuid4().hex[:6]}"
    made = httpx.post(f"{gw.url}/admin/v1/tenants", json={"id": tenant, "name": tenant}, headers=ADMIN,
                      timeout=30)
    assert made.status_code == 201, made.text
    yield World(gw, mock_upstream, database_of(config, tmp), tenant)
    gw.process.stop()


def sent_models(world: World, batch_id: str) -> dict[str, Any] | None:
    """The gateway's record of the models a batch's requests were sent for, as stored."""
    async def read() -> dict[str, Any] | None:
        stores = await open_at(world.database, None)
        try:
            assert stores.files is not None
            found = await stores.files.get(MESSAGE_BATCH_MODELS, batch_id)
            return None if found is None else dict(found.body)
        finally:
            await stores.close()

    return asyncio.run(read())


def request(custom_id: str, text: str = "hello there", model: str = "claude") -> dict[str, Any]:
    return {"custom_id": custom_id,
            "params": {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": text}]}}


def ended(client: anthropic.Anthropic, batch_id: str) -> Any:
    """The batch once it has ended: the mock ends a batch on its second GET (the gateway's
    poller may make one of them), so a few looks are enough."""
    for _ in range(5):
        batch = client.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
    raise AssertionError(f"batch {batch_id} did not end: {batch.processing_status}")


def test_a_batch_is_created_read_listed_answered_and_deleted(world: World) -> None:
    client = world.sdk(world.key(["*"])["key"])
    batch = client.messages.batches.create(requests=[request("first"), request("second", "hi")])
    assert batch.id.startswith("msgbatch_") and batch.type == "message_batch"
    assert batch.processing_status == "in_progress" and batch.request_counts.processing == 2
    assert batch.results_url is None
    done = ended(client, batch.id)
    assert done.request_counts.succeeded == 2 and done.ended_at is not None
    # The results are the gateway's: the upstream's URL (the mock's host) is never shown.
    assert done.results_url == f"/v1/messages/batches/{batch.id}/results"
    assert world.mock.url not in orjson.dumps(done.model_dump(mode="json")).decode()
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert set(results) == {"first", "second"}
    for result in results.values():
        assert result.type == "succeeded"
        assert result.message.model == "claude-sonnet-4-5"  # the served model's upstream id ran
    assert "You said: hi" in str(results["second"].message.content[0])
    assert [b.id for b in client.messages.batches.list()] == [batch.id]
    deleted = client.messages.batches.delete(batch.id)
    assert deleted.id == batch.id and deleted.type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)
    assert list(client.messages.batches.list()) == []


def test_the_list_is_the_callers_own_newest_first_in_pages(world: World) -> None:
    client = world.sdk(world.key(["claude"])["key"])
    ids = [client.messages.batches.create(requests=[request(f"r{i}")]).id for i in range(3)]
    newest_first = ids[::-1]
    assert [b.id for b in client.messages.batches.list()] == newest_first
    # Pages of one: the SDK follows last_id with after_id.
    assert [b.id for b in client.messages.batches.list(limit=1)] == newest_first
    first = client.messages.batches.list(limit=2)
    assert [b.id for b in first.data] == newest_first[:2] and first.has_more is True
    assert first.first_id == newest_first[0] and first.last_id == newest_first[1]
    # before_id: the page of newer batches right before it.
    before = client.messages.batches.list(before_id=ids[0], limit=1)
    assert [b.id for b in before.data] == [ids[1]] and before.has_more is True
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.list(limit=1001)
    # '²' is a digit to str.isdigit, not to int() (it was a 500); U+0665 is an Arabic-Indic 5;
    # int() refuses more than 4300 digits (it was a 500 too).
    for limit in ("\u00b2", "\u0665", "1e1", " 5", "9" * 4400):
        resp = httpx.get(f"{world.gateway.url}/v1/messages/batches", params={"limit": limit}, timeout=30,
                         headers={"x-api-key": client.api_key, "anthropic-version": "2023-06-01"})
        assert resp.status_code == 400, (limit, resp.text)
        assert resp.json()["error"]["type"] == "invalid_request_error", resp.text


def test_a_cursor_that_is_not_in_the_list_is_a_400_not_an_empty_last_page(world: World) -> None:
    client = world.sdk(world.key(["claude"])["key"])
    kept, gone = (client.messages.batches.create(requests=[request(f"r{i}")]).id for i in range(2))
    ended(client, gone)
    client.messages.batches.delete(gone)  # the last id of a page, deleted while walking the list
    stranger = world.sdk(world.key(["claude"])["key"]).messages.batches.create(requests=[request("x")]).id
    for cursor in (stranger, "msgbatch_never_made"):  # one answer: nothing about existence
        for name in ("after_id", "before_id"):
            with pytest.raises(anthropic.BadRequestError) as refused:
                client.messages.batches.list(**{name: cursor})  # type: ignore[arg-type]
            error = refused.value.body["error"]  # type: ignore[index]
            assert error["type"] == "invalid_request_error" and error["message"].startswith(name), error
    # A cursor of the list still pages on, and so does the caller's own deleted one.
    assert [b.id for b in client.messages.batches.list(before_id=kept)] == []
    assert list(client.messages.batches.list(after_id=kept)) == []
    assert [b.id for b in client.messages.batches.list(before_id=gone)] == []
    assert [b.id for b in client.messages.batches.list(after_id=gone)] == [kept]
    assert [b.id for b in client.messages.batches.list()] == [kept]


@pytest.mark.parametrize("query", ["limit=1&limit=50", "after_id=msgbatch_a&after_id=msgbatch_b",
                                   "before_id=msgbatch_a&before_id=msgbatch_b"])
def test_a_known_query_parameter_given_twice_is_refused_in_anthropics_shape(world: World, query: str) -> None:
    """Not the first value taken silently; an unknown one given twice is still ignored."""
    headers = {"x-api-key": world.key(["claude"])["key"], "anthropic-version": "2023-06-01"}
    url = f"{world.gateway.url}/v1/messages/batches"
    resp = httpx.get(f"{url}?{query}", headers=headers, timeout=30)
    assert resp.status_code == 400, resp.text
    name = query.split("=", 1)[0]
    body = resp.json()
    assert body["type"] == "error" and body["error"] == {
        "type": "invalid_request_error", "message": f"the query parameter '{name}' is given more than once"}
    listed = httpx.get(f"{url}?limit=5&extra=1&extra=2", headers=headers, timeout=30)
    assert listed.status_code == 200 and listed.json()["data"] == [], listed.text


def test_deleting_every_batch_while_walking_the_list_deletes_them_all(world: World) -> None:
    """The SDK's walk asks for each next page after the last id of the page it has just
    deleted: that id still pages its owner's list on, and is nothing to anyone else."""
    client, other = world.sdk(world.key(["claude"])["key"]), world.sdk(world.key(["claude"])["key"])
    made = [client.messages.batches.create(requests=[request(f"r{i}")]).id for i in range(7)]
    for batch_id in made:  # only an ended batch may be deleted
        ended(client, batch_id)
    deleted = [client.messages.batches.delete(b.id).id for b in client.messages.batches.list(limit=2)]
    assert sorted(deleted) == sorted(made)
    assert list(client.messages.batches.list()) == []
    for batch_id in (made[0], made[-1]):
        with pytest.raises(anthropic.NotFoundError):
            client.messages.batches.retrieve(batch_id)
        for name in ("after_id", "before_id"):  # another key's: as an id never made
            with pytest.raises(anthropic.BadRequestError) as refused:
                other.messages.batches.list(**{name: batch_id})  # type: ignore[arg-type]
            error = refused.value.body["error"]  # type: ignore[index]
            assert error["type"] == "invalid_request_error" and error["message"].startswith(name), error


def test_another_key_cannot_see_cancel_delete_or_read_a_batch(world: World) -> None:
    owner = world.sdk(world.key(["*"])["key"])
    batch = owner.messages.batches.create(requests=[request("only")])
    other = world.sdk(world.key(["*"])["key"])
    for call in (lambda: other.messages.batches.retrieve(batch.id),
                 lambda: other.messages.batches.cancel(batch.id),
                 lambda: other.messages.batches.delete(batch.id)):
        with pytest.raises(anthropic.NotFoundError) as missing:
            call()
        assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    resp = httpx.get(f"{world.gateway.url}/v1/messages/batches/{batch.id}/results", timeout=30,
                     headers={"x-api-key": other.api_key, "anthropic-version": "2023-06-01"})
    assert resp.status_code == 404 and resp.json()["type"] == "error", resp.text
    assert list(other.messages.batches.list()) == []
    # Still the owner's, untouched.
    assert owner.messages.batches.retrieve(batch.id).cancel_initiated_at is None


def cancelled_while_in_progress(client: anthropic.Anthropic) -> tuple[Any, Any]:
    """A new batch and the answer to its cancel, sent while it was in progress. The gateway's
    poller (every second here) looks at open batches, and the mock ends a batch on its second
    look: when a loaded machine let two looks come between the create and the cancel, the batch
    had ended (succeeded) before the cancel reached it. Then again, with a new batch."""
    for _ in range(3):
        batch = client.messages.batches.create(requests=[request("a"), request("b")])
        cancelled = client.messages.batches.cancel(batch.id)
        if cancelled.cancel_initiated_at is not None or cancelled.processing_status != "ended":
            return batch, cancelled
    raise AssertionError("every batch had ended before its cancel reached it")


def test_a_cancelled_batch_ends_with_its_requests_canceled(world: World) -> None:
    client = world.sdk(world.key(["*"])["key"])
    batch, cancelled = cancelled_while_in_progress(client)
    assert cancelled.id == batch.id and cancelled.cancel_initiated_at is not None
    assert cancelled.processing_status in ("canceling", "ended")
    done = ended(client, batch.id)
    assert done.request_counts.canceled == 2 and done.request_counts.succeeded == 0
    assert {r.result.type for r in client.messages.batches.results(batch.id)} == {"canceled"}


def test_a_workspace_header_is_refused_by_name(world: World) -> None:
    """A client-level workspace (the SDK's credentials profile) picks a workspace of the account
    the gateway's key opens, shared by every caller: refused, as on /v1/messages."""
    client = world.sdk(world.key(["*"])["key"])
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.batches.create(requests=[request("a")],
                                       extra_headers={"anthropic-workspace-id": "wrkspc_01abc"})
    error = refused.value.body
    assert isinstance(error, dict) and error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"].startswith("anthropic-workspace-id: header not supported")


def test_models_are_checked_as_for_a_chat_request(world: World) -> None:
    narrow = world.sdk(world.key(["claude", "gpt-4o-mini"])["key"])
    # An OpenAI model: message batches run on Anthropic providers only.
    with pytest.raises(anthropic.BadRequestError) as other_provider:
        narrow.messages.batches.create(requests=[request("a"), request("b", model="gpt-4o-mini")])
    assert "requests.1.params.model" in other_provider.value.message
    assert "no Anthropic deployment" in other_provider.value.message
    # Every request's model must be one the key may use, exist, and be approved where needed.
    with pytest.raises(anthropic.PermissionDeniedError) as not_allowed:
        narrow.messages.batches.create(requests=[request("a"), request("b", model="claude-small")])
    assert "requests.1.params.model" in not_allowed.value.message
    with pytest.raises(anthropic.NotFoundError):
        world.sdk(world.key(["*"])["key"]).messages.batches.create(requests=[request("a", model="nope")])
    with pytest.raises(anthropic.PermissionDeniedError) as gated:
        gated_request = request("a", model="claude-gated")
        world.sdk(world.key(["*"])["key"]).messages.batches.create(requests=[gated_request])
    assert "subscription" in gated.value.message
    # A batch runs on the gateway's credential: no Files API file of the shared account.
    named = request("a")
    named["params"]["messages"][0]["content"] = [
        {"type": "text", "text": "summarise"},
        {"type": "document", "source": {"type": "file", "file_id": "file_011someoneelse"}}]
    with pytest.raises(anthropic.BadRequestError) as shared:
        narrow.messages.batches.create(requests=[named])
    assert "requests.0.params.messages.0.content.1.source" in shared.value.message
    assert list(narrow.messages.batches.list()) == []  # nothing was created
    # ... unless the provider entry opted in (allow_account_objects), as for single requests.
    own = world.sdk(world.key(["claude-own"])["key"])
    named["params"]["model"] = "claude-own"
    in_container = request("b", model="claude-own")
    in_container["params"]["container"] = "container_011"
    assert own.messages.batches.create(requests=[named, in_container]).id.startswith("msgbatch_")


def test_a_files_api_source_inside_a_tool_result_is_refused_naming_it(world: World) -> None:
    client = world.sdk(world.key(["*"])["key"])
    marker = new_marker()
    named = request("in-result")
    named["params"]["messages"] = [
        {"role": "user", "content": "look at the chart"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "chart",
                                           "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [
            {"type": "text", "text": "here"},
            {"type": "image", "source": {"type": "file", "file_id": "file_011someoneelse"}}]}]}]
    with pytest.raises(anthropic.BadRequestError) as shared:
        client.messages.batches.create(requests=[request("fine", f"hi mock:capture={marker}"), named])  # type: ignore[list-item]
    message = shared.value.message
    assert "requests.1.params.messages.2.content.0.content.1.source: a Files API file" in message, message
    assert list(client.messages.batches.list()) == []  # nothing was created
    assert captured(world.mock, marker, timeout=0.2) == []


def test_url_sources_go_upstream_with_their_scheme_in_lower_case(world: World) -> None:
    # As on /v1/messages: schemes are case-insensitive, and go upstream in lower case.
    client = world.sdk(world.key(["*"])["key"])
    marker = new_marker()
    written = request("upper")
    written["params"]["messages"][0]["content"] = [
        {"type": "text", "text": f"compare mock:capture={marker}"},
        {"type": "image", "source": {"type": "url", "url": "HTTPS://images.example/Cat.png"}},
        {"type": "document", "source": {"type": "url", "url": "Http://docs.example/Report.pdf"}}]
    batch = client.messages.batches.create(requests=[request("plain"), written])  # type: ignore[list-item]
    (seen,) = [r for r in captured(world.mock, marker, outcome="completed") if r["method"] == "POST"]
    content = seen["body"]["requests"][1]["params"]["messages"][0]["content"]
    assert [block["source"]["url"] for block in content[1:]] == [
        "https://images.example/Cat.png", "http://docs.example/Report.pdf"]
    client.messages.batches.cancel(batch.id)


BAD_SOURCES = {
    "image not base64": ({"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                      "data": "not base64!"}}, "source.data", "base64"),
    "document unpadded": ({"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                                          "data": "JVBERi0xLjQ"}}, "source.data", "base64"),
    "image ftp url": ({"type": "image", "source": {"type": "url", "url": "ftp://images.example/cat.png"}},
                      "source.url", "http(s) URL"),
}


@pytest.mark.parametrize(("block", "field", "said"), BAD_SOURCES.values(), ids=list(BAD_SOURCES))
def test_a_source_a_single_request_refuses_is_refused_naming_the_request(
    world: World, block: dict[str, Any], field: str, said: str
) -> None:
    client = world.sdk(world.key(["*"])["key"])
    marker = new_marker()
    bad = request("the-bad-one")
    bad["params"]["messages"][0]["content"] = [{"type": "text", "text": "what is this?"}, block]
    with pytest.raises(anthropic.BadRequestError) as exc:
        client.messages.batches.create(requests=[request("fine", f"hi mock:capture={marker}"), bad])  # type: ignore[list-item]
    message = exc.value.message
    assert f"requests.1.params.messages.0.content.1.{field}" in message, message
    assert "custom_id 'the-bad-one'" in message and said in message, message
    assert list(client.messages.batches.list()) == []  # nothing was created
    assert captured(world.mock, marker, timeout=0.2) == []


def _post(world: World, body: bytes, key: str | None = MASTER_KEY) -> httpx.Response:
    headers = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
    if key is not None:
        headers["x-api-key"] = key
    return httpx.post(f"{world.gateway.url}/v1/messages/batches", content=body, headers=headers, timeout=60)


@pytest.mark.parametrize(("body", "status", "said"), [
    (b"{not json", 400, "not valid JSON"),
    (b"[]", 400, "JSON"),
    (b"{}", 400, "requests: Field required"),
    (b'{"requests": []}', 400, "at least 1 item"),
    (b'{"requests": "all"}', 400, "requests: Input should be a valid list"),
    (orjson.dumps({"requests": [request("same"), request("same")]}), 400, "used more than once"),
    (orjson.dumps({"requests": [{"custom_id": "x y", "params": {"model": "claude"}}]}), 400, "custom_id"),
    (orjson.dumps({"requests": [{"custom_id": "x"}]}), 400, "requests.0.params: Field required"),
    (orjson.dumps({"requests": [{"custom_id": "x", "params": {}}]}), 400,
     "requests.0.params.model: Field required"),
    *[(orjson.dumps({"requests": [{"custom_id": "x", "params": {"model": model}}]}), 400,
       "requests.0.params.model: Input should be a non-empty string") for model in (5, "", ["claude"])],
    (orjson.dumps({"requests": [request("a")], "extra": 1}), 400, "extra: Extra inputs"),
    (orjson.dumps({"requests": [{"custom_id": f"r{i}", "params": {"model": "claude"}}
                                for i in range(100_001)]}), 400, "at most 100000 requests"),
    (b'{"requests": [' + b" " * MAX_BODY + b"]}", 413, ""),
], ids=["malformed", "not-object", "no-requests", "empty", "not-list", "duplicate", "bad-custom-id",
        "no-params", "no-model", "model-number", "model-empty", "model-list", "unknown-field", "too-many",
        "too-large"])
def test_bad_input_is_refused_in_anthropics_error_shape(world: World, body: bytes, status: int,
                                                        said: str) -> None:
    resp = _post(world, body)
    assert resp.status_code == status, resp.text
    error = resp.json()
    assert error["type"] == "error" and said in error["error"]["message"]
    assert error["error"]["type"] == ("request_too_large" if status == 413 else "invalid_request_error")
    assert resp.headers["request-id"]


def test_a_key_is_needed_and_the_providers_credential_is_never_shown(world: World) -> None:
    resp = _post(world, orjson.dumps({"requests": [request("a")]}), key=None)
    assert resp.status_code == 401 and resp.json()["error"]["type"] == "authentication_error", resp.text
    # Authorization: Bearer works as x-api-key does.
    key = world.key(["*"])["key"]
    made = httpx.post(f"{world.gateway.url}/v1/messages/batches", json={"requests": [request("a")]},
                      headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert made.status_code == 200, made.text
    seen = httpx.get(f"{world.gateway.url}/v1/messages/batches/{made.json()['id']}", timeout=30,
                     headers={"x-api-key": key})
    for resp in (made, seen):
        assert UPSTREAM_KEY not in resp.text and UPSTREAM_KEY not in str(resp.headers)


def test_an_ended_batch_is_priced_once_at_half_price(world: World) -> None:
    created = world.key(["*"])
    client = world.sdk(created["key"])
    batch = client.messages.batches.create(requests=[request("a", "one two three"), request("b", "four")])
    ended(client, batch.id)
    results = list(client.messages.batches.results(batch.id))
    usages = [r.result.message.usage for r in results]  # type: ignore[union-attr]
    prompt = sum(u.input_tokens for u in usages)
    completion = sum(u.output_tokens for u in usages)
    record = wait_for(world.database, {batch.id}, tenant=world.tenant)[batch.id]
    assert record.key_id == created["id"] and record.provider == "anth"
    assert (record.prompt_tokens, record.completion_tokens) == (prompt, completion)
    # Anthropic's batch price: half the model's configured prices (files.batch_price_factor).
    expected = (prompt * Decimal("3") + completion * Decimal("15")) / 1_000_000 / 2
    assert record.cost_usd == expected and record.metadata["operation"] == "batch"
    assert record.metadata["endpoint"] == "/v1/messages" and record.metadata["requests"] == 2
    # Seen again by its owner and by the poller meanwhile: still one record.
    for _ in range(3):
        client.messages.batches.retrieve(batch.id)
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        assert world.requests_of(created["id"]) == 1
    # Deleted: its record stays, once.
    client.messages.batches.delete(batch.id)
    assert world.requests_of(created["id"]) == 1


def batch_counters(world: World, key_id: str) -> tuple[float, float, float]:
    """The key's batches in the metrics: (input tokens, output tokens, cost in USD)."""
    resp = httpx.get(f"{world.gateway.url}/metrics", headers=ADMIN, timeout=30)
    assert resp.status_code == 200, resp.text
    found = {"switchboard_input_tokens_total": 0.0, "switchboard_output_tokens_total": 0.0,
             "switchboard_cost_usd_total": 0.0}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            if (sample.name in found and sample.labels.get("key") == key_id
                    and sample.labels.get("operation") == "batches"):
                found[sample.name] += sample.value
    return tuple(found.values())  # type: ignore[return-value]


def test_an_ended_batch_counts_in_the_token_and_cost_metrics_once(world: World) -> None:
    """The ledger's record of a batch is in the token and cost counters too, with the same
    numbers, however often the batch is looked at after it ended."""
    created = world.key(["*"])
    client = world.sdk(created["key"])
    batch = client.messages.batches.create(requests=[request("a", "counted in metrics"), request("b", "too")])
    ended(client, batch.id)
    record = wait_for(world.database, {batch.id}, tenant=world.tenant)[batch.id]
    assert record.cost_usd > 0
    expected = (float(record.prompt_tokens), float(record.completion_tokens), float(record.cost_usd))
    deadline = time.monotonic() + 10
    while (seen := batch_counters(world, created["id"]))[0] != expected[0]:
        assert time.monotonic() < deadline, f"the batch's tokens never reached the metrics: {seen}"
        time.sleep(0.05)
    for _ in range(3):  # seen again by its owner (and the poller): counted once
        client.messages.batches.retrieve(batch.id)
    assert batch_counters(world, created["id"]) == pytest.approx(expected, abs=1e-12)


def test_the_poller_prices_a_batch_nobody_looks_at(world: World) -> None:
    created = world.key(["*"])
    batch = world.sdk(created["key"]).messages.batches.create(requests=[request("a", "alone")])
    # The mock ends a batch on its second GET: the poller's (every second) alone get it there.
    record = wait_for(world.database, {batch.id}, tenant=world.tenant)[batch.id]
    assert record.key_id == created["id"] and record.prompt_tokens > 0 and record.cost_usd > 0


def test_a_batch_deleted_as_soon_as_it_ends_is_priced_first(world: World) -> None:
    created = world.key(["*"])
    client = world.sdk(created["key"])
    batch = client.messages.batches.create(requests=[request("a"), request("b")])
    ended(client, batch.id)
    # At once: the pricing that GET started may be under way; the delete waits for it.
    assert client.messages.batches.delete(batch.id).type == "message_batch_deleted"
    record = wait_for(world.database, {batch.id}, tenant=world.tenant)[batch.id]
    assert record.metadata["requests"] == 2
    assert world.requests_of(created["id"]) == 1


def test_a_batch_whose_results_are_gone_is_recorded_once_and_can_be_deleted(world: World) -> None:
    """Results Anthropic no longer has (they expire 29 days after the batch's creation) cannot be
    priced: the batch is recorded once with what is known (its succeeded requests, unpriced,
    metadata.output_missing) instead of failing its pricing on every round, and its owner's
    delete goes through instead of a 503 for ever."""
    created = world.key(["*"])
    client = world.sdk(created["key"])
    batch = client.messages.batches.create(requests=[request("a", "mock:results_gone=1 one"), request("b")])
    assert ended(client, batch.id).request_counts.succeeded == 2
    record = wait_for(world.database, {batch.id}, tenant=world.tenant)[batch.id]
    assert record.key_id == created["id"] and record.unpriced and record.cost_usd == 0
    assert record.metadata["output_missing"] is True and record.metadata["requests"] == 2
    assert client.messages.batches.delete(batch.id).type == "message_batch_deleted"
    assert world.requests_of(created["id"]) == 1


def test_a_batch_deleted_at_the_provider_is_forgotten_by_its_owners_delete(world: World) -> None:
    """A batch deleted at Anthropic (in its console) before the gateway priced it: its owner's
    delete answers 404 as Anthropic does and the gateway forgets it, instead of a 404 that leaves
    it listed (and polled) for ever."""
    client = world.sdk(world.key(["*"])["key"])
    batch = client.messages.batches.create(requests=[request("a")])
    upstream = {"x-api-key": UPSTREAM_KEY, "anthropic-version": "2023-06-01"}
    at_mock = f"{world.mock.url}/v1/messages/batches/{batch.id}"
    ended_there = httpx.get(at_mock, headers={**upstream, "x-mock-batch-complete": "1"}, timeout=30)
    assert ended_there.json()["processing_status"] == "ended"
    assert httpx.delete(at_mock, headers=upstream, timeout=30).status_code == 200
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.delete(batch.id)
    assert list(client.messages.batches.list()) == []
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)


def test_each_result_is_priced_by_the_model_its_request_was_sent_for(world: World) -> None:
    created = world.key(["*"])
    client = world.sdk(created["key"])
    batch = client.messages.batches.create(requests=[
        request("a", "one two three", model="claude-latest"), request("b", "four", model="claude"),
        request("c", "five six", model="claude-latest"),
    ])
    ended(client, batch.id)
    results = {r.custom_id: r.result.message for r in client.messages.batches.results(batch.id)}  # type: ignore[union-attr]
    # The upstream reports a dated id no served model names: not what prices the result.
    assert {results["a"].model, results["c"].model} == {"claude-3-7-sonnet-20250219"}
    record = wait_for(world.database, {batch.id}, tenant=world.tenant)[batch.id]
    models = record.metadata["models"]
    assert set(models) == {"claude-3-7-sonnet-latest", "claude-sonnet-4-5"}
    assert models["claude-3-7-sonnet-latest"]["requests"] == 2 and record.model == "claude-3-7-sonnet-latest"
    latest = [results["a"].usage, results["c"].usage]
    expected = (sum(u.input_tokens for u in latest) * Decimal("7") + sum(u.output_tokens for u in latest)
                * Decimal("11") + results["b"].usage.input_tokens * Decimal("3")
                + results["b"].usage.output_tokens * Decimal("15")) / 1_000_000 / 2
    assert record.cost_usd == expected and not record.unpriced
    # Recorded at creation: the most used model, and the one request sent for another.
    # With the entry (and deployment) each was routed to, which prices it.
    served = {"claude-3-7-sonnet-latest": ["claude-latest", "anth/claude-3-7-sonnet-latest"],
              "claude-sonnet-4-5": ["claude", "anth/claude-sonnet-4-5"]}
    assert sent_models(world, batch.id) == {"models": ["claude-3-7-sonnet-latest", "claude-sonnet-4-5"],
                                            "requests": {"b": 1}, "served": served}
    client.messages.batches.delete(batch.id)
    assert sent_models(world, batch.id) is None  # forgotten with the batch


@pytest.mark.parametrize("models", [["claude-dear"], ["claude-dear", "claude", "claude-dear"]])
def test_each_result_is_priced_by_the_model_entry_its_request_was_routed_to(
        world: World, models: list[str]) -> None:
    """Two entries with one upstream id (claude and claude-dear: claude-sonnet-4-5) at their own
    prices: each request is priced by the entry it named, not by the first entry of that id."""
    client = world.sdk(world.key(["*"])["key"])
    batch = client.messages.batches.create(
        requests=[request(f"r{i}", "one two " * (i + 1), model=m) for i, m in enumerate(models)])
    ended(client, batch.id)
    usages = {r.custom_id: r.result.message.usage for r in client.messages.batches.results(batch.id)}  # type: ignore[union-attr]
    prices = {"claude": (Decimal(3), Decimal(15)), "claude-dear": (Decimal(30), Decimal(150))}
    expected = sum(usages[f"r{i}"].input_tokens * prices[m][0] + usages[f"r{i}"].output_tokens * prices[m][1]
                   for i, m in enumerate(models)) / 1_000_000 / 2
    record = wait_for(world.database, {batch.id}, tenant=world.tenant)[batch.id]
    assert record.cost_usd == expected and not record.unpriced
    assert sum(m["requests"] for m in record.metadata["models"].values()) == len(models)


def test_a_batchs_web_searches_are_charged_at_their_own_price(world: World) -> None:
    """The web searches a request's server tool made (usage.server_tool_use, the mock's
    ``mock:web_searches=N``) cost the model's web_search_request_cost (the shipped $0.01), not
    discounted as the tokens are, and are counted in the model's metadata."""
    client = world.sdk(world.key(["*"])["key"])
    batch = client.messages.batches.create(requests=[
        request("a", "look it up mock:web_searches=2"), request("b", "and this mock:web_searches=1"),
        request("c", "no search")])
    ended(client, batch.id)
    usages = {r.custom_id: r.result.message.usage for r in client.messages.batches.results(batch.id)}  # type: ignore[union-attr]
    assert usages["a"].server_tool_use is not None and usages["a"].server_tool_use.web_search_requests == 2
    tokens = sum(u.input_tokens * Decimal(3) + u.output_tokens * Decimal(15) for u in usages.values())
    record = wait_for(world.database, {batch.id}, tenant=world.tenant)[batch.id]
    assert record.cost_usd == tokens / 1_000_000 / 2 + 3 * Decimal("0.01") and not record.unpriced
    assert record.metadata["models"]["claude-sonnet-4-5"]["units"] == {"web_search_requests": 3}


def test_each_request_of_a_batch_is_priced_at_the_long_context_prices_by_its_own_prompt(world: World) -> None:
    """Anthropic bills each request of a batch on its own: only a request whose own prompt is over
    the long-context threshold costs the long-context prices, however long the batch's prompts
    are together."""
    client = world.sdk(world.key(["*"])["key"])
    short = " ".join(["short"] * (LONG_THRESHOLD // 2))
    batch = client.messages.batches.create(requests=[
        request("a", short, model="claude-long"), request("b", short, model="claude-long"),
        request("c", " ".join(["long"] * (LONG_THRESHOLD * 2)), model="claude-long"),
    ])
    ended(client, batch.id)
    usages = {r.custom_id: r.result.message.usage for r in client.messages.batches.results(batch.id)}  # type: ignore[union-attr]
    assert all(usages[k].input_tokens <= LONG_THRESHOLD for k in "ab")
    assert usages["c"].input_tokens > LONG_THRESHOLD
    assert usages["a"].input_tokens + usages["b"].input_tokens > LONG_THRESHOLD
    standard = sum(usages[k].input_tokens * Decimal(3) + usages[k].output_tokens * Decimal(15) for k in "ab")
    long = usages["c"].input_tokens * Decimal(6) + usages["c"].output_tokens * Decimal("22.5")
    record = wait_for(world.database, {batch.id}, tenant=world.tenant)[batch.id]
    assert record.prompt_tokens == sum(u.input_tokens for u in usages.values())
    assert record.cost_usd == (standard + long) / 1_000_000 / 2 and not record.unpriced


def test_the_callers_anthropic_beta_reaches_the_upstream(world: World) -> None:
    client = world.sdk(world.key(["*"])["key"])
    with_beta, without = new_marker(), new_marker()
    client.messages.batches.create(requests=[request("a", f"hi mock:capture={with_beta}")],
                                   extra_headers={"anthropic-beta": "message-batches-2024-09-24"})
    client.messages.batches.create(requests=[request("a", f"hi mock:capture={without}")])
    # The mock files the poller's later reads of a batch under its creation's marker too: only
    # the creates are the caller's.
    sent = [r for r in captured(world.mock, with_beta, outcome="completed") if r["method"] == "POST"]
    assert [r["path"] for r in sent] == ["/v1/messages/batches"]
    assert sent[0]["headers"]["anthropic-beta"] == "message-batches-2024-09-24"
    plain = captured(world.mock, without, outcome="completed")
    assert [r["path"] for r in plain if r["method"] == "POST"] == ["/v1/messages/batches"]
    assert not [r for r in plain if "anthropic-beta" in r["headers"]], plain



def test_the_callers_anthropic_version_reaches_the_upstream_on_every_call(world: World) -> None:
    version = "2023-01-01"  # neither the provider entry's (2023-06-01) nor the SDK's own
    client = world.sdk(world.key(["*"])["key"]).with_options(default_headers={"anthropic-version": version})
    marker = new_marker()
    batch = client.messages.batches.create(requests=[request("a", f"hi mock:capture={marker}")])
    client.messages.batches.cancel(batch.id)
    ended(client, batch.id)
    assert [r.custom_id for r in client.messages.batches.results(batch.id)] == ["a"]
    client.messages.batches.delete(batch.id)
    # The mock follows the batch: its later calls are recorded under the creation's marker.
    records = captured(world.mock, marker, count=5)
    path = f"/v1/messages/batches/{batch.id}"
    callers = {(r["method"], r["path"]) for r in records if r["headers"]["anthropic-version"] == version}
    assert callers == {("POST", "/v1/messages/batches"), ("POST", f"{path}/cancel"), ("GET", path),
                       ("GET", f"{path}/results"), ("DELETE", path)}, records
    # Only the poller's reads (and its pricing's) carry the provider entry's version.
    others = [r for r in records if r["headers"]["anthropic-version"] != version]
    assert all(r["method"] == "GET" and r["headers"]["anthropic-version"] == "2023-06-01"
               for r in others), others



def test_a_batch_past_a_mebibyte_reaches_the_upstream_whole(world: World) -> None:
    """A large create body is parsed, checked and written again for the provider in worker
    threads (message_requests.py, files/upstream.py): every request arrives, in order, each with
    its model rewritten to the deployment's id and its text as sent."""
    client = world.sdk(world.key(["*"])["key"])
    marker = new_marker()
    text = "a fairly long line of batch text. " * 60  # about 2 KB a request
    requests = [request(f"r{i}", f"{text}{i}", "claude-small" if i % 2 else "claude") for i in range(600)]
    requests[0] = request("r0", f"{text}0 mock:capture={marker}")
    assert len(orjson.dumps({"requests": requests})) > 1 << 20
    batch = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    assert batch.request_counts.processing == 600
    (seen,) = [r for r in captured(world.mock, marker, outcome="completed") if r["method"] == "POST"]
    sent = seen["body"]["requests"]
    assert [r["custom_id"] for r in sent] == [f"r{i}" for i in range(600)]
    assert [r["params"]["model"] for r in sent[:2]] == ["claude-sonnet-4-5", "claude-haiku-4-5"]
    assert sent[599]["params"]["messages"] == [{"role": "user", "content": f"{text}599"}]
    client.messages.batches.cancel(batch.id)


def test_a_batch_whose_caller_leaves_while_the_provider_answers_is_recorded_for_the_key(world: World) -> None:
    """The caller closes its connection while the provider is still answering the create: the
    provider creates the batch all the same, so the gateway carries the call on and records the
    batch as the key's (listed, readable), rather than leaving it to run there unseen."""
    made = world.key(["*"])
    marker, rid = new_marker(), f"mb-gone-{uuid.uuid4().hex[:8]}"
    # The provider answers (and creates the batch) only after a while: the caller has left by then.
    body = orjson.dumps({"requests": [request("a", f"hi mock:latency_ms=2000 mock:capture={marker}")]})
    head = (f"POST /v1/messages/batches HTTP/1.1\r\nHost: gateway\r\nx-api-key: {made['key']}\r\n"
            f"anthropic-version: 2023-06-01\r\nX-Request-Id: {rid}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", world.gateway.port), timeout=30) as sock:
        sock.sendall(head + body)
        (seen,) = captured(world.mock, marker)  # the provider has the create: the caller leaves now
        assert seen["outcome"] == "pending", seen
    line = world.gateway.process.wait_for_all(rid, "request failed", timeout=30)
    assert "client_disconnected=true" in line, line
    (seen,) = captured(world.mock, marker, outcome="completed", timeout=20)
    assert seen["outcome"] == "completed", seen  # the gateway waited for the provider's answer
    client = world.sdk(made["key"])
    deadline = time.monotonic() + 20
    while not (listed := list(client.messages.batches.list())) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(listed) == 1, listed
    batch = client.messages.batches.retrieve(listed[0].id)
    # The gateway's poller may have read the batch already, which ends it on the mock: the one
    # request is then counted as succeeded rather than processing.
    counts = batch.request_counts
    assert counts.processing + counts.succeeded == 1 and sent_models(world, batch.id) is not None


# -- Anthropic's Files API: not offered, said in Anthropic's shape --------------------------------


def test_the_anthropic_files_api_is_refused_in_anthropics_shape(world: World) -> None:
    key = world.key(["*"])["key"]
    files = world.sdk(key).beta.files
    calls = [lambda: files.upload(file=("notes.txt", b"hello", "text/plain")), lambda: files.list(),
             lambda: files.retrieve_metadata("file_011CNha8iCJcU1wXNR6q4V8w"),
             lambda: files.download("file_011CNha8iCJcU1wXNR6q4V8w"),
             lambda: files.delete("file_011CNha8iCJcU1wXNR6q4V8w")]
    for call in calls:
        with pytest.raises(anthropic.NotFoundError) as caught:
            call()
        body = caught.value.body
        assert isinstance(body, dict) and body["type"] == "error", body
        assert body["error"]["type"] == "not_found_error" and "Files API" in body["error"]["message"]
        assert caught.value.response.headers["request-id"]
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01", "anthropic-beta": FILES_BETA}
    raw = httpx.get(f"{world.gateway.url}/v1/files", headers=headers, timeout=30)
    assert raw.status_code == 404 and set(raw.json()) == {"type", "error"}, raw.text
    # Without anthropic-version the same path is OpenAI's Files API, as before.
    openai_list = httpx.get(f"{world.gateway.url}/v1/files", headers={"Authorization": f"Bearer {key}"},
                            timeout=30)
    assert openai_list.status_code == 200 and openai_list.json()["object"] == "list", openai_list.text


def test_results_over_the_limit_are_charged_for_those_read(mock_upstream: Mock, tmp_path: Path) -> None:
    # Results over files.max_output_bytes were never priced (retried every round): a large enough
    # batch ran for free. Anthropic reports no usage of the whole batch: it is priced by the
    # results read up to the limit, flagged output_cut.
    config = openai_config(mock_upstream)
    config["providers"].append({"name": "anth", "type": "anthropic", "api_base": mock_upstream.url,
                                "api_key": "${UPSTREAM_KEY}"})
    config["models"].append({"name": "claude", "provider": "anth", "model": "claude-sonnet-4-5",
                             "info": dict(PRICES)})
    config["files"] = {"poll_seconds": 3600, "max_output_bytes": 1024}
    gw = start_gateway(config, tmp_path)
    try:
        client = anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=30)
        batch = client.messages.batches.create(requests=[request(f"r{i}", "one two three") for i in range(8)])
        ended(client, batch.id)
        results = list(client.messages.batches.results(batch.id))
        prompt = sum(r.result.message.usage.input_tokens for r in results)  # type: ignore[union-attr]
        record = wait_for(database_of(config, tmp_path), {batch.id})[batch.id]
        assert 0 < record.prompt_tokens < prompt and record.metadata["output_cut"] is True
        assert record.cost_usd > 0 and not record.unpriced
    finally:
        gw.process.stop()
