"""Files and batches and the key's access, on the embedded database and on a cluster
(PostgreSQL and Redis): a batch runs only models its key may use, the objects a key
created stay its own across a rotation, and a walk over its files that deletes each one
it lists deletes them all (a deleted id pages on, for its owner only)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.servers import MASTER_KEY, Gateway, Mock, captured, new_marker, openai_config, start_gateway

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


@dataclass
class World:
    gateway: Gateway
    mock: Mock

    def key(self, models: list[str], tenant: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"models": models} if tenant is None else {"models": models, "tenant": tenant}
        resp = httpx.post(f"{self.gateway.url}/admin/v1/keys", json=body, headers=ADMIN, timeout=30)
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    def sdk(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=key, max_retries=0, timeout=30)


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def world(request: pytest.FixtureRequest, mock_upstream: Mock,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    config = openai_config(mock_upstream)
    config["models"] += [
        {"name": "gated", "provider": "local-openai", "model": "gpt-4o", "require_approval": True},
        {"name": "cheap", "provider": "local-openai", "model": "gpt-4.1-nano"},
        {"name": "native-mini", "provider": "local-openai", "model": "gpt-4o-mini", "responses": "native"},
    ]
    config["files"] = {"provider": "local-openai"}
    if request.param == "cluster":
        postgres, redis = request.getfixturevalue("postgres"), request.getfixturevalue("redis_server")
        config["database"] = {"url": postgres.create_database(f"files_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
    gw = start_gateway(config, tmp_path_factory.mktemp(f"files-access-{request.param}"))
    yield World(gw, mock_upstream)
    gw.process.stop()


def jsonl(*models: str, url: str = "/v1/chat/completions") -> bytes:
    lines = [{"custom_id": f"r{i}", "method": "POST", "url": url,
              "body": {"model": m, "messages": [{"role": "user", "content": "hi"}]}}
             for i, m in enumerate(models)]
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def _batch(client: openai.OpenAI, data: bytes, endpoint: str = "/v1/chat/completions") -> Any:
    source = client.files.create(file=("in.jsonl", data), purpose="batch")
    return client.batches.create(input_file_id=source.id, endpoint=endpoint,  # type: ignore[arg-type]
                                 completion_window="24h", metadata={"mock_gets_to_complete": "100"})


def _naming(file_id: str, url: str, escaped: bool = False) -> bytes:
    """Two request lines, the second naming ``file_id`` in a content part (its key written with a
    JSON escape when ``escaped``)."""
    if url == "/v1/responses":
        part: dict[str, Any] = {"type": "input_file", "file_id": file_id}
        body: dict[str, Any] = {"model": "gpt-4o-mini", "input": [{"role": "user", "content": [
            {"type": "input_text", "text": "summarise"}, part]}]}
    else:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "summarise"}, {"type": "file", "file": {"file_id": file_id}}]}]}
    named = orjson.dumps({"custom_id": "r1", "method": "POST", "url": url, "body": body})
    if escaped:
        named = named.replace(b'"file_id"', b'"file\\u005fid"')
    return jsonl("gpt-4o-mini", url=url) + named + b"\n"


def test_a_batch_runs_only_models_its_key_may_use(world: World) -> None:
    narrow = world.sdk(world.key(["gpt-4o-mini", "cheap"])["key"])
    assert _batch(narrow, jsonl("gpt-4o-mini", "gpt-4.1-nano", "gpt-4o-mini")).status == "validating"
    # A model the key may not use, on any line: the whole batch is refused, naming the line.
    for models, shown in ((("gpt-4o-mini", "o1-pro"), "o1-pro"), (("gpt-4o",), "gpt-4o")):
        with pytest.raises(openai.PermissionDeniedError) as refused:
            _batch(narrow, jsonl(*models))
        assert refused.value.code == "model_not_allowed" and refused.value.param == "input_file_id"
        assert f"line {len(models)} " in refused.value.message and f"'{shown}'" in refused.value.message
    # A line runs the upstream id it names: a served name that is not one says which to use.
    with pytest.raises(openai.PermissionDeniedError) as alias:
        _batch(narrow, jsonl("cheap"))
    assert "'gpt-4.1-nano'" in alias.value.message
    # Every line must be for the batch's endpoint and name a model.
    for data in (jsonl("gpt-4o-mini", url="/v1/embeddings"), b'{"custom_id": "x", "body": {}}\n', b"nope\n"):
        with pytest.raises(openai.BadRequestError) as bad:
            _batch(narrow, data)
        assert bad.value.code == "invalid_value" and "line 1 " in bad.value.message


def test_a_batch_line_may_name_only_the_callers_own_files(world: World) -> None:
    # A file named inside a line is read by the upstream from the gateway's account: another
    # tenant's (or key's) is 404 as for a single request, naming the line, for every caller.
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    made = httpx.post(f"{world.gateway.url}/admin/v1/tenants", json={"id": tenant, "name": tenant},
                      headers=ADMIN, timeout=30)
    assert made.status_code == 201, made.text
    theirs = world.sdk(world.key(["*"], tenant)["key"]).files.create(
        file=("notes.txt", b"private notes"), purpose="user_data").id
    narrow, master = world.sdk(world.key(["gpt-4o-mini"])["key"]), world.sdk(MASTER_KEY)
    for client in (narrow, master):
        mine = client.files.create(file=("mine.txt", b"my notes"), purpose="user_data").id
        for url, where in (("/v1/chat/completions", "messages[0].content[1].file.file_id"),
                           ("/v1/responses", "input[0].content[1].file_id")):
            for escaped in (False, True):
                with pytest.raises(openai.NotFoundError) as refused:
                    _batch(client, _naming(theirs, url, escaped), url)
                assert refused.value.code == "not_found" and refused.value.param == "input_file_id"
                shown = f"line 2 of the input file ({where}): No such File object: {theirs}"
                assert shown in refused.value.message
                # The caller's own file is fine.
                assert _batch(client, _naming(mine, url, escaped), url).status == "validating"


def test_a_responses_batch_line_may_not_name_objects_of_the_provider_account(world: World) -> None:
    # A batch runs on the gateway's credential, in the account every caller shares: a line naming
    # a conversation, prompt or vector store (by id: anyone's) refuses the batch, naming the line.
    url = "/v1/responses"
    for client in (world.sdk(world.key(["gpt-4o-mini"])["key"]), world.sdk(MASTER_KEY)):
        for extra, param in (({"conversation": "conv_1"}, "conversation"),
                             ({"prompt": {"id": "pmpt_1"}}, "prompt"),
                             ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]},
                              "tools[0].vector_store_ids"),
                             ({"tools": [{"type": "code_interpreter", "container": "cntr_1"}]},
                              "tools[0].container"),
                             ({"tools": [{"type": "shell", "environment": {"type": "container_reference",
                                                                           "container_id": "cntr_1"}}]},
                              "tools[0].environment.container_id"),
                             ({"input": [{"role": "user", "content": "hi"},
                                         {"type": "item_reference", "id": "msg_1"}]}, "input[1]"),
                             # A response the upstream stored (a Responses line's default), anyone's:
                             # a single request's previous_response_id is the gateway's own state.
                             ({"previous_response_id": "resp_1"}, "previous_response_id")):
            line = {"custom_id": "r1", "method": "POST", "url": url,
                    "body": {"model": "gpt-4o-mini", "input": "hi", **extra}}
            with pytest.raises(openai.BadRequestError) as refused:
                _batch(client, jsonl("gpt-4o-mini", url=url) + orjson.dumps(line) + b"\n", url)
            assert refused.value.code == "unsupported_parameter" and refused.value.param == "input_file_id"
            assert f"line 2 of the input file: '{param}' names " in refused.value.message
        # A plain Responses line is fine.
        assert _batch(client, jsonl("gpt-4o-mini", url=url), url).status == "validating"


def _their_file(world: World) -> str:
    """A file of another tenant's key."""
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    made = httpx.post(f"{world.gateway.url}/admin/v1/tenants", json={"id": tenant, "name": tenant},
                      headers=ADMIN, timeout=30)
    assert made.status_code == 201, made.text
    return world.sdk(world.key(["*"], tenant)["key"]).files.create(
        file=("notes.txt", b"private notes"), purpose="user_data").id


