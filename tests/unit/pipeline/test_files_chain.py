"""Files and batches answer through the chain: a stage added to it sees every one of their
requests (after authentication), and a request refused by authentication reaches nothing."""

from __future__ import annotations

import httpx
import pytest

from tests.unit.pipeline.test_every_endpoint import Stamp, http, stamp  # noqa: F401 - fixtures


@pytest.mark.parametrize(
    ("method", "path", "body", "operation", "status"),
    [
        # The stores are not open here (no lifespan): the terminal says so, after the chain ran.
        ("GET", "/v1/files", None, "files", 503),
        ("GET", "/files/file-abc", None, "files", 503),
        ("GET", "/v1/files/file-abc/content", None, "files", 503),
        ("DELETE", "/v1/files/file-abc", None, "files", 503),
        ("POST", "/v1/batches", {"endpoint": "/v1/embeddings"}, "batches", 400),
        ("GET", "/v1/batches/batch_1", None, "batches", 503),
        ("POST", "/v1/batches/batch_1/cancel", None, "batches", 503),
    ],
)
async def test_the_stage_runs_for_files_and_batches(
    http: httpx.AsyncClient, stamp: Stamp, method: str, path: str, body: object,  # noqa: F811
    operation: str, status: int,
) -> None:
    resp = await http.request(method, path, json=body)
    assert resp.status_code == status, resp.text
    assert resp.headers["x-stamp"] == operation
    assert resp.headers["x-request-id"]
    assert stamp.seen == [(operation, "master")]


async def test_authentication_comes_first(http: httpx.AsyncClient, stamp: Stamp) -> None:  # noqa: F811
    for method, path in (("GET", "/v1/files"), ("POST", "/v1/files"), ("POST", "/v1/batches"),
                         ("GET", "/v1/batches/batch_1")):
        resp = await http.request(method, path, headers={"authorization": "Bearer wrong"})
        assert resp.status_code == 401, path
        assert resp.json()["error"]["type"] == "authentication_error"
    assert stamp.seen == []


async def test_unrouted_methods_and_paths(http: httpx.AsyncClient, stamp: Stamp) -> None:  # noqa: F811
    assert (await http.request("PUT", "/v1/files")).status_code == 405
    assert (await http.get("/v1/files/a/b/c")).json()["error"]["code"] == "unknown_url"
    many = "&".join(f"p{i}=1" for i in range(30))
    assert (await http.get(f"/v1/files?{many}")).status_code == 400
    assert stamp.seen == []
