"""The upstream client's memos (parsed URLs, lean-client targets, timeout overrides, merged
header sets) are bounded: when full, a new entry pushes out the oldest one, not all of them, so
the entries in use stay parsed (a burst of new URLs never makes every request parse again)."""

from __future__ import annotations

import pytest

from switchboard.config.schema import Timeouts
from switchboard.upstream import client as client_module
from switchboard.upstream import http1
from switchboard.upstream.auth import StaticHeaderAuth
from switchboard.upstream.client import UpstreamClient


def make_client() -> UpstreamClient:
    return UpstreamClient("p", StaticHeaderAuth.bearer("sk-stored-key-0123456789"), 1, {}, Timeouts())


def test_parsed_urls_and_targets_push_out_the_oldest_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "_MAX_CACHED_URLS", 3)
    client = make_client()
    urls = [f"http://127.0.0.1:{41000 + i}/v1/chat/completions" for i in range(4)]
    parsed = [client._url(u) for u in urls[:3]]
    targets = [client._target(u) for u in urls[:3]]
    assert all(t is not None for t in targets)
    client._url(urls[3])
    client._target(urls[3])
    # The newer ones kept as they were (the same objects: not parsed again); the first gone.
    assert all(client._url(u) is p for u, p in zip(urls[1:3], parsed[1:], strict=True))
    assert all(client._target(u) is t for u, t in zip(urls[1:3], targets[1:], strict=True))
    assert list(client._urls) == urls[1:] and list(client._targets) == urls[1:]
    assert client._target(urls[0]) is not targets[0]  # parsed again, pushing out the next oldest
    assert list(client._targets) == [*urls[2:], urls[0]]

def test_timeout_overrides_push_out_the_oldest_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "_MAX_CACHED_TIMEOUTS", 2)
    client = make_client()
    limits = [Timeouts(total=float(10 + i)) for i in range(3)]
    built = [client._client_timeout(t) for t in limits[:2]]
    assert client._client_timeout(limits[2]).total == 12.0
    assert client._client_timeout(limits[1]) is built[1]  # kept, not built again
    assert [entry[0] for entry in client._timeouts.values()] == limits[1:]


def test_remembered_header_sets_push_out_the_oldest_one() -> None:
    headers = http1.Headers({"Authorization": "Bearer sk-stored-key-0123456789"})
    limit = http1._KNOWN_HEADER_SETS
    sets = [{"accept": f"application/x-{i}"} for i in range(limit + 1)]
    blocks = [headers.block(extra, remember=True) for extra in sets]
    assert len(headers._known) == limit
    assert tuple(sets[0].items()) not in headers._known
    # Every later set still remembered: the same result, not merged again.
    assert all(headers.block(extra, remember=True) is block
               for extra, block in zip(sets[1:], blocks[1:], strict=True))
    assert b"accept: application/x-0\r\n" in headers.block(sets[0], remember=True)[0]
