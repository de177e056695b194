"""The CLI's tables in an 80-column terminal (COLUMNS=80), against a running gateway: every
word of every column header is printed whole (Rich used to squeeze a usage report to ``m… r…``;
headers show their words separated by spaces and wrap between them), no line is wider than the
terminal, and ids stay whole to copy. A table that fits is a table; one whose header words cannot
fit side by side shows each row as a block of ``header  value``. At 200 columns the usage report
(16 columns) is a table."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

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


def _run(gateway: Gateway, *args: str, width: int = WIDTH) -> list[str]:
    proc = spawn([*args, "--url", gateway.url, "--key", MASTER_KEY], env={"COLUMNS": str(width)})
    code = proc.wait_exit(60)
    assert code == 0, proc.output
    return proc.output.splitlines()


def _cells(lines: Iterable[str]) -> set[str]:
    return {part.strip() for text in lines for part in text.replace("┃", "│").split("│")}


def _missing_words(headers: Iterable[str], lines: Iterable[str]) -> set[str]:
    """The words of the headers (between spaces or underscores) not printed whole."""
    printed = {word for part in _cells(lines) for word in part.split()}
    return {word for header in headers for word in header.replace("_", " ").split()} - printed


@pytest.fixture(scope="module")
def budget_id(gateway: Gateway) -> Iterator[str]:
    """Something in every table: a call in the usage report, a key, a budget. The gateway is the
    session's: the budget (on the default tenant, over every caller of it) goes with the module."""
    key = httpx.post(f"{gateway.url}/admin/v1/keys", json={"models": ["*"]}, headers=ADMIN, timeout=10).json()
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key["key"], max_retries=0)
    assert client.chat.completions.create(model="gpt-4o-mini", messages=ask("width")).choices
    end = time.monotonic() + 10
    while not httpx.get(f"{gateway.url}/admin/v1/usage", headers=ADMIN, timeout=10,
                        params={"key": key["id"]}).json()["data"]:
        assert time.monotonic() < end, "the call never reached the usage report"
        time.sleep(0.05)
    budget = httpx.put(f"{gateway.url}/admin/v1/budgets", headers=ADMIN, timeout=10,
                       json={"scope": "tenant", "max_amount": 1000, "thresholds": [50, 80]})
    assert budget.status_code == 200, budget.text
    yield str(budget.json()["id"])
    gone = httpx.delete(f"{gateway.url}/admin/v1/budgets/{budget.json()['id']}", headers=ADMIN, timeout=10)
    assert gone.status_code == 200, gone.text


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
    assert not _missing_words(headers, lines), "\n".join(lines)
    assert "…" not in "\n".join(lines)


def test_the_usage_report_is_a_table_at_200_columns(gateway: Gateway, budget_id: str) -> None:
    """Its 16 headers side by side need more than 200 columns: they wrap between their words
    instead of every row turning into a block."""
    lines = _run(gateway, "usage", width=200)
    text = "\n".join(lines)
    assert all(len(line) <= 200 for line in lines), text
    tops = [line[0] for line in lines if line[:1] in ("┏", "┌")]
    assert tops == ["┏"], text  # one table with a header row, no blocks
    assert not _missing_words(("model", *METRICS), lines), text
    assert "gpt-4o-mini" in _cells(lines) and "…" not in text


def test_a_budget_id_is_whole_to_copy(gateway: Gateway, budget_id: str) -> None:
    assert budget_id in _cells(_run(gateway, "budgets", "list"))
