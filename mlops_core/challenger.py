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
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from mlops_core.assessment import data_time
from mlops_core.change import ChangeEstimate, locate_change, rows_since
from mlops_core.errors import MlopsError
from mlops_core.evaluation import GateReport, evaluate_challenger
from mlops_core.holdout import gate_rows, labelled, position
from mlops_core.performance import predictions
from mlops_core.ports import DatasetPort, ModelLog, TrainingInput
from mlops_core.spec import DatasetSpec
from mlops_core.tags import BATCH_SHA256, CONCEPT_SINCE, DATA_UNTIL, DECISION_RUN, WINDOW
from mlops_core.training import train_model
from mlops_core.windows import DEFAULT_WINDOW, Window, candidate_windows


@dataclass(frozen=True)
class TrainingData:
    """The window to train on, the recent rows held out for the gates, and where they came from."""

    window: pl.DataFrame
    gate_holdout: pl.DataFrame
    lineage: tuple[TrainingInput, ...]
    data_until: datetime | None
    sources: int = field(default=0)
    newest_rows: int = field(default=0)  # the window's last rows that come from the newest batch
    # Candidate windows (mlops_core.windows): ``candidates`` leave the validation rows out and
    # are scored on them; ``finals`` are the same recipes with those rows in, one is refit.
    candidates: tuple[Window, ...] = field(default=(), compare=False)
    finals: tuple[Window, ...] = field(default=(), compare=False)
    validation: pl.DataFrame | None = field(default=None, compare=False)
    change: ChangeEstimate | None = None
    concept_since: datetime | None = None  # where the current concept began, when known


@dataclass(frozen=True)
class Challenger:
    """A trained and registered model version, not yet judged."""

    version: str
    run_id: str
    model: Any
    holdout_accuracy: float
    train_rows: int
    seconds: float
    window: pl.DataFrame | None = field(default=None, compare=False)  # what it was trained on
    window_name: str = DEFAULT_WINDOW
    scores: dict[str, float] = field(default_factory=dict)  # candidate -> validation accuracy


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
    # The newest event time trained on (recorded as DATA_UNTIL, the cooldown's data clock),
    # never after now: a far-future timestamp would otherwise block retraining until its date.
    until = max(
        (t for t in (data_time(f, spec) for _, f in sources) if t is not None), default=None
    )
    until = min(until, datetime.now(UTC)) if until is not None else None
    # The newest batch's gate rows (mlops_core.holdout): never decided on, never trained on.
    held = gate_rows(newest, spec, settings.gate_holdout_fraction)
    gate_holdout, rest = newest.filter(held), newest.filter(~held)
    frames = [_columns(f, columns) for _, f in sources[:-1]] + [_columns(rest, columns)]
    config = settings.training_config()
    common: dict[str, Any] = {
        "gate_holdout": _columns(gate_holdout, columns),
        "lineage": tuple(item for item, _ in sources),
        "data_until": until,
        "sources": len(sources),
    }
    if first_model:
        window = pl.concat(frames, how="vertical_relaxed")
        return TrainingData(window=window, newest_rows=window.height, **common)
    # Validation rows: a further hash band of the newest batch, in no candidate window, scored
    # on to choose one; then the chosen recipe is refit with them in.
    band = position(rest, spec)
    lower = settings.gate_holdout_fraction
    in_validation = pl.Series(
        (band >= lower) & (band < lower + settings.window_validation_fraction)
    )
    validation, pool = rest.filter(in_validation), rest.filter(~in_validation)
    older = frames[:-1]
    champion = port.champion()
    change = locate_change(port, champion) if champion is not None else None
    since = change.since if change is not None and change.is_drop else None
    if since is None and champion is not None and champion.trained is not None:
        since = champion.trained.concept_since  # the concept the champion learnt goes on
    finals = candidate_windows(frames, spec, config, since=since)
    candidates: list[Window] = []
    if settings.window_selection and validation.height >= MIN_VALIDATION_ROWS and pool.height:
        candidates = candidate_windows([*older, _columns(pool, columns)], spec, config, since=since)
    default = finals[0]
    return TrainingData(
        window=default.frame,
        newest_rows=default.newest_rows,
        candidates=tuple(candidates),
        finals=tuple(finals),
        validation=_columns(validation, columns),
        change=change,
        concept_since=since,
        **common,
    )


