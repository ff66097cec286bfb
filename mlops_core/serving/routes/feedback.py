"""``POST /feedback``: true labels for answered requests, joined to them and logged as labels."""

from __future__ import annotations

from typing import Any

from mlops_core.serving.dependencies import ServerDep
from mlops_core.serving.problems import problem
from mlops_core.serving.schemas import FeedbackRequest


def feedback(body: FeedbackRequest, server: ServerDep) -> dict[str, Any]:
    """How many labels were accepted, and whether a recent request by that id was matched."""
    labels = (
        body.labels
        if body.labels is not None
        else ([body.label] if body.label is not None else None)
    )
    if labels is None or (body.request_id is None and body.id is None):
        raise problem(
            422,
            [{"loc": ["body"], "msg": "send request_id (or id) and label (or labels)"}],
        )
    if any(label not in (0, 1) for label in labels):
        raise problem(422, [{"loc": ["body", "label"], "msg": "labels are 0 or 1"}])
    known = server.traffic.feedback(body.request_id, tuple(labels)) if body.request_id else False
    spec = server.spec
    if server.writer is not None and spec.id and spec.target:
        ids = [body.id] if body.id else [f"{body.request_id}-{i}" for i in range(len(labels))]
        server.writer.labels(
            [{spec.id: i, spec.target: v} for i, v in zip(ids, labels, strict=False)]
        )
    server.metrics.feedback()
    return {"accepted": len(labels), "matched_request": known}
