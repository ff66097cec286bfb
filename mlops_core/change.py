"""Where the champion's accuracy changed, in the dataset's labelled history (reads a port).

``locate_change`` lines up the champion's right and wrong answers, oldest first: its reference
holdout (the newest rows before its training ended), then the decision rows (``mlops_core.holdout``)
of every processed labelled batch it did not train on -- rows after its training data's newest
timestamp when the spec names a timestamp, in event-time order; otherwise batches processed after
its training run -- then the rows being decided on. ``mlops_core.changepoint.scan`` finds the
single most likely change in that sequence. The estimate says where the new regime begins (a
timestamp, or a file and row), with a 95% interval, the accuracy either side, the permutation
p-value, and the labelled rows since the change, so the policy can wait for enough of them and the
training window can start there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from mlops_core.changepoint import scan
from mlops_core.data import event_times
from mlops_core.holdout import decision_rows, labelled
from mlops_core.performance import features, predictions
from mlops_core.ports import DatasetPort, LoadedModel
from mlops_core.spec import DatasetSpec

CHANGE_ALPHA = 0.05  # a change is acted on only when its permutation p-value is at most this
MAX_SCANNED_ROWS = 20_000


@dataclass(frozen=True)
class ChangeEstimate:
    """Where the champion's accuracy changed, how sure, and how many labelled rows came since."""

    at: str
    low: str
    high: str
    file: str
    since: datetime | None  # the first row of the new regime, when the spec names a timestamp
    accuracy_before: float
    accuracy_after: float
    p_value: float
    rows_scanned: int
    labelled_rows_since: int

    @property
    def significant(self) -> bool:
        """A change in either direction, at ``CHANGE_ALPHA``."""
        return self.p_value <= CHANGE_ALPHA

    @property
    def is_drop(self) -> bool:
        """A significant fall in accuracy: the case a training window should start from."""
        return self.significant and self.accuracy_after < self.accuracy_before

    def summary(self) -> str:
        """One line for a person."""
        return (
            f"accuracy changed {self.accuracy_before:.1%} -> {self.accuracy_after:.1%} at "
            f"{self.at} (95% interval {self.low} to {self.high}; permutation p = "
            f"{self.p_value:.3f}; {self.labelled_rows_since:,} labelled rows since)"
        )

    def evidence_fields(self) -> dict[str, Any]:
        """The ``Evidence`` keyword arguments this estimate fills."""
        return {
            "change_p_value": self.p_value,
            "change_at": self.at,
            "change_interval": (self.low, self.high),
            "accuracy_before_change": self.accuracy_before,
            "accuracy_after_change": self.accuracy_after,
            "labelled_rows_since_change": self.labelled_rows_since,
        }


_HISTORY_SCHEMA: dict[str, pl.DataType] = {
    "file": pl.String(),
    "row": pl.UInt32(),
    "_time": pl.Datetime("us", "UTC"),
    "right": pl.Boolean(),
}


def _candidates(
    frame: pl.DataFrame, spec: DatasetSpec, name: str, after: datetime | None
) -> pl.DataFrame:
    """``frame``'s labelled rows (after ``after``, in event-time order), with ``row`` (their
    position in ``frame``'s labelled rows) and ``_time``."""
    rows = labelled(frame, spec).with_row_index("row")
    times = event_times(rows, spec)
    rows = rows.with_columns(
        (times if times is not None else pl.lit(None, dtype=pl.Datetime("us", "UTC")))
        .cast(pl.Datetime("us", "UTC"))
        .alias("_time")
    )
    if after is not None and times is not None:
        rows = rows.filter(pl.col("_time") > after)
    if times is not None:
        rows = rows.sort("_time", maintain_order=True)
    return rows


def _answers(model: Any, parts: list[tuple[str, pl.DataFrame]], spec: DatasetSpec) -> pl.DataFrame:
    """Each part's rows as file, row, time and whether ``model`` got them right, in order: one
    prediction over all of them (a call per batch costs more than the rows do)."""
    parts = [(name, rows) for name, rows in parts if rows.height]
    if not parts:
        return pl.DataFrame(schema=_HISTORY_SCHEMA)
    inputs = pl.concat([features(rows, spec) for _, rows in parts])
    predicted = predictions(model, inputs, spec)[0]
    answers, offset = [], 0
    for name, rows in parts:
        truth = rows[str(spec.target)].to_numpy()
        right = predicted[offset : offset + rows.height].astype(truth.dtype) == truth
        offset += rows.height
        answers.append(
            pl.DataFrame(
                {"file": [name] * rows.height, "row": rows["row"], "_time": rows["_time"]}
            ).with_columns(right=pl.Series(right, dtype=pl.Boolean))
        )
    return pl.concat(answers, how="vertical_relaxed")


