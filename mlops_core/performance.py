"""How well the champion does: measured when labels exist, estimated (CBPE) when they do not.

* ``evaluate_performance`` -- concept drift: the model's accuracy on a labelled batch against its
  accuracy on the reference holdout, with a percentile bootstrap confidence interval of the
  difference (the two samples resampled independently). "Degraded" when the drop exceeds the
  threshold (default 5 percentage points) *and* the interval excludes zero.
* ``PerformanceEstimator`` -- confidence-based performance estimation, as NannyML's CBPE: on the
  labelled reference holdout, isotonic regression maps the model's class scores to the
  probability of each class, hence to the probability that the prediction is right. On an
  unlabelled batch, the mean of those calibrated probabilities estimates the accuracy. It is
  valid while P(label | features) is unchanged (covariate shift), which is exactly what tells
  harmful drift (estimate falls) from harmless drift (estimate holds); concept drift needs labels.

  Its interval counts both of its errors. The batch's own noise: given the calibrated
  probabilities c, the realised accuracy is a mean of independent Bernoulli outcomes, variance
  sum c(1-c) / n^2. And the calibrator's error, which dominates for small holdouts: the
  calibrators are refitted on ``CALIBRATION_BOOTSTRAPS`` resamples of half the holdout, each
  estimates the batch, and the variance of those estimates, scaled by one half, is added (the
  m-out-of-n bootstrap: the plain bootstrap underestimates an isotonic fit's variability, Sen,
  Banerjee and Woodroofe, Ann. Stat. 2010). Isotonic fits are also biased where blocks are pure
  (all right or all wrong at the extremes), so the interval is widened by the bootstrap's
  estimate of that bias. (The Bernoulli term alone covered the realised accuracy 60% of the time
  with a 600-row holdout, for a nominal 95%; see ``benchmarks/estimation.py`` for ours now.)
  The estimate also says how far it can be trusted: ``holdout_coverage`` is the share of the
  batch's rows whose scores lie inside the range the holdout saw; outside it the calibrator
  extrapolates a constant, and the estimate warns.
  The calibrators map class scores, not the top confidence alone (see ``PerformanceEstimator``).
  The point estimate uses the simplest map that fits the holdout out of fold as well as the
  others, within a standard error (``choose_calibrator``): the model's own scores, Platt's
  logistic map, or isotonic regression. A model that is calibrated already then keeps an
  estimate free of an isotonic fit's noise (in ``benchmarks/estimation.py``, the mean absolute
  error with a 600-row holdout fell from 0.015 to 0.009-0.011); the interval stays the isotonic
  one, which holds whichever map is chosen.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import BaseModel, ConfigDict

from mlops_core.errors import UnusableInputError
from mlops_core.spec import DatasetSpec

CALIBRATION_BOOTSTRAPS = 200
"""Calibrators refitted on half-size resamples of the holdout, for the calibrator's error."""
MAX_BOOTSTRAP_ROWS = 20_000
"""Batch rows the resampled calibrators are evaluated on (a seeded sample beyond this)."""
MIN_HOLDOUT_COVERAGE = 0.95
"""Below this share of a batch's rows inside the holdout's confidence range, the estimate warns."""


class Classifier(Protocol):
    """What a model must offer: scikit-learn's ``predict_proba`` on a pandas frame of features."""

    def predict_proba(self, features: Any) -> Any:
        """Per row, the probability of each class (columns in the order of ``classes_``)."""
        ...


def features(frame: pl.DataFrame, spec: DatasetSpec) -> pl.DataFrame:
    """The spec's features of ``frame``, numerics as float and categoricals as text: one schema
    whatever the file's dtypes, so frames of several batches concatenate."""
    missing = [c for c in spec.features if c not in frame.columns]
    if missing:
        raise UnusableInputError(f"batch lacks feature column(s): {', '.join(missing)}")
    return frame.select(
        [pl.col(c).cast(pl.Float64) for c in spec.numeric]
        + [pl.col(c).cast(pl.String) for c in spec.categorical]
    )


