"""Files and batches end to end with the openai SDK: the gateway in front of the OpenAI and Azure
mocks, every object owned by the key that created it (another key gets 404), bad input refused
in OpenAI's error format, a finished batch's cost in the usage ledger and in its key's budget
exactly once, and every request under the caller's rate limits and budgets."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests import ledger
from tests.servers import MASTER_KEY, Gateway, Mock, captured, new_marker, openai_config, start_gateway

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
MAX_UPLOAD = 64 * 1024
PRICES = {"input_cost_per_mtok": 0.15, "output_cost_per_mtok": 0.6}
AZURE_DEPLOYMENTS = [
    ("az-mini", "contoso-mini", {"input_cost_per_mtok": 1.0, "output_cost_per_mtok": 2.0}),
    ("az-mini-ptu", "contoso-mini-ptu", {"input_cost_per_mtok": 0.5, "output_cost_per_mtok": 1.0}),
]


@dataclass
class World:
    gateway: Gateway
    mock: Mock
    tenant: str
    keys: dict[str, dict[str, Any]]  # name -> the created key (id, key)
    budget: str  # the id of the "spender" key's budget

    def budget_spent(self) -> Decimal:
        resp = httpx.get(f"{self.gateway.url}/admin/v1/budgets/{self.budget}", headers=ADMIN, timeout=30)
        assert resp.status_code == 200, resp.text
        return Decimal(resp.json()["status"]["spent"])

    def sdk(self, name: str = "a") -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=self.keys[name]["key"], max_retries=0,
                             timeout=30)

    def usage(self, key: str) -> list[dict[str, Any]]:
        resp = httpx.get(f"{self.gateway.url}/admin/v1/usage", headers=ADMIN, timeout=30,
                         params={"key": self.keys[key]["id"], "group_by": "key,model"})
        assert resp.status_code == 200, resp.text
        return list(resp.json()["data"])

    def wait_for_usage(self, key: str, requests: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """The key's usage once it counts ``requests`` records (the ledger is written after the
        response that saw the batch finish, or by the poller)."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.usage(key)
            if sum(r["requests"] for r in rows) >= requests or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)


def _post(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = httpx.post(url + path, json=body, headers=ADMIN, timeout=30)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


@pytest.fixture(scope="module")
def world(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    config = openai_config(mock_upstream)
    for m in config["models"]:
        if m["name"] == "gpt-4o-mini":
            m["info"] = dict(PRICES)
    config["providers"].append({"name": "az", "type": "azure", "api_base": mock_upstream.url,
                                "api_key": "${UPSTREAM_KEY}"})
    config["models"].append({"name": "az-gpt", "provider": "az", "model": "gpt-4o"})
    # Azure deployments under names of their own, priced by their entries: a batch's answers
    # report the base model (gpt-4o-mini-2024-07-18), which neither names.
    config["models"] += [{"name": name, "provider": "az", "model": deployment, "info": prices}
                         for name, deployment, prices in AZURE_DEPLOYMENTS]
    config["providers"].append({"name": "flaky", "type": "openai", "api_base": f"{mock_upstream.url}/v1",
                                "api_key": "${UPSTREAM_KEY}",
                                "headers": {"x-mock-faults": "rate=1;kinds=503"}})
    config["models"].append({"name": "flaky-model", "provider": "flaky", "model": "gpt-4o-mini"})
    config["models"].append({"name": "native-mini", "provider": "local-openai", "model": "gpt-4o-mini",
                             "responses": "native"})
    # A model the catalog does not know, priced by its entry alone.
    config["models"].append({"name": "house-model", "provider": "local-openai", "model": "house-model",
                             "info": dict(PRICES)})
    # A long-context surcharge past 11 prompt tokens: the mock's lines have 10, 11, 12.
    config["models"].append({"name": "house-long", "provider": "local-openai", "model": "house-long",
                             "info": {**PRICES, "long_context_threshold_tokens": 11,
                                      "long_context_input_cost_per_mtok": 0.3,
                                      "long_context_output_cost_per_mtok": 1.2}})
    # An alias whose dated snapshot gpt-4o-2024-05-13 the catalog prices on its own (twice as much).
    config["models"].append({"name": "gpt-4o", "provider": "local-openai", "model": "gpt-4o"})
    tenant, azure_tenant = f"files-{uuid.uuid4().hex[:6]}", f"azure-{uuid.uuid4().hex[:6]}"
    config["files"] = {"provider": "local-openai", "tenant_providers": {azure_tenant: "az"},
                       "max_upload_bytes": MAX_UPLOAD, "poll_seconds": 1}
    gw = start_gateway(config, tmp_path_factory.mktemp("files"))
    for t in (tenant, azure_tenant):
        _post(gw.url, "/admin/v1/tenants", {"id": t, "name": t})
    keys = {name: _post(gw.url, "/admin/v1/keys", {"models": ["*"], "tenant": tenant})
            for name in ("a", "b", "c", "d")}
    keys["narrow"] = _post(gw.url, "/admin/v1/keys", {"models": ["gpt-4o-mini"], "tenant": tenant})
    keys["azure"] = _post(gw.url, "/admin/v1/keys", {"models": ["*"], "tenant": azure_tenant})
    keys["azure-any"] = _post(gw.url, "/admin/v1/keys", {"models": ["*"], "tenant": azure_tenant})
    keys["azure-scoped"] = _post(gw.url, "/admin/v1/keys", {"models": [n for n, _, _ in AZURE_DEPLOYMENTS],
                                                             "tenant": azure_tenant})
    keys["azure-unlisted"] = _post(gw.url, "/admin/v1/keys", {"models": ["*"], "tenant": azure_tenant})
    keys["limited"] = _post(gw.url, "/admin/v1/keys", {"models": ["*"], "tenant": tenant, "rpm_limit": 2})
    keys["spender"] = _post(gw.url, "/admin/v1/keys", {"models": ["*"], "tenant": tenant})
    # A key no other test makes batches with: its usage is the poller's pricing alone.
    keys["poller"] = _post(gw.url, "/admin/v1/keys", {"models": ["*"], "tenant": tenant})
    # A key that makes no batch: its file list changes only by its own uploads (a batch of another
    # key's that the poller sees finish adds its output file to that key's list).
    keys["uploads"] = _post(gw.url, "/admin/v1/keys", {"models": ["*"], "tenant": tenant})
    keys["house"] = _post(gw.url, "/admin/v1/keys", {"models": ["house-model"], "tenant": tenant})
    keys["long"] = _post(gw.url, "/admin/v1/keys", {"models": ["house-long"], "tenant": tenant})
    keys["tagged"] = _post(gw.url, "/admin/v1/keys", {"models": ["*"], "tenant": tenant,
                                                       "tags": ["chargeback", "nightly"]})
    # Less than one small batch costs (2250 nano-USD, test_a_batch_counts_in_its_keys_budget_...).
    resp = httpx.put(f"{gw.url}/admin/v1/budgets", headers=ADMIN, timeout=30, json={
        "scope": "key", "subject": keys["spender"]["id"], "tenant": tenant, "max_amount": 0.000002,
        "period": "monthly"})
    assert resp.status_code == 200, resp.text
    yield World(gw, mock_upstream, tenant, keys, resp.json()["id"])
    gw.process.stop()


def jsonl(*texts: str, model: str = "gpt-4o-mini") -> bytes:
    lines = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": model, "messages": [{"role": "user", "content": t}]}}
             for i, t in enumerate(texts)]
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def test_file_lifecycle(world: World) -> None:
    client = world.sdk("a")
    data = jsonl("one", "two")
    created = client.files.create(file=("requests.jsonl", data), purpose="batch")
    assert created.id.startswith("file-") and created.bytes == len(data)
    assert created.filename == "requests.jsonl" and created.purpose == "batch"
    got = client.files.retrieve(created.id)
    assert got.id == created.id and got.bytes == len(data)
    assert client.files.content(created.id).content == data
    listed = [f.id for f in client.files.list()]
    assert created.id in listed
    assert [f.id for f in client.files.list(purpose="assistants")] == []
    deleted = client.files.delete(created.id)
    assert deleted.deleted is True and deleted.id == created.id
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.id)
    assert created.id not in [f.id for f in client.files.list()]


