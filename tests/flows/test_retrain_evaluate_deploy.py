"""The gated subflow on real MLflow (SQLite in a temporary folder) and a real Prefect server."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from live import land_processed
from mlflow.tracking import MlflowClient

from flows.process_batch import process_batch
from flows.retrain_evaluate_deploy import retrain_evaluate_deploy
from mlops_cli.scenarios import PhaseKind, generate_applications
from mlops_core.adapters.audit import record_manual
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.landing import LandingZone
from mlops_core.adapters.registry import ModelRegistry
from mlops_core.batches import BatchState
from mlops_core.data import sha256_file
from mlops_core.settings import Settings

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_first_champion_is_trained_gated_and_recorded(
    settings: Settings, registered: RegisteredDataset
) -> None:
    registry = ModelRegistry(settings, "credit")
    decision = record_manual(
        ModelRegistry(settings, "credit"), "retrain", reason="first model", before={}
    )
    outcome = retrain_evaluate_deploy(dataset="credit", decision_run_id=decision)
    assert outcome.status == "promoted", outcome.reason
    assert registry.aliases() == {"champion": outcome.version}
    assert outcome.champion_before is None and outcome.champion_after == outcome.version

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    train_run = client.get_run(outcome.train_run_id)
    assert train_run.data.tags["mlops.run_type"] == "train"
    assert train_run.data.tags["mlflow.parentRunId"] == decision
    inputs = train_run.inputs.dataset_inputs
    assert [i.dataset.digest for i in inputs] == [sha256_file(registered.reference_path)[:36]]
    assert {"training_seconds", "holdout_accuracy"} <= set(train_run.data.metrics)
    evaluate_run = client.get_run(outcome.evaluate_run_id)
    assert evaluate_run.data.tags["mlops.run_type"] == "evaluate"
    assert evaluate_run.data.tags["mlops.gates"] == "passed"
    version_tags = registry.version_tags(outcome.version)
    assert version_tags["mlops.gate_run_id"] == outcome.evaluate_run_id
    assert version_tags["mlops.decision_run_id"] == decision
    assert version_tags["mlops.train_run_id"] == outcome.train_run_id
    decision_run = client.get_run(decision)
    assert decision_run.data.tags["mlops.retrain"] == "promoted"
    names = {a.path for a in client.list_artifacts(decision)}
    assert {"gate_report.md", "retrain.json", "decision.md"} <= names


def test_a_worse_challenger_is_refused_and_the_champion_stays(
    settings: Settings,
    registered: RegisteredDataset,
    tmp_path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = retrain_evaluate_deploy(dataset="credit")
    assert first.status == "promoted"
    land_processed(
        settings,
        tmp_path,
        generate_applications(np.random.default_rng(5), 1_000, week=1),
        "recent.parquet",
    )
    # Deliberately worse: a handful of boosting rounds on a tiny window.
    monkeypatch.setenv("MLOPS_TRAIN_MAX_ITER", "10")
    monkeypatch.setenv("MLOPS_TRAIN_RECENT_ROWS", "60")
    monkeypatch.setenv("MLOPS_TRAIN_OLDER_ROWS", "0")
    outcome = retrain_evaluate_deploy(dataset="credit", batch_sha256="c" * 64)
    assert outcome.status == "refused", outcome.reason
    assert "primary" in outcome.reason
    registry = ModelRegistry(settings, "credit")
    assert registry.aliases() == {"champion": first.version}, "nothing but the champion moved"
    assert registry.version_tags(outcome.version)["mlops.gates"] == "failed"
    failed = {g.name for g in outcome.gates.gates if not g.passed}
    assert "primary" in failed


def test_a_training_failure_leaves_the_champion_untouched(
    settings: Settings,
    registered: RegisteredDataset,
    tmp_path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = retrain_evaluate_deploy(dataset="credit")
    frame = generate_applications(np.random.default_rng(6), 600, week=1).with_columns(
        pl.lit(0, dtype=pl.Int64).alias("default")
    )
    land_processed(settings, tmp_path, frame, "one-label.parquet")
    # Train only on the newest rows, which all carry one label: the booster cannot be fitted.
    monkeypatch.setenv("MLOPS_TRAIN_RECENT_ROWS", "300")
    monkeypatch.setenv("MLOPS_TRAIN_OLDER_ROWS", "0")
    decision = record_manual(ModelRegistry(settings, "credit"), "retrain", reason="test", before={})
    outcome = retrain_evaluate_deploy(
        dataset="credit", batch_sha256="d" * 64, decision_run_id=decision
    )
    assert outcome.status == "failed" and outcome.reason.startswith("training failed")
    assert "2 labels" in outcome.reason
    assert ModelRegistry(settings, "credit").aliases() == {"champion": first.version}
    run = MlflowClient(tracking_uri=settings.tracking_uri).get_run(decision)
    assert run.data.tags["mlops.retrain"] == "failed"
    assert "training failed" in run.data.tags["mlops.retrain_reason"]


def test_mlflow_unreachable_changes_nothing(
    settings: Settings, registered: RegisteredDataset, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = retrain_evaluate_deploy(dataset="credit")
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the MLflow database's folder should be")
    monkeypatch.setenv("MLOPS_MLFLOW_TRACKING_URI", f"sqlite:///{blocked}/mlflow.db")
    outcome = retrain_evaluate_deploy(dataset="credit", batch_sha256="e" * 64)
    assert outcome.status == "failed"
    monkeypatch.delenv("MLOPS_MLFLOW_TRACKING_URI")
    assert ModelRegistry(settings, "credit").aliases() == {"champion": first.version}


def test_concept_drift_batch_leads_to_a_promoted_challenger(
    settings: Settings, registered: RegisteredDataset, tmp_path
) -> None:
    """The whole batch pipeline: labelled concept-drift batch -> retrain -> gates -> champion."""
    first = retrain_evaluate_deploy(dataset="credit")
    rng = np.random.default_rng(21)
    frame = generate_applications(rng, 3_000, week=20, kind=PhaseKind.concept_drift)
    path = tmp_path / "concept.parquet"
    frame.write_parquet(path)
    sha = LandingZone(settings).submit(path, "credit").entry.sha256
    outcome = process_batch(dataset="credit", sha256=sha)
    assert outcome.state is BatchState.processed
    assert outcome.decision.action == "retrain", outcome.decision.reasons
    assert "observed accuracy" in outcome.decision.reasons[0]
    assert outcome.retrain.status == "promoted", outcome.retrain.reason
    aliases = ModelRegistry(settings, "credit").aliases()
    assert aliases == {"champion": outcome.retrain.version, "previous": first.version}

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    decision_run = client.get_run(outcome.decision_run_id)
    assert decision_run.data.tags["mlops.batch_sha256"] == sha
    assert decision_run.data.tags["mlops.decision"] == "retrain"
    train_run = client.get_run(outcome.retrain.train_run_id)
    assert train_run.data.tags["mlflow.parentRunId"] == outcome.decision_run_id
    assert sha[:36] in {i.dataset.digest for i in train_run.inputs.dataset_inputs}
    # What the retrain recovered is recorded for the cost-benefit of later decisions.
    gates = outcome.retrain.gates
    gain = client.get_run(outcome.decision_run_id).data.metrics["retrain_accuracy_gain"]
    assert gain == pytest.approx(gates.challenger_accuracy - gates.champion_accuracy) and gain > 0
    recoveries = ModelRegistry(settings, "credit").past_recoveries()
    assert len(recoveries) == 1 and 0 < recoveries[0] <= 1
