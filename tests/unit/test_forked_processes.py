"""A process forked after import (a process manager that preloads the app, then forks its
workers) must not repeat its parent's request ids or routing choices."""

from __future__ import annotations

import json
import os

from switchboard.http.endpoint import request_id
from switchboard.routing import strategies


def _in_child() -> dict[str, object]:
    """What a forked child sees: its first request id and its first routing draws."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            seen = {"id": request_id({}), "draws": [strategies.rng.random() for _ in range(4)]}
            os.write(write_end, json.dumps(seen).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    result: dict[str, object] = json.loads(data)
    return result


def test_two_forked_children_have_their_own_request_ids_and_routing_draws() -> None:
    first, second = _in_child(), _in_child()
    parent = request_id({})
    # Ids are "<12 hex digits of process prefix><12 hex digits of counter>".
    prefixes = {str(first["id"])[:12], str(second["id"])[:12], parent[:12]}
    assert len(prefixes) == 3
    assert first["draws"] != second["draws"]


def test_a_callers_safe_request_id_is_still_echoed() -> None:
    assert request_id({"x-request-id": "abc-123"}) == "abc-123"