def _tool_file_requests(file_id: str, marker: str) -> list[tuple[dict[str, Any], str]]:
    """Native Responses requests naming ``file_id`` outside the input's content parts, with the
    path of the id in each."""
    text = {"role": "user", "content": f"look mock:capture={marker}"}
    return [
        ({"input": [text], "tools": [{"type": "code_interpreter",
                                      "container": {"type": "auto", "file_ids": [file_id]}}]},
         "tools[0].container.file_ids[0]"),
        ({"input": [text], "tools": [{"type": "image_generation", "input_image_mask": {"file_id": file_id}}]},
         "tools[0].input_image_mask.file_id"),
        ({"input": [text], "tools": [{"type": "shell",
                                      "environment": {"type": "container_auto", "file_ids": [file_id]}}]},
         "tools[0].environment.file_ids[0]"),
        ({"input": [text, {"type": "tool_search_output", "call_id": "ts1", "execution": "client", "tools": [
            {"type": "code_interpreter", "container": {"type": "auto", "file_ids": [file_id]}}]}]},
         "input[1].tools[0].container.file_ids[0]"),
        ({"input": [{"type": "function_call", "call_id": "c1", "name": "shot", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "c1",
                     "output": [{"type": "input_image", "file_id": file_id}]}, text]},
         "input[1].output[0].file_id"),
    ]


