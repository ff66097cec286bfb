"""The model server's documentation (offline assets, the spec's request schema) and its footprint
(nothing written to the current folder), on a real MLflow registry (SQLite)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.context import DatasetContext
from mlops_core.adapters.registry import ModelRegistry
from mlops_core.challenger import gather_training_data, train_challenger
from mlops_core.serving import create_app
from mlops_core.settings import Settings

URL = re.compile(r"""(?:src|href)=["']([^"']+)["']|url:\s*["']([^"']+)["']""")


def test_the_predict_schema_lists_every_feature_with_type_and_example(
    settings: Settings, registered: RegisteredDataset
) -> None:
    spec = registered.spec
    reference = registered.reference()
    # A typical record, no one's: the numeric medians and the most frequent categories.
    typical = {
        feature: reference[feature].median()
        if kind == "numeric"
        else reference[feature].drop_nulls().mode().sort()[0]
        for feature, kind in spec.features.items()
    }
    with TestClient(create_app(settings, follow=False, log_traffic=False)) as client:
        document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    record = schemas["Record"]
    assert record["required"] == list(spec.features)
    for feature, kind in spec.features.items():
        field = record["properties"][feature]
        expected = "number" if kind == "numeric" else "string"
        assert expected in field["type"], (feature, field)
        assert field["examples"] == [typical[feature]], (feature, field)
    request = schemas["PredictRequest"]["properties"]
    assert request["record"] == {"$ref": "#/components/schemas/Record"}
    assert request["records"]["items"] == {"$ref": "#/components/schemas/Record"}
    body = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/PredictRequest"}
    assert set(body["example"]["record"]) == set(spec.features)


def test_the_documented_example_is_a_record_the_server_accepts(
    settings: Settings, registered: RegisteredDataset
) -> None:
    ctx = DatasetContext.open(settings, "credit")
    ModelRegistry(settings, "credit").promote(
        train_challenger(ctx, gather_training_data(ctx, first_model=True)).version
    )
    with TestClient(create_app(settings, follow=True, log_traffic=False)) as client:
        example = client.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]
        answer = client.post("/predict", json=example["content"]["application/json"]["example"])
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == "1"


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_nothing_from_the_network(
    settings: Settings, registered: RegisteredDataset, page: str
) -> None:
    with TestClient(create_app(settings, follow=False, log_traffic=False)) as client:
        html = client.get(page)
        assert html.status_code == 200
        assert not re.search(r"https?://", html.text), html.text
        assets = [a or b for a, b in URL.findall(html.text)]
        assert any(a.endswith(".js") for a in assets), assets
        for asset in assets:
            assert client.get(asset).status_code == 200, asset
        if page == "/docs":
            assert "/openapi.json" in assets and any(a.endswith(".css") for a in assets)


def test_serving_writes_nothing_to_the_current_folder(
    settings: Settings, registered: RegisteredDataset, tmp_path: Path, monkeypatch
) -> None:
    """MLflow 3 defaults its tracking store to ``./mlflow.db``: the server must never use it."""
    ctx = DatasetContext.open(settings, "credit")
    ModelRegistry(settings, "credit").promote(
        train_challenger(ctx, gather_training_data(ctx, first_model=True)).version
    )
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    before = Path.cwd()
    os.chdir(elsewhere)
    try:
        import mlflow

        # What a fresh `mlops serve` process starts with: MLflow's URIs unset (training above
        # set them, and MLflow mirrors them into its environment variables).
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
        with TestClient(create_app(settings, follow=True, log_traffic=False)) as client:
            assert client.get("/ready").status_code == 200
            record = client.get("/openapi.json").json()["components"]["schemas"]["Record"]
            assert client.post("/predict", json={"record": record["example"]}).status_code == 200
    finally:
        os.chdir(before)
    assert list(elsewhere.iterdir()) == []
