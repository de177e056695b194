"""Signed webhook delivery: events POSTed to a receiver's URL and signed with its secret.

Used by the budget threshold events (spend/budgets/webhooks.py, docs/budgets.md) and the alerts
(observability/alerts/, docs/observability.md). The caller only enqueues (``WebhookSender.send``
never waits and never raises); a background task delivers the events in order, up to
``CONCURRENCY`` at once, each as a JSON POST carrying:

- ``x-switchboard-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``;
- ``x-switchboard-event-id``: the event's id, the same on every attempt (receivers dedupe);
- ``x-switchboard-event``: the event's type.

A 2xx response delivers the event. Any other status, a timeout or a connection error is retried,
up to ``max_attempts`` attempts in all, after 0.5 s, 1 s, 2 s, ... (at most 30 s, less up to a
quarter at random), or after the ``Retry-After`` of a 429 or 503 when it asks for longer (seconds
or an HTTP date, at most 30 s too); a 4xx other than 408, 409, 425 and 429 is the receiver refusing the event,
and is not retried. Redirects are not followed; at most 64 KiB of a response is read. Delivery
is at least once: an event whose response was lost is sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import hmac
import logging
import random
import re
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import aiohttp
import orjson
from pydantic import SecretStr

from switchboard.config.urls import url_origin

log = logging.getLogger("switchboard.observability")

SIGNATURE_HEADER = "x-switchboard-signature"
EVENT_ID_HEADER = "x-switchboard-event-id"
EVENT_TYPE_HEADER = "x-switchboard-event"
USER_AGENT = "switchboard"
CONCURRENCY = 4  # deliveries at once
MAX_BACKOFF = 30.0  # seconds between two attempts, at most
MAX_RESPONSE_BYTES = 64 * 1024  # of a receiver's response read (and discarded)
MAX_SIGNATURE_HEADER = 1024
# 4xx statuses that say "try again later" rather than "no".
RETRYABLE_4XX = frozenset({408, 409, 425, 429})
# Statuses whose Retry-After is honoured (Slack's rate limit answers 429 with one).
RETRY_AFTER_STATUSES = frozenset({429, 503})
LOG_EVERY = 60.0  # seconds between two log lines about events not sent
_SIGNATURE_PART = re.compile(r"(t|v1)=([0-9a-f]{1,128})")


class WebhookTarget(Protocol):
    """A receiver's settings (``budgets.webhook``, an entry of ``alerts.webhooks``)."""

    @property
    def url(self) -> str: ...
    @property
    def secret(self) -> SecretStr: ...
    @property
    def timeout_seconds(self) -> float: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def queue_size(self) -> int: ...


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: bytes, header: str, body: bytes, *, now: int, tolerance: int = 300) -> bool:
    """Whether ``header`` (the signature header's value) signs ``body`` with ``secret``, with a
    timestamp within ``tolerance`` seconds of ``now``. Several ``v1`` values may be given (any
    matching one will do); anything malformed is False. Comparisons are constant-time."""
    if not isinstance(header, str) or len(header) > MAX_SIGNATURE_HEADER:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        match = _SIGNATURE_PART.fullmatch(part.strip(" "))
        if match is None:
            return False
        key, value = match.groups()
        if key == "t":
            if timestamp is not None or not value.isdigit() or len(value) > 12:
                return False
            timestamp = int(value)
        else:
            candidates.append(value)
    if timestamp is None or not candidates or abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).partition(",v1=")[2].encode()
    ok = False
    for candidate in candidates:  # no early exit: the time taken does not say which matched
        ok |= hmac.compare_digest(expected, candidate.encode())
    return ok


def redacted(url: str) -> str:
    """``url`` fit for a log line: its scheme, host and port only, ``/…`` standing for any path.
    A receiver's path is often its secret (Slack's ``/services/T…/B…/<token>``, Discord's
    ``/api/webhooks/<id>/<token>``), as user info and a query may be; the sender's label names
    which receiver is meant. The same as config errors show (``config.urls.url_origin``)."""
    return url_origin(url) if "://" in url else "<webhook url>"