def test_a_native_responses_request_names_only_the_callers_own_files_in_tools_and_outputs(
        world: World) -> None:
    # A code interpreter's container files, an image mask and a tool output's image are read by
    # the upstream from the gateway's account: another tenant's file is 404 naming where, before
    # anything is sent; the caller's own goes through as written.
    theirs = _their_file(world)
    client = world.sdk(world.key(["*"])["key"])
    mine = client.files.create(file=("mine.txt", b"my notes"), purpose="user_data").id
    for index in range(len(_tool_file_requests("", ""))):
        marker = new_marker()
        body, param = _tool_file_requests(theirs, marker)[index]
        with pytest.raises(openai.NotFoundError) as refused:
            client.responses.create(model="native-mini", **body)
        assert refused.value.code == "not_found" and refused.value.param == param
        assert f"No such File object: {theirs}" in refused.value.message
        assert captured(world.mock, marker, timeout=0.5) == []
        marker = new_marker()
        body, _ = _tool_file_requests(mine, marker)[index]
        assert client.responses.create(model="native-mini", **body).status == "completed"
        [sent] = captured(world.mock, marker)
        assert all(sent["body"][name] == value for name, value in body.items())  # as written


def test_a_responses_batch_line_may_name_only_the_callers_own_files_in_its_tools(world: World) -> None:
    theirs, url = _their_file(world), "/v1/responses"
    client = world.sdk(world.key(["gpt-4o-mini"])["key"])
    mine = client.files.create(file=("mine.txt", b"my notes"), purpose="user_data").id
    for file_id in (theirs, mine):
        for body, where in _tool_file_requests(file_id, "m"):
            line = {"custom_id": "r1", "method": "POST", "url": url, "body": {"model": "gpt-4o-mini", **body}}
            data = jsonl("gpt-4o-mini", url=url) + orjson.dumps(line) + b"\n"
            if file_id == mine:
                assert _batch(client, data, url).status == "validating"
                continue
            with pytest.raises(openai.NotFoundError) as refused:
                _batch(client, data, url)
            assert refused.value.param == "input_file_id"
            shown = f"line 2 of the input file ({where}): No such File object: {theirs}"
            assert shown in refused.value.message


