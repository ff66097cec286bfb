"""What ``mlops gc`` reads and deletes: the ledger's settled files, the registry's lineage, the
server's resubmitted dead-letter logs. The decisions are ``mlops_core.retention``'s."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mlops_core.adapters.context import DatasetContext
from mlops_core.adapters.registry import ModelRegistry
from mlops_core.batches import LedgerEntry
from mlops_core.retention import RetentionPlan, plan_retention
from mlops_core.serving.dead_letter import done_dir
from mlops_core.settings import Settings
from mlops_core.tags import (
    BATCH_SHA256,
    DECISION_RUN,
    ROLLOUT_MODE,
    ROLLOUT_VERSION,
    TRAINING_BATCHES,
)


@dataclass(frozen=True)
class Collected:
    """What gc deleted (or, in a dry run, would delete) for one dataset, and what it kept."""

    dataset: str
    plan: RetentionPlan
    deleted: tuple[tuple[str, LedgerEntry], ...]


def cutoff_for(older_than_days: float) -> datetime:
    """The moment before which a settled file is old enough to delete."""
    return datetime.now(UTC) - timedelta(days=older_than_days)


def protected_batches(registry: ModelRegistry) -> dict[str, str]:
    """The batches nothing may delete, as sha256 prefixes with the reason: every registered
    version's training data (its run's dataset inputs, and its ``mlops.training_batches`` tag),
    and the batch that asked for the model an open rollout is delivering."""
    from mlflow.exceptions import MlflowException

    client = registry.client
    protected: dict[str, str] = {}
    try:
        versions = client.search_model_versions(f"name='{registry.name}'")
    except MlflowException:
        return protected  # no registered model yet: no lineage
    for version in sorted(versions, key=lambda v: int(v.version)):
        if not version.run_id:
            continue
        try:
            run = client.get_run(version.run_id)
        except MlflowException:
            continue
        reason = f"training data of model v{version.version}"
        inputs = run.inputs.dataset_inputs if run.inputs is not None else []
        digests = [item.dataset.digest for item in inputs]
        listed = run.data.tags.get(TRAINING_BATCHES, "").split(",")
        for prefix in [*digests, *(p.strip() for p in listed if len(p.strip()) >= 12)]:
            protected.setdefault(prefix, reason)
    tags = registry.tags() if versions else {}
    rolling = tags.get(ROLLOUT_VERSION)
    if tags.get(ROLLOUT_MODE, "idle") not in ("idle", "") and rolling:
        decision = registry.version_tags(rolling).get(DECISION_RUN)
        if decision:
            asked = client.get_run(decision).data.tags.get(BATCH_SHA256)
            if asked:
                protected[asked] = f"asked for model v{rolling}, whose rollout is open"
    return protected


def collect(ctx: DatasetContext, older_than_days: float, *, dry_run: bool) -> Collected:
    """Plan the dataset's retention and, unless ``dry_run``, delete what the plan says."""
    plan = plan_retention(
        ctx.batches.entries(ctx.name),
        ctx.labels.entries(ctx.name),
        cutoff=cutoff_for(older_than_days),
        protected=protected_batches(ctx.registry),
    )
    if dry_run:
        return Collected(ctx.name, plan, plan.delete)
    deleted = []
    for kind, entry in plan.delete:
        gone = ctx.zone(kind).expire(entry.dataset, entry.sha256)
        if gone is not None:
            deleted.append((kind, gone))
    return Collected(ctx.name, plan, tuple(deleted))


def old_logs(settings: Settings, older_than_days: float, *, dry_run: bool) -> list[Path]:
    """The model server's resubmitted dead-letter files older than the cutoff, deleted unless
    ``dry_run`` (files still waiting to be resubmitted are never touched)."""
    folder = done_dir(settings)
    if not folder.is_dir():
        return []
    before = cutoff_for(older_than_days).timestamp()
    old = sorted(p for p in folder.iterdir() if p.is_file() and p.stat().st_mtime < before)
    if not dry_run:
        for path in old:
            path.unlink(missing_ok=True)
    return old
