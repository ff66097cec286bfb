"""A dataset's batch history: what was processed, with the delayed labels that arrived since.

Reads the landing zone's processed batches and labels files; the verbs use it to count labelled
rows, build training windows, and find the rows a labels file belongs to.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl

from mlops_core.adapters.landing import LandingZone
from mlops_core.batches import BatchState, LedgerEntry
from mlops_core.data import read_table
from mlops_core.errors import MlopsError
from mlops_core.labels import attach_labels, label_columns, read_labels
from mlops_core.outcomes import LabelledRows
from mlops_core.spec import DatasetSpec


@dataclass(frozen=True)
class BatchHistory:
    """The processed batches and labels files of one dataset."""

    spec: DatasetSpec
    batches: LandingZone
    labels: LandingZone

    def _processed(self, zone: LandingZone) -> Iterator[LedgerEntry]:
        for entry in zone.entries(self.spec.name):
            if entry.state is BatchState.processed:
                yield entry

    def known_labels(self) -> pl.DataFrame | None:
        """Every processed label (newest file wins for a repeated id); None if none."""
        id_column, _ = label_columns(self.spec)
        frames = []
        for entry in self._processed(self.labels):
            try:
                frames.append(read_labels(self.labels.local_file(entry), self.spec))
            except MlopsError:
                continue
        if not frames:
            return None
        combined = pl.concat(frames, how="vertical_relaxed")
        return combined.unique(subset=[id_column], keep="last", maintain_order=True)

    def processed_batches(self) -> Iterator[tuple[LedgerEntry, pl.DataFrame]]:
        """Every processed batch, oldest first, with delayed labels joined in by id."""
        spec = self.spec
        labels = self.known_labels() if spec.id and spec.target else None
        for entry, frame in self._readable_batches():
            yield entry, attach_labels(frame, labels, spec)

    def _readable_batches(self) -> Iterator[tuple[LedgerEntry, pl.DataFrame]]:
        """Processed batches whose file can still be read, oldest first."""
        for entry in self._processed(self.batches):
            try:
                yield entry, read_table(self.batches.local_file(entry))
            except MlopsError:
                continue

    def rows_for_labels(self, labels: pl.DataFrame) -> LabelledRows:
        """The processed rows these labels belong to, labelled; and the batches they came from."""
        spec = self.spec
        id_column = str(spec.id)
        wanted = set(labels[id_column].to_list())
        frames, batches = [], []
        for entry, frame in self._readable_batches():
            if id_column not in frame.columns:
                continue
            rows = frame.filter(pl.col(id_column).cast(pl.String).is_in(wanted))
            if rows.height:
                if spec.target in rows.columns:
                    rows = rows.drop(str(spec.target))
                frames.append(attach_labels(rows, labels, spec))
                batches.append(entry.sha256)
        if not frames:
            return LabelledRows(None)
        return LabelledRows(pl.concat(frames, how="vertical_relaxed"), tuple(batches))