def test_a_batch_names_at_most_1000_distinct_files(world: World) -> None:
    # Each named file is a read of its record: the ids are counted (and bounded) before any is
    # read, so ids that exist nowhere are refused for their number, not looked up.
    client = world.sdk(world.key(["gpt-4o-mini"])["key"])

    def line(n: int, ids: range) -> bytes:
        parts = [{"type": "file", "file": {"file_id": f"file-n{i}"}} for i in ids]
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": parts}]}
        return orjson.dumps({"custom_id": f"r{n}", "method": "POST", "url": "/v1/chat/completions",
                             "body": body})

    lines = [line(n, range(n * 50, n * 50 + 50)) for n in range(20)]  # 1,000 distinct ids
    lines.append(line(20, range(0, 50)))  # the same ids again: not counted twice
    with pytest.raises(openai.NotFoundError) as unknown:  # 1,000: each is read, the first is not found
        _batch(client, b"\n".join(lines) + b"\n")
    assert "line 1 of the input file (messages[0].content[0].file.file_id)" in unknown.value.message
    lines.append(line(21, range(1000, 1001)))
    with pytest.raises(openai.BadRequestError) as refused:
        _batch(client, b"\n".join(lines) + b"\n")
    assert refused.value.code == "invalid_value" and refused.value.param == "input_file_id"
    assert "line 22 of the input file: the lines of a batch may name at most 1000 distinct files" in (
        refused.value.message)


def test_approval_only_models_need_the_teams_subscription_in_a_batch_too(world: World) -> None:
    every = world.sdk(world.key(["*"])["key"])
    with pytest.raises(openai.PermissionDeniedError) as refused:
        _batch(every, jsonl("gpt-4o-mini", "gpt-4o"))
    assert refused.value.code == "subscription_required" and "line 2" in refused.value.message
    # Unscoped otherwise: a key with every model may name what the gateway does not serve.
    assert _batch(every, jsonl("gpt-4o-mini", "o1-pro")).status == "validating"
    # The master key is never held back.
    assert _batch(world.sdk(MASTER_KEY), jsonl("gpt-4o")).status == "validating"


def test_a_rotated_key_keeps_its_files_batches_and_stored_responses(world: World) -> None:
    created = world.key(["gpt-4o-mini"])
    old = world.sdk(created["key"])
    source = old.files.create(file=("in.jsonl", jsonl("gpt-4o-mini")), purpose="batch")
    batch = old.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions",
                               completion_window="24h", metadata={"mock_gets_to_complete": "1"})
    response = old.responses.create(model="gpt-4o-mini", input="mock:reply=remembered")
    rotated = httpx.post(f"{world.gateway.url}/admin/v1/keys/{created['id']}/rotate", headers=ADMIN,
                         json={"grace_seconds": 0}, timeout=30)
    assert rotated.status_code == 201, rotated.text
    new = world.sdk(rotated.json()["key"])
    assert new.files.retrieve(source.id).id == source.id
    assert source.id in [f.id for f in new.files.list()]
    done = new.batches.retrieve(batch.id)
    assert done.status == "completed" and done.output_file_id
    assert new.files.content(done.output_file_id).content
    assert batch.id in [b.id for b in new.batches.list()]
    assert new.responses.retrieve(response.id).output_text == "remembered"
    follow = new.responses.create(model="gpt-4o-mini", input="again", previous_response_id=response.id)
    assert follow.status == "completed"
    # Still nobody else's: another key of the same tenant sees none of it.
    other = world.sdk(world.key(["gpt-4o-mini"])["key"])
    with pytest.raises(openai.NotFoundError):
        other.files.retrieve(source.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(response.id)


def test_batch_output_files_are_listed_whole_and_stay_deleted(world: World) -> None:
    client = world.sdk(world.key(["gpt-4o-mini"])["key"])
    source = client.files.create(file=("in.jsonl", jsonl("gpt-4o-mini", "gpt-4o-mini")), purpose="batch")
    batch = client.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"mock_gets_to_complete": "1"})
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed" and done.output_file_id
    [listed] = client.files.list(purpose="batch_output").data
    content = client.files.content(done.output_file_id).content
    assert listed.id == done.output_file_id and listed.object == "file"
    assert listed.bytes == len(content) and listed.created_at > 0 and listed.filename
    assert listed.model_dump() == client.files.retrieve(listed.id).model_dump()
    # Deleted by its owner, it is not put back by the next look at the batch.
    assert client.files.delete(listed.id).deleted
    assert client.batches.retrieve(batch.id).output_file_id == listed.id
    assert client.files.list(purpose="batch_output").data == []
    assert [f.id for f in client.files.list()] == [source.id]


