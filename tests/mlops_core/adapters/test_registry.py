"""The MLflow registry on SQLite in a temporary folder: register, promote, roll back, load."""

import numpy as np
import pytest

from mlops_cli.scenarios import CREDIT_SPEC as SPEC
from mlops_cli.scenarios import generate_applications
from mlops_core.adapters.registry import ModelRegistry
from mlops_core.errors import MlopsError
from mlops_core.performance import model_input
from mlops_core.settings import Settings
from mlops_core.training import TrainingConfig, train_model


@pytest.fixture(scope="module")
def models():
    rng = np.random.default_rng(0)
    frame = generate_applications(rng, 1_500)
    first = train_model(frame, SPEC, TrainingConfig(max_iter=20, seed=1))
    second = train_model(frame, SPEC, TrainingConfig(max_iter=40, seed=2))
    return frame, first, second


def test_register_promote_rollback_and_load(settings: Settings, models) -> None:
    frame, first, second = models
    registry = ModelRegistry(settings, "credit")
    assert registry.aliases() == {}
    v1 = registry.log_model(
        first.pipeline, SPEC, frame, metrics={"holdout_accuracy": first.holdout_accuracy}
    )
    assert (
        settings.tracking_uri.startswith("sqlite:///") and (settings.home / "mlflow.db").is_file()
    )
    assert registry.promote(v1.version) == {"champion": v1.version}
    v2 = registry.log_model(second.pipeline, SPEC, frame)
    registry.set_challenger(v2.version)
    assert registry.aliases() == {"champion": v1.version, "challenger": v2.version}
    assert registry.promote(v2.version) == {"champion": v2.version, "previous": v1.version}
    assert registry.rollback() == {"champion": v1.version, "previous": v2.version}
    champion = registry.load()
    expected = first.pipeline.predict_proba(model_input(frame.head(20), SPEC))
    assert np.allclose(champion.predict_proba(model_input(frame.head(20), SPEC)), expected)
    run = registry.client.get_run(v1.run_id)
    assert run.data.tags["mlops.run_type"] == "train" and "holdout_accuracy" in run.data.metrics
    artifacts = settings.artifacts_dir.resolve()
    assert (
        registry.client.get_experiment_by_name("credit").artifact_location
        == (artifacts / "credit").as_uri()
    )


def test_rollback_without_previous_is_a_clear_error(settings: Settings, models) -> None:
    frame, first, _ = models
    registry = ModelRegistry(settings, "credit")
    registry.promote(registry.log_model(first.pipeline, SPEC, frame).version)
    with pytest.raises(MlopsError, match="no previous champion"):
        registry.rollback()
    with pytest.raises(MlopsError, match="no challenger model yet"):
        registry.load("challenger")


def test_rollout_state_lives_in_tags(settings: Settings, models) -> None:
    frame, first, _ = models
    registry = ModelRegistry(settings, "credit")
    registry.log_model(first.pipeline, SPEC, frame)
    registry.set_tags({"mlops.rollout.stage": "canary-5", "mlops.rollout.weight": "0.05"})
    assert registry.tags()["mlops.rollout.weight"] == "0.05"


def test_the_degraded_streak_counts_labelled_decisions_below_the_line_for_one_champion(
    settings: Settings,
) -> None:
    from mlops_core.adapters.audit import record_decision
    from mlops_core.policy import Action, Decision, Evidence
    from mlops_core.tags import CHAMPION_VERSION

    registry = ModelRegistry(settings, "credit")

    def decided(version: str, degraded: bool | None) -> None:
        evidence = Evidence(validation_passed=True, observed_degraded=degraded)
        decision = Decision(action=Action.watch, reasons=("test",), evidence=evidence)
        record_decision(registry, decision, extra_tags={CHAMPION_VERSION: version})

    decided("1", True)  # another champion's: the streak stops there
    decided("2", True)
    decided("2", None)  # unlabelled: passed over
    decided("2", True)
    assert registry.degraded_streak("2") == 2
    decided("2", False)
    assert registry.degraded_streak("2") == 0
    decided("2", True)
    assert registry.degraded_streak("2") == 1
    assert registry.degraded_streak("3") == 0


def test_loading_a_model_leaves_no_mlflow_db_in_the_current_folder(
    settings: Settings, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    frame = generate_applications(np.random.default_rng(9), 400)
    trained = train_model(frame, SPEC, TrainingConfig(max_iter=10))
    registry = ModelRegistry(settings, "credit")
    version = registry.log_model(trained.pipeline, SPEC, frame).version
    registry.promote(version)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    mlflow.set_tracking_uri(None)  # as in a fresh process (`mlops serve`)
    registry.load_version(version)
    registry.load()
    assert list(elsewhere.iterdir()) == [], "MLflow wrote into the current folder"