def champion_history(
    port: DatasetPort,
    champion: LoadedModel,
    frame: pl.DataFrame | None = None,
    *,
    exclude: Iterable[str] = (),
) -> pl.DataFrame:
    """The champion's right/wrong answers, oldest first, on rows it did not train on (see the
    module docstring): columns ``file``, ``row``, ``_time``, ``right``; the newest
    ``MAX_SCANNED_ROWS`` of them, so only the batches that hold those are read."""
    spec, settings = port.spec, port.settings
    fraction = settings.gate_holdout_fraction
    trained = champion.trained
    until = trained.data_until if trained else None
    skip = set(exclude)
    newest: list[tuple[str, pl.DataFrame]] = []  # newest first
    if frame is not None:
        deciding = decision_rows(labelled(frame, spec), spec, fraction)
        newest.append(("this batch", _candidates(deciding, spec, "this batch", until)))
    found = sum(rows.height for _, rows in newest)
    for entry, batch in port.processed_batches(newest_first=True):
        if found >= MAX_SCANNED_ROWS:
            break
        if entry.sha256 in skip:
            continue
        if (
            until is None
            and trained is not None
            and datetime.fromisoformat(entry.updated_at) <= trained.started_at
        ):
            continue  # no timestamps: batches processed before its training may be in it
        deciding = decision_rows(labelled(batch, spec), spec, fraction)
        name = entry.original_name
        newest.append((name, _candidates(deciding, spec, name, until)))
        found += newest[-1][1].height
    if found < MAX_SCANNED_ROWS:
        name = f"v{champion.version.version} holdout"
        newest.append((name, _candidates(champion.holdout, spec, name, None)))
    # Oldest first, then only the newest rows are predicted.
    parts, room = [], MAX_SCANNED_ROWS
    for name, rows in newest:
        if room <= 0:
            break
        parts.append((name, rows.tail(room)))
        room -= min(room, rows.height)
    return _answers(champion.model, parts[::-1], spec)


def _where(history: pl.DataFrame, index: int) -> str:
    row = history.row(min(index, history.height - 1), named=True)
    when = row["_time"]
    if isinstance(when, datetime):
        return when.astimezone(UTC).isoformat(timespec="minutes")
    return f"{row['file']} row {row['row']}"


def locate_change(
    port: DatasetPort,
    champion: LoadedModel,
    frame: pl.DataFrame | None = None,
    *,
    exclude: Iterable[str] = (),
) -> ChangeEstimate | None:
    """The most likely change in the champion's accuracy over its labelled history; None when the
    history is too short to split."""
    history = champion_history(port, champion, frame, exclude=exclude)
    point = scan(history["right"].to_numpy())
    if point is None:
        return None
    first = history.row(point.index, named=True)
    since = first["_time"] if isinstance(first["_time"], datetime) else None
    decided = history.height - point.index
    share = 1.0 - port.settings.gate_holdout_fraction  # decision rows are this share of labels
    return ChangeEstimate(
        at=_where(history, point.index),
        low=_where(history, point.low),
        high=_where(history, point.high),
        file=str(first["file"]),
        since=since,
        accuracy_before=point.before,
        accuracy_after=point.after,
        p_value=point.p_value,
        rows_scanned=point.rows,
        labelled_rows_since=round(decided / share),
    )


def rows_since(
    port: DatasetPort,
    since: datetime,
    frame: pl.DataFrame | None = None,
    *,
    exclude: Iterable[str] = (),
) -> int:
    """Labelled rows with an event time at or after ``since``: in every processed batch (those in
    ``exclude`` aside) and in ``frame``."""
    spec = port.spec
    skip = set(exclude)
    frames = [batch for entry, batch in port.processed_batches() if entry.sha256 not in skip]
    if frame is not None:
        frames.append(frame)
    total = 0
    for batch in frames:
        rows = labelled(batch, spec)
        times = event_times(rows, spec)
        if times is not None:
            total += int((times >= since).fill_null(False).sum())
    return total
