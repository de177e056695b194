"""The disconnect watch (http/disconnect.py): one timer per event loop serves every request's
watch. A request that outlives the delay has its watcher started even when requests made before
it ended early (their entries are dropped, the timer set again for it), and one that ends first
never reads ``receive``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from switchboard.http import disconnect
from switchboard.http.disconnect import ClientGone, until_disconnect

AFTER = 0.05


@pytest.fixture(autouse=True)
def short_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(disconnect, "WATCH_AFTER", AFTER)


class Client:
    """``receive`` of a request whose client left (or stays, ``left=False``): counts its reads."""

    def __init__(self, *, left: bool) -> None:
        self.left = left
        self.reads = 0
        self._never = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        self.reads += 1
        if self.left:
            return {"type": "http.disconnect"}
        await self._never.wait()
        raise AssertionError("unreachable")


async def _quick() -> str:
    return "done"


async def test_quick_requests_never_read_receive_and_a_long_one_behind_them_is_watched() -> None:
    quick = [Client(left=True) for _ in range(3)]
    for client in quick:
        assert await until_disconnect(client.receive, _quick()) == "done"
    long = Client(left=True)
    forever = asyncio.Event()
    with pytest.raises(ClientGone):
        await asyncio.wait_for(until_disconnect(long.receive, forever.wait()), timeout=20 * AFTER)
    assert long.reads == 1
    assert [c.reads for c in quick] == [0, 0, 0]


async def test_requests_in_flight_together_are_each_watched_in_turn() -> None:
    stays, leaves = Client(left=False), Client(left=True)
    release = asyncio.Event()

    async def held() -> str:
        await release.wait()
        return "answered"

    first = asyncio.create_task(until_disconnect(stays.receive, held()))
    second = asyncio.create_task(until_disconnect(leaves.receive, asyncio.Event().wait()))
    with pytest.raises(ClientGone):
        await asyncio.wait_for(second, timeout=20 * AFTER)
    # The first was watched too (its client stays): it ends with its own answer.
    assert stays.reads == 1 and not first.done()
    release.set()
    assert await first == "answered"
