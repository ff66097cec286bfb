"""The gc flow: delete what retention no longer keeps, never what a model or a rollout needs.

Settled batch and labels files (``processed``, ``quarantined``) whose ledger row last changed
more than ``MLOPS_RETENTION_DAYS`` ago are deleted with their reports and ledger rows; so are
the model server's dead-letter log files already resubmitted. Kept whatever their age: files
not settled (waiting, failed, dead-lettered), every batch in a registered model version's
training data, the batch that asked for the model an open rollout delivers, and labels files
that may label a kept batch (``mlops_core.retention``). Each kept file is listed with why.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from mlops_core.settings import Settings
from tasks.gc import collect_retention, expire_logs
from tasks.landing import open_dataset
from tasks.reconcile import dataset_names


@flow(name="gc", flow_run_name="gc-{dataset}")
def gc(
    dataset: str = "all", older_than_days: float | None = None, dry_run: bool = False
) -> dict[str, Any]:
    """Apply retention to ``dataset`` (or every dataset with "all"); what was deleted and kept."""
    settings = Settings()
    days = older_than_days if older_than_days is not None else settings.retention_days
    names = dataset_names(settings) if dataset == "all" else [dataset]
    datasets = [collect_retention(open_dataset(settings, name), days, dry_run) for name in names]
    logs = expire_logs(settings, days, dry_run)
    logger = get_run_logger()
    for item in datasets:
        logger.info(
            "%s: %s %d files (%d bytes) older than %s, kept %d",
            item["dataset"],
            "would delete" if dry_run else "deleted",
            len(item["deleted"]),
            item["bytes"],
            item["cutoff"],
            len(item["kept"]),
        )
    return {"older_than_days": days, "dry_run": dry_run, "datasets": datasets, "logs": logs}
