"""``GET /routing`` (the current split) and ``GET /rollout/stats`` (the rollout analysis' window)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import Query

from mlops_core.serving.dependencies import ServerDep


def routing(server: ServerDep) -> dict[str, Any]:
    """The models served and how traffic is split between them."""
    return server.follower.describe()


def rollout_stats(
    server: ServerDep, since: Annotated[float, Query(allow_inf_nan=False)] = 0.0
) -> dict[str, Any]:
    """Per variant since ``since`` (a Unix time): requests, errors, latency, feedback accuracy."""
    return {
        **server.traffic.stats(since),
        "routing": server.follower.describe(),
        "now": time.time(),
    }
