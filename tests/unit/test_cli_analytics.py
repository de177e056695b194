"""``switchboard analytics show``'s table: what the server answers is printed as it is, never
read as Rich markup (a JWT user id, a group name, may hold brackets)."""

from __future__ import annotations

import pytest
from rich.console import Console

from switchboard import cli_analytics

NO_TIMING = {"avg": None, "p50": None, "p95": None, "p99": None}
TOTALS = {"requests": 1, "errors": 0, "error_rate": 0.0, "total_tokens": 3, "cost_usd": "0",
          "latency_ms": NO_TIMING, "ttft_ms": NO_TIMING}


def test_group_names_with_brackets_are_printed_as_they_are(monkeypatch: pytest.MonkeyPatch) -> None:
    console = Console(width=250, highlight=False)
    monkeypatch.setattr(cli_analytics, "out", console)
    answer = {"group_by": "user", "from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z",
              "series": [{"group": "[/bad]", "totals": TOTALS},
                         {"group": "[bold]x[/bold]", "totals": TOTALS}],
              "totals": TOTALS}
    with console.capture() as captured:
        cli_analytics.print_table(answer)
    text = captured.get()
    assert "[/bad]" in text and "[bold]x[/bold]" in text
