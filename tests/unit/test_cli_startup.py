"""A command line loads what it names: the other command groups' modules are not imported (nor
their commands built), and the settings' schema only by commands that read settings. Each case
is a fresh process, as each ``switchboard`` command is."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from switchboard.cli import _GROUPS

# Runs the CLI as the console script does, then names the switchboard modules it imported.
_RUN = """
import sys
from switchboard.cli import main
sys.argv = ["switchboard", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    print("EXIT", exc.code)
print("MODULES", *sorted(m for m in sys.modules if m.startswith("switchboard")))
"""


def run(*args: str) -> tuple[str, str, set[str]]:
    env = {**os.environ, "COLUMNS": "200", "SWITCHBOARD_DATA_DIR": os.devnull}
    done = subprocess.run([sys.executable, "-c", _RUN, *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=env, timeout=60, check=True)
    text, _, modules = done.stdout.rpartition("MODULES")
    body, _, code = text.rpartition("EXIT")
    return body, code.strip(), set(modules.split())


def test_the_version_command_imports_no_command_group_and_no_settings() -> None:
    body, code, modules = run("version")
    assert (body.strip(), code) == ("0.1.0", "0")
    assert not {m for m in modules if m.startswith("switchboard.cli_")} - {
        "switchboard.cli_output", "switchboard.cli_usage"}
    assert "switchboard.config.schema" not in modules


@pytest.mark.parametrize(("group", "module"), [("keys", "switchboard.cli_keys"),
                                               ("analytics", "switchboard.cli_analytics")])
def test_a_group_imports_its_own_module_only(group: str, module: str) -> None:
    body, code, modules = run(group, "--help")
    assert code == "0" and f"switchboard {group} [OPTIONS] COMMAND" in body
    others = {where.split(":")[0] for where in _GROUPS.values() if where} - {module}
    assert module in modules and not modules & others


def test_the_help_lists_every_command_group_in_order() -> None:
    body, code, _ = run("--help")
    assert code == "0"
    # The first word of each row of the panels, the options' rows left out.
    names = [m[1] for m in re.finditer(r"^│ ([^\s-]\S*) ", body, re.MULTILINE)]
    assert names == ["usage", "serve", "mock", "version", *_GROUPS]


def test_a_mistyped_group_is_still_suggested() -> None:
    body, code, _ = run("tenant")
    assert code == "2" and "Did you mean 'tenants'?" in body
