"""``GET /metrics``: the server's Prometheus metrics, the routing and drift gauges read fresh."""

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
from mlops_core.settings import Settings


def latest_drift_p_value(settings: Settings, dataset: str) -> float | None:
    """The combined drift p-value in the newest processed batch's report, if any."""
    from mlops_core.adapters.landing import LandingZone
    from mlops_core.batches import BatchState

    try:
        zone = LandingZone(settings)
        for entry in reversed(zone.entries(dataset)):
            if entry.state is BatchState.processed:
                detail = zone.read_report(entry)["detail"]
                drift = (detail or {}).get("drift")
                return float(drift["p_value"]) if drift else None
    except Exception:  # noqa: BLE001 -- a metric that cannot be read is absent, never an error
        return None
    return None


def prometheus(
    server: ServerDep, forwarded: Annotated[str | None, Header(alias=FORWARDED)] = None
) -> Response:
    """The metrics in Prometheus' text format; behind ``--workers``, every worker's, each
    sample labelled with its ``worker`` (a worker that does not answer is left out)."""
    metrics, snapshot = server.metrics, server.follower.snapshot
    metrics.routing(snapshot.split, snapshot.challenger.version if snapshot.challenger else "")
    p_value = latest_drift_p_value(server.settings, server.dataset)
    if p_value is not None:
        metrics.drift.labels(server.dataset).set(p_value)
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
