"""A challenger's making: gather its training data, train and register it, judge it at the gates.

* ``gather_training_data`` builds the training window from the reference and every processed
  labelled batch, holding out the newest labelled batch's gate rows (``mlops_core.holdout``:
  rows that no decision used) for the gates.
* ``train_challenger`` fits the pipeline and logs it as a new registered version, with its
  *reference holdout*: the newest rows that training held out and the gates never saw. The
  performance estimator calibrates on them and "accuracy fell" compares to their accuracy, so the
  rows that selected a model (its gate rows) never set the yardstick it is later held to.
* ``gate_challenger`` runs every gate of ``mlops_core.evaluation`` against the champion.

Each reads and writes the world through a ``DatasetPort`` and returns a typed value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from mlops_core.assessment import data_time, labelled
from mlops_core.errors import MlopsError
from mlops_core.evaluation import GateReport, evaluate_challenger
from mlops_core.holdout import gate_rows
from mlops_core.performance import predictions
from mlops_core.ports import DatasetPort, ModelLog, TrainingInput
from mlops_core.spec import DatasetSpec
from mlops_core.tags import BATCH_SHA256, DATA_UNTIL, DECISION_RUN
from mlops_core.training import train_model, training_window


@dataclass(frozen=True)
class TrainingData:
    """The window to train on, the recent rows held out for the gates, and where they came from."""

    window: pl.DataFrame
    gate_holdout: pl.DataFrame
    lineage: tuple[TrainingInput, ...]
    data_until: datetime | None
    sources: int = field(default=0)
    newest_rows: int = field(default=0)  # the window's last rows that come from the newest batch


@dataclass(frozen=True)
class Challenger:
    """A trained and registered model version, not yet judged."""

    version: str
    run_id: str
    model: Any
    holdout_accuracy: float
    train_rows: int
    seconds: float


def _labelled_sources(
    port: DatasetPort, *, first_model: bool
) -> list[tuple[TrainingInput, pl.DataFrame]]:
    """The labelled reference, then (after the first model) every labelled processed batch."""
    spec = port.spec
    sources: list[tuple[TrainingInput, pl.DataFrame]] = []
    reference = labelled(port.reference(), spec)
    if reference.height:
        sources.append((port.reference_input(reference.height), reference))
    if not first_model:
        for entry, batch in port.processed_batches():
            frame = labelled(batch, spec)
            if frame.height and all(c in frame.columns for c in [*spec.features, str(spec.target)]):
                sources.append(
                    (TrainingInput(entry.sha256, str(entry.location), frame.height), frame)
                )
    return sources


def gather_training_data(port: DatasetPort, *, first_model: bool = False) -> TrainingData:
    """The reference and every processed labelled batch, oldest first, as a training window.

    For the first model the whole reference is the window and its gate holdout a seeded share of
    it. Otherwise a ``gate_holdout_fraction`` share of the newest labelled batch is held out for
    the gates, and the window is the newest ``train_recent_rows`` of the rest plus a sample of
    ``train_older_rows`` older ones.
    """
    spec, settings = port.spec, port.settings
    target = spec.target
    if target is None:
        raise MlopsError(
            f"dataset {spec.name!r} has no target in its spec, so no model can be trained",
            hint="add `target:` to the spec",
        )
    columns = list(spec.known_columns)
    sources = _labelled_sources(port, first_model=first_model)
    if not sources:
        raise MlopsError(
            f"dataset {spec.name!r} has no labelled rows to train on (label column {target!r})",
            hint="register a reference with labels, or process labelled batches",
        )
    newest = sources[-1][1]
    until = max(
        (t for t in (data_time(f, spec) for _, f in sources) if t is not None), default=None
    )
    # The newest batch's gate rows (mlops_core.holdout): never decided on, never trained on.
    held = gate_rows(newest, spec, settings.gate_holdout_fraction)
    gate_holdout, rest = newest.filter(held), newest.filter(~held)
    frames = [_columns(f, columns) for _, f in sources[:-1]] + [_columns(rest, columns)]
    config = settings.training_config()
    if first_model:
        window = pl.concat(frames, how="vertical_relaxed")
        newest_rows = window.height
    else:
        # training_window keeps the newest rows last, all of them up to ``recent_rows``.
        window = training_window(frames, spec, config)
        newest_rows = min(rest.height, config.recent_rows, window.height)
    return TrainingData(
        window=window,
        gate_holdout=_columns(gate_holdout, columns),
        lineage=tuple(item for item, _ in sources),
        data_until=until,
        sources=len(sources),
        newest_rows=newest_rows,
    )


MIN_REFERENCE_ROWS = 200


def reference_holdout(data: TrainingData, held_out: npt.NDArray[np.bool_]) -> pl.DataFrame:
    """The rows a new model is measured against from now on: held out of training, never gated.

    The newest batch's held-out rows, when there are at least ``MIN_REFERENCE_ROWS`` of them;
    otherwise the newest ``MIN_REFERENCE_ROWS`` held-out rows of the window. Never the gate rows:
    the model was selected on those, so its accuracy there is biased upwards (a winner's curse)
    and an estimator calibrated there would expect too much of it.
    """
    rows = np.flatnonzero(held_out)
    newest = rows[rows >= data.window.height - data.newest_rows]
    chosen = newest if newest.size >= MIN_REFERENCE_ROWS else rows[-MIN_REFERENCE_ROWS:]
    return data.window[chosen]


def _accuracy(model: Any, frame: pl.DataFrame, spec: DatasetSpec) -> float:
    if not frame.height:
        return float("nan")
    truth = frame[str(spec.target)].to_numpy()
    return float((predictions(model, frame, spec)[0].astype(truth.dtype) == truth).mean())


def _columns(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    return frame.select([c for c in columns if c in frame.columns])


def train_challenger(
    port: DatasetPort,
    data: TrainingData,
    *,
    batch_sha256: str = "",
    parent_run_id: str | None = None,
) -> Challenger:
    """Fit the pipeline on the window and log it in a ``train`` run, registered as a new version."""
    spec = port.spec
    config = port.settings.training_config()
    trained = train_model(data.window, spec, config)
    # The model's own reference: recent rows it did not train on and was not selected on (see
    # reference_holdout), not the mixed window and not the gate rows.
    recent = labelled(reference_holdout(data, trained.held_out), spec)
    recent_accuracy = _accuracy(trained.pipeline, recent, spec)
    gated = labelled(data.gate_holdout, spec)
    tags = {BATCH_SHA256: batch_sha256}
    if data.data_until is not None:
        tags[DATA_UNTIL] = data.data_until.isoformat()
    if parent_run_id:
        tags[DECISION_RUN] = parent_run_id
    log = ModelLog(
        params={**config.model_dump(), "window_rows": data.window.height, "sources": data.sources},
        metrics={
            "holdout_accuracy": recent_accuracy,
            "holdout_rows": recent.height,
            "gate_holdout_accuracy": _accuracy(trained.pipeline, gated, spec),
            "window_holdout_accuracy": trained.holdout_accuracy,
            "training_seconds": trained.seconds,
            "train_rows": trained.train_rows,
        },
        tags=tags,
        holdout=recent,
        lineage=data.lineage,
        parent_run_id=parent_run_id,
    )
    registered = port.log_model(trained.pipeline, data.window, log)
    return Challenger(
        registered.version,
        registered.run_id,
        trained.pipeline,
        recent_accuracy,
        trained.train_rows,
        trained.seconds,
    )


def gate_challenger(port: DatasetPort, challenger: Challenger, data: TrainingData) -> GateReport:
    """Every gate of ``evaluation`` on the held-out recent rows, against the current champion."""
    champion = port.champion()
    window_report = port.validate_frame(
        data.window, source=f"training window of v{challenger.version}"
    )
    return evaluate_challenger(
        challenger.model,
        champion.model if champion is not None else None,
        data.gate_holdout,
        port.spec,
        training_data_valid=window_report.success,
        config=port.settings.gate_config(),
    )


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


def retrain_limit_name(dataset: str) -> str:
    """The Prefect global concurrency limit that lets one retrain per dataset run at a time."""
    return f"mlops-retrain-{dataset}"