def test_deleting_every_file_while_walking_the_list_deletes_them_all(world: World) -> None:
    """The SDK's walk asks for each next page after the last id of the page it has just
    deleted: that id still pages its owner's list on, and is nothing to anyone else."""
    key = world.key(["gpt-4o-mini"])
    client, other = world.sdk(key["key"]), world.sdk(world.key(["gpt-4o-mini"])["key"])
    made = [client.files.create(file=(f"f{i}.jsonl", b"{}\n"), purpose="user_data").id for i in range(7)]
    theirs = other.files.create(file=("theirs.jsonl", b"{}\n"), purpose="user_data").id
    deleted = [client.files.delete(f.id).id for f in client.files.list(limit=2)]
    assert sorted(deleted) == sorted(made)
    assert client.files.list().data == [] and client.files.list(after=made[0]).data == []
    for file_id in made[:1] + made[-1:]:
        with pytest.raises(openai.NotFoundError) as gone:
            client.files.retrieve(file_id)
        assert gone.value.code == "not_found"
        # Another key's cursor: the same 400 as an id never made, saying nothing of the file.
        with pytest.raises(openai.BadRequestError) as refused:
            other.files.list(after=file_id)
        assert (refused.value.param, refused.value.code) == ("after", "invalid_value")
    # Oldest first too: the walk that deletes each page goes on after its deleted last id.
    kept = [other.files.create(file=(f"k{i}.jsonl", b"{}\n"), purpose="user_data").id for i in range(4)]
    walked = [other.files.delete(f.id).id for f in other.files.list(limit=3, order="asc")]
    assert walked == [theirs, *kept]
    assert other.files.list().data == []


def test_text_no_stored_id_can_hold_is_refused_or_not_found(world: World) -> None:
    """A NUL byte cannot be compared in PostgreSQL: the ids and filters of files and stored
    responses that would hold one are answered as the API answers any bad or unknown value."""
    key = world.key(["gpt-4o-mini"])["key"]
    auth = {"Authorization": f"Bearer {key}"}
    base = world.gateway.base_url
    listed = httpx.get(f"{base}/files", params={"purpose": "batch\x00"}, headers=auth, timeout=30)
    assert listed.status_code == 400, listed.text
    assert listed.json()["error"]["param"] == "purpose"
    plain = httpx.get(f"{base}/files", params={"purpose": "batch"}, headers=auth, timeout=30)
    assert plain.status_code == 200, plain.text
    for path in ("/responses/resp_%00", "/responses/resp_%00/input_items"):
        resp = httpx.get(f"{base}{path}", headers=auth, timeout=30)
        assert resp.status_code == 404, (path, resp.text)
    with pytest.raises(openai.BadRequestError) as refused:
        world.sdk(key).responses.create(model="gpt-4o-mini", input="hi", previous_response_id="resp_\x00")
    assert refused.value.code == "previous_response_not_found"
