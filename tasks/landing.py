"""Tasks that touch the landing zone: open the dataset, claim a batch, settle it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from mlops_core.adapters.context import DatasetContext
from mlops_core.adapters.landing import LandingZone
from mlops_core.batches import BatchState, LedgerEntry, failure_reason
from mlops_core.reporting import run_title
from mlops_core.settings import Settings


def file_title(dataset: str, sha256: str, kind: str = "batch", what: str = "") -> str:
    """A run's name from the ledger: ``credit · batch-19-week19.csv`` (``what`` before the file
    name, e.g. ``retrain after``); the short sha256 when the ledger cannot say.

    Not a task: Prefect calls it to name the run before the run starts, so it never raises.
    """
    name = sha256[:12]
    try:
        for zone_kind in (kind, "labels" if kind == "batch" else "batch"):
            entry = LandingZone(Settings(), zone_kind).get(dataset, sha256) if sha256 else None
            if entry is not None:
                name = entry.original_name
                break
    except Exception:  # noqa: BLE001 -- a name is cosmetic; the run itself reports a bad ledger
        pass
    return run_title(dataset, " ".join(part for part in (what, name) if part))


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def open_dataset(settings: Settings, dataset: str) -> DatasetContext:
    """The dataset's handle: spec, reference, registry, landing zones, history."""
    return DatasetContext.open(settings, dataset)


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def claim_batch(ctx: DatasetContext, sha256: str, kind: str = "batch") -> LedgerEntry | None:
    """Claim a landed batch (or labels file) for this run; None when taken or settled."""
    return ctx.zone(kind).claim(ctx.name, sha256)


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def fetch_file(ctx: DatasetContext, entry: LedgerEntry, kind: str = "batch") -> Path:
    """The claimed file on this machine: itself on a local store, a download from S3."""
    return ctx.zone(kind).local_file(entry)


@task(cache_policy=NO_CACHE)
def ledger_entry(ctx: DatasetContext, sha256: str, kind: str = "batch") -> LedgerEntry | None:
    """What the ledger says of a batch (or labels file)."""
    return ctx.zone(kind).get(ctx.name, sha256)


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def mark_failed(
    ctx: DatasetContext, sha256: str, error: BaseException, kind: str = "batch"
) -> LedgerEntry | None:
    """Give the claim back as ``failed`` (``dead_letter`` on its last attempt) with the error."""
    return ctx.zone(kind).fail(ctx.name, sha256, failure_reason(error))


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def settle_batch(
    ctx: DatasetContext,
    sha256: str,
    state: BatchState,
    report: dict[str, Any],
    reason: str | None,
    kind: str = "batch",
) -> LedgerEntry:
    """Move the batch (or labels file) to processed/ or quarantine/ with its JSON report."""
    return ctx.zone(kind).settle(ctx.name, sha256, state, report, reason)
