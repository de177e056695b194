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
    def __init__(self, split: Split, rng: random.Random | None = None) -> None:
        self.name = split.name
        self.sticky = split.sticky
        self._rng = rng or random.Random()  # traffic shares, not secrets
        arms: list[Arm] = []
        upto = 0.0
        for arm in split.arms:
            upto += arm.percent * BUCKETS / 100
            label = arm.to if arm.to is not None else str(arm.deployment)
            arms.append(Arm(label, arm.to, arm.deployment, round(upto)))
        self.arms = arms

    def identity(self, key_id: str | None, user_id: str | None, headers: Mapping[str, str]) -> str | None:
        if self.sticky == "key":
            return key_id
        if self.sticky == "user":
            return user_id
        if self.sticky.startswith("header:"):
            return headers.get(self.sticky[7:].lower())
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
        return self.arms[-1]