MIN_VALIDATION_ROWS = 100


MIN_REFERENCE_ROWS = 200


def reference_holdout(
    window: pl.DataFrame,
    newest_rows: int,
    held_out: npt.NDArray[np.bool_],
    avoid: npt.NDArray[np.bool_] | None = None,
) -> pl.DataFrame:
    """The rows a new model is measured against from now on: held out of training, never gated.

    The newest batch's held-out rows (its last ``newest_rows``), those not in ``avoid`` (the
    validation rows that chose its window) first; at least ``MIN_REFERENCE_ROWS``, reaching back
    to older held-out rows only when the newest are too few. Never the gate rows: the model was
    selected on those, so its accuracy there is biased upwards (a winner's curse) and an
    estimator calibrated there would expect too much of it.
    """
    rows = np.flatnonzero(held_out)
    recent = rows >= window.height - newest_rows
    avoided = avoid[rows] if avoid is not None else np.zeros(rows.size, dtype=np.bool_)
    chosen = rows[recent & ~avoided]
    for extra in (rows[recent & avoided], rows[~recent]):
        if chosen.size >= MIN_REFERENCE_ROWS:
            break
        chosen = np.concatenate([chosen, extra[::-1][: MIN_REFERENCE_ROWS - chosen.size]])
    return window[np.sort(chosen)]


def _validation_band(
    window: pl.DataFrame, newest_rows: int, port: DatasetPort
) -> npt.NDArray[np.bool_]:
    """True for the window's newest-batch rows in the validation band."""
    settings = port.settings
    band = np.zeros(window.height, dtype=np.bool_)
    if newest_rows:
        where = position(window.tail(newest_rows), port.spec)
        lower = settings.gate_holdout_fraction
        band[window.height - newest_rows :] = (where >= lower) & (
            where < lower + settings.window_validation_fraction
        )
    return band


