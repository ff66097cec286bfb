"""Tasks of the labels flow: read a labels file, find the rows it labels."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from mlops_core.adapters.context import DatasetContext
from mlops_core.labels import read_labels
from mlops_core.outcomes import LabelledRows


@task(cache_policy=NO_CACHE)
def read_label_file(ctx: DatasetContext, path: Path) -> pl.DataFrame:
    """The (id, label) rows; ``UnusableInputError`` when the file is not a labels table."""
    return read_labels(path, ctx.spec, max_bytes=ctx.settings.max_batch_bytes)


@task(cache_policy=NO_CACHE)
def labelled_rows(ctx: DatasetContext, labels: pl.DataFrame) -> LabelledRows:
    """The processed rows these labels belong to, with the labels joined in by id."""
    return ctx.history.rows_for_labels(labels)
