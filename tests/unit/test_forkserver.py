"""The test fork server (tests/forkserver.py) forks only while it is its own only thread: a fork
while another thread runs can leave the child waiting forever for a lock that thread held."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests import forkserver
from tests.servers import essential_env, launch

# A server process that started a thread (as an import that starts one would): it must refuse to
# fork rather than hand out a child that may hang.
_THREADED_SERVER = """
import os, threading
from tests import forkserver

stop = threading.Event()
threading.Thread(target=stop.wait, daemon=True).start()
read_end, write_end = os.pipe()
try:
    forkserver._launch({"args": ["--help"], "env": {}, "cwd": None}, write_end, None)
except RuntimeError as exc:
    print(exc)
else:
    print("forked")
stop.set()
"""


def test_the_fork_server_refuses_to_fork_while_another_thread_runs() -> None:
    done = subprocess.run([sys.executable, "-c", _THREADED_SERVER], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).parent.parent.parent, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("the fork server runs 2 threads"), done.stdout


def test_the_fork_server_has_one_thread_after_it_starts_a_child() -> None:
    child = launch(["--help"], essential_env())
    output, _ = child.communicate(timeout=60)
    assert child.returncode == 0, output
    server = forkserver.server()
    if server is not None:  # started through it (not SWITCHBOARD_TEST_FORKSERVER=0)
        assert isinstance(child, forkserver.ForkedChild)
        assert len(os.listdir(f"/proc/{server._proc.pid}/task")) == 1
