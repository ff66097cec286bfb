"""The model server's routes: handlers by concern in this package, added to the app in one table.

Each handler asks for what it needs through the ``Annotated`` dependencies of
``mlops_core.serving.dependencies`` (``ServerDep``, ``AdminDep``); none closes over app state.

The routes are added to the app itself rather than through ``include_router``: since FastAPI
0.137 an included router is kept as one lazy node in ``app.routes``, which hides the routes from
code that walks ``app.routes`` (the admin-guard test does) and from tools that read ``.path``.
"""

from __future__ import annotations

from fastapi import FastAPI

from mlops_core.serving.routes import admin, feedback, health, prometheus, rollout, scoring
from mlops_core.serving.schemas import PredictResponse


def add_routes(app: FastAPI) -> None:
    """Add every route of the model server to ``app``, in the order they are documented."""
    app.add_api_route("/predict", scoring.predict, methods=["POST"], response_model=PredictResponse)
    app.add_api_route("/feedback", feedback.feedback, methods=["POST"])
    app.add_api_route("/health", health.health, methods=["GET"])
    app.add_api_route("/ready", health.ready, methods=["GET"])
    app.add_api_route("/routing", rollout.routing, methods=["GET"])
    app.add_api_route("/rollout/stats", rollout.rollout_stats, methods=["GET"])
    app.add_api_route("/metrics", prometheus.prometheus, methods=["GET"])
    app.add_api_route("/admin/refresh", admin.refresh, methods=["POST"])


__all__ = ["add_routes"]
