"""Training a challenger: a scikit-learn pipeline on a window of recent and older labelled data.

The default model is a ``Pipeline`` of a ``ColumnTransformer`` (numerics as they are, missing
values left to the booster; categoricals ordinal-encoded, unseen or missing ones as -1, which the
booster treats as missing) and a ``HistGradientBoostingClassifier`` that handles the categoricals
natively. The training window is the most recent labelled rows plus a seeded sample of older
ones, so a retrain follows the new regime without forgetting the rest of the population.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from mlops_core.errors import MlopsError
from mlops_core.performance import model_input
from mlops_core.spec import DatasetSpec


class TrainingConfig(BaseModel):
    """The window and the model's hyper-parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    recent_rows: int = Field(default=2_000, ge=1, description="Newest labelled rows, all kept.")
    older_rows: int = Field(default=2_000, ge=0, description="Seeded sample of older rows.")
    holdout_fraction: float = Field(default=0.2, gt=0, lt=0.9)
    max_iter: int = Field(default=200, ge=10)
    learning_rate: float = Field(default=0.05, gt=0, le=1)
    max_leaf_nodes: int = Field(default=31, ge=2)
    seed: int = 0


def build_pipeline(spec: DatasetSpec, config: TrainingConfig | None = None) -> Any:
    """An unfitted scikit-learn pipeline for ``spec``'s features (see the module docstring)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    config = config or TrainingConfig()
    encoder = OrdinalEncoder(
        handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1
    )
    columns = ColumnTransformer(
        [("numeric", "passthrough", spec.numeric), ("categorical", encoder, spec.categorical)],
        verbose_feature_names_out=False,
    )
    mask = [False] * len(spec.numeric) + [True] * len(spec.categorical)
    booster = HistGradientBoostingClassifier(
        max_iter=config.max_iter,
        learning_rate=config.learning_rate,
        max_leaf_nodes=config.max_leaf_nodes,
        categorical_features=mask if any(mask) else None,
        random_state=config.seed,
    )
    return Pipeline([("columns", columns), ("model", booster)])


def training_window(
    batches: list[pl.DataFrame], spec: DatasetSpec, config: TrainingConfig | None = None
) -> pl.DataFrame:
    """The labelled rows to train on: the newest ``recent_rows`` and a sample of older rows.

    ``batches`` run oldest first; rows without a label are skipped.
    """
    config = config or TrainingConfig()
    target = _target(spec)
    with_labels = [b for b in batches if target in b.columns]
    # Features and label, plus the id and timestamp where every batch has them (the expectation
    # suite checks those too when the window is validated).
    columns = [c for c in spec.known_columns if all(c in b.columns for b in with_labels)]
    labelled = [b.select(columns).filter(pl.col(target).is_not_null()) for b in with_labels]
    if not labelled:
        raise MlopsError(f"no labelled rows to train on (label column {target!r})")
    frame = pl.concat(labelled, how="vertical_relaxed")
    recent = frame.tail(config.recent_rows)
    older = frame.head(max(frame.height - config.recent_rows, 0))
    if older.height > config.older_rows:
        older = older.sample(n=config.older_rows, seed=config.seed, shuffle=True)
    return pl.concat([older, recent])


@dataclass(frozen=True)
class TrainedModel:
    """A fitted pipeline with what a reviewer asks first: on what, how long, how good."""

    pipeline: Any
    train_rows: int
    holdout: pl.DataFrame
    holdout_accuracy: float
    seconds: float
    held_out: npt.NDArray[np.bool_]  # one per row of ``frame``: True where not trained on


def train_model(
    frame: pl.DataFrame,
    spec: DatasetSpec,
    config: TrainingConfig | None = None,
    *,
    weights: npt.NDArray[np.float64] | None = None,
) -> TrainedModel:
    """Fit the pipeline on ``frame`` less a seeded holdout, and measure it on that holdout.

    ``weights`` (one per row of ``frame``) weight the rows in the booster's loss.
    """
    config = config or TrainingConfig()
    target = _target(spec)
    has_label = frame[target].is_not_null().to_numpy()
    labelled = frame.filter(pl.Series(has_label))
    if labelled.height < 20 or labelled[target].n_unique() < 2:
        raise MlopsError(
            f"cannot train on {labelled.height} labelled rows with "
            f"{labelled[target].n_unique()} label value(s); need at least 20 rows and 2 labels"
        )
    rng = np.random.default_rng(config.seed)
    in_holdout = rng.random(labelled.height) < config.holdout_fraction
    train, holdout = labelled.filter(~pl.Series(in_holdout)), labelled.filter(pl.Series(in_holdout))
    pipeline = build_pipeline(spec, config)
    started = time.perf_counter()
    fit_params = {}
    if weights is not None:
        fit_params["model__sample_weight"] = np.asarray(weights)[has_label][~in_holdout]
    pipeline.fit(model_input(train, spec), train[target].to_numpy(), **fit_params)
    seconds = time.perf_counter() - started
    predicted = pipeline.predict(model_input(holdout, spec))
    accuracy = (
        float((predicted == holdout[target].to_numpy()).mean()) if holdout.height else float("nan")
    )
    held_out = np.zeros(frame.height, dtype=np.bool_)
    held_out[np.flatnonzero(has_label)[in_holdout]] = True
    return TrainedModel(pipeline, train.height, holdout, accuracy, seconds, held_out)


def _target(spec: DatasetSpec) -> str:
    if spec.target is None:
        raise MlopsError(
            f"dataset {spec.name!r} has no target in its spec, so no model can be trained"
        )
    return spec.target
