"""The embedded default: what `switchboard serve` runs with no config file.

A data directory (``$SWITCHBOARD_DATA_DIR`` or ``~/.switchboard``) holds the generated master key
and the SQLite database (created by the migrations when the stores open); one model, ``demo``, is
served by the built-in mock upstream mounted under ``/mock`` so the quickstart works with no
provider keys and no network.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from switchboard.config.access import master_key_problem
from switchboard.config.paths import data_dir, ensure_dir, unusable
from switchboard.config.schema import Settings
from switchboard.config.urls import bind_host_problem
from switchboard.settings.loader import ConfigError, validate
from switchboard.settings.variables import set_value

KEY_FILE = "master_key"
MASTER_KEY_ENV = "SWITCHBOARD_MASTER_KEY"
MIN_KEY_LENGTH = 8  # as auth.master_key's own check (config/access.py)
SOURCE = "(embedded default)"


@dataclass(frozen=True)
class MasterKey:
    value: str
    # "environment": $SWITCHBOARD_MASTER_KEY (no file is written); "file": read from ``path``;
    # "generated": created just now and written to ``path``.
    origin: Literal["environment", "file", "generated"]
    path: Path | None = None


def master_key(env: dict[str, str] | None = None) -> MasterKey:
    """The embedded default's master key, generated into the data directory on first use."""
    env = dict(os.environ) if env is None else env
    given = set_value(env, MASTER_KEY_ENV, f"the key kept in the data directory's {KEY_FILE} file")
    if given is not None:
        if (problem := master_key_problem(given)) is not None:
            # Named as given: the embedded default's auth.master_key is nothing the user wrote.
            raise ConfigError(SOURCE, [f"{MASTER_KEY_ENV}: {problem}"])
        return MasterKey(given, "environment")
    directory = ensure_dir(data_dir(env))
    try:
        return _key_file(directory / KEY_FILE)
    except OSError as exc:
        raise unusable(directory, exc) from None


def _key_file(path: Path) -> MasterKey:
    key = "sk-sb-" + secrets.token_urlsafe(24)
    try:
        # Created 0600 before anything is written, so the key is never readable by others.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return MasterKey(_read_key(path), "file", path)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(key + "\n")
    return MasterKey(key, "generated", path)


def _read_key(path: Path) -> str:
    """The key kept in ``path``, held to auth.master_key's own check but naming the file: one
    emptied or cut short by hand is otherwise reported as a problem of "auth", which the embedded
    default's user never wrote, and one that is not text was a traceback."""
    try:
        value = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(SOURCE, [f"{path}: the master key file is not UTF-8 text"]) from None
    if len(value) < MIN_KEY_LENGTH:
        raise ConfigError(SOURCE, [f"{path}: the master key in this file must be at least {MIN_KEY_LENGTH} "
                                   f"characters, as auth.master_key (it has {len(value)})"])
    return value


def url_host(host: str) -> str:
    """How the gateway reaches itself on ``host``, as a URL's host (an IPv6 literal in brackets)."""
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host  # a name


def embedded_settings(host: str, port: int, env: dict[str, str] | None = None) -> Settings:
    if port == 0:
        # The demo model's upstream is the built-in mock on this very port, so it must be known.
        raise ConfigError(SOURCE, ["--port: 0 (any free port) cannot be used by the embedded default, "
                                   "whose built-in mock upstream is reached on the gateway's own port"])
    if not 0 < port <= 65535:
        # Said here, before the mock upstream's URL is built on it and found wrong first.
        raise ConfigError(SOURCE, [f"--port: {port} is not a port (1 to 65535)"])
    if (problem := bind_host_problem(host)) is not None:
        # Said of the option the user gave, not of the server.host of a file they never wrote.
        raise ConfigError(SOURCE, [f"--host: {problem}"])
    env = dict(os.environ) if env is None else env
    directory = ensure_dir(data_dir(env))
    data = {
        "providers": [
            {"name": "builtin-mock", "type": "openai", "api_base": f"http://{url_host(host)}:{port}/mock/v1"}
        ],
        "models": [
            {"name": "demo", "provider": "builtin-mock", "model": "mock-gpt"},
            {"name": "demo-embedding", "provider": "builtin-mock", "model": "mock-embedding"},
        ],
        "auth": {"master_key": master_key(env).value},
        "server": {"host": host, "port": port, "data_dir": str(directory)},
        "builtin_mock": True,
    }
    return validate(data, SOURCE, env={})
