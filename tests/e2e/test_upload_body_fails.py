"""A request body that fails while the gateway sends it on ends the exchange at once: the caller
gets its error without waiting for the provider, and the provider's connection is reset rather
than left waiting for the rest of the body.

End to end through a file upload (``POST /v1/files``), whose file is sent on as it arrives: a
form field after the file is the caller's error found only once the file went upstream, so the
body fails part-way. The upstream here (raw sockets) answers as soon as the request's head is in
(the head of a chunked answer that it never finishes) and then reads the body, as a server that
answers early does. A spooled upload (transcriptions, image edits) failing part-way is checked at
the upstream client (tests/unit/upstream/test_upload_failure.py): its temporary file lives in
the gateway's process, out of a test's reach.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.servers import MASTER_KEY, Gateway, start_gateway
from tests.threaded_server import ThreadedServer

# The provider's bound on the whole exchange: what a caller would have waited for without the fix.
TOTAL_SECONDS = 20
BOUNDARY = "sbformboundary"


class EarlyAnswerUpstream(ThreadedServer):
    """Answers every request's head at once, then reads its body until the gateway ends the
    connection; ``ended`` holds how each connection ended (``eof``, ``reset``)."""

    def __init__(self) -> None:
        self.ended: list[str] = []
        self.read_some = threading.Event()  # some of a body arrived
        self.changed = threading.Condition()
        super().__init__(self._serve, name="early-answer upstream")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        how = "held"
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            await writer.drain()
            async with asyncio.timeout(60):
                while await reader.read(65536):
                    self.read_some.set()
            how = "eof"
        except ConnectionResetError:
            how = "reset"
        except TimeoutError:
            how = "held"
        finally:
            with self.changed:
                self.ended.append(how)
                self.changed.notify_all()
            writer.close()

    def wait_ended(self, timeout: float) -> list[str]:
        with self.changed:
            self.changed.wait_for(lambda: bool(self.ended), timeout)
            return list(self.ended)


@pytest.fixture(scope="module")
def upstream() -> Iterator[EarlyAnswerUpstream]:
    server = EarlyAnswerUpstream()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(upstream: EarlyAnswerUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config: dict[str, Any] = {
        "providers": [{"name": "early", "type": "openai", "api_base": f"http://127.0.0.1:{upstream.port}/v1",
                       "api_key": "sk-early", "timeouts": {"total": TOTAL_SECONDS}}],
        "models": [{"name": "gpt-4o", "provider": "early", "model": "gpt-4o"}],
        "files": {"provider": "early"},
        "auth": {"master_key": "${SWITCHBOARD_MASTER_KEY}"},
    }
    gw = start_gateway(config, tmp_path_factory.mktemp("body-fails"))
    yield gw
    gw.process.stop()


def _form(upstream: EarlyAnswerUpstream) -> Iterator[bytes]:
    """A form whose file goes upstream before a field the gateway refuses follows it: the rest is
    sent once the upstream has read some of the file, so the body fails part-way."""
    yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
           f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n"
           f"Content-Type: application/jsonl\r\n\r\n").encode() + b"{}\n" * 100_000
    assert upstream.read_some.wait(TOTAL_SECONDS)
    yield (f"\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"bogus\"\r\n\r\nx\r\n"
           f"--{BOUNDARY}--\r\n").encode()


def test_a_body_failing_part_way_ends_the_exchange_at_once(
        gateway: Gateway, upstream: EarlyAnswerUpstream) -> None:
    started = time.monotonic()
    resp = httpx.post(f"{gateway.base_url}/files", content=_form(upstream),
                      headers={"Authorization": f"Bearer {MASTER_KEY}",
                               "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
                      timeout=TOTAL_SECONDS + 10)
    # The caller's own error, at once: not the provider's timeout (a 504 after TOTAL_SECONDS).
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == "bogus"
    assert time.monotonic() - started < TOTAL_SECONDS / 2
    # The provider's connection was reset, not left open waiting for the rest of the body.
    assert upstream.wait_ended(10) == ["reset"]
