"""The rollout flow against a real uvicorn model server under live load (real MLflow registry):
a good challenger is promoted step by step; a failing one and a much worse one are rolled back,
and no user request fails on the way."""

from __future__ import annotations

import numpy as np
import pytest
from live import Load, Server, register

from flows.rollout import rollout
from mlops_cli.scenarios import generate_applications
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.registry import ModelRegistry
from mlops_core.serving import create_app
from mlops_core.settings import Settings

pytestmark = pytest.mark.usefixtures("prefect_api")


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
    assert result.status == "promoted", result
    assert [s.weight for s in result.steps] == [0.5, 1.0]
    assert all(s.verdict == "promote" for s in result.steps)
    assert ModelRegistry(current, "credit").aliases() == {"champion": good, "previous": champion}
    assert load.status[200] > 0 and set(load.status) == {200}, load.status
    assert load.variants["challenger"] > 0
    run = ModelRegistry(current, "credit").client.get_run(result.steps[0].run_id)
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
    assert result.status == "rolled back", result
    assert "error_rate failed" in result.steps[-1].reasons[0]
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
    assert result.status == "rolled back", result
    reasons = " ".join(result.steps[-1].reasons)
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
    assert result.status == status, result
    assert [s.weight for s in result.steps] == weights
    assert result.steps[0].mode == mode and result.steps[0].requests >= 60
    expected = (
        {"champion": good, "previous": champion} if status == "promoted" else {"champion": champion}
    )
    assert ModelRegistry(current, "credit").aliases() == expected
    assert set(load.status) == {200}
    if mode == "shadow":
        assert load.variants["challenger"] == 0, "a shadow never answers"
