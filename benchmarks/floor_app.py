"""The HTTP floor: a bare FastAPI app that parses a credit record with pydantic, returns a constant.

``benchmarks/serving.py`` serves it under uvicorn exactly as ``mlops serve`` runs (one worker,
log level warning) to measure what any Python model server on this machine pays before it does
any work of its own.

    uvicorn --app-dir benchmarks floor_app:app --port 8000 --log-level warning
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, create_model

from mlops_cli.scenarios import CREDIT_SPEC

Record = create_model(  # type: ignore[call-overload]
    "Record",
    **{
        name: ((float | None) if name in CREDIT_SPEC.numeric else (str | int | None), None)
        for name in CREDIT_SPEC.features
    },
)


class Request(BaseModel):
    """The request body ``mlops serve`` takes for one record."""

    record: Record  # type: ignore[valid-type]
    routing_key: str | None = None


app = FastAPI(title="floor")


@app.post("/predict")
def predict(body: Request) -> dict[str, Any]:
    """A constant answer of the same shape as ``mlops serve``'s."""
    return {
        "request_id": "floor",
        "model_version": "0",
        "variant": "champion",
        "predictions": [0],
        "probabilities": [0.5],
    }


@app.get("/ready")
def ready() -> dict[str, str]:
    """Up."""
    return {"status": "ready"}
