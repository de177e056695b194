"""`switchboard logs --follow` reads at most FOLLOW_PAGES pages a poll, and says when more were left."""

from __future__ import annotations

from typing import Any

from switchboard import cli_logs


class Pages:
    """Answers the request log's pages in order: ``count`` pages, each saying whether more follow."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.asked: list[dict[str, Any]] = []

    def call(self, method: str, path: str, query: dict[str, Any]) -> dict[str, Any]:
        self.asked.append(query)
        n = len(self.asked)
        return {"data": [{"request_id": f"r{n}"}], "has_more": n < self.count, "next_cursor": f"c{n}"}


def test_a_poll_reads_every_page_when_they_fit() -> None:
    pages = Pages(3)
    found, cut = cli_logs._poll(pages, {"from": "t"})  # type: ignore[arg-type]
    assert [r["request_id"] for r in found] == ["r1", "r2", "r3"] and not cut
    assert [q.get("cursor") for q in pages.asked] == [None, "c1", "c2"]


def test_a_poll_stops_at_its_pages_and_says_more_were_left() -> None:
    pages = Pages(cli_logs.FOLLOW_PAGES + 2)
    found, cut = cli_logs._poll(pages, {"from": "t"})  # type: ignore[arg-type]
    assert len(found) == cli_logs.FOLLOW_PAGES and cut
    assert len(pages.asked) == cli_logs.FOLLOW_PAGES