def test_files_are_listed_in_the_order_asked(world: World) -> None:
    client = world.sdk("c")
    ids = [client.files.create(file=(f"f{i}.jsonl", b"{}\n"), purpose="user_data").id for i in range(3)]
    assert [f.id for f in client.files.list(purpose="user_data")] == ids[::-1]  # newest first
    assert [f.id for f in client.files.list(purpose="user_data", order="desc")] == ids[::-1]
    # Oldest first, in pages of one: the SDK follows last_id with after=.
    assert [f.id for f in client.files.list(purpose="user_data", order="asc", limit=1)] == ids
    first = client.files.list(purpose="user_data", order="asc", limit=2)
    assert [f.id for f in first.data] == ids[:2] and first.has_more is True
    with pytest.raises(openai.BadRequestError) as bad:
        client.files.list(order="sideways")  # type: ignore[arg-type]
    assert bad.value.param == "order" and bad.value.code == "invalid_value"


def test_an_after_that_is_not_in_the_list_is_a_400_not_an_empty_last_page(world: World) -> None:
    client, stranger = world.sdk("d"), world.sdk("b")
    kept, gone = (client.files.create(file=(f"f{i}.jsonl", b"{}\n"), purpose="evals").id for i in range(2))
    client.files.delete(gone)  # the last id of a page, deleted while walking the list: pages on
    others = stranger.files.create(file=("theirs.jsonl", b"{}\n"), purpose="evals").id
    batch = stranger.batches.create(input_file_id=stranger.files.create(
        file=("in.jsonl", jsonl("x")), purpose="batch").id, endpoint="/v1/chat/completions",
        completion_window="24h").id
    pages = {"/files": (others, "file-never-made"), "/batches": (batch, "batch_never_made")}
    headers = {"Authorization": f"Bearer {world.keys['d']['key']}"}
    for path, cursors in pages.items():
        for cursor in cursors:  # another caller's, unknown: one answer, nothing about existence
            for order in ({"order": "asc"}, {}) if path == "/files" else ({},):
                resp = httpx.get(world.gateway.base_url + path, params={"after": cursor, **order},
                                 headers=headers, timeout=30)
                assert resp.status_code == 400, resp.text
                error = resp.json()["error"]
                assert (error["param"], error["code"]) == ("after", "invalid_value"), error
    # A cursor of the list still pages on, and so does the caller's own deleted one.
    assert [f.id for f in client.files.list(purpose="evals", after=kept)] == []
    assert [f.id for f in client.files.list(purpose="evals", after=gone)] == [kept]
    assert [f.id for f in client.files.list(purpose="evals", after=gone, order="asc")] == []
    assert [f.id for f in client.files.list(purpose="evals")] == [kept]


@pytest.mark.parametrize("path", ["/files", "/batches"])
@pytest.mark.parametrize("limit", ["\u00b2", "\u0665", "1e1", " 5", "-1", "9" * 4400])
def test_a_limit_of_anything_but_ascii_digits_is_invalid_value(world: World, path: str, limit: str) -> None:
    """'²' passes str.isdigit and fails int() (it was a 500), U+0665 (an Arabic-Indic 5) is
    read by int() as 5: only ASCII digits make a limit. More than 4300 digits, int() refuses
    (sys.get_int_max_str_digits; it was a 500 too)."""
    headers = {"Authorization": f"Bearer {world.keys['c']['key']}"}
    resp = httpx.get(world.gateway.base_url + path, params={"limit": limit}, headers=headers, timeout=30)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["param"], error["code"]) == ("limit", "invalid_value")


