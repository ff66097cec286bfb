"""How well the champion does: measured when labels exist, estimated (CBPE) when they do not.

* ``evaluate_performance`` -- concept drift: the model's accuracy on a labelled batch against its
  accuracy on the reference holdout, with a percentile bootstrap confidence interval of the
  difference (the two samples resampled independently). "Degraded" when the drop exceeds the
  threshold (default 5 percentage points) *and* the interval excludes zero.
* ``PerformanceEstimator`` -- confidence-based performance estimation, as NannyML's CBPE: on the
  labelled reference holdout, isotonic regression maps the model's confidence in its predicted
  class to the probability that the prediction is right. On an unlabelled batch, the mean of those
  calibrated probabilities estimates the accuracy; its interval is the normal approximation with
  the variance of a sum of independent Bernoulli outcomes, sqrt(sum c(1-c)) / n. It is valid while
  P(label | features) is unchanged (covariate shift), which is exactly what tells harmful drift
  (estimate falls) from harmless drift (estimate holds); concept drift needs labels.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import BaseModel, ConfigDict

from mlops_core.errors import UnusableInputError
from mlops_core.spec import DatasetSpec


class Classifier(Protocol):
    """What a model must offer: scikit-learn's ``predict_proba`` on a pandas frame of features."""

    def predict_proba(self, features: Any) -> Any:
        """Per row, the probability of each class (columns in the order of ``classes_``)."""
        ...


def model_input(frame: pl.DataFrame, spec: DatasetSpec) -> Any:
    """The model's input: the spec's features as pandas, numerics as float, categoricals as text."""
    missing = [c for c in spec.features if c not in frame.columns]
    if missing:
        raise UnusableInputError(f"batch lacks feature column(s): {', '.join(missing)}")
    return frame.select(
        [pl.col(c).cast(pl.Float64) for c in spec.numeric]
        + [pl.col(c).cast(pl.String) for c in spec.categorical]
    ).to_pandas()


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

    @property
    def expected_drop(self) -> float:
        """How far the estimate falls below the reference accuracy (negative: above it)."""
        return self.reference_accuracy - self.estimated_accuracy

    def summary(self) -> str:
        """One line a person reads: the estimate, its interval, and the reference accuracy."""
        return (
            f"estimated accuracy {self.estimated_accuracy:.3f} [{self.ci_low:.3f}, {self.ci_high:.3f}] "
            f"vs {self.reference_accuracy:.3f} on the reference holdout"
        )


class PerformanceEstimator:
    """CBPE: calibrated on a labelled holdout once, then estimates accuracy on unlabelled batches."""

    def __init__(self, spec: DatasetSpec, *, confidence: float = 0.95) -> None:
        self.spec = spec
        self.confidence = confidence

    def fit(self, model: Classifier, holdout: pl.DataFrame) -> PerformanceEstimator:
        """This estimator, calibrated: ``model``'s confidence mapped to its accuracy on ``holdout``."""
        from sklearn.isotonic import IsotonicRegression

        correct = _correct(model, holdout, self.spec, "reference holdout")
        labelled = holdout.filter(pl.col(str(self.spec.target)).is_not_null())
        _, confidence = predictions(model, labelled, self.spec)
        self.model_ = model
        self.calibrator_ = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        self.calibrator_.fit(confidence, correct)
        self.reference_accuracy_ = float(correct.mean())
        return self

    def estimate(self, batch: pl.DataFrame) -> PerformanceEstimate:
        """The estimated accuracy of the fitted model on the unlabelled ``batch``, with its interval."""
        from scipy.stats import norm

        _, confidence = predictions(self.model_, batch, self.spec)
        expected = np.clip(self.calibrator_.predict(confidence), 0.0, 1.0)
        n = expected.size
        estimate = float(expected.mean())
        half = float(
            norm.ppf(0.5 + self.confidence / 2) * np.sqrt((expected * (1 - expected)).sum()) / n
        )
        return PerformanceEstimate(
            estimated_accuracy=estimate,
            ci_low=max(0.0, estimate - half),
            ci_high=min(1.0, estimate + half),
            confidence=self.confidence,
            reference_accuracy=self.reference_accuracy_,
            rows=n,
        )