def choose_window(port: DatasetPort, data: TrainingData) -> tuple[Window, dict[str, float]]:
    """The candidate window with the best accuracy on the validation rows (the default on a tie),
    refit-ready (its recipe over every training row), and every candidate's score."""
    spec, config = port.spec, port.settings.training_config()
    finals = {w.name: w for w in data.finals}
    if not data.candidates or data.validation is None or len(data.candidates) < 2:
        default = (
            data.finals[0] if data.finals else Window(DEFAULT_WINDOW, data.window, data.newest_rows)
        )
        return default, {}
    scored = labelled(data.validation, spec)
    scores: dict[str, float] = {}
    for candidate in data.candidates:
        if candidate.name not in finals:
            continue
        fitted = train_model(candidate.frame, spec, config, weights=candidate.weights)
        scores[candidate.name] = _accuracy(fitted.pipeline, scored, spec)
    best = max(scores, key=lambda name: (scores[name], name == DEFAULT_WINDOW))
    return finals[best], scores


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
    window, scores = choose_window(port, data)
    trained = train_model(window.frame, spec, config, weights=window.weights)
    # The model's own reference: recent rows it did not train on and was not selected on (see
    # reference_holdout), not the mixed window and not the gate rows.
    avoid = _validation_band(window.frame, window.newest_rows, port) if scores else None
    recent = labelled(
        reference_holdout(window.frame, window.newest_rows, trained.held_out, avoid), spec
    )
    recent_accuracy = _accuracy(trained.pipeline, recent, spec)
    gated = labelled(data.gate_holdout, spec)
    tags = {BATCH_SHA256: batch_sha256}
    if data.data_until is not None:
        tags[DATA_UNTIL] = data.data_until.isoformat()
    if parent_run_id:
        tags[DECISION_RUN] = parent_run_id
    tags[WINDOW] = window.name
    concept: dict[str, float] = {}
    if data.concept_since is not None:
        tags[CONCEPT_SINCE] = data.concept_since.isoformat()
        concept["concept_rows"] = float(rows_since(port, data.concept_since))
    params: dict[str, Any] = {
        **config.model_dump(),
        "window": window.name,
        "window_rows": window.frame.height,
        "sources": data.sources,
    }
    if data.change is not None:
        params["change"] = data.change.summary()
    log = ModelLog(
        params=params,
        metrics={
            "holdout_accuracy": recent_accuracy,
            "holdout_rows": recent.height,
            "gate_holdout_accuracy": _accuracy(trained.pipeline, gated, spec),
            "window_holdout_accuracy": trained.holdout_accuracy,
            "training_seconds": trained.seconds,
            "train_rows": trained.train_rows,
            **{f"window_score.{_slug(name)}": score for name, score in scores.items()},
            **concept,
            **(
                {"validation_rows": float(labelled(data.validation, spec).height)}
                if scores and data.validation is not None
                else {}
            ),
        },
        tags=tags,
        holdout=recent,
        lineage=data.lineage,
        parent_run_id=parent_run_id,
    )
    registered = port.log_model(trained.pipeline, window.frame, log)
    return Challenger(
        registered.version,
        registered.run_id,
        trained.pipeline,
        recent_accuracy,
        trained.train_rows,
        trained.seconds,
        window=window.frame,
        window_name=window.name,
        scores=scores,
    )


def _slug(name: str) -> str:
    return name.replace(" ", "_").replace("+", "_and_")


def gate_challenger(port: DatasetPort, challenger: Challenger, data: TrainingData) -> GateReport:
    """Every gate of ``evaluation`` on the held-out recent rows, against the current champion."""
    champion = port.champion()
    window = challenger.window if challenger.window is not None else data.window
    window_report = port.validate_frame(window, source=f"training window of v{challenger.version}")
    return evaluate_challenger(
        challenger.model,
        champion.model if champion is not None else None,
        data.gate_holdout,
        port.spec,
        training_data_valid=window_report.success,
        config=port.settings.gate_config(),
    )


def gate_summary(report: GateReport, data: TrainingData | None = None) -> str:
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
    failed = "gates failed: " + "; ".join(f"{g.name} ({g.observed})" for g in report.failed)
    return f"refused: {refusal_in_words(report, data)} -- {failed}"


def refusal_in_words(report: GateReport, data: TrainingData | None = None) -> str:
    """Why the gates refused, as a person would say it."""
    said = []
    for gate in report.failed:
        if gate.name == "primary":
            said.append(
                f"no better than the champion on the {report.rows:,} recent rows it was judged "
                f"on ({gate.observed})"
            )
        elif gate.name.startswith("slice:"):
            said.append(f"worse than the champion where {gate.name[6:]} ({gate.observed})")
        elif gate.name == "floor":
            said.append(f"below the accuracy floor ({gate.observed})")
        elif gate.name == "latency_p95_ms":
            said.append(f"too slow ({gate.observed})")
        elif gate.name == "training_data_valid":
            said.append("its training window failed the expectation suite")
        else:
            said.append(f"worse {gate.name.replace('_', ' ')} ({gate.observed})")
    change = data.change if data is not None else None
    if change is not None and change.is_drop:
        said.append(
            f"the new regime (accuracy fell at {change.at}) had {change.labelled_rows_since:,} "
            "labelled rows to learn from"
        )
    return "; ".join(said) or "a gate failed"


def retrain_limit_name(dataset: str) -> str:
    """The Prefect global concurrency limit that lets one retrain per dataset run at a time."""
    return f"mlops-retrain-{dataset}"
