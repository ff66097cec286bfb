"""Tasks of the reconcile flow: find what nothing finished, and free stale claims."""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from mlops_core.adapters.catalog import DatasetCatalog
from mlops_core.adapters.context import DatasetContext
from mlops_core.adapters.retrain_claims import (
    REQUESTED,
    RetrainClaim,
    RetrainClaims,
    TakenRetrain,
)
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
def stale_retrains(ctx: DatasetContext) -> list[RetrainClaim]:
    """The decisions' retrains that nothing carries out: requested or claimed, with nothing
    beating on them for more than ``reconcile_stale_seconds`` and no outcome recorded. A request
    counts only once its file settled as processed: a batch that a crash left unsettled is
    processed again first, and that run's subflow claims the retrain itself. Candidates, to be
    taken over one at a time (``take_over_retrain``) just before each runs."""
    settings = ctx.settings
    claims = RetrainClaims(settings)
    found = []
    for claim in claims.running(ctx.name):
        if time.time() - claim.beat_at < settings.reconcile_stale_seconds:
            continue
        if ctx.registry.run_tags(claim.decision_run_id).get(RETRAIN):
            claims.finish(ctx.name, claim.decision_run_id)  # recorded; only the mark was lost
            continue
        if claim.state == REQUESTED and not _settled_as_processed(ctx, claim.batch_sha256):
            continue
        found.append(claim)
    return found


def _settled_as_processed(ctx: DatasetContext, sha256: str) -> bool:
    """Whether the batch or labels file behind a decision was processed (a drift review's
    decision has no file)."""
    if not sha256:
        return True
    for kind in ("batch", "labels"):
        entry = ctx.zone(kind).get(ctx.name, sha256)
        if entry is not None:
            return entry.state is BatchState.processed
    return False


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def take_over_retrain(ctx: DatasetContext, claim: RetrainClaim) -> TakenRetrain | None:
    """Claim ``claim``'s retrain for this sweep, if it is still stale: of two sweeps at the same
    moment one gets it. None when another sweep or its own run has it now."""
    attempt = RetrainClaims(ctx.settings).take_over(
        ctx.name,
        claim.decision_run_id,
        claim.batch_sha256,
        stale_after_seconds=ctx.settings.reconcile_stale_seconds,
        max_attempts=ctx.settings.max_batch_attempts,
    )
    if attempt is None:
        return None
    return TakenRetrain(claim.decision_run_id, claim.batch_sha256, attempt)
