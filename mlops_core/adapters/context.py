"""One resolved handle per dataset: its spec and reference, registry, landing zones and history.

A flow run opens it once (``DatasetContext.open``) and hands it to every task, so no task
resolves the dataset again: the spec is parsed once (the catalog caches it), the registry holds
one MLflow client, and the champion is loaded once per process and version. It is the
``DatasetPort`` the core's verbs read the world through.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from mlops_core.adapters.catalog import DatasetCatalog, RegisteredDataset
from mlops_core.adapters.gx_project import (
    DataDocs,
    build_data_docs,
    load_suite,
    validate_file,
    validate_frame,
)
from mlops_core.adapters.history import BatchHistory
from mlops_core.adapters.landing import LandingZone
from mlops_core.adapters.registry import ModelRegistry
from mlops_core.batches import LedgerEntry
from mlops_core.data import read_table, sha256_file
from mlops_core.ports import LoadedModel, ModelLog, RegisteredVersion, TrainingInput, TrainingRecord
from mlops_core.settings import Settings
from mlops_core.spec import DatasetSpec
from mlops_core.tags import CHAMPION, PREVIOUS
from mlops_core.validation import ValidationReport


@dataclass(frozen=True)
class DatasetContext:
    """Everything a flow run needs to know about one dataset, resolved once."""

    settings: Settings
    registered: RegisteredDataset
    registry: ModelRegistry
    batches: LandingZone
    labels: LandingZone
    history: BatchHistory

    @classmethod
    def open(cls, settings: Settings, name: str) -> DatasetContext:
        """The handle of the registered dataset ``name`` (``UnknownDatasetError`` otherwise)."""
        registered = DatasetCatalog(settings).get(name)
        batches, labels = LandingZone(settings), LandingZone(settings, kind="labels")
        return cls(
            settings=settings,
            registered=registered,
            registry=ModelRegistry(settings, registered.name),
            batches=batches,
            labels=labels,
            history=BatchHistory(registered.spec, batches, labels),
        )

    @property
    def name(self) -> str:
        """The dataset's name."""
        return self.registered.name

    @property
    def spec(self) -> DatasetSpec:
        """The dataset's spec."""
        return self.registered.spec

    def zone(self, kind: str) -> LandingZone:
        """The landing zone of ``kind``: ``batch`` or ``labels``."""
        return self.batches if kind == "batch" else self.labels

    def read_batch(self, path: Path) -> pl.DataFrame:
        """A landed batch file, read in full (within the batch size limit)."""
        return read_table(path, max_bytes=self.settings.max_batch_bytes)

    # ------------------------------------------------------------------ DatasetPort

    def reference(self) -> pl.DataFrame:
        """The registered reference table."""
        return self.registered.reference()

    def reference_input(self, rows: int) -> TrainingInput:
        """The reference file as a training input of ``rows`` labelled rows."""
        path = self.registered.reference_path
        return TrainingInput(sha256_file(path), str(path), rows)

    def _loaded(self, alias: str) -> LoadedModel | None:
        version = self.registry.version_of(alias)
        return self.registry.loaded(version, self.spec) if version is not None else None

    def champion(self) -> LoadedModel | None:
        """The champion, loaded once per process and version; None before the first model."""
        return self._loaded(CHAMPION)

    def previous(self) -> LoadedModel | None:
        """The previous champion, loaded; None when there is none."""
        return self._loaded(PREVIOUS)

    def last_training(self) -> TrainingRecord | None:
        """The newest finished training run; None before any."""
        return self.registry.last_training()

    def median_training_seconds(self) -> float | None:
        """Median fit time of past training runs; None without any."""
        return self.registry.median_training_seconds()

    def past_recoveries(self) -> tuple[float, ...]:
        """Shares of the drop this dataset's past retrains recovered, newest first."""
        return self.registry.past_recoveries()

    def processed_batches(
        self, *, after: datetime | None = None, newest_first: bool = False
    ) -> Iterator[tuple[LedgerEntry, pl.DataFrame]]:
        """Processed batches, oldest first (``newest_first``: the reverse), with delayed labels
        joined in by id; ``after``: only those processed after it."""
        return self.history.processed_batches(after=after, newest_first=newest_first)

    def log_model(self, pipeline: Any, example: pl.DataFrame, log: ModelLog) -> RegisteredVersion:
        """Log a fitted pipeline in a ``train`` run and register it as a new version."""
        return self.registry.log_model(
            pipeline,
            self.spec,
            example,
            params=log.params,
            metrics=log.metrics,
            tags=log.tags,
            holdout=log.holdout,
            lineage=log.lineage,
            parent_run_id=log.parent_run_id,
        )

    def validate_frame(self, frame: pl.DataFrame, *, source: str) -> ValidationReport:
        """Run the dataset's expectation suite on ``frame`` (no Data Docs)."""
        suite = load_suite(self.settings, self.name)
        return validate_frame(
            frame, self.spec, suite, self.settings, source=source, data_docs=False
        )

    def validate_file(
        self,
        path: Path,
        *,
        label: str,
        data_docs: DataDocs = True,
        ingested_at: datetime | None = None,
    ) -> ValidationReport:
        """Run the dataset's expectation suite on a landed file, with Data Docs (or deferred);
        ``ingested_at`` (when it landed; now when None) closes the plausible event times."""
        suite = load_suite(self.settings, self.name)
        return validate_file(
            path,
            self.spec,
            suite,
            self.settings,
            label=label,
            data_docs=data_docs,
            ingested_at=ingested_at,
        )

    def build_data_docs(self, report: ValidationReport) -> str | None:
        """Render a report's deferred Data Docs page and the index; the index's path."""
        return build_data_docs(self.settings, report)
