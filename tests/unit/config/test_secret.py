"""The server secret that keys the API-key hashes: given, from the environment, or generated."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from switchboard.config.schema import Settings
from switchboard.crypto.keyring import Keyring, from_settings
from switchboard.settings.loader import ConfigError, serving_problems, validate
from switchboard.settings.secret import (
    SECRET_FILE,
    SecretKeyMissing,
    padded_secret,
    read_or_create,
    with_secret_key,
)

BASE = {"auth": {"master_key": "sk-master-key-for-tests"}}


def settings(tmp: Path, **extra: object) -> Settings:
    return validate({**BASE, "server": {"data_dir": str(tmp)}, **extra}, "test.yaml", env={})


def test_generated_once_into_the_data_dir_owner_only(tmp_path: Path) -> None:
    first = with_secret_key(settings(tmp_path), env={})
    again = with_secret_key(settings(tmp_path), env={})
    secret = first.auth.secret_key
    assert secret is not None and len(secret.get_secret_value()) >= 32
    assert again.auth.secret_key == secret
    assert stat.S_IMODE((tmp_path / SECRET_FILE).stat().st_mode) == 0o600


def test_processes_starting_together_agree(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        values = set(pool.map(lambda _: read_or_create(tmp_path / SECRET_FILE), range(16)))
    assert len(values) == 1
    assert [p.name for p in tmp_path.iterdir()] == [SECRET_FILE]  # nothing left aside


def test_configured_or_environment_secret_wins(tmp_path: Path) -> None:
    given = "g" * 32
    configured = settings(tmp_path, auth={**BASE["auth"], "secret_key": given})
    assert with_secret_key(configured, env={}).auth.secret_key.get_secret_value() == given  # type: ignore[union-attr]
    from_env = with_secret_key(settings(tmp_path), env={"SWITCHBOARD_SECRET_KEY": "e" * 40})
    assert from_env.auth.secret_key.get_secret_value() == "e" * 40  # type: ignore[union-attr]
    assert not (tmp_path / SECRET_FILE).exists()


def test_a_shared_database_needs_a_given_secret(tmp_path: Path) -> None:
    shared = settings(tmp_path, database={"url": "postgresql://u@db.internal/sb"})
    assert serving_problems(shared, env={}) == [
        "auth.secret_key: required with a shared database (set it, or SWITCHBOARD_SECRET_KEY), "
        "so that every instance hashes the gateway's API keys alike"
    ]
    assert serving_problems(shared, env={"SWITCHBOARD_SECRET_KEY": "e" * 32}) == []
    with pytest.raises(SecretKeyMissing, match=r"auth\.secret_key: required with a shared database"):
        with_secret_key(shared, env={})
    with pytest.raises(SecretKeyMissing, match="at least 32"):
        with_secret_key(shared, env={"SWITCHBOARD_SECRET_KEY": "short"})


def test_a_short_configured_secret_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        settings(tmp_path, auth={**BASE["auth"], "secret_key": "short"})
    assert err.value.problems == ["auth.secret_key: must be at least 32 characters"]


def test_previous_secrets_from_the_config_and_the_environment(tmp_path: Path) -> None:
    old_a, old_b = "a" * 32, "b" * 32
    configured = settings(tmp_path, auth={**BASE["auth"], "secret_key": "c" * 32,
                                          "previous_secret_keys": [old_a]})
    merged = with_secret_key(configured, env={"SWITCHBOARD_PREVIOUS_SECRET_KEYS": f" {old_b} ,{old_a},"})
    assert [s.get_secret_value() for s in merged.auth.previous_secret_keys] == [old_a, old_b]
    unchanged = with_secret_key(configured, env={})
    assert unchanged.auth.previous_secret_keys == configured.auth.previous_secret_keys


def test_auth_secrets_may_be_env_or_file_references(tmp_path: Path) -> None:
    """Like a provider's api_key: the Docker-secrets pattern gives the file's content, not its path."""
    (tmp_path / "master").write_text("master-from-a-file\n")
    (tmp_path / "secret").write_text("s" * 40)
    auth = {"master_key": f"file:{tmp_path / 'master'}", "secret_key": f"file:{tmp_path / 'secret'}",
            "previous_secret_keys": ["env:OLD_SECRET"]}
    got = validate({**BASE, "auth": auth}, "test.yaml", env={"OLD_SECRET": "o" * 32}).auth
    assert got.master_key.get_secret_value() == "master-from-a-file"
    assert got.secret_key is not None and got.secret_key.get_secret_value() == "s" * 40
    assert [s.get_secret_value() for s in got.previous_secret_keys] == ["o" * 32]


def test_auth_references_that_do_not_resolve_are_config_errors(tmp_path: Path) -> None:
    auth = {"master_key": "env:NO_SUCH_VAR", "secret_key": f"file:{tmp_path / 'missing'}",
            "previous_secret_keys": ["file:relative"]}
    with pytest.raises(ConfigError) as err:
        validate({**BASE, "auth": auth}, "test.yaml", env={})
    assert err.value.problems == [
        "auth.master_key: environment variable NO_SUCH_VAR is not set",
        f"auth.secret_key: cannot read {tmp_path / 'missing'}: No such file or directory",
        "auth.previous_secret_keys[0]: file: references need an absolute path",
    ]


def test_the_environment_secret_is_used_without_the_whitespace_around_it(tmp_path: Path) -> None:
    secret = "e" * 40
    padded = with_secret_key(settings(tmp_path), env={"SWITCHBOARD_SECRET_KEY": f" {secret}\n"})
    assert padded.auth.secret_key.get_secret_value() == secret  # type: ignore[union-attr]
    # What earlier versions sealed under the value as given still opens.
    assert [s.get_secret_value() for s in padded.auth.previous_secret_keys] == [f" {secret}\n"]
    trimmed = with_secret_key(settings(tmp_path), env={"SWITCHBOARD_SECRET_KEY": secret})
    assert trimmed.auth.previous_secret_keys == []
    # The length is the trimmed secret's: whitespace does not make a short one long enough.
    with pytest.raises(SecretKeyMissing, match="at least 32"):
        with_secret_key(settings(tmp_path, database={"url": "postgresql://u@db.internal/sb"}),
                        env={"SWITCHBOARD_SECRET_KEY": "s" * 31 + "\n"})


@pytest.mark.parametrize("written",
                         ["env:SWITCHBOARD_SECRET_KEY", "${SWITCHBOARD_SECRET_KEY}", "env:MY_SECRET"])
def test_a_configured_secret_is_used_without_the_whitespace_around_it_as_the_variable_is(
        tmp_path: Path, written: str) -> None:
    """One rule whichever way the secret is given: ``auth.secret_key`` naming a variable
    (``env:NAME`` or ``${NAME}``) whose value has a trailing newline is the same secret as
    ``$SWITCHBOARD_SECRET_KEY`` read directly, the value as given kept to open what it sealed,
    and start-up's warning names where it came from."""
    secret = "e" * 40
    padded_value = f" {secret}\n"
    env = {"MY_SECRET" if "MY_SECRET" in written else "SWITCHBOARD_SECRET_KEY": padded_value}
    loaded = validate({**BASE, "server": {"data_dir": str(tmp_path)},
                       "auth": {**BASE["auth"], "secret_key": written}}, "test.yaml", env=env)
    sealed_as_given = Keyring.from_secrets(padded_value).encrypt("sk-upstream", "aad")
    resolved = with_secret_key(loaded, env=env)
    direct = with_secret_key(settings(tmp_path), env={"SWITCHBOARD_SECRET_KEY": padded_value})

    assert resolved.auth.secret_key == direct.auth.secret_key
    assert resolved.auth.secret_key.get_secret_value() == secret  # type: ignore[union-attr]
    assert [s.get_secret_value() for s in resolved.auth.previous_secret_keys] == [padded_value]
    keyring = from_settings(resolved.auth)
    assert keyring is not None and keyring.decrypt(sealed_as_given, "aad") == "sk-upstream"
    named = padded_secret(resolved, env)
    assert named == ("auth.secret_key (or the variable it reads)" if "MY_SECRET" in written
                     else "SWITCHBOARD_SECRET_KEY")
    assert with_secret_key(resolved, env=env) == resolved  # settled once: nothing added again
    unpadded = with_secret_key(settings(tmp_path, auth={**BASE["auth"], "secret_key": secret}), env={})
    assert unpadded.auth.previous_secret_keys == [] and padded_secret(unpadded, {}) is None


def test_a_configured_secret_is_long_enough_only_without_its_whitespace(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 32"):
        validate({**BASE, "auth": {**BASE["auth"], "secret_key": "env:MY_SECRET"}}, "test.yaml",
                 env={"MY_SECRET": "s" * 31 + "\n"})