@pytest.mark.parametrize("path", ["/files", "/batches"])
def test_more_than_20_query_parameters_on_a_list_is_invalid_value(world: World, path: str) -> None:
    """As the other routes that bound their parameters answer; 20 (unknown ones ignored, as
    OpenAI does) are still a list."""
    headers = {"Authorization": f"Bearer {world.keys['c']['key']}"}
    url = world.gateway.base_url + path
    listed = httpx.get(url, params={f"p{i}": "1" for i in range(20)}, headers=headers, timeout=30)
    assert listed.status_code == 200 and listed.json()["object"] == "list", listed.text
    refused = httpx.get(url, params={f"p{i}": "1" for i in range(21)}, headers=headers, timeout=30)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == {"message": "too many query parameters (at most 20)", "param": None,
                                       "type": "invalid_request_error", "code": "invalid_value"}


@pytest.mark.parametrize(("path", "query"), [
    ("/files", "limit=1&limit=50"), ("/files", "order=asc&order=desc"),
    ("/files", "purpose=batch&purpose=evals"), ("/files", "after=file-x&after=file-y"),
    ("/batches", "limit=1&limit=50"), ("/batches", "after=b1&after=b2"),
])
def test_a_known_query_parameter_given_twice_is_refused_naming_it(world: World, path: str,
                                                                    query: str) -> None:
    """Not the first value taken silently: the caller may have meant the other one."""
    headers = {"Authorization": f"Bearer {world.keys['c']['key']}"}
    resp = httpx.get(f"{world.gateway.base_url}{path}?{query}", headers=headers, timeout=30)
    assert resp.status_code == 400, resp.text
    name = query.split("=", 1)[0]
    assert resp.json()["error"] == {"message": f"the query parameter '{name}' is given more than once",
                                    "param": name, "type": "invalid_request_error",
                                    "code": "duplicate_parameter"}


@pytest.mark.parametrize("path", ["/files", "/batches"])
def test_an_unknown_query_parameter_given_twice_is_still_ignored(world: World, path: str) -> None:
    """As OpenAI ignores it (an SDK may send extras); so is ``order`` twice on batches, which take none."""
    headers = {"Authorization": f"Bearer {world.keys['c']['key']}"}
    extra = "extra=1&extra=2" + ("&order=asc&order=desc" if path == "/batches" else "")
    resp = httpx.get(f"{world.gateway.base_url}{path}?limit=5&{extra}", headers=headers, timeout=30)
    assert resp.status_code == 200 and resp.json()["object"] == "list", resp.text


def test_an_expiry_openai_takes_is_passed_on(world: World) -> None:
    client = world.sdk("d")
    created = client.files.create(file=("e.jsonl", jsonl("x")), purpose="batch",
                                  expires_after={"anchor": "created_at", "seconds": 3600})
    expiry = {"anchor": "created_at", "seconds": 2_592_000}
    batch = client.batches.create(input_file_id=created.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", extra_body={"output_expires_after": expiry})
    assert batch.input_file_id == created.id


def test_a_large_file_goes_through_whole_and_fields_may_follow_it(world: World) -> None:
    # Not every client sends the fields first: here the file comes before purpose.
    data = bytes(range(256)) * 200  # 51 KiB, binary
    resp = httpx.post(f"{world.gateway.base_url}/files", timeout=30,
                      headers={"Authorization": f"Bearer {world.keys['a']['key']}"},
                      files=[("file", ("blob.bin", data, "application/octet-stream"))],
                      data={"purpose": "user_data"})
    # httpx puts data fields first; build the other order by hand.
    boundary = "b0undary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="late.bin"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + (
        f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'
        f"--{boundary}--\r\n").encode()
    late = httpx.post(f"{world.gateway.base_url}/files", content=body, timeout=30,
                      headers={"Authorization": f"Bearer {world.keys['a']['key']}",
                               "Content-Type": f"multipart/form-data; boundary={boundary}"})
    client = world.sdk("a")
    for answer, name in ((resp, "blob.bin"), (late, "late.bin")):
        assert answer.status_code == 200, answer.text
        obj = answer.json()
        assert obj["filename"] == name and obj["bytes"] == len(data) and obj["purpose"] == "user_data"
        assert client.files.content(obj["id"]).content == data


@pytest.mark.parametrize(("sent", "kept"), [
    ("back\\slash.jsonl", "back\\slash.jsonl"),
    ('q"uote\\.jsonl', "q%22uote\\.jsonl"),  # the SDK (httpx) writes a quote as %22, as browsers do
    ("two\\\\back.jsonl", "two\\\\back.jsonl"),
    ("dir/file.jsonl", "file.jsonl"),  # a path's last segment, as before
])
def test_an_uploaded_file_name_keeps_its_backslashes(world: World, sent: str, kept: str) -> None:
    """A backslash is a character of the name, as OpenAI keeps it: ``q"uote\\.jsonl`` became
    ``.jsonl``, the gateway taking the backslash for a Windows path separator."""
    client = world.sdk("a")
    created = client.files.create(file=(sent, jsonl("hi"), "application/jsonl"), purpose="batch")
    assert created.filename == kept
    assert client.files.retrieve(created.id).filename == kept


def test_the_upload_is_streamed_to_the_upstream(world: World) -> None:
    marker = new_marker()
    data = f"mock:capture={marker}\n".encode() + b"z" * 40_000
    created = world.sdk("a").files.create(file=("streamed.txt", data), purpose="user_data")
    [seen] = captured(world.mock, marker, outcome="completed")
    assert seen["method"] == "POST" and seen["path"] == "/v1/files"
    # Sent on as it was read: no length known up front, a form of the gateway's own.
    assert seen["headers"].get("transfer-encoding") == "chunked" and "content-length" not in seen["headers"]
    assert seen["headers"]["content-type"].startswith("multipart/form-data; boundary=switchboard-")
    assert created.bytes == len(data)


