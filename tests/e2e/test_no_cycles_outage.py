"""No request leaves a reference cycle while Redis is down (cluster mode): the rate limits and the
budget cannot be checked, and each store's policy decides (``on_store_error``): refused with 503,
or admitted unchecked. As in test_no_cycles.py, the gateway runs in this process; a key with a
rate limit and a budget calls it a few times with the collector off and saving what it finds,
then one collection must find nothing of the gateway's."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import openai
import pytest

from tests.e2e.test_no_cycles import CHAT, InProcess, _issue, _post, in_process, left_behind
from tests.servers import MASTER_KEY, SECRET_KEY, UPSTREAM_KEY, Mock
from tests.services import Postgres, start_redis

# (limits' policy, budgets' policy) -> the status of a request while Redis is down.
POLICIES = {("closed", "open"): 503, ("open", "closed"): 503, ("open", "open"): 200}


@pytest.fixture(scope="module", params=list(POLICIES), ids="limits-{0[0]}-budgets-{0[1]}".format)
def down(request: pytest.FixtureRequest, mock_upstream: Mock, postgres: Postgres,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InProcess, int]]:
    limits, budgets = request.param
    redis = start_redis()  # our own, stopped below
    config = {
        "providers": [{"name": "oa", "type": "openai", "api_base": f"{mock_upstream.url}/v1",
                       "api_key": UPSTREAM_KEY}],
        "models": [{"name": "gpt-4o-mini", "provider": "oa", "model": "gpt-4o-mini"}],
        "database": {"url": postgres.create_database(f"cycles_{uuid.uuid4().hex[:8]}")},
        "redis": {"url": redis.url},
        "limits": {"on_store_error": limits},
        "budgets": {"on_store_error": budgets},
        "auth": {"master_key": MASTER_KEY, "secret_key": SECRET_KEY},
        "server": {"log_level": "error"},
    }
    try:
        with in_process(config, tmp_path_factory.mktemp("cycles-outage")) as gw:
            gw.key = _issue(gw, {"models": ["*"], "rpm_limit": 100_000, "max_budget_usd": 1000})
            answers: list[tuple[int, bytes]] = []
            gw.drive(lambda: answers.append(_post(gw, "/v1/chat/completions", CHAT, gw.key)), 1)
            assert answers[0][0] == 200, answers  # Redis up: limited and charged
            redis.stop()
            yield gw, POLICIES[request.param]
    finally:
        redis.stop()


def test_no_request_leaves_a_cycle_while_redis_is_down(down: tuple[InProcess, int]) -> None:
    gw, status = down
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{gw.port}/v1", api_key=gw.key, max_retries=0,
                           timeout=30)

    def call() -> None:
        if status == 200:
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
            return
        with pytest.raises(openai.APIStatusError) as refused:
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert refused.value.status_code == status

    found, ours = left_behind(gw, call)
    assert not ours, f"{found} objects in cycles, of ours: {dict(ours)}"
