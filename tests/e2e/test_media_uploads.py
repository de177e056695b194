"""A streamed media answer whose upstream answers before it has read the whole upload: the upload
keeps going to the upstream while its answer is relayed, and the client gets the whole stream.

The upstream here (raw sockets) answers a transcription as soon as the request's head has
arrived (status and a first event), only then reads the multipart body to its end, and answers
with what it read: as a server that starts streaming early does.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.servers import MASTER_KEY, Gateway, start_gateway
from tests.threaded_server import ThreadedServer

MIB = 1024 * 1024
# Far more than the socket buffers between the gateway and the upstream hold: most of it is still
# to be sent when the upstream answers.
UPLOAD_BYTES = 20 * MIB


def _event(payload: dict[str, Any]) -> bytes:
    data = b"data: " + json.dumps(payload).encode() + b"\n\n"
    return b"%x\r\n%b\r\n" % (len(data), data)


class EarlyAnswerUpstream(ThreadedServer):
    """Answers a streamed transcription before reading its body; ``bodies`` holds each body read
    (appended in the server's thread once read to its end)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        super().__init__(self._serve, name="early-answer upstream")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            fields = (line.partition(":") for line in head.split("\r\n")[1:])
            headers = {name.strip().lower(): value.strip() for name, _, value in fields}
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n"
                         + _event({"type": "transcript.text.delta", "delta": "heard"}))
            await writer.drain()
            body = await reader.readexactly(int(headers["content-length"]))
            self.bodies.append(body)
            text = f"heard {len(body)} bytes"
            writer.write(_event({"type": "transcript.text.delta", "delta": f" {len(body)} bytes"})
                         + _event({"type": "transcript.text.done", "text": text, "usage": {
                             "type": "tokens", "input_tokens": 10, "output_tokens": 3, "total_tokens": 13}})
                         + b"0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the gateway ended the upload: the test sees no body recorded
        finally:
            writer.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[EarlyAnswerUpstream]:
    server = EarlyAnswerUpstream()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(upstream: EarlyAnswerUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config: dict[str, Any] = {
        "providers": [{"name": "early", "type": "openai", "api_base": f"http://127.0.0.1:{upstream.port}/v1",
                       "api_key": "sk-early"}],
        "models": [{"name": "gpt-4o-transcribe", "provider": "early", "model": "gpt-4o-transcribe",
                    "info": {"mode": "audio_transcription", "input_cost_per_mtok": 2.5,
                             "output_cost_per_mtok": 10}}],
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
    }
    gw = start_gateway(config, tmp_path_factory.mktemp("early"))
    yield gw
    gw.process.stop()


def test_a_streamed_transcription_answered_before_its_upload_was_read_gets_the_whole_upload(
        gateway: Gateway, upstream: EarlyAnswerUpstream) -> None:
    audio = os.urandom(UPLOAD_BYTES)
    sdk = openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    stream = sdk.audio.transcriptions.create(model="gpt-4o-transcribe", file=("big.wav", audio, "audio/wav"),
                                             stream=True)
    events = list(stream)
    # The client got the whole stream: the first event, sent before the upload was read, and
    # the ones after it.
    delta, done = "transcript.text.delta", "transcript.text.done"
    assert [e.type for e in events] == [delta, delta, done]
    assert len(upstream.bodies) == 1
    body = upstream.bodies[0]
    assert events[-1].text == f"heard {len(body)} bytes"  # type: ignore[union-attr]
    # The upstream got the whole upload, byte for byte, and the form's end after it.
    start = body.index(b"\r\n\r\n", body.index(b'filename="big.wav"')) + 4
    assert hashlib.sha256(body[start:start + UPLOAD_BYTES]).digest() == hashlib.sha256(audio).digest()
    assert body[start + UPLOAD_BYTES:].startswith(b"\r\n--") and body.endswith(b"--\r\n")
