"""Synthetic tables with known drift for ``benchmarks/drift_quality.py``: shapes, scenarios, label.

A table of a given ``Shape`` has ``numeric`` standard normal features (``x00``, ``x01``, ...) and
``categorical`` features (``c0``, ``c1``, ...) with levels a/b/c/d at shares 0.4/0.3/0.2/0.1, plus
a binary label ``y`` drawn from a logistic model of a few features::

    logit P(y = 1) = -0.3 + 1.5 x02 - 1.0 x04 + 0.8 x06 + 0.6 [c1 = a]

The features are drawn exactly as ``common.table20`` draws them (same generator calls in the same
order), so for the 20-feature shape a seed gives the same features as the earlier version of the
benchmark; the label and the missing-value mask come from a second generator, so they never
move the features.

A scenario changes the batch only (the reference is always the undrifted table):

* an input change: a mean shift, a variance change, a correlation between ``x00`` and ``x01``
  (marginals unchanged), other category shares in ``c0``, a share of missing values in one
  feature (present values unchanged);
* a concept change: the inputs keep their distribution, the label's relation to them changes (the
  coefficient of ``x06`` flips from +0.8 to -0.8; the Bayes classifier's accuracy falls from about
  0.78 to about 0.67). Input-drift tests must stay at their false-alarm rate; the labelled
  accuracy check (``mlops_core.performance.evaluate_performance``) must fire.

The label ignores ``x03`` (mean shift), ``x05`` (variance), ``x07`` (missing values), ``x15``
(harmless shift), ``x01`` (correlation) and ``c0`` (category shares): every input change here is
covariate shift that leaves the model's accuracy where it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
from common import draw_features

from mlops_core.spec import DatasetSpec, FeatureType

TARGET = "y"
INTERCEPT = -0.3
COEFFICIENTS = {"x02": 1.5, "x04": -1.0, "x06": 0.8}
CATEGORY_EFFECT = ("c1", "a", 0.6)  # +0.6 on the logit when c1 == "a"
CONCEPT_COEFFICIENTS = {**COEFFICIENTS, "x06": -0.8}


@dataclass(frozen=True)
class Shape:
    """How many numeric and categorical features a table has."""

    name: str
    numeric: int
    categorical: int

    @property
    def numeric_names(self) -> list[str]:
        """``x00``, ``x01``, ... (the names ``common.table20`` uses for 16 numerics)."""
        return [f"x{i:02d}" for i in range(self.numeric)]

    @property
    def categorical_names(self) -> list[str]:
        """``c0``, ``c1``, ..."""
        return [f"c{i}" for i in range(self.categorical)]

    @property
    def features(self) -> int:
        """The number of features (the label is not one)."""
        return self.numeric + self.categorical

    @property
    def spec(self) -> DatasetSpec:
        """The dataset spec: every feature with its type, and ``y`` as the target."""
        return DatasetSpec(
            name=f"bench-{self.name}",
            target=TARGET,
            features={
                **dict.fromkeys(self.numeric_names, FeatureType.numeric),
                **dict.fromkeys(self.categorical_names, FeatureType.categorical),
            },
        )


NARROW = Shape("20", numeric=16, categorical=4)  # the features of common.table20
WIDE = Shape("100", numeric=80, categorical=20)


@dataclass(frozen=True)
class Scenario:
    """One batch-generating change, and what a monitor should do about it."""

    name: str
    description: str
    change: dict[str, Any] = field(default_factory=dict)
    shape: Shape = NARROW
    concept: bool = False  # does P(y | inputs) change?
    null: bool = False  # the false-alarm scenario of its shape (gets the null trial count)

    @property
    def input_drift(self) -> bool:
        """Do the inputs' distribution change? (Every scenario with a ``change`` does.)"""
        return bool(self.change)

    @property
    def kind(self) -> str:
        """What the input-drift alarm rate measures here: ``detection`` or ``false_alarm``."""
        return "detection" if self.input_drift else "false_alarm"


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("no_drift", "no drift, 20 features", null=True),
        Scenario("mean_shift_0.3sd", "mean shift 0.3 sd in 1 of 20", {"mean_shift": (3, 0.3)}),
        Scenario("correlation_0_to_0.5", "correlation x00-x01 0 -> 0.5", {"correlation": 0.5}),
        Scenario("correlation_0_to_0.8", "correlation x00-x01 0 -> 0.8", {"correlation": 0.8}),
        Scenario(
            "category_shares",
            "c0 shares .4/.3/.2/.1 -> .25/.3/.2/.25",
            {"shares": [0.25, 0.3, 0.2, 0.25]},
        ),
        Scenario("variance_x1.5", "sd 1 -> 1.5 in 1 of 20", {"scale": (5, 1.5)}),
        Scenario(
            "harmless_shift_0.5sd",
            "0.5 sd shift in x15 (label ignores it)",
            {"mean_shift": (15, 0.5)},
        ),
        Scenario(
            "missing_0_to_15pct", "x07: 0% -> 15% missing, values unchanged", {"missing": (7, 0.15)}
        ),
        Scenario("concept_drift", "x06 coefficient +0.8 -> -0.8, inputs unchanged", concept=True),
        Scenario("wide100_no_drift", "no drift, 100 features", shape=WIDE, null=True),
        Scenario(
            "wide100_mean_shift_0.3sd",
            "mean shift 0.3 sd in 1 of 100",
            {"mean_shift": (3, 0.3)},
            shape=WIDE,
        ),
    )
}


