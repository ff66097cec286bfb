"""A batch's life in the ledger, as values: its states, what the ledger knows, where it ended.

The landing zone (``mlops_core.adapters.landing``) stores these; flows and reports read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class BatchState(StrEnum):
    """Where a batch is in its life: landed, processing, failed, dead_letter, processed or
    quarantined."""

    landed = "landed"
    processing = "processing"
    failed = "failed"  # a run could not finish it; still in landing/, reconcile retries it
    # It failed MLOPS_MAX_BATCH_ATTEMPTS times: still in landing/, but no sweep claims it again
    # until a person says `mlops retry` (or `mlops drop`, which quarantines it).
    dead_letter = "dead_letter"
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
    attempts: int = 0  # how many times a run claimed it; `mlops retry` starts again at 0

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


RETRIED_BY_RECONCILE = "the file stays in the landing zone and `mlops reconcile` retries it"


def failure_reason(error: BaseException) -> str:
    """Why a run could not finish a batch, in one line a person can act on."""
    lines = str(error).strip().splitlines()
    first = lines[0] if lines else ""
    return (
        f"processing stopped before the batch was settled: {type(error).__name__}: {first[:600]}; "
        + RETRIED_BY_RECONCILE
    )


def after_failure(attempts: int, max_attempts: int) -> BatchState:
    """Where a batch given back by a failed run goes: ``failed`` (a sweep claims it again) until
    it has been tried ``max_attempts`` times, then ``dead_letter`` (no sweep claims it again).

    A batch that fails the same way on every run would otherwise be retried by every sweep,
    forever: each try costs a run, a flow-run-failed alert and the log noise that hides new faults.
    """
    return BatchState.dead_letter if attempts >= max_attempts else BatchState.failed


_GAVE_UP = "gave up after {attempts} attempts (MLOPS_MAX_BATCH_ATTEMPTS); the last: "
_STAYS = "; the file stays in the landing zone and no sweep claims it again: "


def dead_letter_reason(last_reason: str, attempts: int, dataset: str, sha256: str) -> str:
    """Why a batch is dead-lettered: its last error, and the two commands that end it."""
    last = last_reason.removesuffix("; " + RETRIED_BY_RECONCILE)
    return (
        _GAVE_UP.format(attempts=attempts)
        + last
        + _STAYS
        + f"`mlops retry {sha256[:12]} --dataset {dataset}` tries it again, "
        f"`mlops drop {sha256[:12]} --dataset {dataset} --reason TEXT` quarantines it"
    )


def last_error(reason: str | None) -> str | None:
    """The last error inside a dead-lettered batch's reason (the reason itself if it is not one)."""
    if reason is None or _STAYS not in reason or "; the last: " not in reason:
        return reason
    return reason.split(_STAYS, 1)[0].split("; the last: ", 1)[1]


def retried_reason(reason: str | None, attempts: int) -> str:
    """Why a dead-lettered batch is claimable again: a person put it back, and its last error."""
    return (
        f"put back by a person after {attempts} failed attempts (the last: {last_error(reason)}); "
        "the next sweep or run claims it again"
    )


def crash_reason(attempts: int) -> str:
    """The last error of a batch whose run stopped without giving it back (killed, out of
    memory): its claim went stale."""
    return (
        f"the run that claimed it (attempt {attempts}) stopped without settling it or giving it "
        "back (killed, out of memory, its machine lost) and its claim went stale"
    )
