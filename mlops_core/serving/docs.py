"""The model server's own documentation: ``/docs`` and ``/redoc`` served offline, and a
``/predict`` request schema written from the dataset spec.

FastAPI's documentation pages load Swagger UI and ReDoc from a CDN (and ReDoc's fonts from
Google): on a machine without internet access the page stays blank. The assets ship in the
``fastapi-offline`` wheel (Swagger UI 5, which reads OpenAPI 3.1, and ReDoc); only its static
files are used, mounted under ``/docs-assets``.

The request body is parsed as the loose ``PredictRequest`` (records are checked against the spec
by ``mlops_core.serving.inputs``, the latency-tuned path, which names the record and field in a
422); only the OpenAPI document is rewritten, so a person reading ``/docs`` sees every feature,
its JSON type and an example value, and "Try it out" starts from a record that predicts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from mlops_core.spec import DatasetSpec, FeatureType

ASSETS = "/docs-assets"
RECORD_SCHEMA = "Record"
# When the reference cannot be read (a moved store): values of the right type, still accepted.
FALLBACK_EXAMPLES = {FeatureType.numeric: 0.0, FeatureType.categorical: "unknown"}


def assets_dir() -> Path:
    """The folder holding Swagger UI's and ReDoc's files (from the ``fastapi-offline`` wheel)."""
    return Path(str(files("fastapi_offline") / "static"))


def record_schema(spec: DatasetSpec, examples: dict[str, Any]) -> dict[str, Any]:
    """One record as JSON Schema: each feature with its type, description and example value."""
    properties: dict[str, Any] = {}
    for feature, kind in spec.features.items():
        example = examples.get(feature, FALLBACK_EXAMPLES[kind])
        if kind is FeatureType.numeric:
            field: dict[str, Any] = {
                "type": ["number", "null"],
                "description": "numeric feature (null: missing)",
            }
        else:
            field = {"type": ["string", "null"], "description": "categorical feature"}
        field["examples"] = [example]
        properties[feature] = field
    for extra, what in ((spec.id, "row key, joins feedback"), (spec.timestamp, "event time")):
        if extra:
            properties[extra] = {"description": f"optional: {what}; passed to the prediction log"}
    return {
        "title": RECORD_SCHEMA,
        "type": "object",
        "description": f"One record of dataset {spec.name!r}: every feature of its spec.",
        "properties": properties,
        "required": list(spec.features),
        "example": {f: properties[f]["examples"][0] for f in spec.features},
    }


def predict_request_schema(spec: DatasetSpec, max_records: int) -> dict[str, Any]:
    """The ``/predict`` body as JSON Schema: ``record`` or ``records`` of the spec's features."""
    ref = {"$ref": f"#/components/schemas/{RECORD_SCHEMA}"}
    return {
        "title": "PredictRequest",
        "type": "object",
        "description": "Send exactly one of `record` (one) or `records` (a list).",
        "properties": {
            "record": ref,
            "records": {"type": "array", "items": ref, "minItems": 1, "maxItems": max_records},
            "routing_key": {
                "type": ["string", "null"],
                "maxLength": 256,
                "description": "keeps a user on one variant during a rollout",
            },
        },
    }


def reference_examples(
    spec: DatasetSpec, read_typical_row: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """An example value per feature, from a typical reference record (typed fallbacks without)."""
    try:
        row = read_typical_row()
    except Exception:  # noqa: BLE001 -- the document must render even when the reference is gone
        row = {}
    examples: dict[str, Any] = {}
    for feature, kind in spec.features.items():
        value = row.get(feature)
        if kind is FeatureType.numeric:
            usable = (  # NaN or infinity would be a 422, not an example
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
            )
        else:
            usable = isinstance(value, str)
        if usable:
            examples[feature] = value
    return examples


def install_openapi(
    app: FastAPI, spec: DatasetSpec, max_records: int, examples: Callable[[], dict[str, Any]]
) -> None:
    """``app.openapi()`` with the spec's record schema; built once, on first request."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas[RECORD_SCHEMA] = record_schema(spec, examples())
            schemas["PredictRequest"] = predict_request_schema(spec, max_records)
            body = document["paths"]["/predict"]["post"]["requestBody"]["content"]
            body["application/json"]["example"] = {
                "record": schemas[RECORD_SCHEMA]["example"],
                "routing_key": "user-42",
            }
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def add_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` with their assets served by the app itself."""
    app.mount(ASSETS, StaticFiles(directory=assets_dir()), name="docs-assets")
    title = app.title

    def prefix(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    async def swagger(request: Request) -> HTMLResponse:
        root = prefix(request)
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{title} - docs",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
            oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
        )

    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        root = prefix(request)
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS}/favicon.png",
            with_google_fonts=False,
        )

    app.add_api_route("/docs", swagger, methods=["GET"], include_in_schema=False)
    app.add_api_route(
        "/docs/oauth2-redirect", oauth2_redirect, methods=["GET"], include_in_schema=False
    )
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)
