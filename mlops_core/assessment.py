"""Assessing a batch: the champion's observed and estimated accuracy, and the rest of the policy's
evidence.

``assess`` turns a batch into the policy's ``Evidence``: observed accuracy when the batch has
labels, CBPE-estimated accuracy when it has none, the champion against the previous champion on
the same labelled rows, labelled rows since the last training, time since the last training (in
the data's own time when the spec names a timestamp, so a replayed stream behaves as it would
have live), and the median duration of past training runs. It reads the world through a
``DatasetPort``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl

from mlops_core.change import locate_change, rows_since
from mlops_core.data import event_times
from mlops_core.drift import DriftReport
from mlops_core.holdout import decision_rows, labelled
from mlops_core.performance import (
    PerformanceEstimate,
    PerformanceReport,
    evaluate_performance,
    predictions,
)
from mlops_core.policy import Evidence
from mlops_core.ports import DatasetPort, LoadedModel, TrainingRecord
from mlops_core.spec import DatasetSpec


@dataclass(frozen=True)
class DriftSignal:
    """What the policy takes from a drift verdict: whether, how sure, and which features."""

    is_drift: bool
    p_value: float
    drivers: tuple[str, ...] = ()

    @classmethod
    def of(cls, report: DriftReport) -> DriftSignal:
        """The signal of a drift report."""
        return cls(report.is_drift, report.p_value, tuple(report.drivers))

    def evidence_fields(self) -> dict[str, Any]:
        """The ``Evidence`` keyword arguments this signal fills."""
        return {
            "drift": bool(self.is_drift),
            "drift_p_value": float(self.p_value),
            "drift_drivers": tuple(self.drivers),
        }


@dataclass(frozen=True)
class Assessment:
    """The evidence for the policy, and the performance reports behind it."""

    evidence: Evidence
    champion_version: str | None
    performance: PerformanceReport | None = None
    estimate: PerformanceEstimate | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The assessment as JSON."""
        return {
            "champion_version": self.champion_version,
            "evidence": self.evidence.model_dump(mode="json"),
            "performance": self.performance.model_dump(mode="json") if self.performance else None,
            "estimate": self.estimate.model_dump(mode="json") if self.estimate else None,
            "notes": list(self.notes),
        }


def data_time(frame: pl.DataFrame, spec: DatasetSpec) -> datetime | None:
    """The newest event time in ``frame`` (UTC), when the spec names a timestamp column."""
    times = event_times(frame, spec)  # an unparseable timestamp only loses the data-time clock
    newest = times.max() if times is not None else None
    return newest if isinstance(newest, datetime) else None


def paired_difference(
    first: Any, second: Any, frame: pl.DataFrame, spec: DatasetSpec, *, seed: int = 0
) -> tuple[float, float]:
    """Accuracy of ``first`` minus ``second`` on the same labelled rows, and its 95% upper bound.

    Paired bootstrap over rows (1,000 resamples): both models are judged on the same resample.
    """
    rows = labelled(frame, spec)
    truth = rows[str(spec.target)].to_numpy()
    a = (predictions(first, rows, spec)[0].astype(truth.dtype) == truth).astype(np.float64)
    b = (predictions(second, rows, spec)[0].astype(truth.dtype) == truth).astype(np.float64)
    diff = a - b
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, (1_000, diff.size))].mean(axis=1)
    return float(diff.mean()), float(np.quantile(means, 0.975))


