"""The records of a prediction request, checked against the dataset spec before any model sees them."""

from __future__ import annotations

import math
from typing import Any

from mlops_core.serving.problems import problem
from mlops_core.serving.schemas import PredictRequest
from mlops_core.spec import DatasetSpec, FeatureType

MAX_ERRORS = 20  # enough to fix a request by; a 10,000-record mistake stays a short answer


def requested_rows(
    body: PredictRequest, spec: DatasetSpec, max_records: int
) -> list[dict[str, Any]]:
    """The request's records as the model needs them; a 422 unless exactly one form was sent."""
    if (body.record is None) == (body.records is None):
        raise problem(422, [{"loc": ["body"], "msg": "send exactly one of 'record' or 'records'"}])
    return check_records(
        [body.record] if body.record is not None else list(body.records or []),
        spec,
        max_records,
    )


def check_records(
    records: list[dict[str, Any]], spec: DatasetSpec, max_records: int
) -> list[dict[str, Any]]:
    """The records as the model needs them; a 422 listing every bad field (at most 20)."""
    if not records:
        raise problem(422, [{"loc": ["body", "records"], "msg": "no records to predict"}])
    if len(records) > max_records:
        raise problem(
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
        clean.append(_checked_row(i, record, spec, errors))
        if len(errors) >= MAX_ERRORS:
            break
    if errors:
        raise problem(422, errors)
    return clean


def _checked_row(
    i: int, record: dict[str, Any], spec: DatasetSpec, errors: list[dict[str, Any]]
) -> dict[str, Any]:
    """Record ``i``'s features as the model needs them; what is wrong goes to ``errors``."""
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
                shown = f"{value}" if isinstance(value, float) else "an integer beyond float range"
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
    return row


def _finite(value: int | float) -> bool:
    """Whether ``value`` is a finite float; JSON integers may be too large for one (10**400)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
