"""Log set-up for the gateway's own loggers (uvicorn configures its own)."""

from __future__ import annotations

import logging
import sys


def configure(level: str) -> None:
    logger = logging.getLogger("switchboard")
    logger.setLevel(level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