def _logit(frame: pl.DataFrame, coefficients: dict[str, float]) -> npt.NDArray[np.float64]:
    column, level, effect = CATEGORY_EFFECT
    logit = np.full(frame.height, INTERCEPT)
    for name, coefficient in coefficients.items():
        logit += coefficient * frame[name].fill_null(0.0).to_numpy()
    logit += effect * (frame[column] == level).to_numpy()
    return logit


def make_table(
    n: int,
    rng: np.random.Generator,
    aux: np.random.Generator,
    shape: Shape = NARROW,
    change: dict[str, Any] | None = None,
    *,
    concept: bool = False,
) -> pl.DataFrame:
    """``n`` rows of ``shape`` with the label ``y``; ``change`` applies a scenario's input drift.

    ``rng`` draws the features (as ``common.table20`` does for 16 + 4); ``aux`` draws the label
    and the missing-value mask. ``concept`` draws the label from the changed relation.
    """
    change = change or {}
    columns = draw_features(
        n, rng, list(shape.numeric_names), list(shape.categorical_names), change
    )
    frame = pl.DataFrame(columns)
    coefficients = CONCEPT_COEFFICIENTS if concept else COEFFICIENTS
    probability = 1.0 / (1.0 + np.exp(-_logit(frame, coefficients)))
    frame = frame.with_columns(pl.Series(TARGET, (aux.random(n) < probability).astype(np.int64)))
    if "missing" in change:  # missing completely at random; the label was drawn before
        column, share = change["missing"]
        name = shape.numeric_names[column]
        hidden = aux.random(n) < share
        frame = frame.with_columns(
            pl.when(pl.Series(hidden)).then(None).otherwise(pl.col(name)).alias(name)
        )
    return frame


def draw_pair(n: int, seed: int, scenario: Scenario) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A fresh (reference, batch) pair of ``n`` rows each for ``scenario``, from ``seed``."""
    rng = np.random.default_rng(seed)
    aux = np.random.default_rng([seed, 1])
    reference = make_table(n, rng, aux, scenario.shape)
    current = make_table(n, rng, aux, scenario.shape, scenario.change, concept=scenario.concept)
    return reference, current


def train_model(shape: Shape, rows: int, seed: int) -> Any:
    """A classifier of ``y`` trained on ``rows`` fresh reference-distribution rows of ``shape``.

    scikit-learn: mean imputation and scaling of the numerics, one-hot categoricals (unseen levels
    ignored), logistic regression -- the label's own model family, so it is well specified.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from mlops_core.performance import model_input

    spec = shape.spec
    frame = make_table(rows, np.random.default_rng(seed), np.random.default_rng([seed, 1]), shape)
    columns = ColumnTransformer(
        [
            ("numeric", make_pipeline(SimpleImputer(), StandardScaler()), spec.numeric),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), spec.categorical),
        ]
    )
    model = Pipeline([("columns", columns), ("classifier", LogisticRegression(max_iter=1_000))])
    return model.fit(model_input(frame, spec), frame[TARGET].to_numpy())
