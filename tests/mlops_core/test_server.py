"""The model server through FastAPI's TestClient on a real MLflow registry (SQLite)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from mlops_cli.scenarios import CREDIT_SPEC as SPEC
from mlops_cli.scenarios import generate_applications
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.context import DatasetContext
from mlops_core.adapters.landing import LandingZone
from mlops_core.adapters.registry import ModelRegistry
from mlops_core.challenger import gather_training_data, train_challenger
from mlops_core.serving import create_app
from mlops_core.serving.compiled import model_frame
from mlops_core.serving.follower import ROLLOUT_MODE, ROLLOUT_VERSION, ROLLOUT_WEIGHT
from mlops_core.serving.metrics import METRIC_NAMES
from mlops_core.settings import Settings


@pytest.fixture
def models(settings: Settings, registered: RegisteredDataset) -> tuple[str, str]:
    ctx = DatasetContext.open(settings, "credit")
    data = gather_training_data(ctx, first_model=True)
    registry = ModelRegistry(settings, "credit")
    first = train_challenger(ctx, data).version
    registry.promote(first)
    second = train_challenger(ctx, data).version
    return first, second


def records(n: int, seed: int = 0) -> list[dict]:
    frame = generate_applications(np.random.default_rng(seed), n).drop(
        "default", "application_id", "applied_at"
    )
    return frame.to_dicts()


def start_canary(settings: Settings, version: str, weight: float) -> None:
    registry = ModelRegistry(settings, "credit")
    registry.set_challenger(version)
    registry.set_tags(
        {ROLLOUT_MODE: "canary", ROLLOUT_WEIGHT: str(weight), ROLLOUT_VERSION: version}
    )


def test_predict_answers_with_the_champion(settings: Settings, models) -> None:
    with TestClient(create_app(settings, follow=False, log_traffic=False)) as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/ready").json()["champion"] == models[0]
        one = client.post("/predict", json={"record": records(1)[0]})
        assert one.status_code == 200, one.text
        body = one.json()
        assert body["model_version"] == models[0] and body["variant"] == "champion"
        assert len(body["predictions"]) == 1 and 0 <= body["probabilities"][0] <= 1
        many = client.post("/predict", json={"records": records(50)}).json()
        assert len(many["predictions"]) == 50 and many["request_id"] != body["request_id"]
        # The registered pipeline compiles (serving.compiled) and answers as the model does.
        text = client.get("/metrics").text
        assert f'mlops_scoring_path{{path="compiled",version="{models[0]}"}} 1.0' in text
    model = ModelRegistry(settings, "credit").load_version(models[0])
    expected = model.predict_proba(model_frame(records(50), SPEC))[:, 1]
    assert np.allclose(many["probabilities"], expected, rtol=0, atol=1e-6)


def test_not_ready_without_a_champion(settings: Settings, registered: RegisteredDataset) -> None:
    with TestClient(create_app(settings, follow=False, log_traffic=False)) as client:
        assert client.get("/ready").status_code == 503
        assert client.post("/predict", json={"record": records(1)[0]}).status_code == 503


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        (lambda r: r.pop("income"), "income", "missing feature"),
        (lambda r: r.update(income="lots"), "income", "expected a number"),
        (lambda r: r.update(age=True), "age", "expected a number"),
        (lambda r: r.update(purpose=3), "purpose", "expected a string"),
    ],
)
def test_bad_records_get_a_422_naming_the_field(
    settings: Settings, models, change, where: str, message: str
) -> None:
    record = records(1)[0]
    change(record)
    with TestClient(create_app(settings, follow=False, log_traffic=False)) as client:
        answer = client.post("/predict", json={"records": [records(1, 1)[0], record]})
    assert answer.status_code == 422
    detail = answer.json()["detail"][0]
    assert detail["loc"] == ["body", "records", 1, where] and message in detail["msg"]


def test_nan_infinity_oversized_and_ambiguous_requests_are_refused(
    settings: Settings, models, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_SERVE_MAX_RECORDS", "10")
    monkeypatch.setenv("MLOPS_SERVE_MAX_BODY_BYTES", "4096")
    current = Settings()
    record = records(1)[0]
    with TestClient(create_app(current, follow=False, log_traffic=False)) as client:
        for token in ("NaN", "Infinity", "-Infinity"):
            text = json.dumps({"record": {**record, "income": 1.0}}).replace("1.0", token, 1)
            answer = client.post(
                "/predict", content=text, headers={"content-type": "application/json"}
            )
            assert answer.status_code == 422, (token, answer.text)
            assert "finite" in answer.text
        assert client.post("/predict", json={"records": records(11)}).status_code == 422
        assert client.post("/predict", json={"records": records(40)}).status_code == 413
        assert client.post("/predict", json={}).status_code == 422
        assert client.post("/predict", content=b"not json").status_code == 422


def test_admin_refresh_needs_the_token(
    settings: Settings, models, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TestClient(create_app(settings, follow=False, log_traffic=False)) as client:
        assert client.post("/admin/refresh").status_code == 403, "disabled without a token"
    monkeypatch.setenv("MLOPS_ADMIN_TOKEN", "s3cret-token")
    current = Settings()
    assert "s3cret" not in repr(current), "the token never shows in logs or reprs"
    with TestClient(create_app(current, follow=False, log_traffic=False)) as client:
        assert client.post("/admin/refresh").status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert client.post("/admin/refresh", headers=wrong).status_code == 401
        right = {"Authorization": "Bearer s3cret-token"}
        assert client.post("/admin/refresh", headers=right).json()["changed"] is False


def test_canary_split_is_weighted_and_sticky(settings: Settings, models) -> None:
    first, second = models
    with TestClient(create_app(settings, follow=False, log_traffic=False)) as client:
        start_canary(settings, second, 0.25)
        assert client.app.state.follower.refresh()
        assert client.get("/routing").json()["weight"] == 0.25
        record = records(1)[0]
        seen = Counter()
        for i in range(400):
            answer = client.post("/predict", json={"record": record, "routing_key": f"user-{i}"})
            seen[answer.json()["variant"]] += 1
        assert 0.18 < seen["challenger"] / 400 < 0.32, seen
        versions = {
            client.post("/predict", json={"record": record, "routing_key": "user-7"}).json()[
                "model_version"
            ]
            for _ in range(10)
        }
        assert len(versions) == 1, "one user stays on one variant"


def test_no_request_fails_while_models_swap(settings: Settings, models) -> None:
    first, second = models
    app = create_app(settings, follow=False, log_traffic=False)
    failures, versions = [], Counter()
    stop = threading.Event()
    with TestClient(app) as client:
        body = {"records": records(5)}

        def load() -> None:
            while not stop.is_set():
                try:
                    answer = client.post("/predict", json=body)
                except Exception as exc:  # noqa: BLE001 -- a server error raised into the client
                    failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if answer.status_code != 200:
                    failures.append(answer.status_code)
                else:
                    versions[answer.json()["model_version"]] += 1

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        registry = ModelRegistry(settings, "credit")
        for _ in range(3):
            registry.promote(second)
            assert app.state.follower.refresh()
            registry.rollback()
            assert app.state.follower.refresh()
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == [] and set(versions) == {first, second}, (failures, versions)


class Raising:
    """A duck-typed model that fails on every other call."""

    def __init__(self, model) -> None:
        self.model, self.calls = model, 0

    def predict_proba(self, frame):
        self.calls += 1
        if self.calls % 2:
            raise RuntimeError("challenger blew up")
        return self.model.predict_proba(frame)


def test_a_failing_challenger_never_fails_a_user(settings: Settings, models) -> None:
    first, second = models
    import mlflow

    def loader(version: str):
        model = mlflow.sklearn.load_model(f"models:/credit/{version}")
        return Raising(model) if version == second else model

    mlflow.set_registry_uri(settings.tracking_uri)
    start_canary(settings, second, 1.0)
    with TestClient(create_app(settings, follow=False, log_traffic=False, loader=loader)) as client:
        answers = [client.post("/predict", json={"record": records(1)[0]}) for _ in range(20)]
        assert all(a.status_code == 200 for a in answers)
        variants = Counter(a.json()["variant"] for a in answers)
        assert variants["champion"] == 10 and variants["challenger"] == 10
        stats = client.get("/rollout/stats").json()["variants"]["challenger"]
        assert stats["errors"] == 10 and stats["requests"] == 20
        text = client.get("/metrics").text
        expected = f'mlops_request_errors_total{{variant="challenger",version="{second}"}} 10.0'
        assert expected in text


def test_metrics_export_every_documented_name(settings: Settings, models) -> None:
    with TestClient(create_app(settings, follow=False, log_traffic=False)) as client:
        client.post("/predict", json={"record": records(1)[0]})
        client.post("/feedback", json={"request_id": "x", "label": 1})
        text = client.get("/metrics").text
    for name in METRIC_NAMES:
        assert f"# TYPE {name.removesuffix('_total')}" in text or f"# TYPE {name}" in text, name
    assert 'mlops_model_loads_total{role="champion"' in text


def test_predictions_and_feedback_land_as_batches_and_labels(
    settings: Settings, models, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_SERVE_LOG_ROWS", "20")
    current = Settings()
    with TestClient(create_app(current, follow=False)) as client:
        ids = []
        for _ in range(4):
            answer = client.post("/predict", json={"records": records(5)}).json()
            ids.append(answer["request_id"])
        # The full buffer is landed by the writer's thread while the server runs, not by a request.
        deadline = time.monotonic() + 10
        while not LandingZone(current).entries("credit") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert LandingZone(current).entries("credit"), "a full buffer lands without waiting"
        client.post("/feedback", json={"request_id": ids[0], "labels": [1, 0, 1, 0, 1]})
    batches = LandingZone(current).entries("credit")
    assert len(batches) == 1 and batches[0].original_name.startswith("served-batch")
    import polars as pl

    logged = pl.read_parquet(Path(batches[0].location))
    assert logged.height == 20
    assert {"prediction", "probability", "model_version", "variant", "request_id"} <= set(
        logged.columns
    )
    labels = LandingZone(current, "labels").entries("credit")
    assert len(labels) == 1
    joined = pl.read_parquet(Path(labels[0].location))
    assert joined["application_id"].to_list()[0] == f"{ids[0]}-0"
