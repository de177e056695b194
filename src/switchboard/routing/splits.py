"""Canary and A/B splits: a share of the requests for a model goes to each arm (another group,
or one deployment of the model's group), sticky per key, user or session header.

Sticky draws hash the split's name with the caller's identity into one of 10,000 buckets, so a
caller stays on its arm while the percentages are unchanged, and splits with different names
draw independently. A missing identity (no user on the key, no such header) draws at random.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from typing import NamedTuple

from switchboard.config.schema import Split

BUCKETS = 10_000


class Arm(NamedTuple):
    label: str  # the group or deployment name, as tags and headers show it
    group: str | None  # another group, or None for a deployment of the model's own group
    deployment: str | None
    upto: int  # the arm holds buckets below this (cumulative)


class SplitChooser:
    def __init__(self, split: Split, percents: Mapping[str, float] | None = None,
                 rng: random.Random | None = None) -> None:
        """``percents``: run-time shares by arm label (the admin API's), else the configured.
        Shares stored for other arms than the configuration's (its arms changed since) no
        longer describe the split: the configured ones apply."""
        if percents is not None and set(percents) != set(labels(split)):
            percents = None
        self.name = split.name
        self.model = split.model  # the name it is configured on (also drawn for its aliases)
        self.sticky = split.sticky
        self._rng = rng or random.Random()  # traffic shares, not secrets
        arms: list[Arm] = []
        self.percents = shares(split, percents)
        upto = 0.0
        for arm, (label, share) in zip(split.arms, self.percents.items(), strict=True):
            upto += share * BUCKETS / 100
            arms.append(Arm(label, arm.to, arm.deployment, round(upto)))
        self.arms = arms
        self.overridden = percents is not None
        # An arm sends requests to another group than the split's own (for pinned requests).
        self.elsewhere = any(arm.group not in (None, split.model) for arm in arms)

    def identity(self, key_id: str | None, user_id: str | None, headers: Mapping[str, str]) -> str | None:
        """The caller's identity the draw sticks to; None (drawn at random) when it has none. An
        empty one is none: every caller sending an empty session header would share one arm."""
        if self.sticky == "key":
            return key_id or None
        if self.sticky == "user":
            return user_id or None
        if self.sticky.startswith("header:"):
            return headers.get(self.sticky[7:].lower()) or None
        return None

    def bucket(self, identity: str | None) -> int:
        if identity is None:
            return self._rng.randrange(BUCKETS)
        digest = hashlib.blake2b(f"{self.name}\0{identity}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") % BUCKETS

    def choose(self, identity: str | None) -> Arm:
        b = self.bucket(identity)
        for arm in self.arms:
            if b < arm.upto:
                return arm
        return next(a for a in reversed(self.arms) if self.percents[a.label] > 0)


def labels(split: Split) -> list[str]:
    """The arms' labels: their group or deployment names."""
    return [arm.to if arm.to is not None else str(arm.deployment) for arm in split.arms]


def shares(split: Split, percents: Mapping[str, float] | None) -> dict[str, float]:
    """Each arm's share by label, in the arms' order: the run-time ``percents`` (the admin
    API's) when they name exactly the configured arms, else the configured ones."""
    if percents is None or set(percents) != set(labels(split)):
        return {label: arm.percent for label, arm in zip(labels(split), split.arms, strict=True)}
    return {label: percents[label] for label in labels(split)}
