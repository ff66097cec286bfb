"""Routing live traffic between champion and challenger: pure, deterministic, sticky.

A request's routing key (the caller's, or its request id) is hashed (SHA-256) to a bucket in
[0, 1); the challenger answers when the bucket falls below its weight. The same key always lands
in the same bucket, so a user stays on one variant for the whole rollout, and a key on the
challenger at weight w stays there at every larger weight (canary steps only add users).
Shadow mode never returns the challenger's answer: it is computed beside the champion's and
logged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

CHAMPION, CHALLENGER = "champion", "challenger"


class Mode(StrEnum):
    """How a challenger takes traffic: not at all, in shadow, as a canary, or blue-green."""

    idle = "idle"  # champion only
    shadow = "shadow"  # champion answers; challenger computes, logged only
    canary = "canary"  # challenger answers a weighted share
    blue_green = "blue-green"  # shadow first, then all traffic at once


@dataclass(frozen=True)
class Split:
    """The current split: mode, challenger weight in [0, 1], and whether it shadows."""

    mode: Mode = Mode.idle
    weight: float = 0.0
    shadow: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"a challenger weight is between 0 and 1, not {self.weight}")

    def to_dict(self) -> dict[str, object]:
        """The split as plain JSON values."""
        return {"mode": self.mode.value, "weight": self.weight, "shadow": self.shadow}


def bucket(key: str) -> float:
    """The key's fixed position in [0, 1): the first 8 bytes of its SHA-256."""
    # surrogatepass: JSON may carry a lone surrogate ("\ud800") in a routing key; it still gets
    # a bucket (UTF-8 is unchanged for every other string) instead of failing the request.
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def route(key: str, split: Split, *, has_challenger: bool = True) -> str:
    """Which variant answers ``key`` under ``split``."""
    if not has_challenger or split.weight <= 0.0:
        return CHAMPION
    return CHALLENGER if bucket(key) < split.weight else CHAMPION
