"""The spec's id and timestamp pass through ``/predict`` to the prediction log: a value of the
wrong type is a 422 naming the record and field, never a row that fails the log's micro-batch.

The server here answers with a duck-typed model (what is checked is the request, not a model):
the dataset is registered and the champion is a real version in a real MLflow registry
(SQLite), whose loader hands the server the duck.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl
import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient

from mlops_cli.scenarios import CREDIT_SPEC, generate_applications
from mlops_core.adapters.catalog import DatasetCatalog
from mlops_core.adapters.registry import ModelRegistry
from mlops_core.serving import create_app
from mlops_core.serving.inputs import check_records
from mlops_core.serving.records import log_frame
from mlops_core.settings import Settings

GOOD = {f: (1.0 if f in CREDIT_SPEC.numeric else "car") for f in CREDIT_SPEC.features}


class Coin:
    """A duck-typed model: a probability of 0.5 for every record."""

    def predict_proba(self, frame: Any) -> np.ndarray:
        return np.full((len(frame), 2), 0.5)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The model server for credit, its champion version 1 answering through ``Coin``."""
    root = tmp_path_factory.mktemp("passthrough")
    reference = root / "reference.parquet"
    generate_applications(np.random.default_rng(0), 300).write_parquet(reference)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLOPS_HOME", str(root / "home"))
        env.setenv("MLOPS_GX_DIR", str(root / "great_expectations"))
        current = Settings()
        DatasetCatalog(current).add(CREDIT_SPEC, reference)
        registry = ModelRegistry(current, "credit")
        registry.client.create_registered_model("credit")
        version = registry.client.create_model_version("credit", source=str(root / "coin"))
        registry.promote(str(version.version))
        app = create_app(current, follow=False, loader=lambda _: Coin())
        with TestClient(app) as answering:
            yield answering


def refused(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    with pytest.raises(HTTPException) as caught:
        check_records(records, CREDIT_SPEC, max_records=100)
    assert caught.value.status_code == 422
    detail: list[dict[str, Any]] = caught.value.detail  # type: ignore[assignment]
    return detail


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "applied_at",
            12.5,
            "expected an ISO 8601 timestamp (e.g. 2024-05-01T12:00:00Z), got 12.5",
        ),
        ("applied_at", "last tuesday", "expected an ISO 8601 timestamp"),
        ("applied_at", "2024-13-01", "expected an ISO 8601 timestamp"),
        ("applied_at", ["2024-05-01"], "expected an ISO 8601 timestamp"),
        ("application_id", 3.5, "expected a string or an integer id, got 3.5"),
        ("application_id", True, "expected a string or an integer id, got True"),
        ("application_id", {"id": 1}, "expected a string or an integer id"),
        ("application_id", 2**64, "an integer beyond 64 bits"),
        ("application_id", "", "expected an id of 1 to 256 characters"),
        ("application_id", "x" * 257, "expected an id of 1 to 256 characters"),
        ("application_id", "a\ud800", "lone surrogate"),
        ("purpose", "\udfff", "lone surrogate"),  # a categorical feature: logged as well
    ],
)
def test_a_wrong_type_is_refused_naming_the_record_and_field(
    field: str, value: Any, message: str
) -> None:
    [detail] = refused([GOOD, GOOD, GOOD, {**GOOD, field: value}])
    assert detail["loc"] == ["body", "records", 3, field]
    assert message in detail["msg"]
    json.dumps(detail).encode("utf-8")  # printable: a lone surrogate is quoted escaped


def test_good_ids_and_timestamps_pass_and_timestamps_become_utc_datetimes() -> None:
    rows = check_records(
        [
            {**GOOD, "application_id": "app-1", "applied_at": "2024-05-01T14:00:00+02:00"},
            {**GOOD, "application_id": 17, "applied_at": "2024-05-01T12:00:00"},
            {**GOOD, "application_id": None, "applied_at": None},  # the server fills them in
            GOOD,
        ],
        CREDIT_SPEC,
        max_records=100,
    )
    noon = datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert [r.get("applied_at") for r in rows] == [noon, noon, None, None]
    assert [r.get("application_id") for r in rows] == ["app-1", 17, None, None]
    assert log_frame(rows).height == 4, "the checked rows make one table"


def test_the_server_answers_422_for_wrong_types_and_200_for_good_ones(client: TestClient) -> None:
    bad_time = client.post("/predict", json={"records": [GOOD, {**GOOD, "applied_at": 12.5}]})
    assert bad_time.status_code == 422, bad_time.text
    [detail] = bad_time.json()["detail"]
    assert detail["loc"] == ["body", "records", 1, "applied_at"]
    assert "ISO 8601" in detail["msg"] and "12.5" in detail["msg"]

    bad_id = client.post("/predict", json={"record": {**GOOD, "application_id": [1, 2]}})
    assert bad_id.status_code == 422, bad_id.text
    assert bad_id.json()["detail"][0]["loc"] == ["body", "records", 0, "application_id"]

    good = client.post(
        "/predict",
        json={
            "records": [
                {**GOOD, "application_id": "app-1", "applied_at": "2024-05-01T12:00:00Z"},
                {**GOOD, "application_id": 42, "applied_at": "2024-05-01"},
            ]
        },
    )
    assert good.status_code == 200, good.text
    assert len(good.json()["predictions"]) == 2
    # Only the good request reached the prediction log, and its rows make one table.
    location = client.app.state.writer.flush("batch")
    assert location is not None
    logged = pl.read_parquet(location)
    assert logged["application_id"].to_list() == ["app-1", "42"]
    assert logged.schema["applied_at"] == pl.Datetime("us", "UTC")
    assert logged["applied_at"].to_list() == [
        datetime(2024, 5, 1, 12, tzinfo=UTC),
        datetime(2024, 5, 1, tzinfo=UTC),
    ]

    # Feedback ids end up in the feedback log too.
    text = json.dumps({"id": "\ud800", "label": 1})
    lone = client.post("/feedback", content=text, headers={"content-type": "application/json"})
    assert lone.status_code == 422, lone.text
    assert lone.json()["detail"][0]["loc"] == ["body", "id"]
