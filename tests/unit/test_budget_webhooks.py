"""Budget threshold webhooks: the signature, and the sender against a real HTTP receiver
(tests/webhook_receiver.py) that records what it gets and answers as scripted: delivered once,
retried with the same event id, not retried when refused, timeouts, a full queue, shutdown."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import hmac
import itertools
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from switchboard.config.schema import BudgetWebhookConfig
from switchboard.observability import webhooks as signed
from switchboard.spend.budgets.webhooks import (
    CONCURRENCY,
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    WebhookSender,
    redacted,
    sign,
    verify,
)
from tests.servers import refused_port
from tests.webhook_receiver import HANG, Received, WebhookReceiver

SECRET = "whsec_0123456789abcdef"
KEY = SECRET.encode()
BASE = 0.02  # backoff base in these tests: 20 ms, 40 ms, 80 ms ...


def event(n: int = 1, **data: Any) -> dict[str, Any]:
    return {
        "id": f"evt_{n:04d}",
        "type": "budget.threshold",
        "created_at": "2026-01-01T00:00:00Z",
        "data": {"budget_id": "bud_1", "threshold": 80, **data},
    }


def config(url: str, **overrides: Any) -> BudgetWebhookConfig:
    values: dict[str, Any] = {"url": url, "secret": SECRET, "timeout_seconds": 2.0, "max_attempts": 4}
    return BudgetWebhookConfig(**{**values, **overrides})


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as hooks:
        yield hooks


def assert_signed(request: Received) -> None:
    assert verify(KEY, request.headers[SIGNATURE_HEADER], request.body, now=int(time.time()))


# -- signatures --------------------------------------------------------------------------------------


def test_sign_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"id":"evt_1"}'
    expected = hmac.new(KEY, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(KEY, 1_700_000_000, body) == f"t=1700000000,v1={expected}"


def test_verify_accepts_a_good_signature_within_tolerance() -> None:
    body = b'{"id":"evt_1","amount":"1.00"}'
    header = sign(KEY, 1_700_000_000, body)
    assert verify(KEY, header, body, now=1_700_000_000)
    assert verify(KEY, header, body, now=1_700_000_300)  # exactly the tolerance late
    assert verify(KEY, header, body, now=1_699_999_700)  # and early (a receiver's clock behind)
    assert verify(KEY, header, body, now=1_700_000_010, tolerance=10)
    # Several v1 values (e.g. while a secret is rotated): one matching is enough.
    other = sign(b"an-older-secret-value", 1_700_000_000, body).split(",")[1]
    assert verify(KEY, f"{header},{other}", body, now=1_700_000_000)
    assert verify(KEY, f"{other}, {header}", body, now=1_700_000_000)


@pytest.mark.parametrize(
    ("what", "secret", "body", "now"),
    [
        ("tampered body", KEY, b'{"id":"evt_1","amount":"9.00"}', 1_700_000_000),
        ("body with a byte more", KEY, b'{"id":"evt_1","amount":"1.00"} ', 1_700_000_000),
        ("wrong secret", b"whsec_not-the-right-one", b'{"id":"evt_1","amount":"1.00"}', 1_700_000_000),
        ("stale", KEY, b'{"id":"evt_1","amount":"1.00"}', 1_700_000_301),
        ("from the future", KEY, b'{"id":"evt_1","amount":"1.00"}', 1_699_999_699),
    ],
)
def test_verify_refuses(what: str, secret: bytes, body: bytes, now: int) -> None:
    header = sign(KEY, 1_700_000_000, b'{"id":"evt_1","amount":"1.00"}')
    assert not verify(secret, header, body, now=now), what


GOOD = sign(KEY, 1_700_000_000, b"{}")
DIGEST = GOOD.split("v1=")[1]


@pytest.mark.parametrize(
    "header",
    [
        "",
        ",",
        "garbage",
        f"v1={DIGEST}",  # no timestamp
        "t=1700000000",  # no signature
        f"t=1700000000,v1={DIGEST.upper()}",
        f"t=1700000000,v1={DIGEST[:-1]}",
        f"t=1700000000,v1={DIGEST}0",
        f"t=-1700000000,v1={DIGEST}",
        f"t=17e8,v1={DIGEST}",
        f"t=1700000000,t=1700000000,v1={DIGEST}",  # two timestamps
        f"t=1700000000,v2={DIGEST}",
        f"t=1700000000;v1={DIGEST}",
        f"t = 1700000000,v1={DIGEST}",
        f"t=1700000000,v1={DIGEST},",
        f"t=1700000000,v1={DIGEST}," + "v1=00," * 200,  # oversized
        f"t={'9' * 40},v1={DIGEST}",
        f"t=1700000000,v1={DIGEST}\n",
    ],
)
def test_verify_refuses_malformed_headers(header: str) -> None:
    assert not verify(KEY, header, b"{}", now=1_700_000_000)


def test_verify_refuses_what_is_not_a_string() -> None:
    assert not verify(KEY, None, b"{}", now=1_700_000_000)  # type: ignore[arg-type]
    assert not verify(KEY, GOOD.encode(), b"{}", now=1_700_000_000)  # type: ignore[arg-type]


def test_the_documented_receiver_check_verifies_our_signatures() -> None:
    # docs/budgets.md shows receivers how to verify a signature: that very code, run here.
    text = (Path(__file__).parents[2] / "docs" / "budgets.md").read_text()
    section = text[text.index("### Verifying the signature"):]
    code = section[section.index("```python") + len("```python"):]
    code = code[: code.index("```")]
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/budgets.md", "exec"), namespace)  # our own documentation
    documented = namespace["verify"]
    body = b'{"id":"evt_1","type":"budget.threshold"}'
    header = sign(KEY, int(time.time()), body)
    assert documented(KEY, header, body)
    assert not documented(KEY, header, body + b" ")
    assert not documented(b"whsec_not-the-right-one", header, body)
    assert not documented(KEY, sign(KEY, int(time.time()) - 301, body), body)
    assert not documented(KEY, "garbage", body)


def test_logged_urls_carry_no_credentials_query_or_path() -> None:
    assert redacted("https://user:pw@hooks.example.com:8443/in/budget?token=s3cr3t#x") == (
        "https://hooks.example.com:8443/…"
    )
    # A receiver's path is often its secret (Slack's, Discord's): only the origin is logged.
    assert redacted("https://hooks.slack.com/services/T0AAA/B0BBB/xoxsecretpath123") == "https://hooks.slack.com/…"
    assert redacted("http://127.0.0.1:9000") == "http://127.0.0.1:9000"
    assert redacted("not a url") == "<webhook url>"


# -- delivery ------------------------------------------------------------------------------------------


async def test_delivered_once_on_200_signed_with_the_headers(receiver: WebhookReceiver) -> None:
    sender = WebhookSender(config(receiver.url))
    await sender.start()
    sent = event(1, spent="80.00", limit="100.00")
    assert sender.send(sent)
    [request] = await receiver.await_requests(1)
    await sender.close()
    assert (sender.delivered, sender.failed, sender.dropped) == (1, 0, 0)
    assert len(receiver.requests) == 1  # the receiver said 200: never sent again
    assert request.method == "POST" and request.path == "/hook"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "switchboard"
    assert request.headers[EVENT_ID_HEADER] == "evt_0001"
    assert request.headers[EVENT_TYPE_HEADER] == "budget.threshold"
    assert request.json() == sent
    assert_signed(request)
    timestamp = int(request.headers[SIGNATURE_HEADER].split(",")[0].removeprefix("t="))
    assert abs(timestamp - time.time()) < 60
    assert SECRET not in str(request.headers) and SECRET.encode() not in request.body


async def test_retried_after_500_until_delivered_with_the_same_event_id() -> None:
    with WebhookReceiver(responses=[500, 502, 503]) as receiver:
        sender = WebhookSender(config(receiver.url, max_attempts=5), backoff_base=BASE)
        await sender.start()
        assert sender.send(event(7))
        attempts = await receiver.await_requests(4)
        await sender.close()
    assert [r.answered for r in attempts] == [500, 502, 503, 200]
    assert len(receiver.requests) == 4
    assert (sender.delivered, sender.failed, sender.dropped) == (1, 0, 0)
    assert {r.headers[EVENT_ID_HEADER] for r in attempts} == {"evt_0007"}
    assert len({r.body for r in attempts}) == 1
    for request in attempts:
        assert_signed(request)
    # Exponential backoff: at least 0.75 x 20 ms, 40 ms, 80 ms between the attempts.
    gaps = [b.at - a.at for a, b in itertools.pairwise(attempts)]
    for n, gap in enumerate(gaps):
        assert gap >= 0.75 * BASE * 2**n, gaps


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_retry_after_of_429_and_503_is_waited_for(status: int, form: str) -> None:
    # Slack answers 429 with Retry-After: the fixed 20 ms, 40 ms ... schedule would use every
    # attempt within the receiver's rate-limit window.
    # An HTTP date has second resolution: 2 s ahead is at least 1 s away.
    value = "1" if form == "seconds" else email.utils.formatdate(time.time() + 2, usegmt=True)
    with WebhookReceiver(responses=[status], retry_after=value) as receiver:
        sender = WebhookSender(config(receiver.url, max_attempts=2), backoff_base=BASE)
        await sender.start()
        sender.send(event())
        first, second = await receiver.await_requests(2)
        await sender.close()
    assert [first.answered, second.answered] == [status, 200]
    assert second.at - first.at >= 0.95, second.at - first.at
    assert (sender.delivered, sender.failed) == (1, 0)


async def test_retry_after_is_capped_and_ignored_when_unreadable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signed, "MAX_BACKOFF", 0.3)
    for value in ["3600", "soon"]:  # an hour: capped; a word: the usual backoff
        with WebhookReceiver(responses=[429], retry_after=value) as receiver:
            sender = WebhookSender(config(receiver.url, max_attempts=2), backoff_base=BASE)
            await sender.start()
            sender.send(event())
            first, second = await receiver.await_requests(2)
            await sender.close()
        assert second.at - first.at < 3, (value, second.at - first.at)
        assert (sender.delivered, sender.failed) == (1, 0)


def test_retry_after_values() -> None:
    now = 1_800_000_000.0
    assert signed._retry_after("7", now) == 7.0
    assert signed._retry_after(email.utils.formatdate(now + 12, usegmt=True), now) == 12.0
    assert signed._retry_after(email.utils.formatdate(now - 60, usegmt=True), now) == 0.0
    for unreadable in [None, "", "-1", "1.5", "soon", "Mon, 99 Foo 2026 00:00:00 GMT"]:
        assert signed._retry_after(unreadable, now) is None, unreadable


@pytest.mark.parametrize("status", [408, 409, 425, 429, 301])
async def test_statuses_that_say_later_are_retried(status: int) -> None:
    with WebhookReceiver(responses=[status]) as receiver:
        sender = WebhookSender(config(receiver.url), backoff_base=BASE)
        await sender.start()
        sender.send(event())
        attempts = await receiver.await_requests(2)
        await sender.close()
    assert [r.answered for r in attempts] == [status, 200]
    # A redirect is not followed: both attempts went to the configured URL.
    assert [r.path for r in receiver.requests] == ["/hook", "/hook"]
    assert (sender.delivered, sender.failed) == (1, 0)


async def test_gives_up_after_max_attempts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="switchboard.spend")
    with WebhookReceiver(then=500) as receiver:
        url = receiver.url + "?token=query-secret"
        sender = WebhookSender(config(url, max_attempts=3), backoff_base=BASE)
        await sender.start()
        sender.send(event(3))
        await receiver.await_requests(3)
        await sender.close()
    assert len(receiver.requests) == 3
    assert (sender.delivered, sender.failed, sender.dropped) == (0, 1, 0)
    assert "evt_0003 not delivered after 3 attempt(s) (last: HTTP 500)" in caplog.text
    # The logs name the receiver by its origin, with neither its path, its query string nor the secret.
    assert f"http://127.0.0.1:{receiver.port}/…:" in caplog.text and "/hook" not in caplog.text
    assert "query-secret" not in caplog.text and SECRET not in caplog.text


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413, 422])
async def test_a_refusal_is_not_retried(status: int, caplog: pytest.LogCaptureFixture) -> None:
    with WebhookReceiver(responses=[status]) as receiver:
        sender = WebhookSender(config(receiver.url), backoff_base=BASE)
        await sender.start()
        sender.send(event(4))
        await receiver.await_requests(1)
        await sender.close()  # waits for the delivery to be over
    assert len(receiver.requests) == 1
    assert (sender.delivered, sender.failed, sender.dropped) == (0, 1, 0)
    assert f"evt_0004 refused with HTTP {status}; not retried" in caplog.text


async def test_a_receiver_answering_megabytes_is_read_no_further() -> None:
    # 8 MiB in every answer: the sender reads at most 64 KiB of each, and carries on.
    with WebhookReceiver(responses=[500], response_body=b"x" * (8 << 20)) as receiver:
        sender = WebhookSender(config(receiver.url), backoff_base=BASE)
        await sender.start()
        for n in range(3):
            sender.send(event(n))
        await receiver.await_requests(4)
        await asyncio.wait_for(sender.wait_idle(), 10)
        await sender.close()
    assert (sender.delivered, sender.failed, sender.dropped) == (3, 0, 0)


async def test_a_hanging_receiver_times_out_and_is_retried() -> None:
    with WebhookReceiver(responses=[HANG]) as receiver:
        sender = WebhookSender(config(receiver.url, timeout_seconds=0.3), backoff_base=BASE)
        await sender.start()
        began = time.monotonic()
        sender.send(event(5))
        first, second = await receiver.await_requests(2)
        await sender.close()
        elapsed = time.monotonic() - began
    assert (first.answered, second.answered) == (HANG, 200)
    assert second.at - first.at >= 0.3  # the first attempt was given its whole timeout
    assert elapsed < 5
    assert first.headers[EVENT_ID_HEADER] == second.headers[EVENT_ID_HEADER] == "evt_0005"
    assert (sender.delivered, sender.failed) == (1, 0)


async def test_a_receiver_that_never_answers_is_given_up_within_bounds() -> None:
    with WebhookReceiver(then=HANG) as receiver:
        sender = WebhookSender(config(receiver.url, timeout_seconds=0.2, max_attempts=3), backoff_base=BASE)
        await sender.start()
        began = time.monotonic()
        sender.send(event(6))
        await receiver.await_requests(3)
        await sender.close()
        elapsed = time.monotonic() - began
    # Three timeouts of 0.2 s and two short backoffs: not the 30 s or more of an unbounded wait.
    assert 0.6 <= elapsed < 5
    assert (sender.delivered, sender.failed, sender.dropped) == (0, 1, 0)
    assert len(receiver.requests) == 3


async def test_connection_refused_is_retried_then_given_up(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{refused_port()}/hook"  # connections refused
    sender = WebhookSender(config(url, max_attempts=3), backoff_base=BASE)
    await sender.start()
    sender.send(event(8))
    await asyncio.wait_for(sender.wait_idle(), 10)
    await sender.close()
    assert (sender.delivered, sender.failed, sender.dropped) == (0, 1, 0)
    assert "evt_0008 not delivered after 3 attempt(s)" in caplog.text


# -- order, concurrency, queue -----------------------------------------------------------------------


async def test_events_go_out_in_order_at_most_four_at_once() -> None:
    with WebhookReceiver(responses=[HANG] * CONCURRENCY) as receiver:
        sender = WebhookSender(config(receiver.url, timeout_seconds=1.0, max_attempts=2), backoff_base=BASE)
        await sender.start()
        for n in range(10):
            assert sender.send(event(n))
        # The first four events are in flight, the receiver holding them; nothing more is sent
        # until one of them ends (at its timeout, 1 s).
        held = await receiver.await_requests(CONCURRENCY)
        assert {r.headers[EVENT_ID_HEADER] for r in held} == {f"evt_{n:04d}" for n in range(CONCURRENCY)}
        with pytest.raises(AssertionError):
            await receiver.await_requests(CONCURRENCY + 1, timeout=0.5)
        # Then everything is delivered: the held ones on their second attempt.
        await receiver.await_requests(10 + CONCURRENCY)
        await sender.close()
    assert (sender.delivered, sender.failed, sender.dropped) == (10, 0, 0)
    later = [r.headers[EVENT_ID_HEADER] for r in receiver.requests[CONCURRENCY:] if r.answered == 200]
    assert sorted(later) == [f"evt_{n:04d}" for n in range(10)]


async def test_a_full_queue_drops_and_counts(
    receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    sender = WebhookSender(config(receiver.url, queue_size=2))
    # Not started yet: nothing drains the queue.
    assert sender.send(event(1)) and sender.send(event(2))
    assert not sender.send(event(3))
    assert not sender.send(event(4))
    assert sender.dropped == 2
    assert "queue full (2 events); event evt_0003 dropped" in caplog.text
    assert "evt_0004" not in caplog.text  # the same complaint is not logged for every event
    await sender.start()
    delivered = await receiver.await_requests(2)
    await sender.close()
    assert sorted(r.headers[EVENT_ID_HEADER] for r in delivered) == ["evt_0001", "evt_0002"]
    assert (sender.delivered, sender.failed, sender.dropped) == (2, 0, 2)


async def test_an_event_that_is_not_json_is_refused(receiver: WebhookReceiver) -> None:
    sender = WebhookSender(config(receiver.url))
    await sender.start()
    assert not sender.send({"id": "evt_x", "type": "budget.threshold", "data": {"when": object()}})
    await sender.close()
    assert (sender.delivered, sender.failed, sender.dropped) == (0, 0, 1)
    assert receiver.requests == []


async def test_disabled_sender_sends_nothing_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="switchboard.spend")
    sender = WebhookSender(None)
    assert not sender.enabled
    await sender.start()
    assert not sender.send(event(1))
    assert not sender.send(event(2))
    await sender.close()
    assert "event evt_0001 not sent: no budgets.webhook configured" in caplog.text
    assert "evt_0002" not in caplog.text


# -- shutdown ------------------------------------------------------------------------------------------


async def test_close_lets_queued_events_finish(receiver: WebhookReceiver) -> None:
    sender = WebhookSender(config(receiver.url))
    await sender.start()
    for n in range(20):
        sender.send(event(n))
    await sender.close()
    assert (sender.delivered, sender.failed, sender.dropped) == (20, 0, 0)
    assert len(receiver.requests) == 20
    assert not sender.send(event(99))  # closed: no more events
    assert sender.dropped == 1


async def test_close_returns_in_bounded_time_with_a_hanging_receiver() -> None:
    with WebhookReceiver(then=HANG) as receiver:
        sender = WebhookSender(config(receiver.url, timeout_seconds=30, max_attempts=5))
        await sender.start()
        for n in range(6):
            sender.send(event(n))
        await receiver.await_requests(CONCURRENCY)
        began = time.monotonic()
        await sender.close(grace=0.3)
        elapsed = time.monotonic() - began
        assert 0.3 <= elapsed < 2
    # The four in flight were cut, the two waiting never sent: all counted.
    assert (sender.delivered, sender.failed, sender.dropped) == (0, 0, 6)
    await sender.close()  # twice is harmless


async def test_close_does_not_wait_out_a_backoff() -> None:
    with WebhookReceiver(then=500) as receiver:
        sender = WebhookSender(config(receiver.url, max_attempts=5), backoff_base=20.0)
        await sender.start()
        sender.send(event(1))
        await receiver.await_requests(1)
        began = time.monotonic()
        await sender.close(grace=10)
        assert time.monotonic() - began < 2  # not the 15-20 s until the next attempt
    # Cut at shutdown with attempts left: dropped (the metric's outcome), not failed.
    assert (sender.delivered, sender.failed, sender.dropped) == (0, 0, 1)
    assert len(receiver.requests) == 1
