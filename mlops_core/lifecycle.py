"""The model's life between batches: assess the champion, gather training data, train, gate, promote.

These are the domain steps the batch flow and the gated subflow compose (through thin tasks). Each
talks to MLflow only through ``ModelRegistry`` and ``audit``; each returns a typed value.

* ``assess`` turns a batch into the policy's ``Evidence``: observed accuracy when the batch has
  labels, CBPE-estimated accuracy when it has none, the champion against the previous champion on
  the same labelled rows, labelled rows since the last training, time since the last training
  (in the data's own time when the spec names a timestamp, so a replayed stream behaves as it
  would have live), and the median duration of past training runs.
* ``gather_training_data`` builds the training window from the reference and every processed
  labelled batch, holding out part of the newest labelled batch for the gates.
* ``train_challenger``, ``gate_challenger`` and ``promote_challenger`` are the subflow's steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from mlops_core.adapters.catalog import DatasetCatalog
from mlops_core.adapters.landing import LandingZone
from mlops_core.adapters.registry import (
    CHAMPION,
    PREVIOUS,
    ModelRegistry,
    RegisteredVersion,
    TrainingInput,
)
from mlops_core.batches import BatchState, LedgerEntry
from mlops_core.data import read_table, sha256_file
from mlops_core.errors import MlopsError
from mlops_core.evaluation import GateReport, evaluate_challenger
from mlops_core.labels import attach_labels, known_labels
from mlops_core.performance import (
    PerformanceEstimate,
    PerformanceEstimator,
    PerformanceReport,
    evaluate_performance,
    predictions,
)
from mlops_core.policy import Evidence
from mlops_core.settings import Settings
from mlops_core.spec import DatasetSpec
from mlops_core.training import TrainedModel, train_model, training_window
from mlops_core.validation import load_suite, validate_frame

DATA_UNTIL = "mlops.data_until"  # train-run tag: the newest event time in its training data


# --------------------------------------------------------------------------- champion context


@dataclass
class _Loaded:
    model: Any
    holdout: pl.DataFrame
    estimator: PerformanceEstimator


_CACHE: dict[tuple[str, str, str], _Loaded] = {}


def _loaded(registry: ModelRegistry, version: RegisteredVersion, spec: DatasetSpec) -> _Loaded:
    """The model, its holdout and its fitted estimator, loaded once per process and version."""
    key = (registry.settings.tracking_uri, registry.name, version.version)
    if key not in _CACHE:
        import mlflow

        mlflow.set_registry_uri(registry.settings.tracking_uri)
        model = mlflow.sklearn.load_model(f"models:/{registry.name}/{version.version}")
        holdout = registry.holdout(version.run_id)
        if len(_CACHE) >= 8:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = _Loaded(model, holdout, PerformanceEstimator(spec).fit(model, holdout))
    return _CACHE[key]


# --------------------------------------------------------------------------- assess


@dataclass(frozen=True)
class Assessment:
    """The evidence for the policy, and the performance reports behind it."""

    evidence: Evidence
    champion_version: str | None
    performance: PerformanceReport | None = None
    estimate: PerformanceEstimate | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "champion_version": self.champion_version,
            "evidence": self.evidence.model_dump(mode="json"),
            "performance": self.performance.model_dump(mode="json") if self.performance else None,
            "estimate": self.estimate.model_dump(mode="json") if self.estimate else None,
            "notes": list(self.notes),
        }


def labelled(frame: pl.DataFrame, spec: DatasetSpec) -> pl.DataFrame:
    """The rows of ``frame`` that carry a label (none when the label column is absent)."""
    if spec.target is None or spec.target not in frame.columns:
        return frame.head(0)
    return frame.filter(pl.col(spec.target).is_not_null())


def data_time(frame: pl.DataFrame, spec: DatasetSpec) -> datetime | None:
    """The newest event time in ``frame`` (UTC), when the spec names a timestamp column."""
    if spec.timestamp is None or spec.timestamp not in frame.columns:
        return None
    column = frame[spec.timestamp]
    try:
        if column.dtype == pl.String:
            column = column.str.to_datetime(strict=False)
        newest = column.max()
    except Exception:  # noqa: BLE001 -- an unparseable timestamp only loses the data-time clock
        return None
    if not isinstance(newest, datetime):
        return None
    return newest if newest.tzinfo else newest.replace(tzinfo=UTC)


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
    settings: Settings,
    dataset: str,
    frame: pl.DataFrame | None,
    *,
    validation_passed: bool,
    drift: dict[str, Any] | None,
    now: datetime | None = None,
    exclude: tuple[str, ...] = (),
) -> Assessment:
    """Gather the policy's evidence for one batch (see the module docstring).

    ``exclude`` names batches (sha256) whose rows are already in ``frame``, so they are not
    counted twice among the labelled rows since the last training.
    """
    spec = DatasetCatalog(settings).get(dataset).spec
    drift_fields: dict[str, Any] = {}  # keyword arguments for Evidence
    if drift is not None:
        drift_fields = {
            "drift": bool(drift["is_drift"]),
            "drift_p_value": float(drift["p_value"]),
            "drift_drivers": tuple(drift.get("drivers", ())),
        }
    if not validation_passed or frame is None:
        return Assessment(Evidence(validation_passed=False, **drift_fields), None)

    registry = ModelRegistry(settings, dataset)
    champion = registry.version_of(CHAMPION)
    rows = labelled(frame, spec)
    if champion is None:
        return Assessment(
            Evidence(validation_passed=True, labelled_rows=rows.height, **drift_fields),
            None,
            notes=("no champion yet: run `mlops train` to train the first one",),
        )

    loaded = _loaded(registry, champion, spec)
    estimate = loaded.estimator.estimate(frame)
    performance = None
    compare: dict[str, Any] = {}
    if rows.height:
        performance = evaluate_performance(
            loaded.model,
            rows,
            loaded.holdout,
            spec,
            threshold=settings.retrain_accuracy_drop,
        )
        previous = registry.version_of(PREVIOUS)
        if previous is not None and previous.version != champion.version:
            other = _loaded(registry, previous, spec)
            diff, high = paired_difference(loaded.model, other.model, rows, spec)
            compare = {"champion_minus_previous": diff, "champion_minus_previous_ci_high": high}

    last = registry.training_runs(limit=1)
    since: timedelta | None = None
    labelled_since = rows.height
    if last:
        run = last[0]
        trained_at = datetime.fromtimestamp(run.info.start_time / 1000, tz=UTC)
        until = run.data.tags.get(DATA_UNTIL)
        batch_time = data_time(frame, spec)
        if until and batch_time is not None:
            since = batch_time - datetime.fromisoformat(until)
        else:
            since = (now or datetime.now(UTC)) - trained_at
        labelled_since += _labelled_rows_since(settings, dataset, spec, trained_at, set(exclude))

    evidence = Evidence(
        validation_passed=True,
        **drift_fields,
        reference_accuracy=loaded.estimator.reference_accuracy_,
        observed_accuracy=performance.current if performance else None,
        observed_degraded=performance.degraded if performance else None,
        estimated_accuracy=estimate.estimated_accuracy,
        estimated_ci_high=estimate.ci_high,
        labelled_rows=labelled_since,
        since_last_retrain=since,
        median_training_seconds=registry.median_training_seconds(),
        **compare,
    )
    return Assessment(evidence, champion.version, performance, estimate)


def processed_batches(
    settings: Settings, dataset: str, spec: DatasetSpec
) -> Iterator[tuple[LedgerEntry, pl.DataFrame]]:
    """Every processed batch, oldest first, with delayed labels joined in by id."""
    labels = known_labels(settings, dataset, spec) if spec.id and spec.target else None
    for entry in LandingZone(settings).entries(dataset):
        if entry.state is not BatchState.processed:
            continue
        try:
            frame = read_table(entry.location)
        except MlopsError:
            continue
        yield entry, attach_labels(frame, labels, spec)


def _labelled_rows_since(
    settings: Settings, dataset: str, spec: DatasetSpec, since: datetime, exclude: set[str]
) -> int:
    """Labelled rows (labels joined) in batches processed after ``since``, ``exclude`` aside."""
    total = 0
    for entry, frame in processed_batches(settings, dataset, spec):
        if entry.sha256 in exclude or datetime.fromisoformat(entry.updated_at) <= since:
            continue
        total += labelled(frame, spec).height
    return total


# --------------------------------------------------------------------------- training data


@dataclass(frozen=True)
class TrainingData:
    """The window to train on, the recent rows held out for the gates, and where they came from."""

    window: pl.DataFrame
    gate_holdout: pl.DataFrame
    lineage: tuple[TrainingInput, ...]
    data_until: datetime | None
    sources: int = field(default=0)


def gather_training_data(
    settings: Settings, dataset: str, *, first_model: bool = False
) -> TrainingData:
    """The reference and every processed labelled batch, oldest first, as a training window.

    For the first model the whole reference is the window and its gate holdout a seeded share of
    it. Otherwise a ``gate_holdout_fraction`` share of the newest labelled batch is held out for
    the gates, and the window is the newest ``train_recent_rows`` of the rest plus a sample of
    ``train_older_rows`` older ones.
    """
    registered = DatasetCatalog(settings).get(dataset)
    spec = registered.spec
    target = spec.target
    if target is None:
        raise MlopsError(
            f"dataset {dataset!r} has no target in its spec, so no model can be trained",
            hint="add `target:` to the spec",
        )
    columns = list(spec.known_columns)
    sources: list[tuple[TrainingInput, pl.DataFrame]] = []
    reference = labelled(registered.reference(), spec)
    if reference.height:
        sources.append(
            (
                TrainingInput(
                    sha256_file(registered.reference_path),
                    str(registered.reference_path),
                    reference.height,
                ),
                reference,
            )
        )
    if not first_model:
        for entry, batch in processed_batches(settings, dataset, spec):
            frame = labelled(batch, spec)
            if frame.height and all(c in frame.columns for c in [*spec.features, target]):
                sources.append(
                    (TrainingInput(entry.sha256, str(entry.location), frame.height), frame)
                )
    if not sources:
        raise MlopsError(
            f"dataset {dataset!r} has no labelled rows to train on (label column {target!r})",
            hint="register a reference with labels, or process labelled batches",
        )
    newest = sources[-1][1]
    until = max(
        (t for t in (data_time(f, spec) for _, f in sources) if t is not None), default=None
    )
    rng = np.random.default_rng(0)
    held = pl.Series(rng.random(newest.height) < settings.gate_holdout_fraction)
    gate_holdout, rest = newest.filter(held), newest.filter(~held)
    frames = [_columns(f, columns) for _, f in sources[:-1]] + [_columns(rest, columns)]
    if first_model:
        window = pl.concat(frames, how="vertical_relaxed")
    else:
        window = training_window(frames, spec, settings.training_config())
    return TrainingData(
        window=window,
        gate_holdout=_columns(gate_holdout, columns),
        lineage=tuple(item for item, _ in sources),
        data_until=until,
        sources=len(sources),
    )


def _columns(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    return frame.select([c for c in columns if c in frame.columns])


# --------------------------------------------------------------------------- train, gate, promote


@dataclass(frozen=True)
class Challenger:
    """A trained and registered model version, not yet judged."""

    version: str
    run_id: str
    model: Any
    holdout_accuracy: float
    train_rows: int
    seconds: float


def train_challenger(
    settings: Settings,
    dataset: str,
    data: TrainingData,
    *,
    batch_sha256: str = "",
    parent_run_id: str | None = None,
) -> Challenger:
    """Fit the pipeline on the window and log it in a ``train`` run, registered as a new version."""
    spec = DatasetCatalog(settings).get(dataset).spec
    config = settings.training_config()
    trained: TrainedModel = train_model(data.window, spec, config)
    # The model's own reference is the recent held-out rows it will be judged on, not the mixed
    # window: the performance estimator calibrates on them and "accuracy fell" compares to them.
    recent = labelled(data.gate_holdout, spec)
    truth = recent[str(spec.target)].to_numpy()
    recent_accuracy = float(
        (predictions(trained.pipeline, recent, spec)[0].astype(truth.dtype) == truth).mean()
    )
    registry = ModelRegistry(settings, dataset)
    tags = {"mlops.batch_sha256": batch_sha256}
    if data.data_until is not None:
        tags[DATA_UNTIL] = data.data_until.isoformat()
    if parent_run_id:
        tags["mlops.decision_run_id"] = parent_run_id
    registered = registry.log_model(
        trained.pipeline,
        spec,
        data.window,
        params={
            **config.model_dump(),
            "window_rows": data.window.height,
            "sources": data.sources,
        },
        metrics={
            "holdout_accuracy": recent_accuracy,
            "window_holdout_accuracy": trained.holdout_accuracy,
            "training_seconds": trained.seconds,
            "train_rows": trained.train_rows,
        },
        tags=tags,
        holdout=recent,
        lineage=list(data.lineage),
        parent_run_id=parent_run_id,
    )
    return Challenger(
        registered.version,
        registered.run_id,
        trained.pipeline,
        recent_accuracy,
        trained.train_rows,
        trained.seconds,
    )


def gate_challenger(
    settings: Settings, dataset: str, challenger: Challenger, data: TrainingData
) -> GateReport:
    """Every gate of ``evaluation`` on the held-out recent rows, against the current champion."""
    registered = DatasetCatalog(settings).get(dataset)
    spec = registered.spec
    registry = ModelRegistry(settings, dataset)
    champion_version = registry.version_of(CHAMPION)
    champion = _loaded(registry, champion_version, spec).model if champion_version else None
    suite = load_suite(settings, dataset)
    window_report = validate_frame(
        data.window,
        spec,
        suite,
        settings,
        source=f"training window of v{challenger.version}",
        data_docs=False,
    )
    return evaluate_challenger(
        challenger.model,
        champion,
        data.gate_holdout,
        spec,
        training_data_valid=window_report.success,
        config=settings.gate_config(),
    )


@dataclass(frozen=True)
class RetrainOutcome:
    """What the gated subflow did: ``promoted``, ``refused`` by a gate, or ``failed``, and why."""

    status: str
    reason: str
    version: str | None = None
    gates: dict[str, Any] | None = None
    champion_before: str | None = None
    champion_after: str | None = None
    train_run_id: str | None = None
    evaluate_run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def gate_summary(report: GateReport) -> str:
    """One line: passed, or which gates failed with what was observed."""
    if report.passed:
        return (
            f"all {len(report.gates)} gates passed (accuracy {report.challenger_accuracy:.1%}"
            + (
                f" vs champion {report.champion_accuracy:.1%}"
                if report.champion_accuracy is not None
                else ""
            )
            + f" on {report.rows:,} held-out recent rows)"
        )
    return "gates failed: " + "; ".join(f"{g.name} ({g.observed})" for g in report.failed)


def rows_for_labels(
    settings: Settings, dataset: str, labels: pl.DataFrame
) -> tuple[pl.DataFrame | None, tuple[str, ...]]:
    """The processed rows these labels belong to, labelled; and the batches they came from."""
    spec = DatasetCatalog(settings).get(dataset).spec
    id_column = str(spec.id)
    wanted = set(labels[id_column].to_list())
    frames, batches = [], []
    for entry in LandingZone(settings).entries(dataset):
        if entry.state is not BatchState.processed:
            continue
        try:
            frame = read_table(entry.location)
        except MlopsError:
            continue
        if id_column not in frame.columns:
            continue
        rows = frame.filter(pl.col(id_column).cast(pl.String).is_in(wanted))
        if rows.height:
            if spec.target in rows.columns:
                rows = rows.drop(str(spec.target))
            frames.append(attach_labels(rows, labels, spec))
            batches.append(entry.sha256)
    if not frames:
        return None, ()
    return pl.concat(frames, how="vertical_relaxed"), tuple(batches)


def retrain_limit_name(dataset: str) -> str:
    """The Prefect global concurrency limit that lets one retrain per dataset run at a time."""
    return f"mlops-retrain-{dataset}"


def warm_champion(settings: Settings, dataset: str) -> str | None:
    """Load the champion, its holdout and estimator into this process's cache; its version."""
    registry = ModelRegistry(settings, dataset)
    champion = registry.version_of(CHAMPION)
    if champion is None:
        return None
    _loaded(registry, champion, DatasetCatalog(settings).get(dataset).spec)
    return champion.version
