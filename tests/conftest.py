from __future__ import annotations

import gc
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from switchboard.stores.sql.urls import async_url
from tests import forkserver
from tests.schemas import migrate, migrated_sqlite
from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway, start_mock
from tests.services import Postgres, RedisServer, start_postgres, start_redis

_databases = itertools.count()


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: two workers per core, at most four more than the cores. A worker spends much
    of its time waiting on the servers it started (a gateway answering, a bound running out), so
    one per core leaves the cores idle a third of the time; measured on 2 cores, 4 workers run the
    suite about 15 % faster than 2 (each worker starts its own PostgreSQL and Redis, hence the cap)."""
    cores = os.cpu_count() or 1
    return min(2 * cores, cores + 4)


@pytest.fixture(scope="session", autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Servers started without a data dir use ``~/.switchboard``: point HOME at a fresh directory
    so no test reads or writes the real one (its secret, its database)."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        yield home


@pytest.fixture(scope="session", autouse=True)
def fork_server() -> Iterator[None]:
    """The fork server (tests/forkserver.py) ends with the session, before coverage is combined."""
    yield
    forkserver.shutdown()


@pytest.fixture(scope="session")
def mock_upstream() -> Iterator[Mock]:
    mock = start_mock()
    yield mock
    mock.process.stop()


@pytest.fixture(scope="session")
def gateway(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(openai_config(mock_upstream), tmp_path_factory.mktemp("gateway"))
    yield gw
    gw.process.stop()


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)


@pytest.fixture
def aclient(gateway: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def garbage() -> Iterator[list[object]]:
    """What the cyclic collector finds unreachable while the test runs (kept, not freed): the
    collector is off and saves what it finds (gc.DEBUG_SAVEALL); the test collects and adds it."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    start = len(gc.garbage)
    found: list[object] = []
    try:
        yield found
    finally:
        gc.set_debug(0)
        del gc.garbage[start:]
        gc.enable()


# Real servers for cluster mode, started only when a test asks for them, stopped at the end.


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server of the session's own, on a free port in a temporary directory."""
    server = start_postgres()
    yield server
    server.stop()


_started_redis: list[RedisServer] = []


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of the session's own, on a free port in a temporary directory."""
    server = start_redis()
    _started_redis.append(server)
    yield server
    _started_redis.remove(server)
    server.stop()


@pytest.fixture(scope="module", autouse=True)
def redis_emptied_per_module() -> None:
    """Each module starts on an empty session Redis. Every cluster gateway of the session shares
    it under the same key prefix: deployments a module's breakers left out (and their failure
    streaks), rate-limit windows of model and provider limits would otherwise be adopted by the
    next module's gateways with the same group, deployment or provider names. The previous
    module's gateways are stopped by then (its module fixtures end before the next module's
    start; --dist loadfile keeps a module on one worker)."""
    for server in _started_redis:
        server.flush()


@pytest.fixture
def fresh_database_url(postgres: Postgres) -> Iterator[str]:
    """A new, empty PostgreSQL database (config form: ``postgresql://...``), dropped after the
    test (a session makes hundreds: see tests/services.py)."""
    name = f"test_{next(_databases)}"
    yield postgres.create_database(name)
    postgres.drop_database(name)


# Databases at the newest schema revision (tests/schemas.py), for tests about what the stores do
# with their rows rather than about migrating. Tests about migrating use the empty
# ``fresh_database_url`` (or the ``fresh_url`` of tests/stores).


@pytest.fixture(scope="session")
def schema_template(postgres: Postgres) -> str:
    """The name of a PostgreSQL database migrated once per session, copied by
    ``migrated_database_url``. Nothing connects to it after this."""
    name = "schema_template"
    migrate(async_url(postgres.create_database(name), Path()))
    return name


@pytest.fixture
def migrated_database_url(postgres: Postgres, schema_template: str) -> Iterator[str]:
    """A new PostgreSQL database at the newest revision, with no rows (config form), dropped
    after the test."""
    name = f"test_{next(_databases)}"
    yield postgres.create_database(name, template=schema_template)
    postgres.drop_database(name)


@pytest.fixture(scope="session")
def sqlite_schema(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database file migrated once per session, copied by ``schemas.copy_sqlite``."""
    return migrated_sqlite(tmp_path_factory.mktemp("sqlite-schema"))
