"""A process forked after import (a process manager that preloads the app, then forks its
workers) must not repeat its parent's request ids or routing choices.

The forks happen in a fresh interpreter of the test's own, not in the test process: a pytest-xdist
worker runs execnet's I/O thread (and earlier tests may leave threads of theirs), and a fork while
another thread runs can leave the child waiting forever on a lock that thread held (Python 3.12+
warns about it). The script checks that it is the only thread before it forks.
"""

from __future__ import annotations

import json
import subprocess
import sys

from switchboard.http.endpoint import request_id

# Run as ``python -c``: import as a preloading process manager does, fork two children, report
# what each child and the parent saw, as one JSON line.
_FORKING = """
import json, os, sys, threading

from switchboard.http.endpoint import request_id
from switchboard.routing import strategies

threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else threading.active_count()
if threads != 1:
    sys.exit(f"{threads} threads before the fork")


def in_child():
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            seen = {"id": request_id({}), "draws": [strategies.rng.random() for _ in range(4)]}
            os.write(write_end, json.dumps(seen).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"a child exited with {os.waitstatus_to_exitcode(status)}")
    return json.loads(data)


print(json.dumps({"children": [in_child(), in_child()], "parent": request_id({})}))
"""


def test_two_forked_children_have_their_own_request_ids_and_routing_draws() -> None:
    done = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", _FORKING],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    first, second = seen["children"]
    # Ids are "<12 hex digits of process prefix><12 hex digits of counter>".
    prefixes = {str(first["id"])[:12], str(second["id"])[:12], str(seen["parent"])[:12]}
    assert len(prefixes) == 3
    assert first["draws"] != second["draws"]


def test_a_callers_safe_request_id_is_still_echoed() -> None:
    assert request_id({"x-request-id": "abc-123"}) == "abc-123"
