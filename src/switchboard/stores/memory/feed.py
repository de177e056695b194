"""The change feed within one process: ``publish`` runs every subscriber's callback in turn."""

from __future__ import annotations

import logging

from switchboard.stores.protocols import Callback

log = logging.getLogger("switchboard.stores")


class _MemorySubscription:
    def __init__(self, feed: MemoryFeed, topic: str, callback: Callback) -> None:
        self._feed = feed
        self.topic = topic
        self.callback = callback

    async def close(self) -> None:
        subs = self._feed.subscribers.get(self.topic)
        if subs is not None and self in subs:
            subs.remove(self)


class MemoryFeed:
    def __init__(self) -> None:
        self.subscribers: dict[str, list[_MemorySubscription]] = {}

    async def publish(self, topic: str, message: str) -> None:
        for sub in list(self.subscribers.get(topic, ())):
            try:
                await sub.callback(topic, message)
            except Exception:
                log.exception("change feed subscriber for %r failed", topic)

    async def subscribe(self, topic: str, callback: Callback) -> _MemorySubscription:
        sub = _MemorySubscription(self, topic, callback)
        self.subscribers.setdefault(topic, []).append(sub)
        return sub

    async def close(self) -> None:
        self.subscribers.clear()
