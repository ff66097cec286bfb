"""``POST /predict``: one record or a list, answered by the variant the routing key lands on."""

from __future__ import annotations

import time

from fastapi import HTTPException

from mlops_core.routing import route
from mlops_core.serving.dependencies import ServerDep
from mlops_core.serving.inputs import requested_rows
from mlops_core.serving.predictions import (
    prediction_log,
    remember,
    score_request,
    shadow_disagreements,
)
from mlops_core.serving.schemas import PredictRequest, PredictResponse


async def predict(body: PredictRequest, server: ServerDep) -> PredictResponse:
    """Predictions for the records, from the champion or the challenger the routing key lands on.

    Records are checked against the dataset spec first: a 422 names the record and field (a
    missing feature, a wrong type, NaN or infinity, too many records); a 503 while no champion is
    loaded. ``routing_key`` keeps a user on one variant. It runs on the event loop (its own work
    is short and CPU-bound) and awaits the models' micro-batchers, so no pool thread is held.
    """
    started = time.perf_counter()
    snapshot = server.follower.snapshot  # this request's models, whatever swaps meanwhile
    if snapshot.champion is None:
        raise HTTPException(503, detail="no champion model is loaded yet")
    rows = requested_rows(body, server.spec, server.settings.serve_max_records)
    request_id = server.request_id()
    split = snapshot.split
    variant = route(
        body.routing_key or request_id, split, has_challenger=snapshot.challenger is not None
    )
    scored = await score_request(
        snapshot.champion,
        snapshot.challenger,
        variant=variant,
        shadow=split.shadow,
        rows=rows,
        metrics=server.metrics,
    )
    seconds = time.perf_counter() - started
    server.metrics.request(scored.variant, scored.version, seconds)
    remember(server.traffic, scored, request_id, seconds)
    disagreements = shadow_disagreements(scored)
    if disagreements is not None:
        server.metrics.shadow(disagreements)
    if server.writer is not None:
        server.writer.predictions(prediction_log(rows, scored, request_id, server.spec))
    return PredictResponse(
        request_id=request_id,
        model_version=scored.version,
        variant=scored.variant,
        predictions=[int(s >= 0.5) for s in scored.answer],
        probabilities=scored.answer,
    )
