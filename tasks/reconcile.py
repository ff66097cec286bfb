"""Tasks of the reconcile flow: find what nothing finished, and free stale claims."""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from mlops_core.adapters.catalog import DatasetCatalog
from mlops_core.adapters.context import DatasetContext
from mlops_core.adapters.retrain_claims import RetrainClaims, TakenRetrain
from mlops_core.batches import BatchState, LedgerEntry
from mlops_core.settings import Settings
from mlops_core.tags import RETRAIN


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


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def take_over_retrains(ctx: DatasetContext) -> list[TakenRetrain]:
    """The decisions' retrains whose run stopped beating on its claim more than
    ``reconcile_stale_seconds`` ago without recording an outcome: each claimed for this sweep,
    so another sweep at the same moment does not run it too."""
    settings = ctx.settings
    stale = settings.reconcile_stale_seconds
    claims = RetrainClaims(settings)
    taken = []
    for claim in claims.running(ctx.name):
        if time.time() - claim.beat_at < stale:
            continue
        if ctx.registry.run_tags(claim.decision_run_id).get(RETRAIN):
            claims.finish(ctx.name, claim.decision_run_id)  # recorded; only the mark was lost
            continue
        attempt = claims.take_over(
            ctx.name,
            claim.decision_run_id,
            claim.batch_sha256,
            stale_after_seconds=stale,
            max_attempts=settings.max_batch_attempts,
        )
        if attempt is not None:
            taken.append(TakenRetrain(claim.decision_run_id, claim.batch_sha256, attempt))
    return taken