def test_a_tenant_has_its_own_files_provider(world: World) -> None:
    marker = new_marker()
    created = world.sdk("azure").files.create(file=("t.jsonl", f"mock:capture={marker}\n".encode()),
                                              purpose="batch")
    [seen] = captured(world.mock, marker, outcome="completed")
    assert seen["path"] == "/openai/files" and "api-version=" in seen["query"]
    assert world.sdk("azure").files.retrieve(created.id).filename == "t.jsonl"


def test_upstream_faults_are_the_gateways_errors(world: World) -> None:
    client = world.sdk("a")
    with pytest.raises(openai.APIStatusError) as failed:
        client.files.create(file=("f.jsonl", b"{}\n"), purpose="batch", extra_body={"model": "flaky-model"})
    assert failed.value.status_code == 503
    assert client.files.create(file=("f.jsonl", b"{}\n"), purpose="batch").bytes == 3


def test_the_provider_is_chosen_by_model(world: World) -> None:
    client = world.sdk("a")
    created = client.files.create(file=("az.jsonl", jsonl("azure")), purpose="batch",
                                  extra_headers={"x-switchboard-model": "az-gpt"})
    assert client.files.retrieve(created.id).filename == "az.jsonl"
    batch = client.batches.create(input_file_id=created.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"mock_gets_to_complete": "100"})
    assert client.batches.retrieve(batch.id).status == "in_progress"
    # The form field names the model too; a model the key may not use is refused.
    narrow = world.sdk("narrow")
    with pytest.raises(openai.PermissionDeniedError):
        narrow.files.create(file=("x.jsonl", b"{}\n"), purpose="batch", extra_body={"model": "az-gpt"})
    with pytest.raises(openai.NotFoundError) as missing:
        client.files.create(file=("x.jsonl", b"{}\n"), purpose="batch", extra_body={"model": "no-such-model"})
    assert missing.value.code == "model_not_found"


def test_batch_lifecycle_and_cancel(world: World) -> None:
    client = world.sdk("a")
    source = client.files.create(file=("in.jsonl", jsonl("a", "b")), purpose="batch")
    batch = client.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions",
                                  completion_window="24h",
                                  metadata={"mock_gets_to_complete": "100", "team": "x"})
    assert batch.id.startswith("batch_") and batch.input_file_id == source.id
    assert batch.metadata == {"mock_gets_to_complete": "100", "team": "x"}
    assert client.batches.retrieve(batch.id).status == "in_progress"
    assert batch.id in [b.id for b in client.batches.list()]
    cancelled = client.batches.cancel(batch.id)
    assert cancelled.status in ("cancelling", "cancelled")


def _completed_usages(client: openai.OpenAI, model: str = "gpt-4o-mini") -> tuple[str, list[dict[str, Any]]]:
    """A batch of three lines for ``model`` run to completion: its id, and the usage of each line
    as its output file (the batch owner's, one line per request) reports it."""
    source = client.files.create(file=("in.jsonl", jsonl("x", "y", "z", model=model)), purpose="batch")
    batch = client.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"mock_gets_to_complete": "1"})
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed" and done.output_file_id
    output = client.files.content(done.output_file_id).content.splitlines()
    usages = [orjson.loads(line)["response"]["body"]["usage"] for line in output]
    assert [u["prompt_tokens"] for u in usages] == [10, 11, 12]
    return batch.id, usages


def test_a_finished_batch_is_priced_once_in_the_ledger(world: World) -> None:
    client = world.sdk("c")
    batch_id, usages = _completed_usages(client)
    rows = world.wait_for_usage("c", 1)
    for _ in range(3):  # seen again by the caller (and by the poller meanwhile): still one record
        client.batches.retrieve(batch_id)
    [row] = world.wait_for_usage("c", 2, timeout=1.0)
    assert row["requests"] == 1 and row["model"] == "gpt-4o-mini"
    prompt, completion = sum(u["prompt_tokens"] for u in usages), sum(u["completion_tokens"] for u in usages)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt, completion)
    # The Batch API's half price (files.batch_price_factor 0.5) of the model's configured prices.
    expected = (prompt * Decimal("0.15") + completion * Decimal("0.6")) / 1_000_000 / 2
    assert Decimal(row["cost_usd"]) == expected
    assert rows[0]["cost_usd"] == row["cost_usd"]


def test_a_batchs_cost_counts_under_its_keys_tags(world: World) -> None:
    # A model call's record carries its key's tags (spend per tag, analytics by tag): a batch's
    # record, written later by whoever sees it finish, carries them too.
    client = world.sdk("tagged")
    source = client.files.create(file=("in.jsonl", jsonl("x", "y")), purpose="batch")
    batch = client.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"mock_gets_to_complete": "1"})
    assert client.batches.retrieve(batch.id).status == "completed"
    [row] = world.wait_for_usage("tagged", 1)
    resp = httpx.get(f"{world.gateway.url}/admin/v1/analytics", headers=ADMIN, timeout=30,
                     params={"key": world.keys["tagged"]["id"], "group_by": "tag"})
    assert resp.status_code == 200, resp.text
    by_tag = {s["group"]: s["totals"] for s in resp.json()["series"]}
    assert set(by_tag) == {"chargeback", "nightly"}
    for totals in by_tag.values():
        assert totals["requests"] == 1 and totals["cost_usd"] == row["cost_usd"]
        assert (totals["prompt_tokens"], totals["completion_tokens"]) == (21, 10)


def _run_batch(client: openai.OpenAI, models: list[str], reported: str) -> set[str]:
    """A batch of one line per model in ``models``, each answered as ``reported`` (the mock's
    ``mock_model``), run to completion: the models its output reports."""
    lines = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": model, "messages": [{"role": "user", "content": "hi"}],
                       "metadata": {"mock_model": reported}}} for i, model in enumerate(models)]
    data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    source = client.files.create(file=("in.jsonl", data), purpose="batch")
    batch = client.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"mock_gets_to_complete": "1"})
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed" and done.output_file_id
    output = client.files.content(done.output_file_id).content.splitlines()
    return {orjson.loads(line)["response"]["body"]["model"] for line in output}


