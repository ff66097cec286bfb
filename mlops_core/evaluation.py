"""Is the challenger really better? Gates on held-out recent labelled data, each with its evidence.

Gates (all must pass):

* ``primary`` -- the challenger's accuracy beats the champion's by at least ``margin``, and an
  exact one-sided McNemar test on the paired predictions (the discordant rows only) rejects
  "no better" at ``alpha``: a point estimate alone is not enough.
* ``auc``, ``log_loss``, ``calibration`` -- no regression beyond the tolerance on secondary
  metrics (calibration: expected calibration error over 10 equal-width bins).
* ``slice:<feature>=<value>`` -- no category slice of ``slice_feature`` loses more than
  ``slice_tolerance`` accuracy (slices with at least ``min_slice_rows`` rows).
* ``floor`` -- an absolute floor on the challenger's accuracy.
* ``latency_p95_ms`` -- the 95th percentile of single-row prediction time within the budget.
* ``training_data_valid`` -- the training set passed its expectation suite.

Without a champion (the first model), the comparative gates pass with "no champion" as evidence.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from mlops_core.performance import Classifier, model_input
from mlops_core.spec import DatasetSpec

Scores = npt.NDArray[np.float64]
Flags = npt.NDArray[np.bool_]  # per row: was the prediction right?


class GateConfig(BaseModel):
    """The gates' thresholds and tolerances; the settings object carries them (``MLOPS_GATE_*``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    margin: float = Field(default=0.005, ge=0)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    auc_tolerance: float = Field(default=0.01, ge=0)
    log_loss_tolerance: float = Field(default=0.02, ge=0)
    calibration_tolerance: float = Field(default=0.02, ge=0)
    slice_feature: str | None = None
    slice_tolerance: float = Field(default=0.03, ge=0)
    min_slice_rows: int = Field(default=50, ge=1)
    accuracy_floor: float = Field(default=0.55, ge=0, le=1)
    latency_budget_ms: float = Field(default=50.0, gt=0)
    latency_samples: int = Field(default=100, ge=10)


