"""Tasks of the gc flow: one dataset's retention, and the server's old logs."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from mlops_core.adapters.context import DatasetContext
from mlops_core.adapters.retention_source import collect, old_logs
from mlops_core.settings import Settings


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def collect_retention(ctx: DatasetContext, older_than_days: float, dry_run: bool) -> dict[str, Any]:
    """Delete (unless ``dry_run``) the dataset's settled files past retention; what was deleted
    and what was kept, with why."""
    collected = collect(ctx, older_than_days, dry_run=dry_run)
    return {
        "dataset": collected.dataset,
        "cutoff": collected.plan.cutoff.isoformat(timespec="seconds"),
        "deleted": [
            {
                "kind": kind,
                "sha256": entry.sha256,
                "original_name": entry.original_name,
                "state": entry.state.value,
                "updated_at": entry.updated_at,
                "bytes": entry.size_bytes,
            }
            for kind, entry in collected.deleted
        ],
        "bytes": sum(entry.size_bytes for _, entry in collected.deleted),
        "kept": [
            {
                "kind": kept.kind,
                "sha256": kept.entry.sha256,
                "original_name": kept.entry.original_name,
                "reason": kept.reason,
            }
            for kept in collected.plan.kept
        ],
    }


@task(cache_policy=NO_CACHE)
def expire_logs(settings: Settings, older_than_days: float, dry_run: bool) -> list[str]:
    """The resubmitted dead-letter log files past retention, deleted unless ``dry_run``."""
    return [str(path) for path in old_logs(settings, older_than_days, dry_run=dry_run)]