def test_a_batch_answered_by_a_dated_snapshot_is_priced_by_the_entry_that_served_it(world: World) -> None:
    # OpenAI answers a request for an alias with its dated snapshot's id, which no model entry
    # names: the batch is priced by the entry whose upstream id that snapshot is (its info:
    # prices), not left unpriced at $0 as a model the catalog does not know.
    reported = _run_batch(world.sdk("house"), ["house-model"] * 2, "house-model-2025-06-01")
    assert reported == {"house-model-2025-06-01"}
    [row] = world.wait_for_usage("house", 1)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (21, 10) and row["unpriced"] == 0
    assert Decimal(row["cost_usd"]) == (21 * Decimal("0.15") + 10 * Decimal("0.6")) / 1_000_000 / 2


def test_only_the_lines_whose_own_prompt_is_long_cost_the_long_context_prices(world: World) -> None:
    # Each request of a batch is billed on its own: the lines' prompts together are over the
    # threshold, but only the one line over it on its own costs the long-context prices.
    _, usages = _completed_usages(world.sdk("long"), "house-long")
    expected = sum(u["prompt_tokens"] * Decimal("0.15") + u["completion_tokens"] * Decimal("0.6")
                   for u in usages[:2]) + usages[2]["prompt_tokens"] * Decimal("0.3") + usages[2][
                       "completion_tokens"] * Decimal("1.2")
    [row] = world.wait_for_usage("long", 1)
    assert row["prompt_tokens"] == 33 and row["unpriced"] == 0
    assert Decimal(row["cost_usd"]) == expected / 1_000_000 / 2


def test_a_batch_naming_a_snapshot_the_catalog_prices_is_priced_by_that_snapshot(world: World) -> None:
    # A line may name a dated snapshot no entry serves; the catalog prices gpt-4o-2024-05-13
    # ($5/$15) apart from the gpt-4o alias an entry serves ($2.50/$10): the snapshot's own price
    # applies, not the alias entry's.
    key = _post(world.gateway.url, "/admin/v1/keys", {"models": ["*"], "tenant": world.tenant})
    world.keys["snapshot"] = key
    client = world.sdk("snapshot")
    source = client.files.create(file=("in.jsonl", jsonl("hi", "there", model="gpt-4o-2024-05-13")),
                                 purpose="batch")
    batch = client.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"mock_gets_to_complete": "1"})
    assert client.batches.retrieve(batch.id).status == "completed"
    [row] = world.wait_for_usage("snapshot", 1)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (21, 10) and row["unpriced"] == 0
    assert Decimal(row["cost_usd"]) == (21 * Decimal(5) + 10 * Decimal(15)) / 1_000_000 / 2


@pytest.mark.parametrize("key", ["azure-any", "azure-scoped"])
def test_an_azure_batch_is_priced_by_the_deployment_each_line_named(world: World, key: str) -> None:
    # On Azure a line's model is a deployment name, and its answer reports the base model's id
    # (gpt-4o-mini-2024-07-18), which no entry names: each line is priced by the deployment it
    # named (noted when the batch was created), with that entry's own prices.
    deployments = ["contoso-mini", "contoso-mini", "contoso-mini-ptu"]
    assert _run_batch(world.sdk(key), deployments, "gpt-4o-mini-2024-07-18") == {"gpt-4o-mini-2024-07-18"}
    [row] = world.wait_for_usage(key, 1)
    assert row["model"] == "contoso-mini" and row["unpriced"] == 0
    assert (row["prompt_tokens"], row["completion_tokens"]) == (10 + 11 + 12, 15)
    # r0 and r1 (10 and 11 in, 5 out each) on contoso-mini, r2 (12 in, 5 out) on contoso-mini-ptu.
    mini = 21 * Decimal("1.0") + 10 * Decimal("2.0")
    ptu = 12 * Decimal("0.5") + 5 * Decimal("1.0")
    assert Decimal(row["cost_usd"]) == (mini + ptu) / 1_000_000 / 2


def test_an_azure_line_naming_a_deployment_no_entry_prices_is_priced_by_the_model_it_reports(
    world: World,
) -> None:
    # A key with every model may name a deployment of the resource that no model entry lists:
    # its answer is priced as the base model it reports (the catalog's gpt-4o-mini), as before
    # deployments were noted, not recorded unpriced at $0 for want of an entry.
    deployments = ["contoso-mini", "contoso-mini", "contoso-unlisted"]
    assert _run_batch(world.sdk("azure-unlisted"), deployments, "gpt-4o-mini-2024-07-18") == {
        "gpt-4o-mini-2024-07-18"}
    [row] = world.wait_for_usage("azure-unlisted", 1)
    assert row["model"] == "contoso-mini" and row["unpriced"] == 0
    assert (row["prompt_tokens"], row["completion_tokens"]) == (10 + 11 + 12, 15)
    # r0 and r1 on contoso-mini (its entry's prices), r2 (12 in, 5 out) at the catalog's
    # gpt-4o-mini prices (0.15 and 0.6 per million).
    mini = 21 * Decimal("1.0") + 10 * Decimal("2.0")
    unlisted = 12 * Decimal("0.15") + 5 * Decimal("0.6")
    assert Decimal(row["cost_usd"]) == (mini + unlisted) / 1_000_000 / 2


