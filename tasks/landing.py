"""Tasks that touch the landing zone: claim a batch, settle it in processed/ or quarantine/."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from mlops_core.landing import BatchState, LandingZone, LedgerEntry
from mlops_core.settings import Settings


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def claim_batch(settings: Settings, dataset: str, sha256: str) -> LedgerEntry | None:
    """Claim a landed batch for this run; None when it is already taken or settled."""
    return LandingZone(settings).claim(dataset, sha256)


@task(cache_policy=NO_CACHE)
def ledger_entry(settings: Settings, dataset: str, sha256: str) -> LedgerEntry | None:
    """What the ledger says of a batch."""
    return LandingZone(settings).get(dataset, sha256)


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def settle_batch(
    settings: Settings,
    dataset: str,
    sha256: str,
    state: BatchState,
    report: dict[str, Any],
    reason: str | None,
) -> LedgerEntry:
    """Move the batch to processed/ or quarantine/ with its JSON report."""
    return LandingZone(settings).settle(dataset, sha256, state, report, reason)
