"""A batch's life in the ledger, as values: its states, what the ledger knows, where it ended.

The landing zone (``mlops_core.adapters.landing``) stores these; flows and reports read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class BatchState(StrEnum):
    """Where a batch is in its life: landed, processing, failed, processed or quarantined."""

    landed = "landed"
    processing = "processing"
    failed = "failed"  # a run could not finish it; still in landing/, reconcile retries it
    processed = "processed"
    quarantined = "quarantined"


FINAL_STATES = (BatchState.processed, BatchState.quarantined)
CLAIMABLE = (BatchState.landed, BatchState.failed)


@dataclass(frozen=True)
class LedgerEntry:
    """What the ledger knows of one batch."""

    dataset: str
    sha256: str
    state: BatchState
    location: str  # a local path, or an s3:// URL (see mlops_core.adapters.store)
    original_name: str
    file_format: str
    size_bytes: int
    reason: str | None
    submitted_at: str
    updated_at: str

    @property
    def file_name(self) -> str:
        """The batch file's name, ``<sha256>.<ext>``."""
        return self.location.rsplit("/", 1)[-1]

    @property
    def report_location(self) -> str:
        """Where the batch's JSON report lies, beside its file."""
        return f"{self.location.rsplit('/', 1)[0]}/{self.sha256}.report.json"


@dataclass(frozen=True)
class Receipt:
    """What a submit did: landed a new batch, or recognised a duplicate."""

    entry: LedgerEntry
    duplicate: bool

    def describe(self) -> str:
        """One line for a person: where the batch landed, or which batch it duplicates."""
        entry = self.entry
        if self.duplicate:
            return (
                f"{entry.original_name}: duplicate of batch {entry.sha256[:12]} "
                f"({entry.state.value}, at {entry.location}); not processed again"
            )
        return f"{entry.original_name}: landed as batch {entry.sha256[:12]} at {entry.location}"


def disposition(success: bool) -> BatchState:
    """Where a validated batch goes: processed when it passed, quarantine when it did not."""
    return BatchState.processed if success else BatchState.quarantined


def failure_reason(error: BaseException) -> str:
    """Why a run could not finish a batch, in one line a person can act on."""
    lines = str(error).strip().splitlines()
    first = lines[0] if lines else ""
    return (
        f"processing stopped before the batch was settled: {type(error).__name__}: {first[:600]}; "
        "the file stays in the landing zone and `mlops reconcile` retries it"
    )
