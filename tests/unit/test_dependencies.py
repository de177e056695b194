"""The libraries installed are releases pyproject.toml declares, and the start-up check of the
internals the gateway relies on in them (switchboard/deps.py) passes on them and names the
library, its version and the supported range when one is missing."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version
from redis.asyncio.connection import Connection

from switchboard import deps
from switchboard.stores import StoreError
from switchboard.stores.redis.client import connect

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def declared() -> list[Requirement]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    return [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["test"]]]


def test_every_installed_library_is_a_release_pyproject_declares() -> None:
    checked, outside = [], []
    for requirement in declared():
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        version = importlib.metadata.version(requirement.name)
        checked.append(requirement.name)
        if not requirement.specifier.contains(Version(version), prereleases=True):
            outside.append(f"{requirement.name} {version} (declared {requirement.specifier})")
    assert outside == []
    assert {"uvicorn", "typer", "redis", "SQLAlchemy", "pytest", "openai"} <= set(checked)


def test_libraries_used_through_internals_have_a_ceiling() -> None:
    ranges = {r.name: r.specifier for r in declared()}
    for name in (*deps.CORE, *deps.REDIS):
        assert any(s.operator == "<" for s in ranges[name]), name


def test_the_start_up_check_passes_on_the_installed_libraries() -> None:
    assert deps.unsupported((*deps.CORE, *deps.REDIS)) == []


# `switchboard serve` in a process whose uvicorn lacks a method the edge's protocol overrides.
_SERVE_WITHOUT = """
import sys
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
del HttpToolsProtocol.on_headers_complete
from switchboard.cli import main
sys.argv = ["switchboard", "serve", "--port", "51871"]
main()
"""


def test_serve_refuses_a_uvicorn_without_the_internals_it_overrides(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "400", "SWITCHBOARD_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-c", _SERVE_WITHOUT], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert done.returncode == 1
    version = importlib.metadata.version("uvicorn")
    assert done.stderr.startswith(
        f"error: uvicorn {version} is not a supported release "
        f"(supported: uvicorn{deps.declared_range('uvicorn')}): "
    )
    assert "uvicorn.protocols.http.httptools_impl has no HttpToolsProtocol.on_headers_complete" in done.stderr
    # Refused before anything else: no data directory, no master key, no banner.
    assert not (tmp_path / "data").exists()
    assert "Switchboard" not in done.stdout


async def test_the_redis_store_refuses_a_redis_py_without_the_wire_s_internals(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for owner in Connection.__mro__:  # redis-py defines it on base classes, some twice
        if "read_response" in vars(owner):
            monkeypatch.delattr(owner, "read_response")
    with pytest.raises(StoreError) as raised:
        await connect("redis://127.0.0.1:51872/0")  # refused before any connection is tried
    message = str(raised.value)
    assert message.startswith(f"redis {importlib.metadata.version('redis')} is not a supported release")
    assert f"(supported: redis{deps.declared_range('redis')})" in message
    assert "redis.asyncio.connection has no Connection.read_response" in message