class _Throttled:
    """One log line per ``every`` seconds at most, saying how many were left out meanwhile."""

    def __init__(self, logger: logging.Logger, every: float = LOG_EVERY) -> None:
        self.log = logger
        self.every = every
        self._next = 0.0
        self._skipped = 0

    def __call__(self, level: int, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now < self._next:
            self._skipped += 1
            return
        self._next = now + self.every
        if self._skipped:
            message += " (and %d more like it since the last report)"
            args = (*args, self._skipped)
            self._skipped = 0
        self.log.log(level, message, *args)


class _Item:
    __slots__ = ("body", "event_id", "event_type")

    def __init__(self, event_id: str, event_type: str, body: bytes) -> None:
        self.event_id = event_id
        self.event_type = event_type
        self.body = body


class WebhookSender:
    """Delivers events to ``config.url`` (nothing when ``config`` is None).

    ``start()`` in the running loop, ``send(event)`` from the request path, ``close()`` at
    shutdown. ``delivered``, ``failed`` (given up on: attempts exhausted or refused by the
    receiver) and ``dropped`` (never attempted to the end: queue full, closed, or cut at
    shutdown) count events, for the tests and the metrics."""

    def __init__(
        self,
        config: WebhookTarget | None,
        *,
        backoff_base: float = 0.5,
        clock: Callable[[], float] = time.time,
        label: str = "webhook",
        logger: logging.Logger = log,
        unconfigured: str = "event %s not sent: no webhook configured",
    ) -> None:
        """``label`` names the receiver in log lines ("budget webhook", "alert webhook oncall"),
        written to ``logger``; ``unconfigured`` is the line logged for an event sent while
        disabled (``%s``: the event id)."""
        self.config = config
        self.label = label
        self._log = logger
        self._unconfigured = unconfigured
        self._backoff_base = backoff_base
        self._clock = clock
        self._secret = config.secret.get_secret_value().encode() if config is not None else b""
        self._url = config.url if config is not None else ""
        self._timeout = config.timeout_seconds if config is not None else 0.0
        self._where = redacted(self._url)
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=config.queue_size if config else 1)
        self._session: aiohttp.ClientSession | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._closed = False
        self._not_sent = _Throttled(logger)
        self.delivered = 0
        self.failed = 0
        self.dropped = 0

    @property
    def enabled(self) -> bool:
        return self.config is not None

    async def start(self) -> None:
        """Open the HTTP session and start delivering (nothing when disabled or started)."""
        if self.config is None or self._session is not None or self._closed:
            return
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            connector=aiohttp.TCPConnector(limit=CONCURRENCY),
            trust_env=False,
            headers={"user-agent": USER_AGENT},
        )
        self._workers = [
            asyncio.create_task(self._work(), name=f"{self.label.replace(' ', '-')}-{n}")
            for n in range(CONCURRENCY)
        ]

    def send(self, event: dict[str, Any]) -> bool:
        """Queue ``event`` (``{"id": ..., "type": ..., ...}``) for delivery; False when it will not
        be sent: webhooks disabled, queue full, sender closed, or an event that is not JSON."""
        event_id = _header_value(str(event.get("id", "")))
        if self.config is None:
            self._not_sent(logging.INFO, self._unconfigured, event_id)
            return False
        if self._closed:
            self.dropped += 1
            self._not_sent(logging.WARNING, "%s %s: event %s dropped: shutting down",
                           self.label, self._where, event_id)
            return False
        try:
            body = orjson.dumps(event)
        except (TypeError, orjson.JSONEncodeError) as exc:
            self.dropped += 1
            self._log.error("%s %s: event %s dropped: not JSON (%s)", self.label, self._where, event_id, exc)
            return False
        item = _Item(event_id, _header_value(str(event.get("type", ""))), body)
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1
            self._not_sent(logging.WARNING, "%s %s: queue full (%d events); event %s dropped",
                           self.label, self._where, self._queue.maxsize, event_id)
            return False
        return True

    async def wait_idle(self) -> None:
        """Until every event queued so far is delivered or given up on (for tests)."""
        await self._queue.join()

    async def close(self, grace: float = 5.0) -> None:
        """Stop taking events; let queued and in-flight deliveries finish for up to ``grace``
        seconds (no more retries are waited for), then cancel the rest. Never raises."""
        try:
            self._closed = True
            self._stopping.set()
            if self._workers:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._queue.join(), grace)
                for worker in self._workers:
                    worker.cancel()
                await asyncio.gather(*self._workers, return_exceptions=True)
                self._workers = []
            left = 0
            while not self._queue.empty():
                self._queue.get_nowait()
                self._queue.task_done()
                left += 1
            if left:
                self.dropped += left
                self._log.warning("%s %s: %d queued event(s) not sent at shutdown", self.label,
                                  self._where, left)
            if self._session is not None:
                session, self._session = self._session, None
                await session.close()
        except Exception:  # shutdown goes on whatever happens here
            self._log.exception("%s %s: error while closing", self.label, self._where)

    # -- delivery ---------------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._deliver(item)
            except asyncio.CancelledError:
                self.dropped += 1
                self._log.warning("%s %s: event %s cut at shutdown", self.label, self._where, item.event_id)
                raise
            except Exception:  # a bug here must not stop the deliveries
                self.failed += 1
                self._log.exception("%s %s: event %s not delivered", self.label, self._where, item.event_id)
            finally:
                self._queue.task_done()

    async def _deliver(self, item: _Item) -> None:
        assert self.config is not None
        attempts = self.config.max_attempts
        for attempt in range(1, attempts + 1):
            status, reason, retry_after = await self._attempt(item)
            if status is not None and 200 <= status < 300:
                self.delivered += 1
                return
            if status is not None and 400 <= status < 500 and status not in RETRYABLE_4XX:
                self.failed += 1
                self._log.warning("%s %s: event %s refused with HTTP %d; not retried",
                                  self.label, self._where, item.event_id, status)
                return
            if attempt == attempts:
                break
            delay = min(MAX_BACKOFF, self._backoff_base * 2 ** (attempt - 1)) * random.uniform(0.75, 1.0)
            if retry_after is not None and retry_after > delay:
                # The receiver said when: no jitter below it, and no longer than our own cap.
                delay = min(MAX_BACKOFF, retry_after)
            self._log.info("%s %s: event %s attempt %d of %d failed (%s); retrying in %.1f s",
                           self.label, self._where, item.event_id, attempt, attempts, reason, delay)
            if await self._stopped_within(delay):
                # Cut at shutdown with attempts left: dropped, as documented (not "failed", which
                # says the receiver used up every attempt or refused the event).
                self.dropped += 1
                self._log.warning("%s %s: event %s dropped at shutdown before attempt %d of %d (last: %s)",
                                  self.label, self._where, item.event_id, attempt + 1, attempts, reason)
                return
        self.failed += 1
        self._log.warning("%s %s: event %s not delivered after %d attempt(s) (last: %s)",
                          self.label, self._where, item.event_id, attempts, reason)

    async def _attempt(self, item: _Item) -> tuple[int | None, str, float | None]:
        """One POST: the response's status (None for no response), a word on what happened, and
        the seconds its ``Retry-After`` asks to wait (None: not said, or not a 429 or 503)."""
        session = self._session
        if session is None:
            return None, "not started", None
        headers = {
            "content-type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, int(self._clock()), item.body),
            EVENT_ID_HEADER: item.event_id,
            EVENT_TYPE_HEADER: item.event_type,
        }
        try:
            post = session.post(self._url, data=item.body, headers=headers, allow_redirects=False)
            async with post as resp:
                status = resp.status
                retry_after = None
                if status in RETRY_AFTER_STATUSES:
                    retry_after = _retry_after(resp.headers.get("retry-after"), self._clock())
                # The status decides; a body that is slow or cut short does not undo a 2xx.
                with contextlib.suppress(TimeoutError, aiohttp.ClientError, OSError):
                    await _discard(resp)
                return status, f"HTTP {status}", retry_after
        except TimeoutError:
            return None, f"no response within {self._timeout:g} s", None
        except aiohttp.ClientError as exc:
            return None, type(exc).__name__, None
        except OSError as exc:
            return None, exc.strerror or type(exc).__name__, None

    async def _stopped_within(self, delay: float) -> bool:
        try:
            await asyncio.wait_for(self._stopping.wait(), delay)
        except TimeoutError:
            return False
        return True


async def _discard(resp: aiohttp.ClientResponse) -> None:
    """Read (and drop) at most MAX_RESPONSE_BYTES of the response body."""
    read = 0
    while read < MAX_RESPONSE_BYTES:
        chunk = await resp.content.readany()
        if not chunk:
            return
        read += len(chunk)


def _retry_after(value: str | None, now: float) -> float | None:
    """The seconds a ``Retry-After`` value asks to wait: delay-seconds or an HTTP date (RFC 9110
    10.2.3), at ``now`` (Unix seconds); None when absent or unreadable, 0 for a date passed."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value[:12]))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT; a zone-less one is read as such
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - now)


def _header_value(value: str) -> str:
    """``value`` as a header can carry it: printable ASCII, at most 200 characters."""
    return "".join(c for c in value[:200] if " " <= c <= "~")
