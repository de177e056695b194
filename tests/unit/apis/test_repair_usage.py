"""The usage of an API call whose output was repaired (http/apis/stages.py): every try's usage
summed into the one the ledger records, its cache and reasoning details with it, whatever the
upstream wrote in its counts."""

from __future__ import annotations

from typing import Any

from switchboard.http.apis.stages import _summed
from switchboard.spend.cost import split


def usage(prompt: Any, completion: Any, cached: Any = 0, written: Any = 0, reasoning: Any = 0,
          ) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": 0,
        "prompt_tokens_details": {"cached_tokens": cached, "cache_creation_tokens": written},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def test_each_trys_cache_reads_writes_and_reasoning_are_summed() -> None:
    # The first try wrote the prompt's cache, the repair read it: the record prices both.
    first = usage(1000, 50, written=900, reasoning=20)
    repair = usage(1100, 40, cached=900, reasoning=10)
    summed = _summed(first, repair)
    assert summed is not None
    tokens = split(summed)
    assert (tokens.prompt, tokens.completion) == (2100, 90)
    assert (tokens.cache_read, tokens.cache_write_5m, tokens.reasoning) == (900, 900, 30)
    assert tokens.input == 2100 - 900 - 900


def test_details_only_one_try_reported_are_kept() -> None:
    first = usage(1000, 50, cached=800)
    repair = {"prompt_tokens": 1100, "completion_tokens": 40, "total_tokens": 1140}
    tokens = split(_summed(first, repair))
    assert (tokens.prompt, tokens.cache_read) == (2100, 800)
    tokens = split(_summed(repair, first))
    assert (tokens.prompt, tokens.cache_read) == (2100, 800)


def test_a_count_of_the_wrong_type_counts_as_none() -> None:
    # An upstream whose counts are text, objects or fractions fails no call: they count as none,
    # as the ledger reads them.
    first = usage("many", {"n": 1}, cached=[5], reasoning="x")
    repair = usage(100, 7.5, cached=None)
    summed = _summed(first, repair)
    assert summed is not None
    assert (summed["prompt_tokens"], summed["completion_tokens"]) == (100, 0)
    assert summed["prompt_tokens_details"]["cached_tokens"] == 0


async def test_a_repair_try_refused_unsent_keeps_the_requests_limits_taken() -> None:
    # The first try was sent: a refusal of the repair try that sent nothing (the router's 503,
    # marked to give the rate limits back) must not give back what the request used.
    from switchboard.config.prompts import ApisConfig
    from switchboard.context import Reply
    from switchboard.errors import GatewayError, UpstreamUnavailable
    from switchboard.http.apis.call import ApiCall, ApiCalls
    from switchboard.http.apis.stages import OutputStage
    from switchboard.stores.protocols import PromptVersion
    from tests.unit.pipeline.fakes import context

    calls = ApiCalls()
    ctx = context(request={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    prompt = PromptVersion("t", "p", 1, [], {}, "m", output_schema={"type": "object"})
    calls.begin(ctx, ApiCall(record=None, prompt=prompt, version=1))  # type: ignore[arg-type]
    tries = 0

    async def upstream(_: Any) -> Reply:
        nonlocal tries
        tries += 1
        if tries == 1:
            return Reply({"choices": [{"message": {"role": "assistant", "content": "not json"}}]})
        refused = UpstreamUnavailable("no healthy deployment of the model 'm'", code="no_healthy_deployment")
        refused.spares_limits = True
        raise refused

    try:
        await OutputStage(calls, ApisConfig())(ctx, upstream)
    except GatewayError as exc:
        assert tries == 2
        assert exc.spares_limits is False
    else:
        raise AssertionError("the repair try's refusal was not raised")
