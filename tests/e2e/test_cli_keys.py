"""``switchboard keys …`` against a running gateway's admin API."""

from __future__ import annotations

import json
from typing import Any

import openai

from tests.servers import MASTER_KEY, Gateway, free_port, spawn


def keys(gateway: Gateway, *args: str, key: str = MASTER_KEY) -> tuple[int, str]:
    proc = spawn(["keys", *args, "--url", gateway.url, "--key", key], env={"COLUMNS": "250"})
    code = proc.wait_exit(60)
    return code, proc.output


def as_json(output: str) -> Any:
    return json.loads(output)


def test_create_list_show_rotate_revoke(gateway: Gateway) -> None:
    code, output = keys(gateway, "create", "-m", "gpt-4o-mini", "-m", "gpt-*", "--name", "cli app",
                        "--metadata", "owner=ops", "--json")
    assert code == 0, output
    created = as_json(output)
    assert created["models"] == ["gpt-4o-mini", "gpt-*"] and created["metadata"] == {"owner": "ops"}
    client = openai.OpenAI(base_url=gateway.base_url, api_key=created["key"], max_retries=0)
    assert client.models.list().data

    code, output = keys(gateway, "list", "--json")
    assert code == 0 and created["id"] in {k["id"] for k in as_json(output)}
    assert created["key"] not in output
    code, table = keys(gateway, "list")
    assert code == 0 and created["id"] in table and "cli app" in table

    code, output = keys(gateway, "show", created["id"], "--json")
    assert code == 0 and as_json(output)[0]["name"] == "cli app"

    code, output = keys(gateway, "rotate", created["id"], "--grace-seconds", "0", "--json")
    assert code == 0, output
    rotated = as_json(output)
    assert rotated["rotated_from"] == created["id"]

    code, output = keys(gateway, "revoke", rotated["id"])
    assert code == 0 and f"revoked {rotated['id']}" in output
    code, output = keys(gateway, "create", "-m", "gpt-4o-mini")
    assert code == 0 and "shown once" in output and "sk-sb-" in output


def test_create_with_limits_and_a_budget(gateway: Gateway) -> None:
    code, output = keys(gateway, "create", "-m", "*", "--rpm-limit", "60", "--tpm-limit", "9000",
                        "--max-budget-usd", "2.50", "--budget-period", "weekly", "--json")
    assert code == 0, output
    created = as_json(output)
    assert (created["rpm_limit"], created["tpm_limit"]) == (60, 9000)
    assert (created["max_budget_usd"], created["budget_period"]) == (2.5, "weekly")
    code, output = keys(gateway, "create", "-m", "*", "--max-budget-usd", "-1")
    assert code == 1 and "HTTP 400" in output and "max_budget_usd" in output


def test_errors_are_one_line_and_exit_1(gateway: Gateway) -> None:
    code, output = keys(gateway, "list", key="wrong-key")
    assert code == 1 and "HTTP 401" in output and "invalid_api_key" in output
    assert "Traceback" not in output
    code, output = keys(gateway, "show", "key_nope")
    assert code == 1 and "key_not_found" in output
    code, output = keys(gateway, "create", "-m", "m", "--metadata", "no-equals-sign")
    assert code == 2 and "NAME=VALUE" in output
    nowhere = Gateway(free_port(), gateway.process, gateway.config_path)
    code, output = keys(nowhere, "list")
    assert code == 1 and "cannot reach the gateway" in output
