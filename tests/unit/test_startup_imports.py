"""What a gateway loads when it starts: the libraries only some configurations need (PyJWT for
JWT callers, jsonschema for prompts, prompt APIs and MCP tools, Jinja2 for prompt templates) are
imported when first needed, not by every ``switchboard serve``. Each case builds a whole gateway
(every chain) in a fresh interpreter, as a start does. A gateway that starts with prompts stored
or MCP servers configured imports what they need once started, in a worker thread."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from tests.services import Postgres, RedisServer

# The libraries deferred, each with the modules it alone loads.
DEFERRED = ("jwt", "jsonschema", "referencing", "jinja2")

_START = """
import sys
from switchboard.app import create_app
from switchboard.settings.loader import validate
config = {"providers": [{"name": "p", "type": "openai", "api_base": "http://127.0.0.1:9/v1"}],
          "models": [{"name": "m", "provider": "p", "model": "m"}],
          "auth": {"master_key": "sk-abcdefgh12345678"}}
if sys.argv[1] == "oidc":
    config["auth"]["oidc"] = [{"issuer": "https://idp.example", "audience": "switchboard",
                               "discovery": False, "jwks_url": "https://idp.example/jwks"}]
create_app(validate(config, "t", env={}))
print(*sorted(m for m in sys.argv[2:] if m in sys.modules))
"""


def loaded(kind: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", _START, kind, *DEFERRED], capture_output=True, text=True,
                          timeout=120, check=True)
    return done.stdout.split()


@pytest.mark.parametrize(("kind", "expected"), [("plain", []), ("oidc", ["jwt"])])
def test_a_start_loads_only_the_libraries_its_configuration_uses(kind: str, expected: list[str]) -> None:
    # Without identity providers no JWT library; prompts and MCP load theirs on first use.
    assert loaded(kind) == expected


_CODES = _START.rsplit("print(", 1)[0] + """
from switchboard.observability.metrics import _error_codes
print(*sorted(c for c in sys.argv[2:] if c in _error_codes()))
"""


def test_the_codes_of_errors_raised_by_deferred_modules_are_labelled_from_start() -> None:
    # The metrics give each error class imported at start a code label of its own; a class first
    # imported with a deferred module would take one of the few slots left for other codes.
    codes = ["prompt_render_busy", "prompt_render_failed"]
    done = subprocess.run([sys.executable, "-c", _CODES, "plain", *codes], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.split() == codes


# A gateway started in a fresh interpreter, as `serve` runs it (the app's lifespan): with a
# prompt stored before it starts (argv[2] "prompt", or "prompt+call" with a prompt call made
# while the warm-up runs) or an MCP server configured, the libraries they need are imported once
# start-up is complete, in a worker thread, before any call. Printed on a second line: the
# modules imported whose namespace the cyclic collector still scans (not frozen with the rest).
_STARTED = """
import asyncio, gc, sys
from datetime import UTC, datetime

import orjson

from switchboard.app import create_app
from switchboard.prompts import sandbox
from switchboard.settings.loader import validate
from switchboard.stores import open_stores
from switchboard.stores.protocols import PromptVersion

config, kind = orjson.loads(sys.argv[1]), sys.argv[2]
stored, call = kind.startswith("prompt"), kind == "prompt+call"
settings = validate(config, "t", env={})


async def store_a_prompt() -> None:
    stores = await open_stores(settings)
    assert stores.prompts is not None
    await stores.prompts.create_version(PromptVersion(
        tenant_id="default", name="greet", version=0, messages=[{"role": "user", "content": "Hi {{ who }}"}],
        variables={"type": "object", "properties": {"who": {"type": "string"}}}, model="m", params={},
        output_schema=None, description="", team_id=None, created_by="test", created_at=datetime.now(UTC)))
    await stores.close()


async def main() -> None:
    if stored:
        await store_a_prompt()
    assert not any(m in sys.modules for m in sys.argv[3:]), "imported before the gateway started"
    app = create_app(settings)
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    lifespan = asyncio.create_task(app({"type": "lifespan"}, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    gateway = app.gateway
    assert gateway.ready and gateway.warming is not None
    frozen = gc.get_freeze_count()  # what the start-up built
    assert frozen > 0
    if call:  # a prompt call arriving during the warm-up: served, by the module the thread imports
        invalid = sandbox.templates().validate_variables({"type": "object"}, {"who": "you"})
        assert invalid == [], invalid
    await gateway.warming
    imported = sorted(m for m in sys.argv[3:] if m in sys.modules)
    print(*imported)
    assert (gc.get_freeze_count() > frozen) == bool(imported), "the warm-up's imports not frozen"
    scanned = {id(o) for o in gc.get_objects()}
    print(*[m for m in imported if id(vars(sys.modules[m])) in scanned])
    await inbox.put({"type": "lifespan.shutdown"})
    assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
    await lifespan


asyncio.run(main())
"""

# What a started gateway has loaded of the deferred libraries, by what it has to serve.
_WARMED = {"none": [], "prompt": ["jinja2", "jsonschema", "referencing"],
           "prompt+call": ["jinja2", "jsonschema", "referencing"], "mcp": ["jsonschema", "referencing"]}


def started(config: dict[str, object], kind: str) -> list[str]:
    """The deferred libraries a started gateway has imported; each was frozen with what the
    start-up built (app.py's ``gc.freeze``), out of the cyclic collector's scans."""
    done = subprocess.run([sys.executable, "-c", _STARTED, orjson.dumps(config).decode(), kind, *DEFERRED],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    imported, scanned = done.stdout.split("\n")[:2]
    assert scanned == ""
    return imported.split()


def _config(tmp_path: Path, kind: str) -> dict[str, object]:
    config: dict[str, object] = {
        "providers": [{"name": "p", "type": "openai", "api_base": "http://127.0.0.1:9/v1"}],
        "models": [{"name": "m", "provider": "p", "model": "m"}],
        "auth": {"master_key": "sk-abcdefgh12345678"},
        "server": {"data_dir": str(tmp_path / "data")},
    }
    if kind == "mcp":
        config["mcp_servers"] = [{"name": "tools", "url": "http://127.0.0.1:9/mcp"}]
    return config


@pytest.mark.parametrize("kind", ["none", "prompt", "prompt+call", "mcp"])
def test_a_started_gateway_imports_ahead_what_its_prompts_and_mcp_servers_need(tmp_path: Path,
                                                                                kind: str) -> None:
    # Embedded (SQLite): nothing stored nor configured imports nothing; a stored prompt, the
    # sandbox and the schema libraries; an MCP server, the schema libraries alone.
    assert started(_config(tmp_path, kind), kind) == _WARMED[kind]


def test_a_started_cluster_gateway_imports_ahead_for_a_prompt_stored_in_postgresql(
        tmp_path: Path, postgres: Postgres, redis_server: RedisServer) -> None:
    config = _config(tmp_path, "prompt")
    config["database"] = {"url": postgres.create_database(f"warm_{uuid.uuid4().hex[:8]}")}
    config["redis"] = {"url": redis_server.url}
    assert started(config, "none") == []  # an empty database: nothing to import ahead
    assert started(config, "prompt") == _WARMED["prompt"]
