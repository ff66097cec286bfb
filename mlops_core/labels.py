"""Delayed labels: files of (id, label) that land after their batch and are joined to it by id.

A labels file is a parquet or CSV table with the spec's ``id`` column and its ``target`` column
(other columns are ignored). It lands like a batch (the landing zone's ``labels`` kind,
ledger table ``labels``, folders ``<root>/<dataset>/labels/``) and settles processed or
quarantined with a report. The labels of every processed labels file, newest winning for an id
seen twice, fill the label column of earlier batches wherever it is missing.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from mlops_core.data import read_table
from mlops_core.errors import MlopsError, UnusableInputError
from mlops_core.spec import DatasetSpec


def label_columns(spec: DatasetSpec) -> tuple[str, str]:
    """The id and label columns; a spec without both cannot take delayed labels."""
    if spec.id is None or spec.target is None:
        raise MlopsError(
            f"dataset {spec.name!r} needs both `id` and `target` in its spec to join delayed labels",
            hint="add them to the spec, or ship labels inside the batches",
        )
    return spec.id, spec.target


def read_labels(path: Path, spec: DatasetSpec, *, max_bytes: int | None = None) -> pl.DataFrame:
    """The (id, label) rows of a labels file; ``UnusableInputError`` says what is wrong."""
    id_column, target = label_columns(spec)
    frame = read_table(path, max_bytes=max_bytes)
    missing = [c for c in (id_column, target) if c not in frame.columns]
    if missing:
        raise UnusableInputError(
            f"{path}: a labels file needs the columns {id_column!r} and {target!r}; "
            f"missing {', '.join(repr(m) for m in missing)}",
            hint=f"write one row per {id_column} with its {target}",
        )
    frame = frame.select(id_column, target)
    nulls = frame[target].null_count()
    if nulls == frame.height:
        raise UnusableInputError(f"{path}: every {target!r} is empty; nothing to join")
    return frame.filter(pl.col(target).is_not_null()).with_columns(
        pl.col(id_column).cast(pl.String)
    )


def attach_labels(
    frame: pl.DataFrame, labels: pl.DataFrame | None, spec: DatasetSpec
) -> pl.DataFrame:
    """``frame`` with its label column filled from ``labels`` by id where it is missing."""
    if labels is None or spec.id is None or spec.target is None or spec.id not in frame.columns:
        return frame
    id_column, target = spec.id, spec.target
    joined = frame.with_columns(pl.col(id_column).cast(pl.String).alias("__mlops_id")).join(
        labels.rename({id_column: "__mlops_id", target: "__mlops_label"}),
        on="__mlops_id",
        how="left",
    )
    if target in frame.columns:
        filled = pl.coalesce(pl.col(target), pl.col("__mlops_label").cast(frame.schema[target]))
    else:
        filled = pl.col("__mlops_label")
    return joined.with_columns(filled.alias(target)).drop("__mlops_id", "__mlops_label")


def attach_labels_to_each(
    frames: list[pl.DataFrame], labels: pl.DataFrame | None, spec: DatasetSpec
) -> list[pl.DataFrame]:
    """``attach_labels`` of every frame, with one join for them all (``labels`` one row per id):
    a join builds its table of ``labels`` once, however many frames it serves."""
    if labels is None or spec.id is None or spec.target is None:
        return frames
    id_column, target = spec.id, spec.target
    having = [i for i, frame in enumerate(frames) if id_column in frame.columns]
    if len(having) < 2:
        return [attach_labels(frame, labels, spec) for frame in frames]
    ids = pl.concat(
        [frames[i].select(pl.col(id_column).cast(pl.String).alias("__mlops_id")) for i in having]
    )
    found = ids.join(
        labels.rename({id_column: "__mlops_id", target: "__mlops_label"}),
        on="__mlops_id",
        how="left",
        maintain_order="left",
    )["__mlops_label"]
    if found.len() != ids.height:  # a repeated id in labels: the join added rows
        return [attach_labels(frame, labels, spec) for frame in frames]
    out, offset = list(frames), 0
    for i in having:
        frame = frames[i]
        part = found.slice(offset, frame.height)
        offset += frame.height
        if target in frame.columns:
            column = frame[target]
            out[i] = frame.with_columns(column.fill_null(part.cast(column.dtype)).alias(target))
        else:
            out[i] = frame.with_columns(part.alias(target))
    return out
