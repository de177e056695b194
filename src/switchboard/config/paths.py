"""Where the gateway keeps its files when the config does not say."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir(env: dict[str, str] | None = None) -> Path:
    """``$SWITCHBOARD_DATA_DIR``, else ``~/.switchboard``."""
    env = dict(os.environ) if env is None else env
    return Path(env.get("SWITCHBOARD_DATA_DIR") or Path.home() / ".switchboard")
