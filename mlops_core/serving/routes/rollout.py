"""``GET /routing`` (the current split) and ``GET /rollout/stats`` (the rollout analysis' window)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import Header, HTTPException, Query

from mlops_core.replicas import merge_stats
from mlops_core.serving.dependencies import ServerDep
from mlops_core.serving.workers import FORWARDED, ask_others


def routing(server: ServerDep) -> dict[str, Any]:
    """The models served and how traffic is split between them."""
    return server.follower.describe()


def rollout_stats(
    server: ServerDep,
    since: Annotated[float, Query(allow_inf_nan=False)] = 0.0,
    forwarded: Annotated[str | None, Header(alias=FORWARDED)] = None,
) -> dict[str, Any]:
    """Per variant since ``since`` (a Unix time): requests, errors, latency, feedback accuracy.

    Behind ``--workers``, every worker's window added up (``merge_stats``); a 503 naming a worker
    that did not answer, so that no rollout is judged on part of the traffic.
    """
    own = {
        **server.traffic.stats(since),
        "routing": server.follower.describe(),
        "now": time.time(),
    }
    workers = server.workers
    if workers is None or forwarded:
        return own
    windows, missing = [own], []
    for index, answer in ask_others(workers, "GET", "/rollout/stats", params={"since": since}):
        if isinstance(answer, Exception) or answer.status_code != 200:
            missing.append(f"worker {index}: {getattr(answer, 'status_code', answer)}")
        else:
            windows.append(answer.json())
    if missing:
        raise HTTPException(
            503, detail=f"not every worker answered ({'; '.join(missing)}); ask again"
        )
    merged = merge_stats(windows)
    for key in ("replicas", "missing", "per_replica"):
        merged.pop(key)
    return {**merged, "workers": len(windows), "routing": own["routing"], "now": own["now"]}