def assess(
    port: DatasetPort,
    frame: pl.DataFrame | None,
    *,
    validation_passed: bool,
    drift: DriftSignal | None,
    now: datetime | None = None,
    exclude: tuple[str, ...] = (),
) -> Assessment:
    """The policy's evidence for one batch (see the module docstring).

    ``exclude`` names batches (sha256) whose rows are already in ``frame``, so they are not
    counted twice among the labelled rows since the last training.
    """
    spec = port.spec
    drift_fields = drift.evidence_fields() if drift is not None else {}
    if not validation_passed or frame is None:
        return Assessment(Evidence(validation_passed=False, **drift_fields), None)

    champion = port.champion()
    rows = labelled(frame, spec)
    # Decisions use only the rows not kept for the gates (mlops_core.holdout): the rows that
    # decide "retrain" never judge the challenger that decision trains.
    deciding = decision_rows(rows, spec, port.settings.gate_holdout_fraction)
    if champion is None:
        return Assessment(
            Evidence(validation_passed=True, labelled_rows=rows.height, **drift_fields),
            None,
            notes=("no champion yet: run `mlops train` to train the first one",),
        )

    estimate = champion.estimator.estimate(frame)
    performance = None
    versus_previous: tuple[float | None, float | None] = (None, None)
    if deciding.height:
        performance = evaluate_performance(
            champion.model,
            deciding,
            champion.holdout,
            spec,
            threshold=port.settings.retrain_accuracy_drop,
        )
        versus_previous = _against_previous(port, champion, deciding)

    # Where the accuracy changed, when it is known to have fallen: the policy waits for enough
    # rows of a new concept, and the training window may start there (mlops_core.change).
    change_fields: dict[str, Any] = {}
    if performance is not None and performance.degraded:
        change = locate_change(port, champion, frame, exclude=exclude)
        if change is not None:
            change_fields = change.evidence_fields()
    # A champion that learnt a new concept from few rows: how many rows of it exist now.
    trained = champion.trained
    if trained is not None and trained.concept_since is not None and rows.height:
        change_fields.update(
            champion_concept_since=trained.concept_since.isoformat(timespec="minutes"),
            champion_concept_rows=trained.concept_rows,
            concept_rows_now=rows_since(port, trained.concept_since, frame, exclude=exclude),
        )
    cooldown, labelled_since = _since_last_training(
        port, port.last_training(), frame, rows.height, now=now, exclude=set(exclude)
    )
    evidence = Evidence(
        validation_passed=True,
        **drift_fields,
        reference_accuracy=champion.estimator.reference_accuracy_,
        observed_accuracy=performance.current if performance else None,
        observed_degraded=performance.degraded if performance else None,
        estimated_accuracy=estimate.estimated_accuracy,
        estimated_ci_high=estimate.ci_high,
        labelled_rows=labelled_since,
        **cooldown,
        median_training_seconds=port.median_training_seconds(),
        past_recoveries=port.past_recoveries(),
        champion_minus_previous=versus_previous[0],
        champion_minus_previous_ci_high=versus_previous[1],
        **change_fields,
    )
    notes = (f"estimated accuracy: {estimate.warning}",) if estimate.warning else ()
    return Assessment(evidence, champion.version.version, performance, estimate, notes)


def _against_previous(
    port: DatasetPort, champion: LoadedModel, rows: pl.DataFrame
) -> tuple[float | None, float | None]:
    """The champion's accuracy minus the previous champion's on the same labelled rows, and the
    difference's 95% upper bound (both None without a previous champion)."""
    previous = port.previous()
    if previous is None or previous.version.version == champion.version.version:
        return None, None
    return paired_difference(champion.model, previous.model, rows, port.spec)


def _since_last_training(
    port: DatasetPort,
    last: TrainingRecord | None,
    frame: pl.DataFrame,
    labelled_here: int,
    *,
    now: datetime | None,
    exclude: set[str],
) -> tuple[dict[str, Any], int]:
    """The cooldown's ``Evidence`` fields (``cooldown_fields``) and labelled rows since the last
    training."""
    if last is None:
        return {}, labelled_here
    fields = cooldown_fields(last, data_time(frame, port.spec), now or datetime.now(UTC))
    return fields, labelled_here + labelled_rows_since(port, last.started_at, exclude)


def cooldown_fields(
    last: TrainingRecord, batch_time: datetime | None, now: datetime
) -> dict[str, Any]:
    """The ``Evidence`` fields of the cooldown: the time since the last training, in data time when
    both sides have one (else wall time), the data times behind it, and the wall time.

    Data time never runs ahead of the clock: the batch's newest event time is clipped to now, the
    last training's (its ``DATA_UNTIL``) to when that training started. Unclipped, one far-future
    timestamp would skip the cooldown (in a batch), or block every retrain until its date (in a
    training window; models trained before validation bounded timestamps still carry such tags).
    """
    clock = now - last.started_at
    fields: dict[str, Any] = {"since_last_retrain": clock, "since_last_retrain_clock": clock}
    if last.data_until is None or batch_time is None:
        return fields
    until, newest = min(last.data_until, last.started_at), min(batch_time, now)
    fields.update(
        since_last_retrain=newest - until,
        last_training_data_time=until.astimezone(UTC).isoformat(timespec="minutes"),
        batch_data_time=newest.astimezone(UTC).isoformat(timespec="minutes"),
    )
    return fields


def labelled_rows_since(port: DatasetPort, since: datetime, exclude: set[str]) -> int:
    """Labelled rows (labels joined) in batches processed after ``since``, ``exclude`` aside."""
    total = 0
    for entry, frame in port.processed_batches(after=since):
        if entry.sha256 in exclude:
            continue
        total += labelled(frame, port.spec).height
    return total