def model_input(frame: pl.DataFrame, spec: DatasetSpec) -> Any:
    """The model's input: the spec's features as pandas, numerics as float, categoricals as text."""
    return features(frame, spec).to_pandas()


def predictions(
    model: Classifier, frame: pl.DataFrame, spec: DatasetSpec
) -> tuple[npt.NDArray[Any], npt.NDArray[np.float64]]:
    """The predicted class of each row and the model's confidence in it (its top probability)."""
    probabilities = np.asarray(model.predict_proba(model_input(frame, spec)), dtype=np.float64)
    classes = np.asarray(getattr(model, "classes_", np.arange(probabilities.shape[1])))
    top = probabilities.argmax(axis=1)
    return classes[top], probabilities[np.arange(len(top)), top]


def _correct(
    model: Classifier, frame: pl.DataFrame, spec: DatasetSpec, what: str
) -> npt.NDArray[np.float64]:
    if spec.target is None or spec.target not in frame.columns:
        raise UnusableInputError(f"{what} has no label column {spec.target!r}")
    labelled = frame.filter(pl.col(spec.target).is_not_null())
    if labelled.height == 0:
        raise UnusableInputError(f"{what} has no labelled rows")
    predicted, _ = predictions(model, labelled, spec)
    truth = labelled[spec.target].to_numpy()
    right = predicted.astype(truth.dtype, copy=False) == truth
    correct: npt.NDArray[np.float64] = right.astype(np.float64)
    return correct


class PerformanceReport(BaseModel):
    """Observed accuracy on a labelled batch against the reference holdout."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: str = "accuracy"
    reference: float
    current: float
    difference: float
    ci_low: float
    ci_high: float
    confidence: float
    threshold: float
    degraded: bool
    reference_rows: int
    current_rows: int
    bootstraps: int

    def summary(self) -> str:
        """One line a person reads: accuracy against the reference, its interval, the verdict."""
        state = "degraded" if self.degraded else "holding"
        return (
            f"accuracy {self.current:.3f} vs {self.reference:.3f} on the reference holdout "
            f"({self.difference:+.3f}, {100 * self.confidence:g}% CI [{self.ci_low:+.3f}, "
            f"{self.ci_high:+.3f}]): {state}"
        )


def evaluate_performance(
    model: Classifier,
    labelled: pl.DataFrame,
    holdout: pl.DataFrame,
    spec: DatasetSpec,
    *,
    threshold: float = 0.05,
    bootstraps: int = 1_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PerformanceReport:
    """Concept drift check: has accuracy on ``labelled`` dropped from that on ``holdout``?"""
    reference = _correct(model, holdout, spec, "reference holdout")
    current = _correct(model, labelled, spec, "labelled batch")
    rng = np.random.default_rng(seed)
    ref_means = reference[rng.integers(0, reference.size, (bootstraps, reference.size))].mean(
        axis=1
    )
    cur_means = current[rng.integers(0, current.size, (bootstraps, current.size))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(cur_means - ref_means, [tail, 1 - tail])
    difference = float(current.mean() - reference.mean())
    return PerformanceReport(
        reference=float(reference.mean()),
        current=float(current.mean()),
        difference=difference,
        ci_low=float(low),
        ci_high=float(high),
        confidence=confidence,
        threshold=threshold,
        degraded=bool(-difference > threshold and high < 0),
        reference_rows=int(reference.size),
        current_rows=int(current.size),
        bootstraps=bootstraps,
    )


class PerformanceEstimate(BaseModel):
    """Estimated accuracy on an unlabelled batch (CBPE), beside the reference accuracy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: str = "CBPE"
    estimated_accuracy: float
    ci_low: float
    ci_high: float
    confidence: float
    reference_accuracy: float
    rows: int
    sampling_se: float | None = None
    calibration_se: float | None = None
    calibration_bias: float | None = None
    holdout_coverage: float | None = None
    calibrator: str | None = None
    warning: str | None = None

    @property
    def expected_drop(self) -> float:
        """How far the estimate falls below the reference accuracy (negative: above it)."""
        return self.reference_accuracy - self.estimated_accuracy

    def summary(self) -> str:
        """One line a person reads: the estimate, its interval, and the reference accuracy."""
        line = (
            f"estimated accuracy {self.estimated_accuracy:.3f} [{self.ci_low:.3f}, {self.ci_high:.3f}] "
            f"vs {self.reference_accuracy:.3f} on the reference holdout"
        )
        return f"{line}; {self.warning}" if self.warning else line


