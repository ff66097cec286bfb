"""The records of a prediction request, checked against the dataset spec before any model sees them.

The spec's ``id`` and ``timestamp`` columns pass through to the prediction log, so they are
checked too: the log writes every buffered request's rows as one table, and one value of the
wrong type (a timestamp of ``12.5`` among datetimes) made that whole table fail. An id is a
string (1-256 characters, as ``/feedback`` can name it) or a 64-bit integer; a timestamp is an
ISO 8601 string, kept as a UTC datetime (one without an offset is taken as UTC, as
``mlops_core.data.event_times`` reads it). Null, or absent, is filled in by the server
(``predictions.prediction_log``).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from mlops_core.serving.problems import problem
from mlops_core.serving.schemas import PredictRequest
from mlops_core.spec import DatasetSpec, FeatureType

MAX_ERRORS = 20  # enough to fix a request by; a 10,000-record mistake stays a short answer
MAX_ID_LENGTH = 256  # as long as /feedback takes an id (schemas.FeedbackRequest)
INT64 = range(-(2**63), 2**63)  # a parquet integer column; beyond it polars logs a null instead


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
            if value is None or (isinstance(value, str) and is_text(value)):
                row[feature] = value
            elif isinstance(value, str):
                errors.append({"loc": loc, "msg": _not_text(value)})
            else:
                errors.append({"loc": loc, "msg": f"expected a string, got {value!r}"[:200]})
    for column, check in ((spec.id, checked_id), (spec.timestamp, checked_timestamp)):
        if column is None or record.get(column) is None:
            continue  # the server fills it in
        try:
            row[column] = check(record[column])
        except ValueError as exc:
            errors.append({"loc": ["body", "records", i, column], "msg": str(exc)})
    return row


def checked_id(value: Any) -> str | int:
    """``value`` as a record id (a string or a 64-bit integer); a ``ValueError`` says why not."""
    if isinstance(value, str):
        if not value or len(value) > MAX_ID_LENGTH:
            raise ValueError(
                f"expected an id of 1 to {MAX_ID_LENGTH} characters, got {len(value)} characters"
            )
        if not is_text(value):
            raise ValueError(_not_text(value))
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if value not in INT64:
            raise ValueError("expected a string or an integer id, got an integer beyond 64 bits")
        return value
    raise ValueError(f"expected a string or an integer id, got {value!r}"[:200])


def checked_timestamp(value: Any) -> datetime:
    """``value`` (an ISO 8601 string) as a UTC datetime; a ``ValueError`` says why not."""
    expected = "expected an ISO 8601 timestamp (e.g. 2024-05-01T12:00:00Z)"
    if not isinstance(value, str) or len(value) > 64:  # no ISO 8601 timestamp is longer
        raise ValueError(f"{expected}, got {value!r}"[:200])
    try:
        parsed = datetime.fromisoformat(value)
        return parsed.astimezone(UTC) if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError):  # OverflowError: 0001-01-01T00:00+01:00 in UTC
        raise ValueError(f"{expected}, got {value!r}"[:200]) from None


def is_text(value: str) -> bool:
    """Whether ``value`` can be written as UTF-8. JSON can carry a lone surrogate ("\\ud800"),
    which no log file can hold; pydantic refuses one in a ``str`` field, but a record's values
    are checked here."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _not_text(value: str) -> str:
    """What is wrong with a string no log file can hold (a lone surrogate, valid JSON)."""
    return f"expected text, got a string with a lone surrogate: {value!r}"[:200]


def _finite(value: int | float) -> bool:
    """Whether ``value`` is a finite float; JSON integers may be too large for one (10**400)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
