"""The stores seen from the command line: db upgrade, serve on PostgreSQL and Redis, bad input."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path
from typing import Any

import openai
import pytest
import sqlalchemy as sa
import yaml

from switchboard.settings.loader import ConfigError, validate
from switchboard.stores.factory import open_database
from switchboard.stores.sql.migrate import head
from switchboard.stores.sql.urls import async_url
from tests.e2e.sdk import ask
from tests.servers import (
    MASTER_KEY,
    SECRET_KEY,
    Child,
    Mock,
    free_port,
    launch,
    openai_config,
    refused_port,
    start_gateway,
)
from tests.services import Postgres, RedisServer

AUTH = {"auth": {"master_key": MASTER_KEY, "secret_key": SECRET_KEY}}


def write(tmp: Path, config: dict[str, Any], name: str = "switchboard.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(config))
    return path


def cli(args: list[str], tmp: Path) -> Child:
    return launch(args, {**os.environ, "SWITCHBOARD_DATA_DIR": str(tmp / "data"), "COLUMNS": "300"})


def finish(proc: Child, timeout: float = 60) -> tuple[int, str]:
    output, _ = proc.communicate(timeout=timeout)
    assert proc.returncode is not None
    return proc.returncode, output


def versions(url: str) -> list[str]:
    async def read() -> list[str]:
        engine = (await open_database(url))[0]
        try:
            async with engine.connect() as conn:
                return [r[0] for r in await conn.execute(sa.text("SELECT version_num FROM alembic_version"))]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_db_upgrade_migrates_postgresql_and_is_repeatable(fresh_database_url: str, tmp_path: Path) -> None:
    config = write(tmp_path, {**AUTH, "database": {"url": fresh_database_url}})
    for _ in range(2):
        rc, output = finish(cli(["db", "upgrade", "--config", str(config)], tmp_path))
        assert rc == 0, output
        assert f"schema at revision {head()} (the newest)" in output
        assert output.startswith("postgresql://postgres@127.0.0.1:")
    assert versions(async_url(fresh_database_url, tmp_path)) == [head()]


def test_db_upgrade_without_config_creates_the_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    rc, output = finish(cli(["db", "upgrade"], tmp_path))
    assert rc == 0, output
    assert stat.S_IMODE((tmp_path / "data" / "switchboard.db").stat().st_mode) == 0o600
    assert versions(async_url(None, tmp_path / "data")) == [head()]


@pytest.mark.parametrize("name", ["at@sign", "question?mark", "per%25cent", "space and #hash"])
def test_a_data_dir_with_url_characters_holds_the_database_and_its_lock(name: str, tmp_path: Path) -> None:
    data = tmp_path / name / "data"
    rc, output = finish(launch(["db", "upgrade"], {**os.environ, "SWITCHBOARD_DATA_DIR": str(data)}))
    assert rc == 0, output
    # The file and its migration lock sit in the directory as named, nothing elsewhere.
    assert sorted(p.name for p in data.iterdir()) == ["switchboard.db", "switchboard.db.lock"]
    assert [p.name for p in tmp_path.iterdir()] == [name]
    assert versions(async_url(None, data)) == [head()]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_processes_upgrading_one_fresh_database_together_all_succeed(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    database = (
        {"url": request.getfixturevalue("fresh_database_url")} if kind == "postgresql" else {}
    )
    config = write(tmp_path, {**AUTH, "database": database})
    procs = [cli(["db", "upgrade", "--config", str(config)], tmp_path) for _ in range(3)]
    results = [finish(p) for p in procs]
    assert [rc for rc, _ in results] == [0, 0, 0], results
    url = async_url(database.get("url"), tmp_path / "data")
    assert versions(url) == [head()]


def test_serve_on_postgresql_and_redis_with_two_workers_answers_chat(
    mock_upstream: Mock, postgres: Postgres, redis_server: RedisServer, tmp_path: Path
) -> None:
    database = postgres.create_database("serve_e2e")
    config = {
        **openai_config(mock_upstream),
        "database": {"url": database},
        "redis": {"url": redis_server.url},
    }
    gw = start_gateway(config, tmp_path, args=["--workers", "2"])
    try:
        client = openai.OpenAI(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=ask("stateful"))
        assert reply.choices[0].message.content is not None
        assert reply.choices[0].message.content.endswith("You said: stateful")
    finally:
        assert gw.process.stop() == 0
    # serve migrated the database; no SQLite file was made beside it.
    assert versions(async_url(database, tmp_path)) == [head()]
    assert not (tmp_path / "data" / "switchboard.db").exists()
    assert "Traceback" not in gw.process.output


def test_serve_with_unreachable_postgresql_fails_in_one_line(tmp_path: Path) -> None:
    url = f"postgresql://sb:hunter2-secret@127.0.0.1:{refused_port()}/sb"
    config = write(tmp_path, {**AUTH, "database": {"url": url}})
    started = time.monotonic()
    rc, output = finish(cli(["serve", "--config", str(config), "--port", str(free_port())], tmp_path))
    assert rc == 1
    assert time.monotonic() - started < 30
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("cannot open the stores: cannot open the database postgresql://sb:***@127.0.0.1:")
    assert "hunter2" not in output


@pytest.mark.parametrize("command", ["serve", "db upgrade"])
def test_a_postgresql_url_option_the_driver_cannot_parse_is_one_line(tmp_path: Path, command: str) -> None:
    """asyncpg's options are taken from the URL's query; one whose value the dialect cannot read
    (it reads a few as the engine is made) was a traceback."""
    port = refused_port()
    url = f"postgresql://sb:hunter2-secret@127.0.0.1:{port}/sb?prepared_statement_cache_size=lots"
    config = write(tmp_path, {**AUTH, "database": {"url": url}})
    port_option = ["--port", str(free_port())] if command == "serve" else []
    rc, output = finish(cli([*command.split(), "--config", str(config), *port_option], tmp_path))
    assert rc == 1, output
    assert output.strip() == (
        f"cannot open the stores: cannot open the database postgresql://sb:***@127.0.0.1:{port}/sb?"
        "prepared_statement_cache_size=lots: invalid URL option "
        "(invalid literal for int() with base 10: 'lots')")


def test_a_wrong_sslmode_is_refused_by_config_check_and_serve_as_written(tmp_path: Path) -> None:
    """database.url's sslmode is named as the operator wrote it (not as the URL given to the
    driver, ``ssl=``), by `config check` too, without the password."""
    url = f"postgresql://sb:hunter2-secret@127.0.0.1:{refused_port()}/sb?sslmode=bogus"
    config = write(tmp_path, {**AUTH, "database": {"url": url}})
    serve = ["serve", "--config", str(config), "--port", str(free_port())]
    for args in (["config", "check", str(config)], serve):
        rc, output = finish(cli(args, tmp_path))
        assert rc == 2, (args, output)
        assert (f"{config}: database.url: postgresql URL: option 'sslmode' must be one of disable, allow, "
                "prefer, require, verify-ca, verify-full, not 'bogus'\n") in output, (args, output)
        assert "ssl=" not in output and "hunter2" not in output and "Traceback" not in output


@pytest.mark.parametrize("command", ["serve", "db upgrade"])
def test_a_database_that_cannot_be_opened_is_named_by_the_url_as_written(
    postgres: Postgres, tmp_path: Path, command: str
) -> None:
    """The URL in "cannot open the database" is the operator's, sslmode and all (it was the
    driver's ``?ssl=require``); sslmode still reaches the driver: this server has no TLS."""
    url = postgres.url.replace("postgresql://postgres@", "postgresql://postgres:hunter2-secret@")
    config = write(tmp_path, {**AUTH, "database": {"url": url + "?sslmode=require"}})
    port_option = ["--port", str(free_port())] if command == "serve" else []
    rc, output = finish(cli([*command.split(), "--config", str(config), *port_option], tmp_path))
    assert rc == 1, output
    shown = url.replace("hunter2-secret", "***")
    expected = f"cannot open the stores: cannot open the database {shown}?sslmode=require: "
    assert output.startswith(expected), output
    assert "SSL" in output and "ssl=" not in output and "hunter2" not in output


