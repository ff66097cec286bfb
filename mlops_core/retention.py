"""Retention: which settled files are old enough to delete, and which must be kept, with why.

Pure: ``plan_retention`` reads ledger entries, a cutoff and the protected batches (a sha256
prefix and the reason it is protected), and returns what ``mlops gc`` deletes and what it keeps.
Only settled files (``processed``, ``quarantined``) are ever deleted. Files still to be
processed, failed or dead-lettered wait for the pipeline or for a person. A batch in a
registered model's training data, or one that asked for the model in an open rollout, is kept
whatever its age. Labels files are kept while any batch they may label is kept: training data
joins labels to batches by id, and a labels file says nothing of which batches it labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from mlops_core.batches import FINAL_STATES, LedgerEntry


@dataclass(frozen=True)
class Kept:
    """A file old enough to delete that is kept, and why."""

    entry: LedgerEntry
    kind: str  # batch or labels
    reason: str


@dataclass(frozen=True)
class RetentionPlan:
    """What to delete (oldest first) and what is kept past the cutoff."""

    cutoff: datetime
    delete: tuple[tuple[str, LedgerEntry], ...] = ()  # (kind, entry)
    kept: tuple[Kept, ...] = field(default=())

    @property
    def bytes(self) -> int:
        """The bytes the deleted files take (their reports not counted)."""
        return sum(entry.size_bytes for _, entry in self.delete)


def protection(sha256: str, protected: Mapping[str, str]) -> str | None:
    """Why ``sha256`` is protected: the reason of the first prefix it starts with, or None."""
    for prefix, reason in protected.items():
        if prefix and sha256.startswith(prefix):
            return reason
    return None


def plan_retention(
    batches: Iterable[LedgerEntry],
    labels: Iterable[LedgerEntry],
    *,
    cutoff: datetime,
    protected: Mapping[str, str],
) -> RetentionPlan:
    """The settled files last changed before ``cutoff`` that nothing protects, and those kept."""
    delete: list[tuple[str, LedgerEntry]] = []
    kept: list[Kept] = []
    oldest_kept: str | None = None  # the oldest protected batch's time, ISO 8601 (sorts as text)
    old_batches = []
    for entry in batches:
        if entry.state not in FINAL_STATES:
            continue
        why = protection(entry.sha256, protected)
        if why is not None and (oldest_kept is None or entry.submitted_at < oldest_kept):
            oldest_kept = entry.submitted_at
        if _older(entry, cutoff):
            old_batches.append((entry, why))
    for entry, why in old_batches:
        if why is None:
            delete.append(("batch", entry))
        else:
            kept.append(Kept(entry, "batch", why))
    for entry in labels:
        if entry.state not in FINAL_STATES or not _older(entry, cutoff):
            continue
        if oldest_kept is not None and entry.submitted_at >= oldest_kept:
            kept.append(Kept(entry, "labels", "may label a batch kept for a model's training data"))
        else:
            delete.append(("labels", entry))
    delete.sort(key=lambda item: item[1].updated_at)
    return RetentionPlan(cutoff, tuple(delete), tuple(kept))


def _older(entry: LedgerEntry, cutoff: datetime) -> bool:
    return datetime.fromisoformat(entry.updated_at) < cutoff
