"""Evidence gathering and training data on real MLflow, GX and the landing zone."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from mlops_cli.scenarios import CREDIT_SPEC, PhaseKind, generate_applications
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.landing import LandingZone
from mlops_core.adapters.registry import ModelRegistry
from mlops_core.batches import BatchState
from mlops_core.lifecycle import (
    assess,
    data_time,
    gate_challenger,
    gather_training_data,
    paired_difference,
    train_challenger,
)
from mlops_core.settings import Settings
from mlops_core.training import TrainingConfig, train_model


def first_champion(settings: Settings) -> str:
    data = gather_training_data(settings, "credit", first_model=True)
    challenger = train_challenger(settings, "credit", data)
    report = gate_challenger(settings, "credit", challenger, data)
    assert report.passed, report.markdown()
    ModelRegistry(settings, "credit").promote(challenger.version)
    return challenger.version


def settle(settings: Settings, tmp_path, frame: pl.DataFrame, name: str) -> str:
    path = tmp_path / name
    frame.write_parquet(path)
    zone = LandingZone(settings)
    sha = zone.submit(path, "credit").entry.sha256
    zone.claim("credit", sha)
    zone.settle("credit", sha, BatchState.processed, {})
    return sha


def test_without_a_champion_there_is_no_performance_evidence(
    settings: Settings, registered: RegisteredDataset
) -> None:
    frame = generate_applications(np.random.default_rng(1), 300, week=1)
    result = assess(settings, "credit", frame, validation_passed=True, drift=None)
    assert result.champion_version is None and result.evidence.reference_accuracy is None
    assert "mlops train" in result.notes[0]


def test_assessment_of_a_degraded_labelled_batch(
    settings: Settings, registered: RegisteredDataset
) -> None:
    first_champion(settings)
    frame = generate_applications(
        np.random.default_rng(2), 1_500, week=3, kind=PhaseKind.concept_drift
    )
    result = assess(settings, "credit", frame, validation_passed=True, drift=None)
    evidence = result.evidence
    assert evidence.observed_degraded is True
    assert evidence.observed_accuracy < evidence.reference_accuracy - 0.05
    assert evidence.labelled_rows == 1_500
    assert evidence.median_training_seconds is not None and evidence.median_training_seconds > 0
    # Data time: the champion's data ends at week 0; this batch is in week 3.
    assert timedelta(days=14) < evidence.since_last_retrain < timedelta(days=28)
    # Without labels the estimate is still there, the observation is not.
    unlabelled = assess(
        settings, "credit", frame.drop("default"), validation_passed=True, drift=None
    )
    assert unlabelled.evidence.observed_accuracy is None
    assert unlabelled.evidence.estimated_accuracy is not None


def test_failed_validation_skips_the_model_entirely(
    settings: Settings, registered: RegisteredDataset
) -> None:
    drift = {"is_drift": True, "p_value": 0.001, "drivers": ["income"]}
    result = assess(settings, "credit", None, validation_passed=False, drift=drift)
    assert result.evidence.validation_passed is False and result.evidence.drift is True


def test_training_data_holds_out_the_newest_batch_and_keeps_lineage(
    settings: Settings, registered: RegisteredDataset, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    older = settle(
        settings,
        tmp_path,
        generate_applications(np.random.default_rng(3), 800, week=1),
        "a.parquet",
    )
    newest_frame = generate_applications(np.random.default_rng(4), 1_000, week=2)
    newest = settle(settings, tmp_path, newest_frame, "b.parquet")
    monkeypatch.setenv("MLOPS_TRAIN_RECENT_ROWS", "500")
    monkeypatch.setenv("MLOPS_TRAIN_OLDER_ROWS", "400")
    data = gather_training_data(Settings(), "credit")
    assert [i.sha256 for i in data.lineage][1:] == [older, newest]
    ids = set(data.gate_holdout["application_id"])
    assert ids <= set(newest_frame["application_id"]) and 200 < len(ids) < 400
    assert not ids & set(data.window["application_id"]), "gate rows never train"
    assert data.window.height == 900
    assert data.data_until == data_time(newest_frame, CREDIT_SPEC)


def test_paired_difference_sees_a_worse_model() -> None:
    frame = generate_applications(np.random.default_rng(5), 2_000)
    good = train_model(frame, CREDIT_SPEC, TrainingConfig(max_iter=100)).pipeline
    other_world = generate_applications(
        np.random.default_rng(7), 2_000, kind=PhaseKind.concept_drift
    )
    poor = train_model(other_world, CREDIT_SPEC, TrainingConfig(max_iter=100)).pipeline
    test = generate_applications(np.random.default_rng(6), 1_500)
    diff, high = paired_difference(poor, good, test, CREDIT_SPEC)
    assert diff < 0 and high < 0
    same, same_high = paired_difference(good, good, test, CREDIT_SPEC)
    assert same == 0 and same_high == 0
