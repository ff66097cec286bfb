"""Training: the default pipeline learns the non-linear relation; the window is what it says."""

import numpy as np
import polars as pl
import pytest

from mlops_cli.scenarios import CREDIT_SPEC as SPEC
from mlops_cli.scenarios import PhaseKind, generate_applications
from mlops_core.errors import MlopsError
from mlops_core.performance import model_input
from mlops_core.training import TrainingConfig, train_model, training_window


def test_default_pipeline_learns_the_relation() -> None:
    from sklearn.metrics import roc_auc_score

    frame = generate_applications(np.random.default_rng(0), 6_000)
    trained = train_model(frame, SPEC)
    majority = 1 - trained.holdout["default"].mean()
    assert trained.holdout_accuracy >= majority  # defaults are rare: accuracy alone says little
    scores = trained.pipeline.predict_proba(model_input(trained.holdout, SPEC))[:, 1]
    assert (
        roc_auc_score(trained.holdout["default"].to_numpy(), scores) > 0.68
    )  # label noise caps it near 0.72
    assert trained.train_rows + trained.holdout.height == 6_000
    assert 0.1 < trained.holdout.height / 6_000 < 0.3


def test_unseen_categories_and_missing_values_are_predicted() -> None:
    trained = train_model(
        generate_applications(np.random.default_rng(1), 2_000), SPEC, TrainingConfig(max_iter=30)
    )
    odd = generate_applications(np.random.default_rng(2), 10).with_columns(
        pl.lit("crypto").alias("purpose"), pl.lit(None, dtype=pl.Float64).alias("income")
    )
    probabilities = trained.pipeline.predict_proba(model_input(odd, SPEC))
    assert probabilities.shape == (10, 2) and np.isfinite(probabilities).all()


def test_window_keeps_recent_rows_and_samples_older_ones() -> None:
    rng = np.random.default_rng(3)
    batches = [generate_applications(rng, 1_000, week=w, id_prefix=f"W{w}") for w in range(5)]
    batches[-1] = batches[-1].with_columns(
        pl.lit(None, dtype=pl.Int64).alias("default")
    )  # not labelled yet
    config = TrainingConfig(recent_rows=1_500, older_rows=600)
    window = training_window(batches, SPEC, config)
    assert window.height == 2_100
    assert window.tail(1_500).equals(
        pl.concat([b.select(window.columns) for b in batches[:4]]).tail(1_500)
    )
    assert window["default"].null_count() == 0


def test_retraining_on_the_new_regime_recovers_accuracy() -> None:
    rng = np.random.default_rng(4)
    old = train_model(generate_applications(rng, 5_000), SPEC)
    new_regime = generate_applications(rng, 5_000, kind=PhaseKind.concept_drift)
    retrained = train_model(new_regime, SPEC)
    test = generate_applications(rng, 2_000, kind=PhaseKind.concept_drift)

    def accuracy(model) -> float:
        return (
            model.pipeline.predict(model_input(test, SPEC)) == test["default"].to_numpy()
        ).mean()

    assert accuracy(retrained) > accuracy(old) + 0.05


def test_too_little_or_unlabelled_data_is_a_clear_error() -> None:
    frame = generate_applications(np.random.default_rng(5), 10)
    with pytest.raises(MlopsError, match="need at least 20 rows"):
        train_model(frame, SPEC)
    with pytest.raises(MlopsError, match="no labelled rows"):
        training_window([frame.drop("default")], SPEC)