Steps = list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]
"""Isotonic calibrators as step functions, one per calibrated class: thresholds and values."""

Calibration = Literal["auto", "identity", "platt", "isotonic"]
CANDIDATES: tuple[str, ...] = ("identity", "platt", "isotonic")
"""The calibrators ``auto`` chooses among, simplest first (the one-standard-error rule's order)."""
SELECTION_FOLDS = 5
_EPSILON = 1e-6


def _isotonic_steps(scores: npt.NDArray[np.float64], hits: npt.NDArray[np.float64]) -> Steps:
    """One isotonic calibrator per score column: P(the row is that class | its score)."""
    from sklearn.isotonic import IsotonicRegression

    steps = []
    for k in range(scores.shape[1]):
        calibrator = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        calibrator.fit(scores[:, k], hits[:, k])
        steps.append((calibrator.X_thresholds_, calibrator.y_thresholds_))
    return steps


def _logit(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    p = np.clip(p, _EPSILON, 1 - _EPSILON)
    return np.asarray(np.log(p / (1 - p)))


def _platt(
    scores: npt.NDArray[np.float64], hits: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Per score column, the intercept and slope of a logistic fit on the score's logit (Platt)."""
    from sklearn.linear_model import LogisticRegression

    params = np.zeros((scores.shape[1], 2))
    for k in range(scores.shape[1]):
        if hits[:, k].min() == hits[:, k].max():  # one outcome only: a constant
            params[k] = (_logit(np.array([hits[0, k]]))[0], 0.0)
            continue
        fitted = LogisticRegression(C=1e4).fit(_logit(scores[:, k])[:, None], hits[:, k])
        params[k] = (fitted.intercept_[0], fitted.coef_[0, 0])
    return params


def _fit(kind: str, scores: npt.NDArray[np.float64], hits: npt.NDArray[np.float64]) -> Any:
    if kind == "isotonic":
        return _isotonic_steps(scores, hits)
    if kind == "platt":
        return _platt(scores, hits)
    return None


def _calibrate(kind: str, fitted: Any, scores: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The score columns mapped by a fitted calibrator of ``kind``.

    np.interp evaluates an isotonic step function exactly as ``IsotonicRegression.predict`` does
    (constant beyond the fitted range).
    """
    if kind == "isotonic":
        return np.column_stack([np.interp(scores[:, k], x, y) for k, (x, y) in enumerate(fitted)])
    if kind == "platt":
        return np.asarray(1 / (1 + np.exp(-(fitted[:, 0] + fitted[:, 1] * _logit(scores)))))
    return scores


def _right(
    calibrated: npt.NDArray[np.float64], predicted: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Per row, the calibrated probability that its predicted class is right.

    Binary: one column, the second class's probability. More classes: one per class, one-vs-rest,
    normalised to sum to one (as NannyML's CBPE does).
    """
    if calibrated.shape[1] == 1:  # binary
        positive = calibrated[:, 0]
        return np.clip(np.where(predicted == 1, positive, 1.0 - positive), 0.0, 1.0)
    totals = calibrated.sum(axis=1, keepdims=True)
    calibrated = np.where(
        totals > 0, calibrated / np.where(totals > 0, totals, 1.0), 1 / calibrated.shape[1]
    )
    right: npt.NDArray[np.float64] = calibrated[np.arange(len(predicted)), predicted]
    return np.clip(right, 0.0, 1.0)


def _expected_correct(
    steps: Steps, scores: npt.NDArray[np.float64], predicted: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Per row, the isotonic calibrators' probability that its predicted class is right."""
    return _right(_calibrate("isotonic", steps, scores), predicted)


def choose_calibrator(
    scores: npt.NDArray[np.float64],
    hits: npt.NDArray[np.float64],
    predicted: npt.NDArray[np.int64],
    correct: npt.NDArray[np.float64],
    seed: int = 0,
) -> tuple[str, dict[str, float]]:
    """The simplest calibrator whose out-of-fold log loss is within a standard error of the best.

    Each candidate (no calibration, Platt's logistic fit on the score's logit, isotonic) is
    fitted on four fifths of the holdout and scored on the rest, on what the estimate uses: the
    probability that each row's prediction is right, against whether it was. The one-standard-
    error rule (Breiman et al. 1984) then prefers the simpler map unless a more flexible one is
    clearly better: a calibrated model keeps its own scores and the estimate none of a
    calibrator's noise; a miscalibrated one is recalibrated. Returns the choice and each
    candidate's mean out-of-fold loss.
    """
    n = correct.size
    if n < 10 * SELECTION_FOLDS:  # too few rows to compare maps out of fold: the flexible one
        return "isotonic", {}
    folds = np.array_split(np.random.default_rng(seed).permutation(n), min(SELECTION_FOLDS, n))
    losses = {kind: np.zeros(n) for kind in CANDIDATES}
    for held in folds:
        train = np.setdiff1d(np.arange(n), held)
        for kind in CANDIDATES:
            fitted = _fit(kind, scores[train], hits[train])
            right = np.clip(
                _right(_calibrate(kind, fitted, scores[held]), predicted[held]), 1e-4, 1 - 1e-4
            )
            hit = correct[held]
            losses[kind][held] = -(hit * np.log(right) + (1 - hit) * np.log(1 - right))
    means = {kind: float(loss.mean()) for kind, loss in losses.items()}
    best = min(CANDIDATES, key=means.__getitem__)
    for kind in CANDIDATES:  # simplest first; the best itself always qualifies
        difference = losses[kind] - losses[best]
        if difference.mean() <= difference.std(ddof=1) / np.sqrt(n):
            return kind, means
    return best, means


class PerformanceEstimator:
    """CBPE: calibrated on a labelled holdout once, then estimates accuracy on unlabelled batches.

    As NannyML's CBPE, it calibrates the model's class scores (the positive class's probability
    for a binary model; each class one-vs-rest otherwise), not only its top confidence: the same
    confidence can be right more often for one predicted class than for the other, and a shift
    that changes the mix of predicted classes would bias a confidence-only calibrator.

    ``calibration="auto"`` (the default) chooses the map the point estimate uses by
    ``choose_calibrator``: a model that is calibrated already keeps its scores, and its estimate
    none of an isotonic fit's noise (with a 600-row holdout that noise is most of the error). The
    interval does not depend on that choice: it is always the isotonic calibrators' (the most
    flexible map, right whatever the model's miscalibration), widened where needed to hold the
    point estimate.
    """

    def __init__(
        self,
        spec: DatasetSpec,
        *,
        confidence: float = 0.95,
        bootstraps: int = CALIBRATION_BOOTSTRAPS,
        calibration: Calibration = "auto",
        seed: int = 0,
    ) -> None:
        if calibration != "auto" and calibration not in CANDIDATES:
            raise ValueError(
                f"calibration={calibration!r} is not one of auto, {', '.join(CANDIDATES)}"
            )
        self.calibration = calibration
        self.spec = spec
        self.confidence = confidence
        self.bootstraps = bootstraps
        self.seed = seed

    def _scores(self, frame: pl.DataFrame) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        """The calibrated score columns and the index of each row's predicted class."""
        probabilities = np.asarray(
            self.model_.predict_proba(model_input(frame, self.spec)), dtype=np.float64
        )
        predicted = probabilities.argmax(axis=1)
        scores = probabilities[:, 1:2] if probabilities.shape[1] == 2 else probabilities
        return scores, predicted

    def fit(self, model: Classifier, holdout: pl.DataFrame) -> PerformanceEstimator:
        """This estimator, calibrated: ``model``'s scores mapped to its accuracy on ``holdout``."""
        correct = _correct(model, holdout, self.spec, "reference holdout")
        labelled = holdout.filter(pl.col(str(self.spec.target)).is_not_null())
        self.model_ = model
        scores, predicted = self._scores(labelled)
        classes = np.asarray(getattr(model, "classes_", np.arange(max(2, scores.shape[1]))))
        truth = labelled[str(self.spec.target)].to_numpy()
        columns = classes[1:2] if scores.shape[1] == 1 else classes
        hits = np.column_stack(
            [truth == np.asarray(c).astype(truth.dtype, copy=False) for c in columns]
        ).astype(np.float64)
        self.steps_ = _isotonic_steps(scores, hits)
        self.calibrator_: str = self.calibration
        self.selection_losses_: dict[str, float] = {}
        if self.calibration == "auto":
            self.calibrator_, self.selection_losses_ = choose_calibrator(
                scores, hits, predicted, correct.astype(np.float64), self.seed
            )
        self.fitted_ = _fit(self.calibrator_, scores, hits)
        self.reference_accuracy_ = float(correct.mean())
        self.score_ranges_ = (scores.min(axis=0), scores.max(axis=0))
        rng = np.random.default_rng(self.seed)
        self.bootstrap_steps_: list[Steps] = []
        self.bootstrap_fraction_ = 0.5
        size = max(2, int(correct.size * self.bootstrap_fraction_))
        for _ in range(self.bootstraps):
            rows = rng.integers(0, correct.size, size)
            self.bootstrap_steps_.append(_isotonic_steps(scores[rows], hits[rows]))
        return self

    def estimate(self, batch: pl.DataFrame) -> PerformanceEstimate:
        """The estimated accuracy of the fitted model on the unlabelled ``batch``, with its interval."""
        from scipy.stats import norm

        scores, predicted = self._scores(batch)
        expected = _expected_correct(self.steps_, scores, predicted)
        n = expected.size
        centre = float(expected.mean())  # the isotonic estimate: the interval's centre
        estimate = float(
            _right(_calibrate(self.calibrator_, self.fitted_, scores), predicted).mean()
        )
        sampling_se = float(np.sqrt((expected * (1 - expected)).sum()) / n)
        # The calibrators' spread is the same on a seeded sample of the batch's rows (every
        # calibrator sees the same rows), so a huge batch costs no more than 20,000 rows here.
        rows = np.arange(n)
        if n > MAX_BOOTSTRAP_ROWS:
            rows = np.random.default_rng(self.seed).choice(n, MAX_BOOTSTRAP_ROWS, replace=False)
        resampled = np.array(
            [
                _expected_correct(s, scores[rows], predicted[rows]).mean()
                for s in self.bootstrap_steps_
            ]
        )
        calibration_se, bias = 0.0, 0.0
        if resampled.size > 1:  # m-out-of-n: the half-size spread, scaled to the whole holdout
            calibration_se = float(resampled.std(ddof=1) * np.sqrt(self.bootstrap_fraction_))
            bias = float(resampled.mean() - expected[rows].mean())
        z = float(norm.ppf(0.5 + self.confidence / 2))
        half = z * float(np.hypot(sampling_se, calibration_se)) + abs(bias)
        low, high = self.score_ranges_
        coverage = float(((scores >= low) & (scores <= high)).all(axis=1).mean())
        warning = None
        if coverage < MIN_HOLDOUT_COVERAGE:
            warning = (
                f"{1 - coverage:.0%} of the batch's rows score outside the range the reference "
                "holdout saw: there the estimate extrapolates, and its interval may not cover"
            )
        return PerformanceEstimate(
            estimated_accuracy=estimate,
            ci_low=max(0.0, min(estimate, centre - half)),
            ci_high=min(1.0, max(estimate, centre + half)),
            confidence=self.confidence,
            reference_accuracy=self.reference_accuracy_,
            rows=n,
            sampling_se=sampling_se,
            calibration_se=calibration_se,
            calibration_bias=bias,
            holdout_coverage=coverage,
            calibrator=self.calibrator_,
            warning=warning,
        )