class Gate(BaseModel):
    """One gate: what was required, what was observed, whether it passed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    threshold: str
    observed: str
    passed: bool


class GateReport(BaseModel):
    """Every gate with its evidence; ``passed`` only when all passed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gates: tuple[Gate, ...]
    challenger_accuracy: float
    champion_accuracy: float | None
    rows: int

    @property
    def passed(self) -> bool:
        """Whether every gate passed."""
        return all(g.passed for g in self.gates)

    @property
    def failed(self) -> tuple[Gate, ...]:
        """The gates that did not pass, in order."""
        return tuple(g for g in self.gates if not g.passed)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready plain data, with the overall ``passed``."""
        return {**self.model_dump(mode="json"), "passed": self.passed}

    def markdown(self) -> str:
        """The gates as a Markdown table: gate, threshold, observed, result."""
        lines = ["| gate | threshold | observed | result |", "|---|---|---|---|"]
        lines += [
            f"| {g.name} | {g.threshold} | {g.observed} | {'pass' if g.passed else 'FAIL'} |"
            for g in self.gates
        ]
        return "\n".join(lines)


def _scores(model: Classifier, frame: pl.DataFrame, spec: DatasetSpec) -> Scores:
    return np.asarray(model.predict_proba(model_input(frame, spec)), dtype=np.float64)[:, 1]


def _log_loss(y: Scores, p: Scores) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _calibration_error(y: Scores, p: Scores, bins: int = 10) -> float:
    edges = np.minimum((p * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        inside = edges == b
        if inside.any():
            error += inside.mean() * abs(p[inside].mean() - y[inside].mean())
    return float(error)


def _auc(y: Scores, p: Scores) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")


def mcnemar_better(challenger_right: Flags, champion_right: Flags) -> float:
    """One-sided exact McNemar p-value for "the challenger is right more often"."""
    from scipy.stats import binomtest

    wins = int((challenger_right & ~champion_right).sum())
    losses = int((~challenger_right & champion_right).sum())
    if wins + losses == 0:
        return 1.0
    return float(binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue)


def better_by_margin(challenger_right: Flags, champion_right: Flags, margin: float) -> float:
    """One-sided p-value for "the challenger's accuracy beats the champion's by more than
    ``margin``" on the same rows (null: the gain is at most ``margin``).

    The exact McNemar test when the margin is 0; otherwise the paired difference of the two
    accuracies against the margin, with its standard error from the discordant rows (Wald).
    """
    if margin <= 0:
        return mcnemar_better(challenger_right, champion_right)
    from scipy.stats import norm

    n = len(challenger_right)
    wins = int((challenger_right & ~champion_right).sum())
    losses = int((~challenger_right & champion_right).sum())
    if n == 0:
        return 1.0
    gain = (wins - losses) / n
    variance = ((wins + losses) / n - gain**2) / n
    if variance <= 0:
        return 0.0 if gain > margin else 1.0
    return float(norm.sf((gain - margin) / variance**0.5))


def latency_p95_ms(
    model: Classifier,
    frame: pl.DataFrame,
    spec: DatasetSpec,
    samples: int,
    *,
    repeats: int = 5,
    against: Classifier | None = None,
    enough: float | None = None,
) -> tuple[float, float | None]:
    """95th percentile of single-row ``predict_proba`` time in ms: the model's, not the machine's.

    Each row is timed ``repeats`` times and its best time kept, as ``timeit`` does: another
    process taking the CPU can only add time, so the fastest run is the one it disturbed least.
    Native thread pools are held to one thread while timing (a single row gains nothing from
    them, and on a busy machine their barriers wait for threads the scheduler has parked).
    ``against`` (the champion) is timed in the same loop, row by row, so both models see the
    same conditions; its figure is returned second (``None`` without one). With ``enough``, the
    runs stop as soon as the model's best-so-far p95 is at most that (a quiet machine needs one
    run; a busy one gets up to ``repeats``).
    """
    from threadpoolctl import threadpool_limits

    rows = [model_input(frame.slice(i % frame.height, 1), spec) for i in range(samples)]
    models = [model] if against is None else [model, against]
    best = np.full((len(models), samples), np.inf)
    with threadpool_limits(limits=1):
        for m in models:
            m.predict_proba(rows[0])  # warm-up
        for _ in range(repeats):
            for i, row in enumerate(rows):
                for k, m in enumerate(models):
                    started = time.perf_counter()
                    m.predict_proba(row)
                    best[k, i] = min(best[k, i], (time.perf_counter() - started) * 1000)
            if enough is not None and np.percentile(best[0], 95) <= enough:
                break
    p95 = np.percentile(best, 95, axis=1)
    return float(p95[0]), (float(p95[1]) if against is not None else None)


def mlflow_threshold_passes(
    metric: str,
    candidate: float,
    *,
    baseline: float | None = None,
    threshold: float | None = None,
    min_absolute_change: float | None = None,
    greater_is_better: bool = True,
) -> bool:
    """Check one metric with MLflow's own model validation (``validate_evaluation_results``)."""
    from mlflow.models import MetricThreshold
    from mlflow.models.evaluation import EvaluationResult
    from mlflow.models.evaluation.validation import (
        ModelValidationFailedException,
        validate_evaluation_results,
    )

    # MLflow's model-validation classes carry no type annotations.
    rule = MetricThreshold(  # type: ignore[no-untyped-call]
        threshold=threshold,
        min_absolute_change=min_absolute_change or None,
        greater_is_better=greater_is_better,
    )
    base = (
        EvaluationResult({metric: baseline}, {})  # type: ignore[no-untyped-call]
        if baseline is not None
        else None
    )
    candidate_result = EvaluationResult({metric: candidate}, {})  # type: ignore[no-untyped-call]
    try:
        validate_evaluation_results({metric: rule}, candidate_result, base)
    except ModelValidationFailedException:
        return False
    return True


