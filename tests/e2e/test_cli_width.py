"""The CLI's tables in an 80-column terminal (COLUMNS=80), against a running gateway: every
column header is printed whole on one line (Rich used to squeeze a usage report to ``m… r…``),
no line is wider than the terminal, and ids stay whole to copy. A table that fits is a table;
one whose headers cannot fit side by side shows each row as a block of ``header  value``."""

from __future__ import annotations

import time
from collections.abc import Iterable

import httpx
import openai
import pytest

from switchboard.cli_budgets import COLUMNS as BUDGET_COLUMNS
from switchboard.cli_keys import COLUMNS as KEY_COLUMNS
from switchboard.cli_routing import COLUMNS as ROUTING_COLUMNS
from switchboard.cli_tenancy import TENANT_COLUMNS
from switchboard.http.admin.usage import METRICS
from tests.e2e.sdk import ask
from tests.servers import MASTER_KEY, Gateway, spawn

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
WIDTH = 80


def _run(gateway: Gateway, *args: str) -> list[str]:
    proc = spawn([*args, "--url", gateway.url, "--key", MASTER_KEY], env={"COLUMNS": str(WIDTH)})
    code = proc.wait_exit(60)
    assert code == 0, proc.output
    return proc.output.splitlines()


def _cells(lines: Iterable[str]) -> set[str]:
    return {part.strip() for text in lines for part in text.replace("┃", "│").split("│")}


@pytest.fixture(scope="module")
def budget_id(gateway: Gateway) -> str:
    """Something in every table: a call in the usage report, a key, a budget."""
    key = httpx.post(f"{gateway.url}/admin/v1/keys", json={"models": ["*"]}, headers=ADMIN, timeout=10)
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key.json()["key"], max_retries=0)
    assert client.chat.completions.create(model="gpt-4o-mini", messages=ask("width")).choices
    end = time.monotonic() + 10
    while not httpx.get(f"{gateway.url}/admin/v1/usage", headers=ADMIN, timeout=10).json()["data"]:
        assert time.monotonic() < end, "the call never reached the usage report"
    budget = httpx.put(f"{gateway.url}/admin/v1/budgets", headers=ADMIN, timeout=10,
                       json={"scope": "tenant", "max_amount": 1000, "thresholds": [50, 80]})
    assert budget.status_code == 200, budget.text
    return str(budget.json()["id"])


@pytest.mark.parametrize(("args", "headers"), [
    (("usage",), ("model", *METRICS)),
    (("usage", "--group-by", "model,key,day"), ("model", "key", "day", *METRICS)),
    (("budgets", "list"), tuple(BUDGET_COLUMNS)),
    (("routing", "groups"), tuple(ROUTING_COLUMNS)),
    (("keys", "list"), KEY_COLUMNS),
    (("tenants", "list"), TENANT_COLUMNS),
])
def test_every_header_is_printed_whole_at_80_columns(
    gateway: Gateway, budget_id: str, args: tuple[str, ...], headers: tuple[str, ...]
) -> None:
    lines = _run(gateway, *args)
    assert all(len(text) <= WIDTH for text in lines), "\n".join(lines)
    missing = set(headers) - _cells(lines)
    assert not missing, "\n".join(lines)
    assert "…" not in "\n".join(lines)


def test_a_budget_id_is_whole_to_copy(gateway: Gateway, budget_id: str) -> None:
    assert budget_id in _cells(_run(gateway, "budgets", "list"))
