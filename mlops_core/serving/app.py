"""The model server: a FastAPI app that follows the MLflow registry and routes by rollout state.

``create_app(settings)`` builds it; ``mlops serve`` runs it under uvicorn (127.0.0.1:8000 by
default). Routes:

* ``POST /predict`` -- one record or a list, checked against the dataset spec (a clear 422 naming
  the record and field: a missing feature, a wrong type, NaN or infinity, too many records; 413
  for an oversized body); answers predictions, probabilities, the version and variant that
  answered, and a request id. ``routing_key`` keeps a user on one variant. When the challenger
  fails on a request, the champion answers it and the failure is counted against the challenger:
  users never see a challenger's error.
* ``POST /feedback`` -- a request id (or a record id) and its true label(s).
* ``GET /health`` (the process is up), ``GET /ready`` (a champion is loaded), ``GET /metrics``
  (Prometheus), ``GET /routing`` (the current split), ``GET /rollout/stats?since=`` (the rollout
  analysis' window).
* ``POST /admin/refresh`` -- follow the registry now; needs ``Authorization: Bearer <token>``
  (``MLOPS_ADMIN_TOKEN``; without one set, admin routes are disabled).
"""

from __future__ import annotations

import hmac
import math
import time
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Header, HTTPException, Query, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from mlops_core.adapters.catalog import DatasetCatalog
from mlops_core.errors import MlopsError
from mlops_core.routing import CHALLENGER, CHAMPION, bucket, route
from mlops_core.serving.follower import ModelFollower
from mlops_core.serving.metrics import ServerMetrics
from mlops_core.serving.records import LogWriter, Seen, Traffic
from mlops_core.settings import Settings
from mlops_core.spec import DatasetSpec, FeatureType


class PredictRequest(BaseModel):
    """Either ``record`` (one) or ``records`` (a list) of feature values."""

    record: dict[str, Any] | None = None
    records: list[dict[str, Any]] | None = None
    routing_key: str | None = Field(default=None, max_length=256)


class PredictResponse(BaseModel):
    request_id: str
    model_version: str
    variant: str
    predictions: list[int]
    probabilities: list[float]


class FeedbackRequest(BaseModel):
    request_id: str | None = Field(default=None, max_length=256)
    id: str | None = Field(default=None, max_length=256)
    label: int | None = None
    labels: list[int] | None = None


def _problem(status: int, errors: list[dict[str, Any]]) -> HTTPException:
    return HTTPException(status_code=status, detail=errors)


def check_records(
    records: list[dict[str, Any]], spec: DatasetSpec, max_records: int
) -> list[dict[str, Any]]:
    """The records as the model needs them; a 422 listing every bad field (at most 20)."""
    if not records:
        raise _problem(422, [{"loc": ["body", "records"], "msg": "no records to predict"}])
    if len(records) > max_records:
        raise _problem(
            422,
            [
                {
                    "loc": ["body", "records"],
                    "msg": f"{len(records)} records; at most {max_records} per request",
                }
            ],
        )
    errors: list[dict[str, Any]] = []
    clean = []
    for i, record in enumerate(records):
        row: dict[str, Any] = {}
        for feature, kind in spec.features.items():
            loc = ["body", "records", i, feature]
            if feature not in record:
                errors.append({"loc": loc, "msg": "missing feature"})
                continue
            value = record[feature]
            if kind is FeatureType.numeric:
                if value is None:
                    row[feature] = None
                elif isinstance(value, bool) or not isinstance(value, int | float):
                    errors.append({"loc": loc, "msg": f"expected a number, got {value!r}"[:200]})
                elif not _finite(value):
                    shown = (
                        f"{value}" if isinstance(value, float) else "an integer beyond float range"
                    )
                    errors.append({"loc": loc, "msg": f"expected a finite number, got {shown}"})
                else:
                    row[feature] = float(value)
            else:
                if value is None or isinstance(value, str):
                    row[feature] = value
                else:
                    errors.append({"loc": loc, "msg": f"expected a string, got {value!r}"[:200]})
        for extra in (spec.id, spec.timestamp):
            if extra and extra in record:
                row[extra] = record[extra]
        clean.append(row)
        if len(errors) >= 20:
            break
    if errors:
        raise _problem(422, errors)
    return clean


