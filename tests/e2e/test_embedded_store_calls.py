"""On the embedded default the rate limiter and the budget counters live in this process and never
wait, so the request path takes, reserves and settles through their plain calls: no coroutine of
theirs, nor of the settlement's, on any request (each awaited coroutine that never suspends costs
some 700 instructions; docs/benchmarks.md), and the post-response work (the usage record, the
settlement, the metrics) runs without one either. What the caller is told is the same: the
rate-limit headers count down, the budget's spend is settled to the calls' cost, refusals are as
before.

The gateway runs in this process (the stores' coroutine forms are watched there), against the
mock upstream, with a key that has RPM/TPM limits and a budget, as the full path of the benchmark.
"""

from __future__ import annotations

import http.client
import json
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest

from switchboard.context import RequestContext
from switchboard.spend.budgets.book import BudgetBook
from switchboard.stores.memory.budgets import MemoryBudgetCounters
from switchboard.stores.memory.limits import MemoryRateLimiter
from tests.e2e.test_no_cycles import InProcess, _issue, in_process
from tests.servers import MASTER_KEY, SECRET_KEY, UPSTREAM_KEY, Mock

HELLO = [{"role": "user", "content": "hello"}]
# The coroutine forms the request path used to await, by name.
WATCHED: list[tuple[type, str]] = [
    (MemoryRateLimiter, "acquire"),
    (MemoryRateLimiter, "adjust"),
    (MemoryBudgetCounters, "reserve"),
    (MemoryBudgetCounters, "settle"),
    (BudgetBook, "settle_surely"),
]


def _config(mock: Mock) -> dict[str, Any]:
    upstream = {"type": "openai", "api_base": f"{mock.url}/v1", "api_key": UPSTREAM_KEY}
    return {
        "providers": [{"name": "oa", **upstream}, {"name": "oa2", **upstream}],
        "models": [
            {"name": "gpt-4o-mini", "provider": "oa", "model": "gpt-4o-mini"},
            {"name": "gpt-4o-mini", "provider": "oa2", "model": "gpt-4o-mini", "deployment": "second"},
        ],
        "auth": {"master_key": MASTER_KEY, "secret_key": SECRET_KEY},
        "server": {"log_level": "error"},
    }


@pytest.fixture(scope="module")
def tmp_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedded-calls")


@pytest.fixture(scope="module")
def gateway(mock_upstream: Mock, tmp_path: Path) -> Iterator[InProcess]:
    with in_process(_config(mock_upstream), tmp_path) as gw:
        yield gw


@pytest.fixture
def awaited(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many times each of ``WATCHED``'s coroutine forms was called (each call makes one)."""
    calls: Counter[str] = Counter()

    def watch(cls: type, name: str) -> None:
        form = getattr(cls, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            calls[f"{cls.__name__}.{name}"] += 1
            return form(*args, **kwargs)

        monkeypatch.setattr(cls, name, counted)

    for cls, name in WATCHED:
        watch(cls, name)
    after = RequestContext.run_after_response

    def run_after_response(ctx: RequestContext) -> Any:
        waits = after(ctx)
        if waits is not None and ctx.operation == "chat":  # a model call's callbacks, not the admin API's
            calls["a post-response callback waited"] += 1
        return waits

    monkeypatch.setattr(RequestContext, "run_after_response", run_after_response)
    return calls


def _sdk(gw: InProcess, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=f"http://127.0.0.1:{gw.port}/v1", max_retries=0)


def _chat(client: openai.OpenAI, stream: bool) -> tuple[dict[str, str], str]:
    """A chat call: its response headers and its text."""
    if not stream:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO)  # type: ignore[arg-type]
        return dict(raw.headers), raw.parse().choices[0].message.content or ""
    with client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=HELLO, stream=True) as raw:  # type: ignore[arg-type]
        text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
        return dict(raw.headers), text


def _admin_call(gw: InProcess, method: str, path: str, body: Any = None) -> dict[str, Any]:
    """An admin API call with the master key, answered 200 or 201."""
    found: list[tuple[int, bytes]] = []

    def call() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
        try:
            conn.request(method, path, None if body is None else json.dumps(body).encode(),
                         {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"})
            resp = conn.getresponse()
            found.append((resp.status, resp.read()))
        finally:
            conn.close()

    gw.drive(call, 1)
    [(status, answer)] = found
    assert status in (200, 201), answer
    return dict(json.loads(answer))


def _calls(gw: InProcess, call: Callable[[], Any], times: int) -> list[Any]:
    out: list[Any] = []
    gw.drive(lambda: out.append(call()), times)
    return out


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_limits_and_budgets_settle_through_plain_calls(gateway: InProcess, awaited: Counter[str],
                                                       stream: bool) -> None:
    key = _admin_call(gateway, "POST", "/admin/v1/keys", {"models": ["*"], "rpm_limit": 1000,
                                                           "tpm_limit": 10**6})
    budget = _admin_call(gateway, "PUT", "/admin/v1/budgets", {
        "scope": "key", "subject": key["id"], "max_amount": 5, "period": "total"})
    client = _sdk(gateway, str(key["key"]))
    answers = _calls(gateway, lambda: _chat(client, stream), 3)
    # What the caller is told, as before: each call answered, its limits counting down.
    assert [text != "" for _, text in answers] == [True] * 3
    assert [h["x-ratelimit-remaining-requests"] for h, _ in answers] == ["999", "998", "997"]
    assert all(h["x-ratelimit-limit-tokens"] == "1000000" for h, _ in answers)
    # The calls' cost settled on the key's budget, nothing left reserved once they ended.
    status = _admin_call(gateway, "GET", f"/admin/v1/budgets/{budget['id']}")["status"]
    spent, reserved = Decimal(status["spent"]), Decimal(status["reserved"])
    assert spent > 0 and reserved == 0
    if not stream:  # a stream's cost is known only after its headers
        assert spent == sum(Decimal(h["x-switchboard-cost-usd"]) for h, _ in answers)
    # ... and no coroutine of the stores, the book or the settlement was made for it.
    assert dict(awaited) == {}


def test_a_refusal_is_the_same(gateway: InProcess, awaited: Counter[str]) -> None:
    key = _issue(gateway, {"models": ["*"], "rpm_limit": 1})
    client = _sdk(gateway, key)
    _calls(gateway, lambda: _chat(client, False), 1)
    refused: list[openai.RateLimitError] = []

    def second() -> None:
        with pytest.raises(openai.RateLimitError) as error:
            _chat(client, False)
        refused.append(error.value)

    gateway.drive(second, 1)
    assert refused[0].response.headers["x-ratelimit-scope"] == "key"
    assert refused[0].code == "rate_limit_exceeded"
    assert dict(awaited) == {}
