"""The folder of one serving instance's worker metric files (prometheus-client's multiprocess mode).

A scrape adds up every ``*.db`` file of the folder it is given, so two instances started on one
data directory (two ``serve --workers N`` on one host, or on one shared volume) must not share a
folder: each start emptying ``<data_dir>/metrics/`` removed the files the other instance's
workers were writing, and that instance's /metrics lost its series. Each instance gets a fresh
folder of its own under ``<data_dir>/metrics/``, removed when it exits; a folder left by an
instance that was killed (no exit to remove it) is removed by the next start.

Whether an instance is alive is told by a lock, not a process id: instances in containers sharing
a volume have process ids of their own namespaces (both may be pid 1). The instance and each of
its workers (:func:`hold`) hold a shared ``flock`` on its folder's ``.lock`` for as long as they
run (the kernel drops it when a process ends, however it ends); a folder whose lock can be taken
exclusively is a dead instance's. The workers hold it too because they outlive a supervisor
killed outright (they notice within a second, then drain) and write their files until they
end: a start in between must not remove the folder under them. Creating a folder and looking for
dead ones take ``.cleaning`` in turn, so a folder is never judged between its creation and its
lock.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

LOCK = ".lock"
_CLEANING = ".cleaning"


class InstanceMetricsDir:
    """A fresh folder for this instance's workers, locked until :meth:`remove` (or the process
    ends)."""

    def __init__(self, data_dir: Path) -> None:
        base = data_dir / "metrics"
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        cleaning = os.open(base / _CLEANING, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(cleaning, fcntl.LOCK_EX)  # held for a few file operations at most
            _remove_dead(base)
            self.path = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=base))  # 0700
            self._lock: int | None = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._lock, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared with the workers
        finally:
            os.close(cleaning)

    def remove(self) -> None:
        """Remove the folder (after the workers are gone); its lock last, with the descriptor."""
        if self._lock is None:
            return
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._lock)
        self._lock = None


def hold(folder: str) -> int | None:
    """A worker's share of its instance's lock on ``folder``: the descriptor, left open until the
    process ends. Taken while the supervisor holds its own, so there is no moment the folder
    looks dead; a folder already gone (the supervisor was killed and a new start removed it
    before this worker got here) leaves nothing to hold (None)."""
    try:
        fd = os.open(os.path.join(folder, LOCK), os.O_RDWR)
    except FileNotFoundError:
        return None
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def _remove_dead(base: Path) -> None:
    """Remove the folders under ``base`` that no running instance or worker holds."""
    for folder in base.iterdir():
        if not folder.is_dir():
            continue
        try:
            fd = os.open(folder / LOCK, os.O_RDWR)
        except FileNotFoundError:  # its owner was removing it: gone all the same
            shutil.rmtree(folder, ignore_errors=True)
            continue
        except OSError:  # not ours to open (another user's): not ours to judge
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live instance's
        else:
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            os.close(fd)
