"""The reconcile flow: process, exactly once, what landed but nothing finished.

A batch whose event was missed (submitted while no server listened) is still ``landed``; a batch
whose run crashed is still ``processing`` long after its claim. Reconcile finds both (the claim
must be older than ``MLOPS_RECONCILE_STALE_SECONDS``), frees the stale claims, and runs the batch
or labels flow on each, in landing order. The ledger's claim makes it safe to run beside the
event-triggered flows: whoever claims first processes, the other sees "already settled".
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.process_batch import process_batch
from flows.process_labels import process_labels
from mlops_core.settings import Settings
from tasks.reconcile import dataset_names, release_stale, unfinished


@flow(name="reconcile", flow_run_name="reconcile-{dataset}")
def reconcile(dataset: str = "all") -> list[dict[str, Any]]:
    """Sweep the landing zone of ``dataset`` (or of every dataset with "all")."""
    settings = Settings()
    names = dataset_names(settings) if dataset == "all" else [dataset]
    done: list[dict[str, Any]] = []
    for name in names:
        for kind, run in (("batch", process_batch), ("labels", process_labels)):
            for entry in unfinished(settings, name, kind):
                if not release_stale(settings, entry, kind):
                    continue
                outcome = run(dataset=name, sha256=entry.sha256)
                done.append(
                    {
                        "dataset": name,
                        "kind": kind,
                        "sha256": entry.sha256,
                        "state": outcome.state.value,
                        "already_settled": outcome.already_settled,
                        "decision": (outcome.decision or {}).get("action"),
                    }
                )
    return done
