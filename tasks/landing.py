"""Tasks that touch the landing zone: claim a batch, settle it in processed/ or quarantine/."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from mlops_core.adapters.landing import LandingZone
from mlops_core.batches import BatchState, LedgerEntry, failure_reason
from mlops_core.settings import Settings


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def claim_batch(
    settings: Settings, dataset: str, sha256: str, kind: str = "batch"
) -> LedgerEntry | None:
    """Claim a landed batch (or labels file) for this run; None when taken or settled."""
    return LandingZone(settings, kind).claim(dataset, sha256)


@task(cache_policy=NO_CACHE)
def ledger_entry(
    settings: Settings, dataset: str, sha256: str, kind: str = "batch"
) -> LedgerEntry | None:
    """What the ledger says of a batch (or labels file)."""
    return LandingZone(settings, kind).get(dataset, sha256)


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def mark_failed(
    settings: Settings, dataset: str, sha256: str, error: BaseException, kind: str = "batch"
) -> LedgerEntry | None:
    """Give the claim back as ``failed`` with the error as reason; the file stays in landing/."""
    return LandingZone(settings, kind).fail(dataset, sha256, failure_reason(error))


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def settle_batch(
    settings: Settings,
    dataset: str,
    sha256: str,
    state: BatchState,
    report: dict[str, Any],
    reason: str | None,
    kind: str = "batch",
) -> LedgerEntry:
    """Move the batch (or labels file) to processed/ or quarantine/ with its JSON report."""
    return LandingZone(settings, kind).settle(dataset, sha256, state, report, reason)