def _printable(value: Any) -> Any:
    """``value`` made JSON-ready, every string encodable as UTF-8 (lone surrogates escaped)."""
    value = jsonable_encoder(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [_printable(v) for v in value]
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    return value


def _finite(value: int | float) -> bool:
    """Whether ``value`` is a finite float; JSON integers may be too large for one (10**400)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _frame(rows: list[dict[str, Any]], spec: DatasetSpec) -> Any:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(spec.features))
    for feature in spec.numeric:
        frame[feature] = frame[feature].astype("float64")
    for feature in spec.categorical:
        frame[feature] = frame[feature].astype("object")
    return frame


def _scores(loaded: Any, frame: Any) -> list[float]:
    """Scores through the model's micro-batcher (see ``batcher``)."""
    if loaded.batcher is not None:
        return [float(x) for x in loaded.batcher.scores(frame)]
    probabilities = np.asarray(loaded.model.predict_proba(frame), dtype=np.float64)
    scores = probabilities[:, 1]
    if not np.all(np.isfinite(scores)):
        raise ValueError("the model returned non-finite probabilities")
    return [float(x) for x in scores]


class BodyTooLarge(HTTPException):
    """A body over the limit, found while it streams in; FastAPI passes it on as a 413."""

    def __init__(self, limit: int, size: int | None = None) -> None:
        given = f"{size:,} bytes" if size is not None else "more bytes than allowed"
        super().__init__(413, detail=f"request body of {given}; at most {limit:,}")


class BodyLimit:
    """ASGI middleware: a 413 for a request body over ``limit`` bytes, declared or not.

    A declared ``Content-Length`` over the limit is refused before anything is read; a body sent
    without one (chunked) is counted as it arrives, so leaving the header out lifts no limit.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(BodyTooLarge(self.limit, int(declared)), scope, receive, send)
            return
        received = 0
        started = False

        async def counted() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def watched(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge as exc:  # raised where FastAPI's own handlers do not see it
            if started:
                raise
            await self._refuse(exc, scope, receive, send)

    @staticmethod
    async def _refuse(exc: BodyTooLarge, scope: Any, receive: Any, send: Any) -> None:
        response = JSONResponse(status_code=exc.status_code, content={"detail": exc.detail})
        await response(scope, receive, send)


def latest_drift_p_value(settings: Settings, dataset: str) -> float | None:
    """The combined drift p-value in the newest processed batch's report, if any."""
    import json

    from mlops_core.adapters.landing import LandingZone
    from mlops_core.batches import BatchState

    try:
        for entry in reversed(LandingZone(settings).entries(dataset)):
            if entry.state is BatchState.processed:
                detail = json.loads(entry.report_path.read_text(encoding="utf-8"))["detail"]
                drift = (detail or {}).get("drift")
                return float(drift["p_value"]) if drift else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None


def create_app(
    settings: Settings,
    dataset: str | None = None,
    *,
    loader: Any = None,
    follow: bool = True,
    log_traffic: bool = True,
) -> FastAPI:
    """The server for ``dataset`` (the only registered one when not given)."""
    catalog = DatasetCatalog(settings)
    if dataset is None:
        names = catalog.names()
        if len(names) != 1:
            raise MlopsError(
                f"say which dataset to serve with --dataset (registered: {', '.join(names) or 'none'})"
            )
        dataset = names[0]
    spec = catalog.get(dataset).spec
    metrics = ServerMetrics()
    follower = ModelFollower(
        settings, dataset, loader=loader, on_load=lambda role, v: metrics.loaded(role, v)
    )
    traffic = Traffic(keep=settings.serve_traffic_keep)
    writer = LogWriter(settings, dataset) if log_traffic else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        follower.refresh()
        if follow:
            follower.start()
        if writer is not None:
            writer.start()
        yield
        follower.stop()
        if writer is not None:
            writer.stop()

    app = FastAPI(
        title=f"mlops model server: {dataset}",
        description="Predictions from the registry's champion (and challenger during a rollout).",
        lifespan=lifespan,
    )
    app.state.follower = follower
    app.state.traffic = traffic
    app.state.writer = writer
    app.state.metrics = metrics

    app.add_middleware(BodyLimit, limit=settings.serve_max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Any, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes the input; a lone surrogate in it ("\ud800", valid JSON)
        # cannot be encoded as UTF-8 and turned the 422 into a 500.
        return JSONResponse(status_code=422, content={"detail": _printable(exc.errors())})

    @app.post("/predict", response_model=PredictResponse)
    def predict(body: PredictRequest) -> PredictResponse:
        started = time.perf_counter()
        snapshot = follower.snapshot  # this request's models, whatever swaps meanwhile
        if snapshot.champion is None:
            raise HTTPException(503, detail="no champion model is loaded yet")
        if (body.record is None) == (body.records is None):
            raise _problem(
                422, [{"loc": ["body"], "msg": "send exactly one of 'record' or 'records'"}]
            )
        rows = check_records(
            [body.record] if body.record is not None else list(body.records or []),
            spec,
            settings.serve_max_records,
        )
        request_id = uuid.uuid4().hex
        key = body.routing_key or request_id
        split = snapshot.split
        variant = route(key, split, has_challenger=snapshot.challenger is not None)
        frame = _frame(rows, spec)
        champion_scores = _scores(snapshot.champion, frame)
        answer, version, failed = champion_scores, snapshot.champion.version, False
        challenger_scores: list[float] | None = None
        if snapshot.challenger is not None and (variant == CHALLENGER or split.shadow):
            try:
                challenger_scores = _scores(snapshot.challenger, frame)
            except Exception:  # noqa: BLE001 -- the champion answers; the failure is counted
                failed = True
                metrics.error(CHALLENGER, snapshot.challenger.version)
        if variant == CHALLENGER and snapshot.challenger is not None:
            if challenger_scores is not None:
                answer, version = challenger_scores, snapshot.challenger.version
            else:
                variant = CHAMPION  # served by the champion after the challenger failed
        seconds = time.perf_counter() - started
        metrics.request(variant, version, seconds)
        if snapshot.challenger is not None and (
            variant == CHALLENGER or failed or (split.shadow and challenger_scores is not None)
        ):
            traffic.add(
                Seen(
                    time.time(),
                    request_id,
                    CHALLENGER,
                    snapshot.challenger.version,
                    seconds,
                    failed,
                    tuple(challenger_scores or ()),
                    tuple(champion_scores),
                )
            )
        if variant == CHAMPION:
            traffic.add(
                Seen(
                    time.time(),
                    request_id,
                    CHAMPION,
                    snapshot.champion.version,
                    seconds,
                    False,
                    tuple(champion_scores),
                    tuple(champion_scores),
                )
            )
        if split.shadow and challenger_scores is not None:
            metrics.shadow(
                sum(
                    (a >= 0.5) != (b >= 0.5) for a, b in zip(answer, challenger_scores, strict=True)
                )
            )
        if writer is not None:
            now = datetime.now(UTC)
            logged = []
            for i, (row, score) in enumerate(zip(rows, answer, strict=True)):
                entry = dict(row)
                if spec.id and spec.id not in entry:
                    entry[spec.id] = f"{request_id}-{i}"
                if spec.timestamp and spec.timestamp not in entry:
                    entry[spec.timestamp] = now
                entry.update(
                    prediction=int(score >= 0.5),
                    probability=score,
                    model_version=version,
                    variant=variant,
                    request_id=request_id,
                    served_at=now,
                )
                logged.append(entry)
            writer.predictions(logged)
        return PredictResponse(
            request_id=request_id,
            model_version=version,
            variant=variant,
            predictions=[int(s >= 0.5) for s in answer],
            probabilities=answer,
        )

    @app.post("/feedback")
    def feedback(body: FeedbackRequest) -> dict[str, Any]:
        labels = (
            body.labels
            if body.labels is not None
            else ([body.label] if body.label is not None else None)
        )
        if labels is None or (body.request_id is None and body.id is None):
            raise _problem(
                422,
                [{"loc": ["body"], "msg": "send request_id (or id) and label (or labels)"}],
            )
        if any(label not in (0, 1) for label in labels):
            raise _problem(422, [{"loc": ["body", "label"], "msg": "labels are 0 or 1"}])
        known = traffic.feedback(body.request_id, tuple(labels)) if body.request_id else False
        if writer is not None and spec.id and spec.target:
            ids = [body.id] if body.id else [f"{body.request_id}-{i}" for i in range(len(labels))]
            writer.labels([{spec.id: i, spec.target: v} for i, v in zip(ids, labels, strict=False)])
        metrics.feedback()
        return {"accepted": len(labels), "matched_request": known}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    def ready() -> JSONResponse:
        snapshot = follower.snapshot
        if snapshot.champion is None:
            return JSONResponse(status_code=503, content={"ready": False, "reason": "no champion"})
        return JSONResponse(content={"ready": True, **follower.describe()})

    @app.get("/routing")
    def routing() -> dict[str, Any]:
        return follower.describe()

    @app.get("/rollout/stats")
    def rollout_stats(since: Annotated[float, Query(allow_inf_nan=False)] = 0.0) -> dict[str, Any]:
        return {**traffic.stats(since), "routing": follower.describe(), "now": time.time()}

    @app.get("/metrics")
    def prometheus() -> Response:
        snapshot = follower.snapshot
        metrics.routing(snapshot.split, snapshot.challenger.version if snapshot.challenger else "")
        p_value = latest_drift_p_value(settings, dataset)
        if p_value is not None:
            metrics.drift.labels(dataset).set(p_value)
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.post("/admin/refresh")
    def refresh(authorization: str | None = Header(default=None)) -> dict[str, Any]:
        token = settings.admin_token.get_secret_value() if settings.admin_token else ""
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not token:
            raise HTTPException(403, detail="admin routes are disabled: set MLOPS_ADMIN_TOKEN")
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, detail="missing or wrong admin token")
        changed = follower.refresh()
        return {"changed": changed, **follower.describe()}

    app.state.bucket = bucket
    return app
