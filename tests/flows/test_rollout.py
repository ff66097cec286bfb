"""The rollout flow against a real uvicorn model server under live load (real MLflow registry):
a good challenger is promoted step by step; a failing one and a much worse one are rolled back,
and no user request fails on the way."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter

import httpx
import numpy as np
import pytest
import uvicorn

from flows.rollout import rollout
from mlops_core.catalog import RegisteredDataset
from mlops_core.registry import ModelRegistry
from mlops_core.scenarios import CREDIT_SPEC, generate_applications
from mlops_core.serving import create_app
from mlops_core.settings import Settings
from mlops_core.training import TrainingConfig, train_model

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture
def fast_rollout(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "MLOPS_ROLLOUT_STEPS": "50,100",
        "MLOPS_ROLLOUT_MIN_REQUESTS": "60",
        "MLOPS_ROLLOUT_MIN_FEEDBACK": "60",
        "MLOPS_ROLLOUT_STEP_SECONDS": "40",
        "MLOPS_ROLLOUT_MAX_P99_MS": "1000",
        "MLOPS_SERVE_POLL_SECONDS": "0.3",
    }.items():
        monkeypatch.setenv(key, value)


def register(settings: Settings, frame, *, max_iter: int = 100) -> str:
    trained = train_model(frame, CREDIT_SPEC, TrainingConfig(max_iter=max_iter))
    return ModelRegistry(settings, "credit").log_model(trained.pipeline, CREDIT_SPEC, frame).version


class Server:
    def __init__(self, app) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("the model server did not become ready")

    def __exit__(self, *_) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class Load:
    """Users sending one application each, then its true label as feedback."""

    def __init__(self, url: str, seed: int = 0) -> None:
        self.url, self.stop = url, threading.Event()
        frame = generate_applications(np.random.default_rng(seed), 4_000)
        self.labels = frame["default"].to_list()
        self.rows = frame.drop("default", "application_id", "applied_at").to_dicts()
        self.status = Counter()
        self.variants = Counter()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            i = 0
            while not self.stop.is_set():
                k = i % len(self.rows)
                answer = client.post(
                    "/predict", json={"record": self.rows[k], "routing_key": f"user-{i}"}
                )
                self.status[answer.status_code] += 1
                if answer.status_code == 200:
                    body = answer.json()
                    self.variants[body["variant"]] += 1
                    client.post(
                        "/feedback",
                        json={"request_id": body["request_id"], "label": self.labels[k]},
                    )
                i += 1

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


@pytest.fixture
def champion(settings: Settings, registered: RegisteredDataset) -> str:
    smaller = generate_applications(np.random.default_rng(1), 1_500)
    version = register(settings, smaller, max_iter=60)
    ModelRegistry(settings, "credit").promote(version)
    return version


def test_a_good_challenger_is_promoted_step_by_step(
    settings: Settings, champion: str, fast_rollout: None
) -> None:
    good = register(Settings(), generate_applications(np.random.default_rng(2), 6_000))
    current = Settings()
    with Server(create_app(current, log_traffic=False)) as server, Load(server.url) as load:
        result = rollout(dataset="credit", version=good, server_url=server.url)
    assert result["status"] == "promoted", result
    assert [s["weight"] for s in result["steps"]] == [0.5, 1.0]
    assert all(s["verdict"] == "promote" for s in result["steps"])
    assert ModelRegistry(current, "credit").aliases() == {"champion": good, "previous": champion}
    assert load.status[200] > 0 and set(load.status) == {200}, load.status
    assert load.variants["challenger"] > 0
    run = ModelRegistry(current, "credit").client.get_run(result["steps"][0]["run_id"])
    assert run.data.tags["mlops.run_type"] == "rollout"


class Raising:
    def __init__(self, model) -> None:
        self.model, self.calls = model, 0

    def predict_proba(self, frame):
        self.calls += 1
        if self.calls % 3 == 0:
            raise RuntimeError("challenger blew up")
        return self.model.predict_proba(frame)


def test_a_failing_challenger_is_rolled_back_and_no_user_sees_it(
    settings: Settings, champion: str, fast_rollout: None
) -> None:
    import mlflow

    bad = register(Settings(), generate_applications(np.random.default_rng(3), 2_000))
    current = Settings()
    mlflow.set_registry_uri(current.tracking_uri)

    def loader(version: str):
        model = mlflow.sklearn.load_model(f"models:/credit/{version}")
        return Raising(model) if version == bad else model

    with (
        Server(create_app(current, log_traffic=False, loader=loader)) as server,
        Load(server.url) as load,
    ):
        result = rollout(dataset="credit", version=bad, server_url=server.url)
    assert result["status"] == "rolled back", result
    assert "error_rate failed" in result["steps"][-1]["reasons"][0]
    assert ModelRegistry(current, "credit").aliases() == {"champion": champion}
    assert set(load.status) == {200}, f"user-facing failures: {load.status}"


def test_a_much_worse_challenger_is_rolled_back_on_feedback(
    settings: Settings, champion: str, fast_rollout: None
) -> None:
    flipped = generate_applications(np.random.default_rng(4), 3_000)
    flipped = flipped.with_columns((1 - flipped["default"]).alias("default"))
    worse = register(Settings(), flipped)
    current = Settings()
    with Server(create_app(current, log_traffic=False)) as server, Load(server.url) as load:
        result = rollout(dataset="credit", version=worse, server_url=server.url)
    assert result["status"] == "rolled back", result
    reasons = " ".join(result["steps"][-1]["reasons"])
    assert "feedback_accuracy failed" in reasons or "prediction_divergence failed" in reasons
    assert ModelRegistry(current, "credit").aliases() == {"champion": champion}
    assert set(load.status) == {200}


@pytest.mark.parametrize(
    ("mode", "status", "weights"),
    [("blue-green", "promoted", [0.0, 1.0]), ("shadow", "shadow judged", [0.0])],
)
def test_blue_green_and_shadow(
    settings: Settings,
    champion: str,
    fast_rollout: None,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    status: str,
    weights: list[float],
) -> None:
    monkeypatch.setenv("MLOPS_ROLLOUT_MODE", mode)
    good = register(Settings(), generate_applications(np.random.default_rng(2), 6_000))
    current = Settings()
    with Server(create_app(current, log_traffic=False)) as server, Load(server.url) as load:
        result = rollout(dataset="credit", version=good, server_url=server.url)
    assert result["status"] == status, result
    assert [s["weight"] for s in result["steps"]] == weights
    assert result["steps"][0]["mode"] == mode and result["steps"][0]["requests"] >= 60
    expected = (
        {"champion": good, "previous": champion} if status == "promoted" else {"champion": champion}
    )
    assert ModelRegistry(current, "credit").aliases() == expected
    assert set(load.status) == {200}
    if mode == "shadow":
        assert load.variants["challenger"] == 0, "a shadow never answers"
