"""Every media endpoint answers through the chain: a stage added to it sees each one, and each is
refused without a key before its body is looked at."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.unit.pipeline.test_every_endpoint import Stamp, http, stamp  # noqa: F401 - fixtures

PNG = b"\x89PNG\r\n\x1a\n"
CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("/v1/rerank", {"json": {"model": "m", "query": "q", "documents": ["a"]}}, "rerank"),
    ("/v1/moderations", {"json": {"model": "m", "input": "x"}}, "moderations"),
    ("/v1/images/generations", {"json": {"model": "m", "prompt": "x"}}, "image_generations"),
    ("/v1/audio/speech", {"json": {"model": "m", "input": "x", "voice": "alloy"}}, "speech"),
    ("/v1/images/edits", {"data": {"model": "m", "prompt": "x"}, "files": {"image": ("a.png", PNG)}},
     "image_edits"),
    ("/v1/audio/transcriptions", {"data": {"model": "m"}, "files": {"file": ("a.wav", b"RIFF")}},
     "transcriptions"),
    ("/audio/translations", {"data": {"model": "m"}, "files": {"file": ("a.wav", b"RIFF")}}, "translations"),
]


@pytest.mark.parametrize(("path", "body", "operation"), CALLS)
async def test_the_stage_runs_for_every_media_endpoint(
    http: httpx.AsyncClient, stamp: Stamp, path: str, body: dict[str, Any], operation: str  # noqa: F811
) -> None:
    resp = await http.post(path, **body)
    # No upstream is started here (rerank: openai has none, 400): the chain ran to the terminal.
    assert resp.status_code in (400, 500), resp.text
    assert resp.headers["x-stamp"] == operation
    assert stamp.seen == [(operation, "master")]


@pytest.mark.parametrize(("path", "body", "operation"), CALLS)
async def test_a_key_is_required(
    http: httpx.AsyncClient, stamp: Stamp, path: str, body: dict[str, Any], operation: str  # noqa: F811
) -> None:
    resp = await http.post(path, headers={"authorization": "Bearer wrong"}, **body)
    assert resp.status_code == 401 and resp.json()["error"]["type"]
    assert stamp.seen == []


def test_media_operations_are_model_calls_everywhere() -> None:
    from switchboard import gateway
    from switchboard.http import media
    from switchboard.observability import metrics

    assert media.OPERATIONS <= gateway.MODEL_CALLS
    assert gateway.MODEL_CALLS == metrics.MODEL_CALLS  # overhead and upstream histograms too
