"""An upstream's ``retry-after`` and ``retry-after-ms`` reach the caller normalised: a whole,
non-negative number of seconds (milliseconds), fractions rounded up, at most a day; an HTTP date
as the seconds from now to it; anything else dropped. The mock's OpenAI API sends each form."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import openai
import pytest

from tests.e2e.sdk import ask
from tests.servers import MASTER_KEY, Gateway, Mock, openai_config, start_gateway

DAY = 86_400


@pytest.fixture(scope="module")
def gateway(mock_upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = openai_config(mock_upstream)
    config["router"] = {"num_retries": 0}  # each answer is the upstream's first, not waited on
    gw = start_gateway(config, tmp_path_factory.mktemp("retry-after"))
    yield gw
    gw.process.stop()


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def limited(client: openai.OpenAI, directives: str, status: int = 429) -> httpx.Headers:
    """The headers of the gateway's answer to a request the upstream refuses with ``status``."""
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gpt-4o-mini",
                                       messages=ask(f"mock:status={status} {directives}"))
    assert caught.value.status_code == status
    assert caught.value.response.json()["error"]["message"]  # still the OpenAI error shape
    return caught.value.response.headers


@pytest.mark.parametrize(("sent", "relayed"), [
    ("7", "7"),
    ("0", "0"),
    ("1.5", "2"),  # a fraction: rounded up, so a caller does not come back early
    ("0.001", "1"),
    ("99999999999999999999", str(DAY)),
    ("Wed,_21_Oct_2015_07:28:00_GMT", "0"),  # an HTTP date already past
])
def test_retry_after_is_whole_seconds(client: openai.OpenAI, sent: str, relayed: str) -> None:
    assert limited(client, f"mock:retry_after={sent}")["retry-after"] == relayed


@pytest.mark.parametrize("sent", ["-5", "abc", "inf", "nan", "1_0", "1e3", "5s"])
def test_a_retry_after_that_is_no_delay_is_dropped(client: openai.OpenAI, sent: str) -> None:
    assert "retry-after" not in limited(client, f"mock:retry_after={sent}")


def test_an_http_date_becomes_the_seconds_until_it(client: openai.OpenAI) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True).replace(" ", "_")
    seconds = int(limited(client, f"mock:retry_after={when}")["retry-after"])
    assert 100 <= seconds <= 121  # the date has whole seconds; the call itself takes a moment


def test_a_date_past_a_day_away_is_capped(client: openai.OpenAI) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(days=40), usegmt=True).replace(" ", "_")
    headers = limited(client, f"mock:retry_after={when}")
    assert headers["retry-after"] == str(DAY)
    assert headers["x-should-retry"] == "false"  # the SDKs are told not to sleep on it


@pytest.mark.parametrize(("sent", "relayed"), [
    ("1500", "1500"), ("0", "0"), ("250.2", "251"), ("99999999999", str(DAY * 1000)), ("-1", None),
    ("soon", None), ("Wed,_21_Oct_2015_07:28:00_GMT", None),
])
def test_retry_after_ms_is_whole_milliseconds(client: openai.OpenAI, sent: str, relayed: str | None) -> None:
    headers = limited(client, f"mock:retry_after=3 mock:retry_after_ms={sent}")
    assert headers.get("retry-after-ms") == relayed
    assert headers["retry-after"] == "3"  # each header stands on its own


def test_an_overloaded_upstreams_retry_after_is_normalised_too(client: openai.OpenAI) -> None:
    assert limited(client, "mock:retry_after=2.25", status=503)["retry-after"] == "3"
    assert "retry-after" not in limited(client, "mock:retry_after=later", status=503)
