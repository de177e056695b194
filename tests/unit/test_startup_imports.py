"""What a gateway loads when it starts: the libraries only some configurations need (PyJWT for
JWT callers, jsonschema for prompts, prompt APIs and MCP tools, Jinja2 for prompt templates) are
imported when first needed, not by every ``switchboard serve``. Each case builds a whole gateway
(every chain) in a fresh interpreter, as a start does."""

from __future__ import annotations

import subprocess
import sys

import pytest

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
