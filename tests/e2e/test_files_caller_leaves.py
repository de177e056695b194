"""A caller that closes its connection while the provider is still answering the create of a file
(/v1/files) or a batch (/v1/batches), end to end on the embedded database and on a cluster
(PostgreSQL and Redis): the provider makes the object all the same, so the gateway carries the
call on and records the object as the key's (listed, readable), rather than leaving it upstream
where no key owns it (a batch would run and cost money, a file take storage, unseen). A batch's
create is carried on its own (http/files/unrecorded.py); an upload's request is not cancelled by
its caller leaving once its body is read (http/files/edge.py), which its test holds to."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.servers import MASTER_KEY, Gateway, Mock, captured, new_marker, openai_config, start_gateway

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
LATENCY = "mock:latency_ms=2000"  # the provider answers (and makes the object) only after this


@dataclass
class World:
    gateway: Gateway
    mock: Mock
    tenant: str

    def key(self) -> str:
        resp = httpx.post(f"{self.gateway.url}/admin/v1/keys", json={"models": ["*"], "tenant": self.tenant},
                          headers=ADMIN, timeout=30)
        assert resp.status_code == 201, resp.text
        return str(resp.json()["key"])

    def sdk(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=key, max_retries=0, timeout=30)


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def world(request: pytest.FixtureRequest, mock_upstream: Mock,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    config = openai_config(mock_upstream)
    config["files"] = {"provider": "local-openai"}
    if request.param == "cluster":
        postgres, redis = request.getfixturevalue("postgres"), request.getfixturevalue("redis_server")
        config["database"] = {"url": postgres.create_database(f"leaves_{uuid.uuid4().hex[:8]}")}
        config["redis"] = {"url": redis.url}
    tmp: Path = tmp_path_factory.mktemp(f"files-leaves-{request.param}")
    gw = start_gateway(config, tmp)
    tenant = f"leaves-{uuid.uuid4().hex[:6]}"
    made = httpx.post(f"{gw.url}/admin/v1/tenants", json={"id": tenant, "name": tenant}, headers=ADMIN,
                      timeout=30)
    assert made.status_code == 201, made.text
    yield World(gw, mock_upstream, tenant)
    gw.process.stop()


def _leave_while_answered(world: World, key: str, path: str, content_type: str, body: bytes,
                          marker: str) -> None:
    """Send the create on a raw connection and close it once the provider has it (and before it
    answers); then check the gateway waited for the provider's answer all the same."""
    head = (f"POST {path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", world.gateway.port), timeout=30) as sock:
        sock.sendall(head + body)
        (seen,) = captured(world.mock, marker)  # the provider has the create: the caller leaves now
        assert seen["outcome"] == "pending", seen
    (seen,) = captured(world.mock, marker, outcome="completed", timeout=20)
    assert seen["outcome"] == "completed", seen  # the gateway waited for the provider's answer


def _listed(listing: Callable[[], list[Any]]) -> list[Any]:
    """What ``listing`` returns once it is not empty (the record is written after the answer)."""
    deadline = time.monotonic() + 20
    while not (found := listing()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def test_a_file_whose_caller_leaves_while_the_provider_answers_is_recorded_for_the_key(world: World) -> None:
    key, marker = world.key(), new_marker()
    boundary = uuid.uuid4().hex
    data = f'{{"note": "{LATENCY} mock:capture={marker}"}}\n'.encode()
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nuser_data\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"gone.jsonl\"\r\n"
            "Content-Type: application/jsonl\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    _leave_while_answered(world, key, "/v1/files", f"multipart/form-data; boundary={boundary}", body, marker)
    client = world.sdk(key)
    listed = _listed(lambda: list(client.files.list()))
    assert [f.filename for f in listed] == ["gone.jsonl"], listed
    assert client.files.content(listed[0].id).content == data  # the provider's file, readable


def test_a_batch_whose_caller_leaves_while_the_provider_answers_is_recorded_for_the_key(world: World) -> None:
    key, marker = world.key(), new_marker()
    client = world.sdk(key)
    line = {"custom_id": "r0", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}}
    source = client.files.create(file=("in.jsonl", orjson.dumps(line) + b"\n"), purpose="batch")
    note = f"{LATENCY} mock:capture={marker}"  # the mock reads its directives in the metadata
    body = orjson.dumps({"input_file_id": source.id, "endpoint": "/v1/chat/completions",
                         "completion_window": "24h", "metadata": {"note": note}})
    _leave_while_answered(world, key, "/v1/batches", "application/json", body, marker)
    listed = _listed(lambda: list(client.batches.list()))
    assert [b.input_file_id for b in listed] == [source.id], listed
    batch = client.batches.retrieve(listed[0].id)  # the provider's batch, readable and cancellable
    assert batch.metadata == {"note": note}
    assert client.batches.cancel(batch.id).status in {"cancelling", "cancelled"}
