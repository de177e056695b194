"""An upstream answering a redirect: the gateway never follows it (it would send the provider's
credentials, custom headers such as ``api-key`` included, and the request body to wherever the
redirect points); the caller gets a 502 naming the status, never the redirect's target.

The upstream here (raw sockets) answers every request under ``/r<status>/`` with that redirect
status, before reading the request's body, its ``Location`` pointing at ``/stolen`` on itself;
a request that reaches ``/stolen`` is recorded, which no test should see.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import openai
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.servers import MASTER_KEY, Gateway, start_gateway
from tests.threaded_server import ThreadedServer

STATUSES = (301, 302, 307, 308)


class RedirectingUpstream(ThreadedServer):
    def __init__(self) -> None:
        self.stolen: list[str] = []  # the heads of requests that followed a redirect
        self.ended: list[str] = []  # paths whose connection the gateway ended
        self.changed = threading.Condition()
        super().__init__(self._serve, name="redirecting upstream", receive_buffer=4096)

    def wait_ended(self, path: str, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: path in self.ended, timeout)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        path = ""
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            path = head.split(" ", 2)[1]
            if path.startswith("/stolen"):
                self.stolen.append(head)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 2\r\n\r\n{}")
                await writer.drain()
                return
            status = int(path.split("/", 2)[1][1:])
            location = f"http://127.0.0.1:{self.port}/stolen{path}"
            writer.write(f"HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Type: text/html\r\n"
                         f"Connection: close\r\nContent-Length: 9\r\n\r\n<a>x</a>\n".encode())
            await writer.drain()
            # Held open, the body never read, until the gateway ends the connection.
            async with asyncio.timeout(60):
                while await reader.read(65536):
                    pass
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            with self.changed:
                self.ended.append(path)
                self.changed.notify_all()
            writer.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[RedirectingUpstream]:
    server = RedirectingUpstream()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(upstream: RedirectingUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    providers: list[dict[str, Any]] = []
    models: list[dict[str, Any]] = []
    for status in STATUSES:
        providers.append({"name": f"r{status}", "type": "openai", "api_key": "sk-redirected",
                          "api_base": f"http://127.0.0.1:{upstream.port}/r{status}/v1",
                          "headers": {"api-key": "custom-secret"}})
        models.append({"name": f"chat-{status}", "provider": f"r{status}", "model": "gpt-4o"})
        models.append({"name": f"whisper-{status}", "provider": f"r{status}", "model": "whisper-1",
                       "info": {"mode": "audio_transcription", "input_cost_per_mtok": 2.5,
                                "output_cost_per_mtok": 10}})
    config: dict[str, Any] = {
        "providers": providers, "models": models, "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
        "mcp_servers": [{"name": "moved", "url": f"http://127.0.0.1:{upstream.port}/r307/mcp",
                         "headers": {"x-api-key": "mcp-secret"}}],
    }
    gw = start_gateway(config, tmp_path_factory.mktemp("redirects"))
    yield gw
    gw.process.stop()


def _sdk(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def _assert_refused(err: openai.APIStatusError, status: int) -> None:
    assert err.status_code == 502
    body = err.body
    assert isinstance(body, dict)
    assert body["code"] == "upstream_error"
    message = body["message"]
    assert f"redirect (HTTP {status})" in message and "does not follow" in message
    assert "stolen" not in message and "127.0.0.1" not in message  # the target is not echoed


@pytest.mark.parametrize("status", STATUSES)
def test_a_chat_call_redirected_is_a_502_naming_the_status(
        gateway: Gateway, upstream: RedirectingUpstream, status: int) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        _sdk(gateway).chat.completions.create(model=f"chat-{status}",
                                              messages=[{"role": "user", "content": "hi"}])
    _assert_refused(caught.value, status)
    assert upstream.stolen == []


@pytest.mark.parametrize("status", STATUSES)
def test_a_streamed_chat_call_redirected_is_a_502_naming_the_status(
        gateway: Gateway, upstream: RedirectingUpstream, status: int) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        stream = _sdk(gateway).chat.completions.create(
            model=f"chat-{status}", messages=[{"role": "user", "content": "hi"}], stream=True)
        list(stream)
    _assert_refused(caught.value, status)
    assert upstream.stolen == []


@pytest.mark.parametrize("status", STATUSES)
def test_an_upload_redirected_is_a_502_and_its_connection_ends(
        gateway: Gateway, upstream: RedirectingUpstream, status: int) -> None:
    # Larger than the socket buffers: most of the upload is still queued when the answer comes.
    audio = b"\0" * (8 * 1024 * 1024)
    with pytest.raises(openai.APIStatusError) as caught:
        _sdk(gateway).audio.transcriptions.create(model=f"whisper-{status}",
                                                  file=("a.wav", audio, "audio/wav"))
    _assert_refused(caught.value, status)
    assert upstream.stolen == []
    # The connection is ended, not held open behind the rest of the upload.
    assert upstream.wait_ended(f"/r{status}/v1/audio/transcriptions", 10)


def test_an_anthropic_api_caller_gets_the_same_refusal(
        gateway: Gateway, upstream: RedirectingUpstream) -> None:
    body = {"model": "chat-307", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    resp = httpx.post(f"{gateway.url}/v1/messages", headers={"x-api-key": MASTER_KEY}, json=body, timeout=30)
    assert resp.status_code == 502
    assert "redirect (HTTP 307)" in resp.json()["error"]["message"]
    assert upstream.stolen == []


def test_an_mcp_server_redirecting_is_refused_not_followed(
        gateway: Gateway, upstream: RedirectingUpstream) -> None:
    async def call() -> MCPError:
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30) as http,
            streamable_http_client(gateway.url + "/mcp", http_client=http) as streams,
            ClientSession(streams[0], streams[1]) as client,
        ):
            await client.initialize()
            with pytest.raises(MCPError) as refused:
                await client.call_tool("moved__anything", {})
            return refused.value

    refused = asyncio.run(call())
    assert refused.error.data["code"] == "mcp_server_error"  # type: ignore[index]
    assert "redirect (HTTP 307)" in refused.error.message and "stolen" not in refused.error.message
    assert upstream.stolen == []
