"""The server secret: ``auth.secret_key``, else ``$SWITCHBOARD_SECRET_KEY``, else a file.

With the embedded SQLite database the secret may be generated on first start into
``<data_dir>/secret_key`` (0600), like the master key. With PostgreSQL several instances share
the stored key hashes, so they must share the secret: it has to be given, not generated.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr

from switchboard.config.paths import data_dir, ensure_dir, unusable
from switchboard.config.schema import Settings
from switchboard.settings.variables import set_value

SECRET_FILE = "secret_key"
ENV = "SWITCHBOARD_SECRET_KEY"
PREVIOUS_ENV = "SWITCHBOARD_PREVIOUS_SECRET_KEYS"
MIN_LENGTH = 32  # as auth.secret_key's own check (config/access.py)


class SecretKeyMissing(Exception):
    """A shared database without a configured secret."""


def _shared_database(settings: Settings) -> bool:
    url = settings.database.url
    return url is not None and not url.get_secret_value().startswith("sqlite")


def read_or_create(path: Path) -> str:
    """The secret in ``path``, generated first if there is none. Several processes starting
    together agree: the file appears whole (written aside, then linked into place) or not at all."""
    try:
        return _read_or_create(path)
    except OSError as exc:
        raise unusable(path.parent, exc) from None


def _read_or_create(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    ensure_dir(path.parent)
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secrets.token_urlsafe(48) + "\n")
    try:
        os.link(aside, path)
    except FileExistsError:
        pass  # another process was first; use its secret
    finally:
        aside.unlink()
    return path.read_text(encoding="utf-8").strip()


def secret_problem(settings: Settings, env: Mapping[str, str]) -> str | None:
    """Why the secret cannot be had (None when it is configured, in ``env``, or may be generated)."""
    if settings.auth.secret_key is not None:
        return None
    value = _env_secret(settings, env)
    if value is not None:
        return None if len(value) >= MIN_LENGTH else f"{ENV} must be at least {MIN_LENGTH} characters"
    if _shared_database(settings):
        return (
            f"auth.secret_key: required with a shared database (set it, or {ENV}), so that "
            "every instance hashes the gateway's API keys alike"
        )
    return _file_problem(_secret_file(settings, env))


def _env_secret(settings: Settings, env: Mapping[str, str]) -> str | None:
    """``$SWITCHBOARD_SECRET_KEY`` without the whitespace around it (a trailing newline from a
    file or a secret mount), so that instances given the same secret with and without it agree;
    set but blank is a VariableError (one line, exit 1), as for the master key's variable,
    rather than a secret silently generated or demanded instead."""
    otherwise = ("auth.secret_key (required with a shared database)" if _shared_database(settings)
                 else f"the secret kept in the data directory's {SECRET_FILE} file")
    value = set_value(env, ENV, otherwise)
    return None if value is None else value.strip()


def _settled(settings: Settings, given: str) -> Settings:
    """``settings`` with ``given`` as the server secret, however it was given (``auth.secret_key``
    written out, through ``env:NAME`` or ``${NAME}``, or ``$SWITCHBOARD_SECRET_KEY``): without the
    whitespace around it (a trailing newline from a file or a secret mount), so instances given
    it with and without agree. Earlier versions used it as given, so the value as given is kept
    as a previous secret (what they sealed under it still opens) and start-up warns (serve)."""
    value = given.strip()
    update: dict[str, object] = {"secret_key": SecretStr(value)}
    if value != given:
        update["previous_secret_keys"] = [*settings.auth.previous_secret_keys, SecretStr(given)]
    return settings.model_copy(update={"auth": settings.auth.model_copy(update=update)})


def padded_secret(settings: Settings, env: Mapping[str, str]) -> str | None:
    """Where the server secret in use was given with whitespace around it (None: it was not):
    the name start-up warns with, never the value."""
    current = settings.auth.secret_key
    if current is None:
        return None
    value = current.get_secret_value()
    padded = {given for p in settings.auth.previous_secret_keys
              if (given := p.get_secret_value()) != value and given.strip() == value}
    if not padded:
        return None
    return ENV if env.get(ENV) in padded else "auth.secret_key (or the variable it reads)"


def padded_warning(name: str) -> str:
    return (f"{name} has whitespace around it (a trailing newline from a file or a secret mount?); "
            "it is used without it. What was sealed under it as given still opens; run `switchboard "
            f"secrets rotate` to re-seal under the trimmed secret, and remove the whitespace from {name}")


def _secret_file(settings: Settings, env: Mapping[str, str]) -> Path:
    return (settings.server.data_dir or data_dir(dict(env))) / SECRET_FILE


def _file_problem(path: Path) -> str | None:
    """What is wrong with the secret already in ``path`` (None: none there yet, or a good one).
    A file written by hand (emptied, truncated) would otherwise seal every stored credential
    under a guessable secret, the empty one included, without a word."""
    try:
        value = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        return f"{path}: the server secret file is not UTF-8 text"
    except OSError:
        return None  # none yet, or a data directory serve reports as such (read_or_create)
    if len(value) < MIN_LENGTH:
        return (f"{path}: the server secret in this file must be at least {MIN_LENGTH} characters, "
                f"as auth.secret_key (it has {len(value)})")
    return None


def with_secret_key(settings: Settings, env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ) if env is None else env
    previous = [v.strip() for v in env.get(PREVIOUS_ENV, "").split(",") if v.strip()]
    if previous:
        known = {s.get_secret_value() for s in settings.auth.previous_secret_keys}
        extra = [SecretStr(v) for v in previous if v not in known]
        auth = settings.auth.model_copy(
            update={"previous_secret_keys": [*settings.auth.previous_secret_keys, *extra]}
        )
        settings = settings.model_copy(update={"auth": auth})
    if (configured := settings.auth.secret_key) is not None:
        return _settled(settings, configured.get_secret_value())
    problem = secret_problem(settings, env)
    if problem:
        raise SecretKeyMissing(problem)
    if _env_secret(settings, env) is not None:
        return _settled(settings, env[ENV])
    return _settled(settings, read_or_create(_secret_file(settings, env)))
