"""``GET /metrics``: the server's Prometheus metrics, the routing and drift gauges read fresh."""

from __future__ import annotations

from fastapi import Response

from mlops_core.serving.dependencies import ServerDep
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


def prometheus(server: ServerDep) -> Response:
    """The metrics in Prometheus' text format."""
    metrics, snapshot = server.metrics, server.follower.snapshot
    metrics.routing(snapshot.split, snapshot.challenger.version if snapshot.challenger else "")
    p_value = latest_drift_p_value(server.settings, server.dataset)
    if p_value is not None:
        metrics.drift.labels(server.dataset).set(p_value)
    return Response(metrics.render(), media_type=metrics.content_type)
