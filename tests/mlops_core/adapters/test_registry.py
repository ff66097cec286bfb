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


def test_experiments_are_model_development_and_train_runs_are_named(
    settings: Settings, models
) -> None:
    """MLflow 3 offers an unmarked experiment as GenAI (traces, token usage): ours are marked as
    model development, also an existing one an older installation made; train runs are named
    for the model version and the file that called for them."""
    from mlops_core.adapters.audit import record_decision
    from mlops_core.policy import Evidence, decide

    frame, first, _ = models
    registry = ModelRegistry(settings, "credit")
    old = registry.client.create_experiment("legacy")  # as MLflow makes it: no kind
    assert "mlflow.experimentKind" not in registry.client.get_experiment(old).tags
    assert ModelRegistry(settings, "legacy").experiment_id() == old
    assert registry.client.get_experiment(old).tags["mlflow.experimentKind"] == (
        "custom_model_development"
    )
    experiment = registry.client.get_experiment(registry.experiment_id())
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    reference = registry.log_model(first.pipeline, SPEC, frame)
    assert registry.client.get_run(reference.run_id).info.run_name == "train-credit-v1 · reference"
    decision = decide(Evidence(validation_passed=True, drift=True))
    parent = record_decision(
        registry, decision, batch_sha256="d" * 64, original_name="batch-19-week19.csv"
    )
    after = registry.log_model(
        first.pipeline, SPEC, frame, tags={"mlops.batch_sha256": "d" * 64}, parent_run_id=parent
    )
    named = registry.client.get_run(after.run_id).info.run_name
    assert named == "train-credit-v2 · batch-19-week19.csv", named
    orphan = registry.log_model(first.pipeline, SPEC, frame, tags={"mlops.batch_sha256": "e" * 64})
    assert registry.client.get_run(orphan.run_id).info.run_name == f"train-credit-v3 · {'e' * 12}"


def test_mlflow_ui_links_open_in_machine_learning_mode() -> None:
    from mlops_core.reporting import mlflow_ui_link

    assert (
        mlflow_ui_link("http://127.0.0.1:5000/", "experiments/3/runs/abc")
        == "http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    )
