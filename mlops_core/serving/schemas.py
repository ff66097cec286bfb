"""The bodies the model server reads and answers (its OpenAPI components)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class PredictRequest(BaseModel):
    """Either ``record`` (one) or ``records`` (a list) of feature values."""

    record: dict[str, Any] | None = None
    records: list[dict[str, Any]] | None = None
    routing_key: str | None = Field(default=None, max_length=256)


class PredictResponse(BaseModel):
    """Predictions, their probabilities, and the model version and variant that answered."""

    request_id: str
    model_version: str
    variant: str
    predictions: list[int]
    probabilities: list[float]


class FeedbackRequest(BaseModel):
    """The true label(s) of an answered request (``request_id``) or of a record (``id``)."""

    request_id: str | None = Field(default=None, max_length=256)
    id: str | None = Field(default=None, max_length=256)
    label: int | None = None
    labels: list[int] | None = None
