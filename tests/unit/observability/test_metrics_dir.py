"""The metric files' folder of a serving instance (observability/metrics_dir.py) between a
supervisor killed outright and the next start on the same data directory, with real processes:
the killed supervisor's workers run on (they drain) and write their files until they end, so
the folder is removed only once no worker holds it either."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from switchboard.observability.metrics_dir import InstanceMetricsDir

SUPERVISOR = """
import sys
from pathlib import Path
from switchboard.observability.metrics_dir import InstanceMetricsDir
folder = InstanceMetricsDir(Path(sys.argv[1]))
print(folder.path, flush=True)
sys.stdin.read()
"""

WORKER = """
import sys
from switchboard.observability.metrics_dir import hold
hold(sys.argv[1])
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait(30)


def _run(processes: list[subprocess.Popen[str]], code: str, arg: str) -> tuple[subprocess.Popen[str], str]:
    """A Python process running ``code`` with ``arg``, and the first line it printed (once its
    folder or lock is in place)."""
    proc = subprocess.Popen([sys.executable, "-c", code, arg], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    processes.append(proc)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)


def test_a_killed_supervisors_folder_stays_while_a_worker_of_it_runs(
        tmp_path: Path, processes: list[subprocess.Popen[str]]) -> None:
    supervisor, folder = _run(processes, SUPERVISOR, str(tmp_path))
    worker, line = _run(processes, WORKER, folder)
    assert line == "held"
    _kill(supervisor)
    # A start while the worker still runs (draining) leaves its folder alone.
    InstanceMetricsDir(tmp_path).remove()
    assert Path(folder).is_dir()
    # Once the worker has ended too, the next start removes the folder.
    _kill(worker)
    InstanceMetricsDir(tmp_path).remove()
    assert not Path(folder).exists()
    assert [p for p in (tmp_path / "metrics").iterdir() if p.is_dir()] == []


def test_a_killed_supervisor_without_workers_has_its_folder_removed_at_the_next_start(
        tmp_path: Path, processes: list[subprocess.Popen[str]]) -> None:
    supervisor, folder = _run(processes, SUPERVISOR, str(tmp_path))
    _run(processes, SUPERVISOR, str(tmp_path))  # another instance, alive
    _kill(supervisor)
    InstanceMetricsDir(tmp_path).remove()
    assert not Path(folder).exists()
    assert len([p for p in (tmp_path / "metrics").iterdir() if p.is_dir()]) == 1  # the live one's
