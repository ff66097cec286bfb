"""A dataset's batch history: what was processed, with the delayed labels that arrived since.

Reads the landing zone's processed batches and labels files; the verbs use it to count labelled
rows, build training windows, and find the rows a labels file belongs to.

A handle remembers what it read. A flow run opens one handle and asks it several questions (the
assessment alone walks the history up to three times), so each processed file is read once per
run, up to ``history_cache_mib`` of frames; files are content-addressed and never change once
processed. The labels are joined again only when the processed labels files change.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from mlops_core.adapters.landing import LandingZone
from mlops_core.batches import BatchState, LedgerEntry
from mlops_core.data import read_table
from mlops_core.errors import MlopsError
from mlops_core.labels import attach_labels, attach_labels_to_each, label_columns, read_labels
from mlops_core.outcomes import LabelledRows
from mlops_core.spec import DatasetSpec

JOIN_CHUNK = 32  # batches joined to the labels at once (one hash table of the labels per chunk)
_UNREADABLE = object()  # a processed file that could not be read, remembered as such


class _Memo:
    """What one handle has read: frames by kind and sha256 (least recently used first, within a byte
    budget), and the joined labels for one set of processed labels files."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.frames: OrderedDict[str, Any] = OrderedDict()
        self.bytes = 0
        self.labels_key: tuple[str, ...] | None = None
        self.labels: pl.DataFrame | None = None
        self.joined: dict[str, pl.DataFrame] = {}  # a kept frame, with labels_key's labels

    def __getstate__(self) -> dict[str, Any]:  # a handle sent elsewhere starts with no memory
        return {}

    def __setstate__(self, _: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]

    def get(self, sha256: str) -> Any:
        with self.lock:
            frame = self.frames.get(sha256)
            if frame is not None:
                self.frames.move_to_end(sha256)
            return frame

    def put(self, sha256: str, frame: Any, budget: int) -> None:
        size = int(frame.estimated_size()) if isinstance(frame, pl.DataFrame) else 0
        with self.lock:
            if sha256 in self.frames or size > budget:
                return
            self.frames[sha256] = frame
            self.bytes += size
            while self.bytes > budget:
                old, dropped = self.frames.popitem(last=False)
                self.joined.pop(old, None)
                if isinstance(dropped, pl.DataFrame):
                    self.bytes -= int(dropped.estimated_size())


@dataclass(frozen=True)
class BatchHistory:
    """The processed batches and labels files of one dataset."""

    spec: DatasetSpec
    batches: LandingZone
    labels: LandingZone
    _memo: _Memo = field(default_factory=_Memo, compare=False, repr=False)

    @property
    def _budget(self) -> int:
        return int(self.batches.settings.history_cache_mib * 1024**2)

    def _processed(self, zone: LandingZone) -> list[LedgerEntry]:
        return [e for e in zone.entries(self.spec.name) if e.state is BatchState.processed]

    def _read(self, zone: LandingZone, entry: LedgerEntry, read: Any) -> pl.DataFrame | None:
        """``read`` of the entry's file, remembered; None when it cannot be read."""
        key = f"{zone.kind}:{entry.sha256}"
        frame = self._memo.get(key)
        if frame is None:
            try:
                frame = read(zone.local_file(entry))
            except MlopsError:
                frame = _UNREADABLE
            self._memo.put(key, frame, self._budget)
        return None if frame is _UNREADABLE else frame

    def known_labels(self) -> pl.DataFrame | None:
        """Every processed label (newest file wins for a repeated id); None if none."""
        return self._labels(self._processed(self.labels))

    def _labels(self, entries: list[LedgerEntry]) -> pl.DataFrame | None:
        key = tuple(entry.sha256 for entry in entries)
        memo = self._memo
        with memo.lock:
            if memo.labels_key == key:
                return memo.labels
        id_column, _ = label_columns(self.spec)
        read = lambda path: read_labels(path, self.spec)  # noqa: E731
        frames = [f for e in entries if (f := self._read(self.labels, e, read)) is not None]
        combined = None
        if frames:
            combined = pl.concat(frames, how="vertical_relaxed")
            combined = combined.unique(subset=[id_column], keep="last", maintain_order=True)
        with memo.lock:
            memo.labels_key, memo.labels, memo.joined = key, combined, {}
        return combined

    def processed_batches(
        self, *, after: datetime | None = None, newest_first: bool = False
    ) -> Iterator[tuple[LedgerEntry, pl.DataFrame]]:
        """Processed batches, oldest first (``newest_first``: the reverse), with delayed labels
        joined in by id; ``after``: only those processed after it (no other file is read)."""
        spec = self.spec
        labels = self.known_labels() if spec.id and spec.target else None
        memo, labels_key = self._memo, self._memo.labels_key
        walk = self._readable_batches(after=after, newest_first=newest_first)
        while chunk := list(itertools.islice(walk, JOIN_CHUNK)):
            if labels is None:
                yield from chunk
                continue
            keys = [f"{self.batches.kind}:{entry.sha256}" for entry, _ in chunk]
            with memo.lock:
                joined = {k: memo.joined[k] for k in keys if k in memo.joined}
            todo = [i for i, key in enumerate(keys) if key not in joined]
            done = attach_labels_to_each([chunk[i][1] for i in todo], labels, spec)
            fresh = {keys[i]: frame for i, frame in zip(todo, done, strict=True)}
            with memo.lock:  # kept only beside its frame, and for the labels it was joined to
                if memo.labels_key == labels_key:
                    memo.joined.update((k, f) for k, f in fresh.items() if k in memo.frames)
            joined.update(fresh)
            for (entry, _), key in zip(chunk, keys, strict=True):
                yield entry, joined[key]

    def _readable_batches(
        self, *, after: datetime | None = None, newest_first: bool = False
    ) -> Iterator[tuple[LedgerEntry, pl.DataFrame]]:
        """Processed batches whose file can still be read, oldest first (or newest first)."""
        entries = self._processed(self.batches)
        if after is not None:
            entries = [e for e in entries if datetime.fromisoformat(e.updated_at) > after]
        for entry in reversed(entries) if newest_first else entries:
            frame = self._read(self.batches, entry, read_table)
            if frame is not None:
                yield entry, frame

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
