"""The reconcile flow: process, exactly once, what landed but nothing finished.

A batch whose event was missed (submitted while no server listened) is still ``landed``; a batch
whose run crashed is still ``processing`` long after its claim. Reconcile finds both (the claim
must be older than ``MLOPS_RECONCILE_STALE_SECONDS``), frees the stale claims, and runs the batch
or labels flow on each, in landing order. The ledger's claim makes it safe to run beside the
event-triggered flows: whoever claims first processes, the other sees "already settled".

A decision that asked for a retrain whose run died before recording the outcome (a worker
killed after its batch was settled, before or inside the gated subflow) is found by its request
or claim in the ledger, on which nothing beats any more (``mlops_core.adapters.retrain_claims``):
reconcile takes it over and runs the subflow, once; its item has ``kind: retrain``.

``failed`` batches (a run could not finish them: MLflow was unreachable, say) are claimed again.
One batch failing again does not stop the sweep: it stays ``failed`` with its reason, is listed
with ``state: failed``, and the rest are still processed. A batch that failed (or whose claim
went stale) ``MLOPS_MAX_BATCH_ATTEMPTS`` times is ``dead_letter``: announced once, listed with
that state, and never claimed again by a sweep until ``mlops retry`` puts it back.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.process_batch import dead_lettered, process_batch
from flows.process_labels import process_labels
from flows.retrain_evaluate_deploy import retrain_evaluate_deploy
from mlops_core.adapters.context import DatasetContext
from mlops_core.batches import BatchState
from mlops_core.settings import Settings
from tasks.landing import ledger_entry, open_dataset
from tasks.reconcile import (
    dataset_names,
    release_stale,
    stale_retrains,
    take_over_retrain,
    unfinished,
)


@flow(name="reconcile", flow_run_name="reconcile-{dataset}")
def reconcile(dataset: str = "all") -> list[dict[str, Any]]:
    """Sweep the landing zone of ``dataset`` (or of every dataset with "all")."""
    settings = Settings()
    names = dataset_names(settings) if dataset == "all" else [dataset]
    done: list[dict[str, Any]] = []
    for name in names:
        ctx = open_dataset(settings, name)
        for kind, run in (("batch", process_batch), ("labels", process_labels)):
            for entry in unfinished(ctx, kind):
                freed = release_stale(ctx, entry, kind)
                if freed is None:
                    continue
                item: dict[str, Any] = {"dataset": name, "kind": kind, "sha256": entry.sha256}
                if freed.state is BatchState.dead_letter:  # its crashed claim was its last try
                    dead_lettered(ctx, freed, kind)
                    item |= {
                        "state": freed.state.value,
                        "already_settled": False,
                        "decision": None,
                        "error": freed.reason,
                    }
                    done.append(item)
                    continue
                state = run(dataset=name, sha256=entry.sha256, return_state=True)
                if state.is_completed():
                    outcome = state.result()
                    item |= {
                        "state": outcome.state.value,
                        "already_settled": outcome.already_settled,
                        "decision": outcome.decision.action.value if outcome.decision else None,
                    }
                else:
                    known = ledger_entry(ctx, entry.sha256, kind)
                    item |= {
                        "state": known.state.value if known else "failed",
                        "already_settled": False,
                        "decision": None,
                        "error": (known.reason if known else None) or state.message,
                    }
                done.append(item)
        done.extend(_resume_retrains(ctx))
    return done


def _resume_retrains(ctx: DatasetContext) -> list[dict[str, Any]]:
    """Run, once, each retrain a decision asked for whose run died before recording its outcome.
    Each is taken over just before it runs, not all at once: one waiting its turn here has
    nothing beating on it, and another sweep may carry it out meanwhile."""
    done = []
    for candidate in stale_retrains(ctx):
        taken = take_over_retrain(ctx, candidate)
        if taken is None:
            continue
        outcome = retrain_evaluate_deploy(
            dataset=ctx.name,
            batch_sha256=taken.batch_sha256,
            decision_run_id=taken.decision_run_id,
            resumed=True,
        )
        done.append(
            {
                "dataset": ctx.name,
                "kind": "retrain",
                "sha256": taken.batch_sha256,
                "decision_run": taken.decision_run_id,
                "attempt": taken.attempt,
                "state": outcome.status.value,
                "already_settled": False,
                "decision": "retrain",
            }
        )
    return done