def evaluate_challenger(
    challenger: Classifier,
    champion: Classifier | None,
    holdout: pl.DataFrame,
    spec: DatasetSpec,
    *,
    training_data_valid: bool,
    config: GateConfig | None = None,
) -> GateReport:
    """Run every gate on ``holdout`` (recent labelled rows the challenger did not train on)."""
    config = config or GateConfig()
    target = str(spec.target)
    labelled = holdout.filter(pl.col(target).is_not_null())
    y = labelled[target].to_numpy().astype(np.float64)
    new = _scores(challenger, labelled, spec)
    new_right = (new >= 0.5) == (y == 1)
    new_accuracy = float(new_right.mean())

    if champion is None:
        gates = _no_champion_gates()
        old_accuracy = None
    else:
        old = _scores(champion, labelled, spec)
        old_right = (old >= 0.5) == (y == 1)
        old_accuracy = float(old_right.mean())
        gates = [
            _primary_gate(new_right, old_right, config),
            *_secondary_metric_gates(y, new, old, config),
            *_slice_gates(labelled, spec, new_right, old_right, config),
        ]

    gates += [
        _floor_gate(new_accuracy, config),
        _latency_gate(challenger, champion, labelled, spec, config),
        _training_data_gate(training_data_valid),
    ]
    return GateReport(
        gates=tuple(gates),
        challenger_accuracy=new_accuracy,
        champion_accuracy=old_accuracy,
        rows=labelled.height,
    )


def _no_champion_gates() -> list[Gate]:
    """The comparative gates of a first model: passed, with "no champion" as their evidence."""
    return [
        Gate(
            name=name,
            threshold="better than the champion",
            observed="no champion",
            passed=True,
        )
        for name in ("primary", "auc", "log_loss", "calibration")
    ]


def _primary_gate(new_right: Flags, old_right: Flags, config: GateConfig) -> Gate:
    """Better accuracy by the margin, shown by a test against the margin: a point estimate is
    not enough, and neither is a test against no gain at all (a challenger better by less than the
    margin would pass that more often than ``alpha``)."""
    new_accuracy, old_accuracy = float(new_right.mean()), float(old_right.mean())
    gain = new_accuracy - old_accuracy
    p_value = better_by_margin(new_right, old_right, config.margin)
    return Gate(
        name="primary",
        threshold=f"accuracy +{config.margin:.1%} or more, shown: paired test against the "
        f"margin, p <= {config.alpha}",
        observed=f"{new_accuracy:.1%} vs {old_accuracy:.1%} ({gain:+.1%}), p = {p_value:.3g}",
        passed=p_value <= config.alpha
        and mlflow_threshold_passes(
            "accuracy",
            new_accuracy,
            baseline=old_accuracy,
            min_absolute_change=config.margin,
        )
        and gain >= config.margin,
    )


def _secondary_metric_gates(y: Scores, new: Scores, old: Scores, config: GateConfig) -> list[Gate]:
    """No regression beyond its tolerance in AUC, log loss or calibration."""
    auc_new, auc_old = _auc(y, new), _auc(y, old)
    loss_new, loss_old = _log_loss(y, new), _log_loss(y, old)
    ece_new, ece_old = _calibration_error(y, new), _calibration_error(y, old)
    return [
        _auc_gate(auc_new, auc_old, config),
        Gate(
            name="log_loss",
            threshold=f"no rise over {config.log_loss_tolerance}",
            observed=f"{loss_new:.3f} vs {loss_old:.3f}",
            passed=loss_new <= loss_old + config.log_loss_tolerance,
        ),
        Gate(
            name="calibration",
            threshold=f"expected calibration error rises at most {config.calibration_tolerance}",
            observed=f"{ece_new:.3f} vs {ece_old:.3f}",
            passed=ece_new <= ece_old + config.calibration_tolerance,
        ),
    ]