@pytest.mark.parametrize(("data", "errors"), [
    (b"just some notes\nnot JSON at all\n", [("invalid_json_line", 1, None), ("invalid_json_line", 2, None)]),
    (b"\n\n", [("empty_file", None, None)]),
    (b"[1, 2]\n" + jsonl("fine")
     + b'{"custom_id": "x", "method": "POST", "url": "/v1/embeddings", "body": {}}\n'
     + b'{"custom_id": "y", "method": "POST", "url": "/v1/chat/completions", "body": "hi"}\n'
     + b'{"custom_id": "z", "url": "/v1/chat/completions", "body": {}}\n',
     [("invalid_json_line", 1, None), ("invalid_url", 3, "url"), ("invalid_value", 4, "body"),
      ("missing_required_parameter", 5, "method")]),
], ids=["not-jsonl", "empty", "bad-lines"])
def test_a_batch_whose_input_is_not_request_lines_fails_as_openai_fails_it(
    world: World, data: bytes, errors: list[tuple[str, int | None, str | None]]
) -> None:
    # The upstream validates the input file while the batch is validating: the batch fails with
    # the bad lines in its errors, and every later look says so (never a 500).
    key = _post(world.gateway.url, "/admin/v1/keys", {"models": ["*"], "tenant": world.tenant})["key"]
    client = openai.OpenAI(base_url=world.gateway.base_url, api_key=key, max_retries=0, timeout=30)
    source = client.files.create(file=("notes.txt", data), purpose="batch")
    batch = client.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"mock_gets_to_complete": "1"})
    assert batch.status == "validating"
    for _ in range(2):
        failed = client.batches.retrieve(batch.id)
        assert failed.status == "failed" and failed.failed_at and failed.output_file_id is None
        assert failed.errors is not None and failed.errors.data is not None
        assert [(e.code, e.line, e.param) for e in failed.errors.data] == errors
        assert all(e.message for e in failed.errors.data)
    assert client.batches.list().data[0].status == "failed"


def test_the_poller_prices_a_batch_nobody_looks_at(world: World) -> None:
    client = world.sdk("poller")
    source = client.files.create(file=("in.jsonl", jsonl("p")), purpose="batch")
    client.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions", completion_window="24h",
                          metadata={"mock_gets_to_complete": "1"})
    [row] = world.wait_for_usage("poller", 1)
    assert row["requests"] == 1 and row["prompt_tokens"] == 10 and row["completion_tokens"] == 5


def test_another_key_sees_nothing_of_it(world: World) -> None:
    owner, other = world.sdk("a"), world.sdk("narrow")
    f = owner.files.create(file=("mine.jsonl", jsonl("secret")), purpose="batch")
    batch = owner.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h",
                                 metadata={"mock_gets_to_complete": "100"})
    for call in (lambda: other.files.retrieve(f.id), lambda: other.files.content(f.id),
                 lambda: other.files.delete(f.id), lambda: other.batches.retrieve(batch.id),
                 lambda: other.batches.cancel(batch.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    with pytest.raises(openai.NotFoundError) as refused:
        other.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert refused.value.param == "input_file_id"
    assert f.id not in [x.id for x in other.files.list()]
    assert batch.id not in [x.id for x in other.batches.list()]
    # The master key is a caller of its own too.
    admin = openai.OpenAI(base_url=world.gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    with pytest.raises(openai.NotFoundError):
        admin.files.retrieve(f.id)
    assert owner.files.retrieve(f.id).id == f.id  # still there for its owner


def test_a_model_request_may_name_only_the_callers_own_files(world: World) -> None:
    # A file id in a chat or Responses request makes the upstream read that file: another key's
    # (or tenant's) is 404 there too, before anything is sent.
    owner, other = world.sdk("a"), world.sdk("b")
    mine = owner.files.create(file=("notes.txt", b"private notes"), purpose="user_data").id

    def chat(client: openai.OpenAI, marker: str) -> Any:
        return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": [
            {"type": "text", "text": f"summarise mock:capture={marker}"},
            {"type": "file", "file": {"file_id": mine}}]}])

    def respond(client: openai.OpenAI, marker: str) -> Any:
        return client.responses.create(model="native-mini", input=[{"role": "user", "content": [
            {"type": "input_text", "text": f"summarise mock:capture={marker}"},
            {"type": "input_file", "file_id": mine}]}])

    for call, param in ((chat, "messages[0].content[1].file.file_id"),
                        (respond, "input[0].content[1].file_id")):
        marker = new_marker()
        with pytest.raises(openai.NotFoundError) as refused:
            call(other, marker)
        assert refused.value.code == "not_found" and refused.value.param == param
        assert mine in refused.value.message
        assert captured(world.mock, marker, timeout=0.5) == []  # nothing reached the upstream
        marker = new_marker()
        call(owner, marker)  # the owner's own file goes through
        [sent] = captured(world.mock, marker)
        assert mine in orjson.dumps(sent["body"]).decode()
    with pytest.raises(openai.NotFoundError):
        world.sdk("azure").chat.completions.create(model="gpt-4o-mini", messages=[
            {"role": "user", "content": [{"type": "file", "file": {"file_id": "file-nobody-uploaded"}}]}])


def test_no_key_is_401(world: World) -> None:
    base = world.gateway.base_url
    for method, path in (("GET", "/files"), ("GET", "/files/file-x"), ("GET", "/batches"),
                         ("POST", "/batches")):
        resp = httpx.request(method, base + path, timeout=30)
        assert resp.status_code == 401, (method, path, resp.text)
        assert resp.json()["error"]["code"] == "missing_api_key"
    upload = httpx.post(base + "/files", files={"file": ("a.jsonl", b"{}\n")}, data={"purpose": "batch"},
                        timeout=30)
    assert upload.status_code == 401 and upload.json()["error"]["type"] == "authentication_error"


def _upload(world: World, body: bytes, content_type: str) -> httpx.Response:
    return httpx.post(f"{world.gateway.base_url}/files", content=body, timeout=30,
                      headers={"Authorization": f"Bearer {world.keys['uploads']['key']}",
                               "Content-Type": content_type})


FORM = "multipart/form-data; boundary=zzz"
PURPOSE = b"--zzz\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
MODEL = b"--zzz\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ngpt-4o-mini\r\n"
def field(name: str, value: str) -> bytes:
    return f'--zzz\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()


