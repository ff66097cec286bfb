"""The model server: a FastAPI app that follows the MLflow registry and routes by rollout state.

``create_app(settings)`` builds it; ``mlops serve`` runs it under uvicorn (127.0.0.1:8000 by
default). Routes (``mlops_core.serving.routes``, handlers by concern):

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
* ``GET /docs`` and ``GET /redoc`` -- the API documentation, its assets served by the app itself
  (it works offline); the ``/predict`` body is documented from the dataset spec, each feature
  with its type and an example value from the reference (``mlops_core.serving.docs``).
* ``POST /admin/refresh`` -- follow the registry now; needs ``Authorization: Bearer <token>``
  (``MLOPS_ADMIN_TOKEN``; without one set, admin routes are disabled).

What the routes share lives in one ``ServerState`` on ``app.state.server``; they ask for it, and
for the admin check, through the dependencies in ``mlops_core.serving.dependencies``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from mlops_core.routing import bucket
from mlops_core.serving.body_limit import BodyLimit
from mlops_core.serving.docs import add_docs, install_openapi, reference_examples
from mlops_core.serving.problems import invalid_request
from mlops_core.serving.routes import add_routes
from mlops_core.serving.state import ServerState
from mlops_core.serving.workers import Workers
from mlops_core.settings import Settings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The server's models loaded and followed, and its logs written, while the app runs."""
    server: ServerState = app.state.server
    server.start()
    yield
    server.stop()


def create_app(
    settings: Settings,
    dataset: str | None = None,
    *,
    loader: Callable[[str], Any] | None = None,
    follow: bool = True,
    log_traffic: bool = True,
    workers: Workers | None = None,
) -> FastAPI:
    """The server for ``dataset`` (the only registered one when not given); ``workers`` when it
    is one of several processes behind one address (``mlops_core.serving.workers``)."""
    server = ServerState.for_dataset(
        settings, dataset, loader=loader, follow=follow, log_traffic=log_traffic, workers=workers
    )
    app = FastAPI(
        title=f"mlops model server: {server.dataset}",
        description="Predictions from the registry's champion (and challenger during a rollout).",
        lifespan=lifespan,
        docs_url=None,  # served by add_docs, from local assets
        redoc_url=None,
    )
    app.state.server = server
    # The parts on their own, as callers and tests have always found them.
    app.state.follower = server.follower
    app.state.traffic = server.traffic
    app.state.writer = server.writer
    app.state.metrics = server.metrics

    app.add_middleware(BodyLimit, limit=settings.serve_max_body_bytes)
    app.exception_handler(RequestValidationError)(invalid_request)
    add_routes(app)
    add_docs(app)
    install_openapi(
        app,
        server.spec,
        settings.serve_max_records,
        lambda: reference_examples(server.spec, lambda: _typical_reference_row(settings, server)),
    )

    app.state.bucket = bucket
    return app


def _typical_reference_row(settings: Settings, server: ServerState) -> dict[str, Any]:
    """The documentation's example record: each numeric feature's median and each categorical
    feature's most frequent value in the reference -- a typical record, and no one's (the
    OpenAPI document is public; a real row of the reference is someone's data)."""
    import polars as pl

    from mlops_core.adapters.catalog import DatasetCatalog
    from mlops_core.spec import FeatureType

    path = DatasetCatalog(settings).get(server.dataset).reference_path
    typical = [
        pl.col(name).median().alias(name)
        if kind is FeatureType.numeric
        else pl.col(name).drop_nulls().mode().sort().first().alias(name)
        for name, kind in server.spec.features.items()
    ]
    return pl.scan_parquet(path).select(typical).collect().row(0, named=True)