def _auc_gate(auc_new: float, auc_old: float, config: GateConfig) -> Gate:
    """No AUC drop beyond the tolerance; an AUC that cannot be computed fails, saying why."""
    threshold = f"no drop over {config.auc_tolerance}"
    if np.isnan(auc_new) or np.isnan(auc_old):
        return Gate(
            name="auc",
            threshold=threshold,
            observed="cannot be computed: the held-out rows have only one class",
            passed=False,
        )
    return Gate(
        name="auc",
        threshold=threshold,
        observed=f"{auc_new:.3f} vs {auc_old:.3f}",
        passed=auc_new >= auc_old - config.auc_tolerance,
    )


def mcnemar_worse(challenger_right: Flags, champion_right: Flags) -> float:
    """One-sided exact McNemar p-value for "the challenger is right less often"."""
    return mcnemar_better(champion_right, challenger_right)


def _slice_gates(
    labelled: pl.DataFrame,
    spec: DatasetSpec,
    new_right: Flags,
    old_right: Flags,
    config: GateConfig,
) -> list[Gate]:
    """One gate per category slice large enough to judge: it refuses only a drop that is both
    beyond the tolerance and significant (one-sided exact McNemar on the slice's rows, at
    ``alpha`` divided by the number of slices judged -- Bonferroni)."""
    feature = config.slice_feature or (spec.categorical[0] if spec.categorical else None)
    if feature is None:
        return []
    values = labelled[feature].cast(pl.String).fill_null("(missing)").to_numpy()
    judged = [
        (value, values == value)
        for value in sorted(set(values))
        if (values == value).sum() >= config.min_slice_rows
    ]
    level = config.alpha / max(len(judged), 1)
    gates = []
    for value, inside in judged:
        slice_new, slice_old = new_right[inside].mean(), old_right[inside].mean()
        p_worse = mcnemar_worse(new_right[inside], old_right[inside])
        dropped = slice_new < slice_old - config.slice_tolerance
        gates.append(
            Gate(
                name=f"slice:{feature}={value}",
                threshold=f"no drop over {config.slice_tolerance:.0%} that is significant "
                f"(McNemar p <= {level:.3g}, {len(judged)} slices)",
                observed=f"{slice_new:.1%} vs {slice_old:.1%} ({int(inside.sum())} rows, "
                f"p worse = {p_worse:.3g})",
                passed=not (dropped and p_worse <= level),
            )
        )
    return gates


def _floor_gate(new_accuracy: float, config: GateConfig) -> Gate:
    """The challenger's accuracy at least the absolute floor."""
    return Gate(
        name="floor",
        threshold=f"accuracy >= {config.accuracy_floor:.0%}",
        observed=f"{new_accuracy:.1%}",
        passed=mlflow_threshold_passes("accuracy", new_accuracy, threshold=config.accuracy_floor),
    )


def _latency_gate(
    challenger: Classifier,
    champion: Classifier | None,
    labelled: pl.DataFrame,
    spec: DatasetSpec,
    config: GateConfig,
) -> Gate:
    """The challenger's 95th-percentile single-row prediction time within the budget.

    Measured as :func:`latency_p95_ms` does (best of up to 5 runs, one native thread), beside
    the champion's time in the same measurement, so load on the machine cannot fail a sound model.
    """
    latency, reference = latency_p95_ms(
        challenger,
        labelled,
        spec,
        config.latency_samples,
        against=champion,
        enough=config.latency_budget_ms / 2,
    )
    observed = f"{latency:.2f} ms" + (
        f" (champion {reference:.2f} ms, same run)" if reference is not None else ""
    )
    return Gate(
        name="latency_p95_ms",
        threshold=f"<= {config.latency_budget_ms:g} ms (best of up to 5 runs per row)",
        observed=observed,
        passed=latency <= config.latency_budget_ms,
    )


def _training_data_gate(training_data_valid: bool) -> Gate:
    """The training set passed its expectation suite."""
    return Gate(
        name="training_data_valid",
        threshold="training set passed its expectation suite",
        observed="passed" if training_data_valid else "failed",
        passed=training_data_valid,
    )