COLOUR = b"--zzz\r\nContent-Disposition: form-data; name=\"colour\"\r\n\r\nred\r\n"
FILE_PART = b"--zzz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jsonl\"\r\n\r\n{}\r\n"


@pytest.mark.parametrize(("body", "content_type", "status", "code"), [
    (b"not a form", FORM, 400, "invalid_multipart"),
    (b"--zzz\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch", FORM, 400,
     "invalid_multipart"),
    (b"--zzz\r\nX: y\r\n\r\nbatch\r\n--zzz--\r\n", FORM, 400, "invalid_multipart"),
    (b"--zzz\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--zzz--\r\n",
     "multipart/form-data; boundary=zzz", 400, "missing_required_parameter"),
    (b"{}", "multipart/form-data", 400, "invalid_multipart"),
    (b"{}", "application/json", 415, "unsupported_media_type"),
    (b"--zzz\r\nContent-Disposition: form-data; name=\"colour\"\r\n\r\nred\r\n--zzz--\r\n", FORM, 400,
     "unknown_parameter"),
    # After a file that is being piped on (the fields came first), and before it (the file kept).
    (PURPOSE + FILE_PART + FILE_PART + b"--zzz--\r\n", FORM, 400, "duplicate_parameter"),
    (FILE_PART + FILE_PART + PURPOSE + b"--zzz--\r\n", FORM, 400, "duplicate_parameter"),
    (PURPOSE + FILE_PART + COLOUR + b"--zzz--\r\n", FORM, 400, "unknown_parameter"),
    # A field given before the piped file and again after it.
    (PURPOSE + FILE_PART + PURPOSE + b"--zzz--\r\n", FORM, 400, "duplicate_parameter"),
    (PURPOSE + MODEL + FILE_PART + MODEL + b"--zzz--\r\n", FORM, 400, "duplicate_parameter"),
    # An expiry OpenAI would refuse, or half of one, before or after the file.
    (PURPOSE + field("expires_after[anchor]", "whenever") + field("expires_after[seconds]", "3600")
     + FILE_PART + b"--zzz--\r\n", FORM, 400, "invalid_value"),
    (PURPOSE + field("expires_after[anchor]", "created_at") + field("expires_after[seconds]", "-5")
     + FILE_PART + b"--zzz--\r\n", FORM, 400, "invalid_value"),
    (PURPOSE + field("expires_after[anchor]", "created_at") + FILE_PART + b"--zzz--\r\n", FORM, 400,
     "missing_required_parameter"),
    (PURPOSE + FILE_PART + field("expires_after[seconds]", "soon") + b"--zzz--\r\n", FORM, 400,
     "invalid_value"),
    # What the upload would use (its expiry, its provider) after a file already sent on as it
    # came: refused, not dropped (the file would be kept for ever, or on another provider).
    (PURPOSE + FILE_PART + field("expires_after[anchor]", "created_at")
     + field("expires_after[seconds]", "3600") + b"--zzz--\r\n", FORM, 400, "invalid_value"),
    (PURPOSE + FILE_PART + MODEL + b"--zzz--\r\n", FORM, 400, "invalid_value"),
])
def test_malformed_uploads(world: World, body: bytes, content_type: str, status: int, code: str) -> None:
    before = {f.id for f in world.sdk("uploads").files.list()}
    resp = _upload(world, body, content_type)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code
    assert {f.id for f in world.sdk("uploads").files.list()} == before  # nothing was kept


def test_a_wrong_method_is_405_naming_the_methods(world: World) -> None:
    headers = {"Authorization": f"Bearer {world.keys['a']['key']}"}
    for path, allow in (("/files", "GET, HEAD, POST"), ("/files/file-x", "DELETE, GET, HEAD"),
                        ("/batches/batch_x/cancel", "POST")):
        resp = httpx.put(world.gateway.base_url + path, headers=headers, timeout=30)
        assert resp.status_code == 405 and resp.headers["allow"] == allow, (path, resp.text)
        assert resp.json()["error"]["code"] == "method_not_allowed"


def test_oversized_and_unknown_purpose(world: World) -> None:
    client = world.sdk("a")
    with pytest.raises(openai.APIStatusError) as big:
        client.files.create(file=("big.jsonl", b"x" * (MAX_UPLOAD + 1)), purpose="batch")
    assert big.value.status_code == 413
    # Without a declared length the limit holds all the same (a chunked body, cut when over).
    chunks = iter([b"--zzz\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
                   b"--zzz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\n",
                   *[b"y" * 16384] * 8, b"\r\n--zzz--\r\n"])
    chunked = httpx.post(f"{world.gateway.base_url}/files", content=chunks, timeout=30,
                         headers={"Authorization": f"Bearer {world.keys['a']['key']}",
                                  "Content-Type": "multipart/form-data; boundary=zzz"})
    assert chunked.status_code == 413, chunked.text
    with pytest.raises(openai.BadRequestError) as purpose:
        client.files.create(file=("a.jsonl", b"{}\n"), purpose="bogus")  # type: ignore[arg-type]
    assert purpose.value.param == "purpose"
    # The server keeps serving.
    assert client.files.create(file=("ok.jsonl", b"{}\n"), purpose="batch").bytes == 3