def test_serve_with_unreachable_redis_fails_in_one_line(tmp_path: Path) -> None:
    config = write(tmp_path, {**AUTH, "redis": {"url": f"redis://127.0.0.1:{refused_port()}/0"}})
    rc, output = finish(cli(["serve", "--config", str(config), "--port", str(free_port())], tmp_path))
    assert rc == 1
    assert output.strip().splitlines() == [output.strip()]
    assert output.startswith("cannot open the stores: cannot reach redis at redis://127.0.0.1:")


@pytest.mark.parametrize(
    ("section", "url", "expected"),
    [
        ("database", "mysql://u:pw-secret@db/x", "database.url: unsupported database scheme 'mysql'"),
        ("database", "postgresql://u:pw-secret@db:port/x", "database.url: postgresql URL: the port is not"),
        ("database", "postgresql:///x", "database.url: postgresql URL needs a host"),
        ("database", "sqlite://", "database.url: sqlite URL needs a file path"),
        ("database", "localhost:5432", "database.url: expected a URL such as postgresql://"),
        ("redis", "http://u:pw-secret@cache:6379", "redis.url: unsupported redis scheme 'http'"),
        ("redis", "redis://:pw-secret@c:6379/x", "redis.url: redis URL: the database after the host must be"),
        # A digit to str.isdigit: the client silently used database 0 for it.
        ("redis", "redis://c:6379/\u00b2", "redis.url: redis URL: the database after the host must be"),
        ("redis", "redis:///0", "redis.url: redis URL needs a host"),
        # The client takes a query option over the gateway's own setting: "false" is a true string.
        ("redis", "redis://:pw-secret@c:6379/0?decode_responses=false",
         "redis.url: redis URL: option 'decode_responses' is not taken (only socket_timeout and "
         "socket_connect_timeout)"),
        ("redis", "rediss://:pw-secret@c:6380/0?ssl_cert_reqs=none&max_connections=600",
         "redis.url: redis URL: option 'max_connections' is not taken (only socket_timeout and "
         "socket_connect_timeout, and ssl_* options)"),
        ("redis", "redis://c:6379/0?socket_timeout=0",
         "redis.url: redis URL: option 'socket_timeout' must be a number of seconds, more than 0 "
         "and at most 3600"),
        ("redis", "redis://c:6379/0?socket_connect_timeout=nan",
         "redis.url: redis URL: option 'socket_connect_timeout' must be a number of seconds"),
    ],
)
def test_bad_urls_are_config_errors(section: str, url: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate({**AUTH, section: {"url": url}}, "f.yaml", env={})
    assert info.value.problems[0].startswith(expected)
    assert "pw-secret" not in str(info.value)


@pytest.mark.parametrize(
    "config",
    [
        {"database": {"url": "postgresql://u:pw@db.internal:5432/switchboard"}, "redis": {"url": "rediss://c:6380/1"}},
        {"database": {"url": "postgres://db/x"}, "redis": {"url": "redis://localhost"}},
        {"redis": {"url": "rediss://c:6380/0?ssl_cert_reqs=none&ssl_ca_certs=/etc/ca.pem"}},
        {"redis": {"url": "redis://c:6379/0?socket_timeout=60&socket_connect_timeout=2.5"}},
        {"database": {"url": "sqlite:///relative.db"}},
        {"database": {"url": "sqlite:////abs/path.db"}},
        {"database": {}},
    ],
)
def test_good_urls_are_accepted(config: dict[str, Any]) -> None:
    validate({**AUTH, **config}, "f.yaml", env={})


@pytest.mark.parametrize("option", ["socket_timeout=abc", "max_connections=2", "health_check_interval=x"])
def test_redis_url_options_are_refused_by_config_check_and_serve_alike(tmp_path: Path, option: str) -> None:
    """A query option in redis.url would replace the gateway's own bound (or, unparsable, was a
    traceback at start after `config check` had passed the file): both refuse it, naming it."""
    name = option.split("=", 1)[0]
    config = write(tmp_path, {**AUTH, "redis": {"url": f"redis://:pw-secret@127.0.0.1:{refused_port()}/0?{option}"}})
    serve = ["serve", "--config", str(config), "--port", str(free_port())]
    for args in (["config", "check", str(config)], serve):
        rc, output = finish(cli(args, tmp_path))
        assert rc == 2, (args, output)
        assert f"{config}: redis.url: redis URL: option '{name}' " in output, (args, output)
        assert "Traceback" not in output and "pw-secret" not in output


def test_a_rediss_tls_option_the_client_cannot_parse_is_one_line_at_serve(tmp_path: Path) -> None:
    port = refused_port()
    config = write(tmp_path, {**AUTH, "redis": {"url": f"rediss://:pw-secret@127.0.0.1:{port}/0?ssl_min_version=tls13"}})
    rc, output = finish(cli(["serve", "--config", str(config), "--port", str(free_port())], tmp_path))
    assert rc == 1, output
    assert output.strip() == (f"cannot open the stores: redis at rediss://:***@127.0.0.1:{port}/0?ssl_min_version="
                              "tls13: Invalid value for 'ssl_min_version' in connection URL.")


def test_config_check_reports_bad_database_and_redis_urls(tmp_path: Path) -> None:
    bad = {**AUTH, "database": {"url": "mysql://u:pw-secret@db/x"}, "redis": {"url": "redis:///0"}}
    config = write(tmp_path, bad)
    rc, output = finish(cli(["config", "check", str(config)], tmp_path))
    assert rc == 2
    assert f"{config}: database.url: unsupported database scheme 'mysql'" in output
    assert f"{config}: redis.url: redis URL needs a host" in output
    assert "pw-secret" not in output
