"""``GET /metrics``: the server's Prometheus metrics, the routing gauges read fresh.

The pipeline's figures (drift, accuracy, decisions) are not here: the exporter that reads their
owners serves them (``mlops_core.adapters.exporter``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Response

from mlops_core.serving.dependencies import ServerDep
from mlops_core.serving.workers import (
    FORWARDED,
    ask_others,
    merge_expositions,
    with_worker_label,
)


def prometheus(
    server: ServerDep, forwarded: Annotated[str | None, Header(alias=FORWARDED)] = None
) -> Response:
    """The metrics in Prometheus' text format; behind ``--workers``, every worker's, each
    sample labelled with its ``worker`` (a worker that does not answer is left out)."""
    metrics, snapshot = server.metrics, server.follower.snapshot
    metrics.routing(snapshot.split, snapshot.challenger.version if snapshot.challenger else "")
    workers = server.workers
    if workers is None:
        return Response(metrics.render(), media_type=metrics.content_type)
    own = with_worker_label(metrics.render().decode(), workers.index)
    if forwarded:
        return Response(own, media_type=metrics.content_type)
    texts = [own] + [
        answer.text
        for _, answer in ask_others(workers, "GET", "/metrics")
        if not isinstance(answer, Exception) and answer.status_code == 200
    ]
    return Response(merge_expositions(texts), media_type=metrics.content_type)
