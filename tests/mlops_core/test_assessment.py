"""Assessing a batch (the policy's evidence) on real MLflow, GX and the landing zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from mlops_cli.scenarios import CREDIT_SPEC, PhaseKind, generate_applications
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.context import DatasetContext
from mlops_core.adapters.registry import ModelRegistry
from mlops_core.assessment import DriftSignal, assess, paired_difference
from mlops_core.challenger import gate_challenger, gather_training_data, train_challenger
from mlops_core.holdout import decision_rows
from mlops_core.performance import predictions
from mlops_core.settings import Settings
from mlops_core.training import TrainingConfig, train_model


def first_champion(settings: Settings) -> str:
    ctx = DatasetContext.open(settings, "credit")
    data = gather_training_data(ctx, first_model=True)
    challenger = train_challenger(ctx, data)
    report = gate_challenger(ctx, challenger, data)
    assert report.passed, report.markdown()
    ModelRegistry(settings, "credit").promote(challenger.version)
    return challenger.version


def test_without_a_champion_there_is_no_performance_evidence(
    settings: Settings, registered: RegisteredDataset
) -> None:
    frame = generate_applications(np.random.default_rng(1), 300, week=1)
    result = assess(
        DatasetContext.open(settings, "credit"), frame, validation_passed=True, drift=None
    )
    assert result.champion_version is None and result.evidence.reference_accuracy is None
    assert "mlops train" in result.notes[0]


def test_assessment_of_a_degraded_labelled_batch(
    settings: Settings, registered: RegisteredDataset
) -> None:
    first_champion(settings)
    frame = generate_applications(
        np.random.default_rng(2), 1_500, week=3, kind=PhaseKind.concept_drift
    )
    result = assess(
        DatasetContext.open(settings, "credit"), frame, validation_passed=True, drift=None
    )
    evidence = result.evidence
    assert evidence.observed_degraded is True
    assert evidence.observed_accuracy < evidence.reference_accuracy - 0.05
    assert evidence.labelled_rows == 1_500
    # The observation is made on the rows that decide only, never on the gates' rows.
    ctx = DatasetContext.open(settings, "credit")
    deciding = decision_rows(frame, CREDIT_SPEC, settings.gate_holdout_fraction)
    truth = deciding["default"].to_numpy()
    predicted = predictions(ctx.champion().model, deciding, CREDIT_SPEC)[0]
    assert deciding.height < 1_200
    assert evidence.observed_accuracy == pytest.approx((predicted == truth).mean())
    assert evidence.median_training_seconds is not None and evidence.median_training_seconds > 0
    # Data time: the champion's data ends at week 0; this batch is in week 3.
    assert timedelta(days=14) < evidence.since_last_retrain < timedelta(days=28)
    # Without labels the estimate is still there, the observation is not.
    unlabelled = assess(
        DatasetContext.open(settings, "credit"),
        frame.drop("default"),
        validation_passed=True,
        drift=None,
    )
    assert unlabelled.evidence.observed_accuracy is None
    assert unlabelled.evidence.estimated_accuracy is not None


def test_failed_validation_skips_the_model_entirely(
    settings: Settings, registered: RegisteredDataset
) -> None:
    drift = DriftSignal(is_drift=True, p_value=0.001, drivers=("income",))
    ctx = DatasetContext.open(settings, "credit")
    result = assess(ctx, None, validation_passed=False, drift=drift)
    assert result.evidence.validation_passed is False and result.evidence.drift is True


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


def test_a_change_half_way_through_a_batch_is_located_and_waits_for_more_rows(
    settings: Settings, registered: RegisteredDataset
) -> None:
    import polars as pl

    from mlops_core.policy import Action, decide

    first_champion(settings)
    rng = np.random.default_rng(5)
    before = generate_applications(rng, 1_200, week=3)
    after = generate_applications(rng, 800, week=3, kind=PhaseKind.concept_drift, id_prefix="B")
    # The old concept's rows first, then the new one's: one batch, changed part-way.
    before = before.with_columns(pl.col("applied_at") - timedelta(days=7))
    frame = pl.concat([before, after])
    ctx = DatasetContext.open(settings, "credit")
    result = assess(ctx, frame, validation_passed=True, drift=None)
    evidence = result.evidence
    assert evidence.observed_degraded is True
    assert evidence.change_p_value is not None and evidence.change_p_value <= 0.05
    assert evidence.accuracy_after_change < evidence.accuracy_before_change - 0.1
    assert evidence.change_at is not None
    located = datetime.fromisoformat(evidence.change_at)
    began = after["applied_at"].min().replace(tzinfo=UTC)
    assert abs((located - began).total_seconds()) < 12 * 3600
    assert evidence.labelled_rows_since_change is not None
    assert abs(evidence.labelled_rows_since_change - after.height) < 150
    decision = decide(evidence, ctx.settings.policy_config())
    assert decision.action is Action.watch
    assert any("needed to train and gate on the new concept" in r for r in decision.reasons)
