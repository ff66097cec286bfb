"""``POST /feedback``: true labels for answered requests, joined to them and logged as labels."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header
from fastapi.responses import JSONResponse

from mlops_core.serving.dependencies import ServerDep
from mlops_core.serving.problems import problem
from mlops_core.serving.schemas import FeedbackRequest
from mlops_core.serving.workers import FORWARDED, Workers


def feedback(
    body: FeedbackRequest,
    server: ServerDep,
    forwarded: Annotated[str | None, Header(alias=FORWARDED)] = None,
) -> Any:
    """How many labels were accepted, and whether a recent request by that id was matched.

    Behind ``--workers``, feedback for a request another worker answered is passed to that worker
    (where the request is remembered) and its answer returned.
    """
    workers = server.workers
    if workers is not None and body.request_id and not forwarded:
        owner = workers.owner(body.request_id)
        if owner is not None and owner != workers.index:
            return _forward(workers, owner, body)
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


def _forward(workers: Workers, owner: int, body: FeedbackRequest) -> JSONResponse:
    """The owning worker's answer to ``body``; a 503 naming it when it cannot be reached."""
    import httpx

    try:
        answer = httpx.post(
            f"{workers.peers[owner]}/feedback",
            json=body.model_dump(mode="json", exclude_none=True),
            headers={FORWARDED: "1"},
            timeout=5,
        )
        return JSONResponse(status_code=answer.status_code, content=answer.json())
    except (httpx.HTTPError, ValueError) as exc:
        raise problem(
            503,
            [
                {
                    "loc": ["body", "request_id"],
                    "msg": f"worker {owner}, which answered this request, did not answer "
                    f"({type(exc).__name__}); send the feedback again",
                }
            ],
        ) from exc
