"""Where the gateway keeps its files when the config does not say."""

from __future__ import annotations

import os
from pathlib import Path

ENV = "SWITCHBOARD_DATA_DIR"


class DataDirError(Exception):
    """The data directory cannot be told, created or used; the message names it and why."""


def data_dir(env: dict[str, str] | None = None) -> Path:
    """``$SWITCHBOARD_DATA_DIR``, else ``~/.switchboard``. Read as ``server.data_dir`` is: a
    leading ``~`` is the home directory, and an empty value is refused (it would otherwise be
    taken for the default, or for the working directory, depending on who reads it)."""
    env = dict(os.environ) if env is None else env
    value = env.get(ENV)
    if value is None:
        return Path.home() / ".switchboard"
    if not value.strip():
        raise DataDirError(f"{ENV}: an empty path; unset it for the default data directory (~/.switchboard)")
    try:
        return Path(value).expanduser()
    except RuntimeError:  # ~user of no such user, or no home directory at all
        raise DataDirError(f"{ENV}: cannot tell the home directory in {value!r}") from None


def unusable(path: Path, exc: OSError) -> DataDirError:
    """The error for a data directory at ``path`` that ``exc`` says cannot be used."""
    # mkdir(exist_ok=True) over a file says "File exists", which reads as if all were well.
    reason = "Not a directory" if isinstance(exc, FileExistsError) else exc.strerror or str(exc)
    return DataDirError(f"cannot use the data directory {path}: {reason}")


def ensure_dir(path: Path) -> Path:
    """``path``, created (0700) if missing; a DataDirError, not a traceback, when it cannot be."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise unusable(path, exc) from None
    return path
