"""TEMPORARY stand-in until the real module lands."""

from __future__ import annotations

from typing import Any

from switchboard.config.schema import BudgetWebhookConfig


class WebhookSender:
    def __init__(self, config: BudgetWebhookConfig | None) -> None:
        self.config = config
        self.sent: list[dict[str, Any]] = []

    async def start(self) -> None:
        return None

    def send(self, event: dict[str, Any]) -> bool:
        self.sent.append(event)
        return True

    async def close(self) -> None:
        return None