@pytest.mark.parametrize(("body", "param"), [
    ({"endpoint": "/v1/chat/completions", "completion_window": "24h"}, "input_file_id"),
    ({"input_file_id": 7, "endpoint": "/v1/chat/completions", "completion_window": "24h"}, "input_file_id"),
    ({"input_file_id": "file-x", "endpoint": "/v1/nope", "completion_window": "24h"}, "endpoint"),
    ({"input_file_id": "file-x", "endpoint": "/v1/chat/completions", "completion_window": "1h"},
     "completion_window"),
    ({"input_file_id": "file-x", "endpoint": "/v1/chat/completions", "completion_window": "24h", "x": 1},
     "x"),
    ({"input_file_id": "file-x", "endpoint": "/v1/chat/completions", "completion_window": "24h",
      "metadata": {"k": 1}}, "metadata"),
    ({"input_file_id": "file-x", "endpoint": "/v1/chat/completions", "completion_window": "24h",
      "output_expires_after": "soon"}, "output_expires_after"),
    ({"input_file_id": "file-x", "endpoint": "/v1/chat/completions", "completion_window": "24h",
      "output_expires_after": {"anchor": "created_at", "seconds": 60}}, "output_expires_after.seconds"),
    ({"input_file_id": "file-x", "endpoint": "/v1/chat/completions", "completion_window": "24h",
      "output_expires_after": {"anchor": "now", "seconds": 3600}}, "output_expires_after.anchor"),
])
def test_bad_batch_requests(world: World, body: dict[str, Any], param: str) -> None:
    resp = httpx.post(f"{world.gateway.base_url}/batches", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {world.keys['a']['key']}"})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param
    bad_json = httpx.post(f"{world.gateway.base_url}/batches", content=b"{nope", timeout=30,
                          headers={"Authorization": f"Bearer {world.keys['a']['key']}",
                                   "Content-Type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_json"


def test_files_and_batches_requests_count_against_the_keys_rate_limit(world: World) -> None:
    client = world.sdk("limited")  # rpm_limit 2
    first = client.files.with_raw_response.list()
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    second = client.batches.with_raw_response.list()
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError) as refused:
        client.files.create(file=("in.jsonl", jsonl("late")), purpose="batch")
    assert refused.value.code == "rate_limit_exceeded"
    headers = refused.value.response.headers
    assert headers["x-ratelimit-scope"] == "key" and int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-limit-requests"] == "2" and headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError):
        client.batches.list()
    # Another key of the same tenant is not limited by it.
    assert world.sdk("b").files.with_raw_response.list().status_code == 200


def test_a_batch_counts_in_its_keys_budget_and_a_spent_budget_refuses_new_ones(world: World) -> None:
    client = world.sdk("spender")
    first = client.files.create(file=("one.jsonl", jsonl("p")), purpose="batch")
    second = client.files.create(file=("two.jsonl", jsonl("q")), purpose="batch")
    assert world.budget_spent() == 0
    batch = client.batches.create(input_file_id=first.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"mock_gets_to_complete": "1"})
    assert client.batches.retrieve(batch.id).status == "completed"
    [row] = world.wait_for_usage("spender", 1)
    cost = Decimal(row["cost_usd"])
    assert cost == (10 * Decimal("0.15") + 5 * Decimal("0.6")) / 1_000_000 / 2  # 2250 nano-USD
    deadline = time.monotonic() + 20
    while world.budget_spent() != cost and time.monotonic() < deadline:
        time.sleep(0.05)
    assert world.budget_spent() == cost
    # The budget (2000 nano-USD) is spent: no new batch, no new upload; reading goes on.
    with pytest.raises(openai.RateLimitError) as refused:
        client.batches.create(input_file_id=second.id, endpoint="/v1/chat/completions",
                              completion_window="24h")
    assert refused.value.code == "budget_exceeded"
    assert refused.value.response.headers["x-switchboard-budget-scope"] == "key"
    # Not before the month ends: the SDKs are told not to retry (they would sleep until then).
    until_then = int(refused.value.response.headers["retry-after"])
    assert (refused.value.response.headers.get("x-should-retry") == "false") is (until_then > 120)
    with pytest.raises(openai.RateLimitError):
        client.files.create(file=("three.jsonl", jsonl("r")), purpose="batch")
    assert client.batches.retrieve(batch.id).status == "completed"
    assert {first.id, second.id} <= {f.id for f in client.files.list()}
    # Counted once: seen again by the caller and by the poller, the spend stays the batch's cost.
    [row] = world.wait_for_usage("spender", 2, timeout=1.5)
    assert row["requests"] == 1 and world.budget_spent() == cost


@pytest.mark.parametrize("reported", [True, False], ids=["batch-usage", "lines-read"])
def test_an_output_over_the_limit_is_still_charged(
    mock_upstream: Mock, tmp_path: Any, reported: bool
) -> None:
    # A batch whose output file is over files.max_output_bytes was never priced (retried every
    # round): a large enough batch ran for free. It is priced by the batch's own usage when the
    # upstream reports one, else by the lines read up to the limit (flagged output_cut).
    config = openai_config(mock_upstream)
    for m in config["models"]:
        if m["name"] == "gpt-4o-mini":
            m["info"] = dict(PRICES)
    config["files"] = {"provider": "local-openai", "max_output_bytes": 1024, "poll_seconds": 3600}
    gw = start_gateway(config, tmp_path)
    try:
        client = openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
        source = client.files.create(file=("in.jsonl", jsonl(*[f"q{i}" for i in range(8)])), purpose="batch")
        meta = {"mock_gets_to_complete": "1", "mock_batch_usage": "1" if reported else "0"}
        batch = client.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions",
                                      completion_window="24h", metadata=meta)
        assert client.batches.retrieve(batch.id).status == "completed"
        output = client.batches.retrieve(batch.id).output_file_id
        assert output is not None and len(client.files.content(output).content) > 1024
        record = ledger.wait_for(ledger.database_of(config, tmp_path), {batch.id})[batch.id]
        prompt = sum(10 + i for i in range(8))  # the mock's usage: 10 + the line's number, 5 out
        if reported:
            assert (record.prompt_tokens, record.completion_tokens) == (prompt, 40)
            assert record.metadata["requests"] == 8 and "output_cut" not in record.metadata
        else:
            assert 0 < record.prompt_tokens < prompt and record.metadata["output_cut"] is True
        assert record.cost_usd > 0 and not record.unpriced
    finally:
        gw.process.stop()
