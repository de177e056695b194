"""Where the gateway keeps its files when the config does not say."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir(env: dict[str, str] | None = None) -> Path:
    """``$SWITCHBOARD_DATA_DIR``, else ``~/.switchboard``."""
    env = dict(os.environ) if env is None else env
    return Path(env.get("SWITCHBOARD_DATA_DIR") or Path.home() / ".switchboard")


class DataDirError(Exception):
    """The data directory cannot be created or used; the message names it and why."""

    def __init__(self, path: Path, exc: OSError) -> None:
        # mkdir(exist_ok=True) over a file says "File exists", which reads as if all were well.
        reason = "Not a directory" if isinstance(exc, FileExistsError) else exc.strerror or str(exc)
        super().__init__(f"cannot use the data directory {path}: {reason}")


def ensure_dir(path: Path) -> Path:
    """``path``, created (0700) if missing; a DataDirError, not a traceback, when it cannot be."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise DataDirError(path, exc) from None
    return path
