"""Budget threshold events, POSTed to ``budgets.webhook`` and signed with its secret.

docs/budgets.md, "Threshold webhooks". The delivery itself (signature, bounded queue, retries
with backoff, at-least-once with a stable event id) is the generic signed-webhook sender of
``observability/webhooks.py``, shared with the alerts; this module names it for budgets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from switchboard.config.schema import BudgetWebhookConfig
from switchboard.observability import webhooks as _signed
from switchboard.observability.webhooks import (
    CONCURRENCY,
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    redacted,
    sign,
    verify,
)

__all__ = ["CONCURRENCY", "EVENT_ID_HEADER", "EVENT_TYPE_HEADER", "SIGNATURE_HEADER", "WebhookSender",
           "redacted", "sign", "verify"]

log = logging.getLogger("switchboard.spend")


class WebhookSender(_signed.WebhookSender):
    """Delivers budget events to ``budgets.webhook`` (nothing when it is not configured)."""

    def __init__(
        self,
        config: BudgetWebhookConfig | None,
        *,
        backoff_base: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(config, backoff_base=backoff_base, clock=clock, label="budget webhook", logger=log,
                         unconfigured="budget event %s not sent: no budgets.webhook configured")
