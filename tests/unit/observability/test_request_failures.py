"""The failure log line's status agrees with the ledger and the metrics (context.Outcome)."""

from __future__ import annotations

import pytest

from switchboard.context import CLIENT_CLOSED, Outcome, RequestContext
from switchboard.http.openai_api import CHAT
from switchboard.observability.requests import failure_fields


@pytest.mark.parametrize(("status", "gone", "stream", "recorded"), [
    (0, True, False, CLIENT_CLOSED),  # left before any status was sent
    (200, True, False, CLIENT_CLOSED),  # left a non-stream request
    (200, True, True, 200),  # left a stream: its 200 was sent
    (502, False, False, 502),
    (429, False, False, 429),
])
def test_the_logged_status_is_the_recorded_one(status: int, gone: bool, stream: bool, recorded: int) -> None:
    ctx = RequestContext("rid", "chat", CHAT, {}, b"", 0.0)
    ctx.outcome = Outcome(status=status, client_disconnected=gone, stream=stream)
    assert ctx.outcome.recorded_status() == recorded
    assert failure_fields(ctx)["status"] == recorded
