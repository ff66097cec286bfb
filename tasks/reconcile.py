"""Tasks of the reconcile flow: find what nothing finished, and free stale claims."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from mlops_core.adapters.catalog import DatasetCatalog
from mlops_core.adapters.context import DatasetContext
from mlops_core.batches import BatchState, LedgerEntry
from mlops_core.settings import Settings


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def unfinished(ctx: DatasetContext, kind: str) -> list[LedgerEntry]:
    """Landed files nobody claimed and claims older than ``reconcile_stale_seconds``."""
    return ctx.zone(kind).pending(
        ctx.name, stale_after_seconds=ctx.settings.reconcile_stale_seconds
    )


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def release_stale(ctx: DatasetContext, entry: LedgerEntry, kind: str) -> LedgerEntry | None:
    """A crashed run's claim back to ``landed`` (``dead_letter`` on its last attempt), only if
    still stale, under the ledger's lock; the entry to run, or None when it is not to be run."""
    if entry.state is not BatchState.processing:
        return entry
    return ctx.zone(kind).release(
        entry.dataset, entry.sha256, stale_after_seconds=ctx.settings.reconcile_stale_seconds
    )


@task(cache_policy=NO_CACHE)
def dataset_names(settings: Settings) -> list[str]:
    """Every registered dataset's name."""
    return DatasetCatalog(settings).names()
