"""What the core's verbs need from the world, as a protocol the adapters fulfil.

The verbs (``mlops_core.assessment``, ``mlops_core.challenger``) compute and decide; they read the
registry, the batch history and the GX project through a ``DatasetPort``, which
``mlops_core.adapters.context.DatasetContext`` implements. So the core never imports an adapter,
and a test can hand a verb a port of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import polars as pl

from mlops_core.batches import LedgerEntry
from mlops_core.performance import PerformanceEstimator
from mlops_core.settings import Settings
from mlops_core.spec import DatasetSpec
from mlops_core.validation import ValidationReport


@dataclass(frozen=True)
class TrainingInput:
    """One file a model was trained on, for MLflow's dataset lineage."""

    sha256: str
    path: str
    rows: int


@dataclass(frozen=True)
class RegisteredVersion:
    """A model version in the registry and the run that logged it."""

    name: str
    version: str
    run_id: str


@dataclass(frozen=True)
class TrainingRecord:
    """When a finished training run started, and the newest event time it trained on."""

    started_at: datetime
    data_until: datetime | None
    # Where the concept it learnt began (a change point), and how many rows of it it trained on.
    concept_since: datetime | None = None
    concept_rows: int | None = None


@dataclass(frozen=True)
class LoadedModel:
    """A registered version loaded for judging: the model, its holdout, its fitted estimator."""

    version: RegisteredVersion
    model: Any
    holdout: pl.DataFrame
    estimator: PerformanceEstimator
    trained: TrainingRecord | None = None  # the training run that made it


@dataclass(frozen=True)
class ModelLog:
    """What a ``train`` run records beside the fitted pipeline."""

    params: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str]
    holdout: pl.DataFrame
    lineage: tuple[TrainingInput, ...]
    parent_run_id: str | None


class DatasetPort(Protocol):
    """One dataset's view of the world, as the verbs use it."""

    @property
    def settings(self) -> Settings:
        """The settings this handle was opened with."""
        ...

    @property
    def spec(self) -> DatasetSpec:
        """The dataset's spec."""
        ...

    def reference(self) -> pl.DataFrame:
        """The registered reference table."""
        ...

    def reference_input(self, rows: int) -> TrainingInput:
        """The reference file as a training input of ``rows`` labelled rows."""
        ...

    def champion(self) -> LoadedModel | None:
        """The champion, loaded (once per process and version); None before the first model."""
        ...

    def previous(self) -> LoadedModel | None:
        """The previous champion, loaded; None when there is none."""
        ...

    def last_training(self) -> TrainingRecord | None:
        """The newest finished training run; None before any."""
        ...

    def median_training_seconds(self) -> float | None:
        """Median fit time of past training runs; None without any."""
        ...

    def past_recoveries(self) -> tuple[float, ...]:
        """Shares of the drop this dataset's past retrains recovered, newest first."""
        ...

    def processed_batches(
        self, *, after: datetime | None = None, newest_first: bool = False
    ) -> Iterator[tuple[LedgerEntry, pl.DataFrame]]:
        """Processed batches, oldest first (``newest_first``: the reverse), with delayed labels
        joined in by id; ``after``: only those processed after it."""
        ...

    def log_model(self, pipeline: Any, example: pl.DataFrame, log: ModelLog) -> RegisteredVersion:
        """Log a fitted pipeline in a ``train`` run and register it as a new version."""
        ...

    def validate_frame(self, frame: pl.DataFrame, *, source: str) -> ValidationReport:
        """Run the dataset's expectation suite on ``frame`` (no Data Docs)."""
        ...
