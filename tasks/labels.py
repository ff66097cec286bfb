"""Tasks of the labels flow: read a labels file, find the rows it labels."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from mlops_core.adapters.catalog import DatasetCatalog
from mlops_core.labels import read_labels
from mlops_core.lifecycle import rows_for_labels
from mlops_core.settings import Settings


@task(cache_policy=NO_CACHE)
def read_label_file(settings: Settings, dataset: str, path: Path) -> pl.DataFrame:
    """The (id, label) rows; ``UnusableInputError`` when the file is not a labels table."""
    spec = DatasetCatalog(settings).get(dataset).spec
    return read_labels(path, spec, max_bytes=settings.max_batch_bytes)


@task(cache_policy=NO_CACHE)
def labelled_rows(
    settings: Settings, dataset: str, labels: pl.DataFrame
) -> tuple[pl.DataFrame | None, tuple[str, ...]]:
    """The processed rows these labels belong to, with the labels joined in by id."""
    return rows_for_labels(settings, dataset, labels)
