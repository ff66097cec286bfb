"""``POST /feedback``: true labels for answered requests, joined to them and logged as labels.

Labels become training data and drive observed accuracy, retraining and rollback, so only
feedback for predictions a server made is taken (``mlops_core.serving.signing``): a
``request_id`` must carry the tag this server (or a replica sharing its key) gave it, and a
record's own ``id`` needs the labelling token. Anything else is a 403 or 401 saying what to send,
counted in ``mlops_feedback_refused_total{reason}``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header, HTTPException
from fastapi.responses import JSONResponse

from mlops_core.serving.dependencies import ServerDep, check_bearer
from mlops_core.serving.problems import problem
from mlops_core.serving.schemas import FeedbackRequest
from mlops_core.serving.state import ServerState
from mlops_core.serving.workers import FORWARDED, Workers


def feedback(
    body: FeedbackRequest,
    server: ServerDep,
    forwarded: Annotated[str | None, Header(alias=FORWARDED)] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> Any:
    """How many labels were accepted, and whether a recent request by that id was matched.

    Behind ``--workers``, feedback for a request another worker answered is passed to that worker
    (where the request is remembered) and its answer returned.
    """
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
    _check_provenance(server, body, authorization)
    workers = server.workers
    if workers is not None and body.request_id and not forwarded:
        owner = workers.owner(body.request_id)
        if owner is not None and owner != workers.index:
            return _forward(workers, owner, body, authorization)
    known = server.traffic.feedback(body.request_id, tuple(labels)) if body.request_id else False
    spec = server.spec
    if server.writer is not None and spec.id and spec.target:
        ids = [body.id] if body.id else [f"{body.request_id}-{i}" for i in range(len(labels))]
        server.writer.labels(
            [{spec.id: i, spec.target: v} for i, v in zip(ids, labels, strict=False)]
        )
    server.metrics.feedback()
    return {"accepted": len(labels), "matched_request": known}


def _check_provenance(
    server: ServerState, body: FeedbackRequest, authorization: str | None
) -> None:
    """Nothing when the feedback names a request this server issued, and a record id only with
    the labelling token; a 403 or 401 (counted) otherwise."""
    if body.id is not None:
        token = server.settings.labels_token
        if token is None or not token.get_secret_value():
            server.metrics.feedback_refused("no_labels_token")
            raise problem(
                403,
                [
                    {
                        "loc": ["body", "id"],
                        "msg": "feedback by a record's own id is taken only from a trusted "
                        "labelling service: send the request_id a /predict answer gave, or set "
                        "MLOPS_LABELS_TOKEN on the server and send it as a Bearer token",
                    }
                ],
            )
        try:
            check_bearer(
                authorization, token.get_secret_value(), "the labelling token", "MLOPS_LABELS_TOKEN"
            )
        except HTTPException:
            server.metrics.feedback_refused("bad_labels_token")
            raise
    if body.request_id is not None and not server.request_id.issued(body.request_id):
        server.metrics.feedback_refused("unissued_request_id")
        raise problem(
            403,
            [
                {
                    "loc": ["body", "request_id"],
                    "msg": "no model server sharing this one's feedback key issued this "
                    "request_id: send the request_id a /predict answer gave (replicas must "
                    "share MLOPS_FEEDBACK_KEY)",
                }
            ],
        )


def _forward(
    workers: Workers, owner: int, body: FeedbackRequest, authorization: str | None
) -> JSONResponse:
    """The owning worker's answer to ``body``; a 503 naming it when it cannot be reached."""
    import httpx

    headers = {FORWARDED: "1"}
    if authorization is not None:
        headers["authorization"] = authorization
    try:
        answer = httpx.post(
            f"{workers.peers[owner]}/feedback",
            json=body.model_dump(mode="json", exclude_none=True),
            headers=headers,
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
