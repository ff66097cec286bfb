"""The labels flow: join delayed labels to earlier batches by id, then check and decide.

With labels, the champion's accuracy is observed rather than estimated, so concept drift --
invisible to the input-drift tests -- shows up here, and the decision can be ``retrain`` (the
gated subflow) or ``rollback``.
"""

from __future__ import annotations

from prefect import flow

from flows.process_batch import carry_out
from mlops_core import events
from mlops_core.batches import BatchOutcome, BatchState, LedgerEntry
from mlops_core.errors import MlopsError
from mlops_core.policy import Decision
from mlops_core.settings import Settings
from tasks.decision import assess_frame, decide_batch, record_batch_decision
from tasks.events import emit
from tasks.labels import labelled_rows, read_label_file
from tasks.landing import claim_batch, ledger_entry, mark_failed, settle_batch
from tasks.report import publish_report


@flow(name="process-labels", flow_run_name="labels-{dataset}-{sha256:.12}")
def process_labels(dataset: str, sha256: str, act: bool = True) -> BatchOutcome:
    """Process one landed labels file exactly once; with ``act``, carry out the decision too."""
    settings = Settings()
    claimed = claim_batch(settings, dataset, sha256, kind="labels")
    if claimed is None:
        known = ledger_entry(settings, dataset, sha256, kind="labels")
        if known is None:
            raise ValueError(f"labels {sha256[:12]} of dataset {dataset!r} were never landed")
        return BatchOutcome(
            dataset, sha256, known.state, known.location, known.reason, None, already_settled=True
        )
    try:
        judged = _judge_labels(settings, dataset, sha256, claimed)
    except Exception as exc:
        # MLflow unreachable, a bug: the file stays in landing/ as failed, for reconcile.
        mark_failed(settings, dataset, sha256, exc, kind="labels")
        raise
    if isinstance(judged, BatchOutcome):
        return judged
    settled, reason, decision, decision_run = judged

    retrain = None
    if act and decision is not None:
        retrain = carry_out(settings, dataset, sha256, decision, decision_run)
    return BatchOutcome(
        dataset,
        sha256,
        settled.state,
        settled.location,
        reason,
        None,
        decision=decision.to_dict() if decision else None,
        decision_run_id=decision_run,
        retrain=retrain,
    )


def _judge_labels(
    settings: Settings, dataset: str, sha256: str, claimed: LedgerEntry
) -> BatchOutcome | tuple[LedgerEntry, str | None, Decision | None, str | None]:
    """Read, join, assess, decide, record and settle one claimed labels file (or quarantine it)."""
    try:
        labels = read_label_file(settings, dataset, claimed.location)
    except MlopsError as exc:
        settled = settle_batch(
            settings, dataset, sha256, BatchState.quarantined, {}, str(exc), kind="labels"
        )
        emit(
            events.BATCH_QUARANTINED,
            dataset,
            {"sha256": sha256, "kind": "labels", "path": str(settled.location), "reason": str(exc)},
        )
        return BatchOutcome(dataset, sha256, settled.state, settled.location, str(exc), None)

    frame, batches = labelled_rows(settings, dataset, labels)
    summary = {
        "labels": labels.height,
        "matched_rows": 0 if frame is None else frame.height,
        "batches": list(batches),
    }
    decision = assessment = decision_run = None
    if frame is not None:
        assessment = assess_frame(settings, dataset, frame, batches)
        decision = decide_batch(settings, assessment)
        decision_run = record_batch_decision(
            settings,
            dataset,
            sha256,
            decision,
            assessment,
            summary,
            None,
            [],
            extra_tags={"mlops.labels_for": ",".join(b[:12] for b in batches)},
            kind="labels",
        )
        emit(
            events.DECISION_MADE,
            dataset,
            {
                "sha256": sha256,
                "kind": "labels",
                "action": decision.action.value,
                "reasons": list(decision.reasons),
                "run_id": decision_run,
                "batches": list(batches),
            },
        )
    detail = {
        "labels": summary,
        "assessment": assessment.to_dict() if assessment else None,
        "decision": decision.to_dict() if decision else None,
        "decision_run_id": decision_run,
    }
    reason = None if frame is not None else "no processed rows carry these ids (yet); labels kept"
    publish_report(
        settings,
        dataset,
        sha256,
        None,
        None,
        detail["decision"],
        decision_run,
        [],
        title="Labels",
    )
    settled = settle_batch(
        settings, dataset, sha256, BatchState.processed, detail, reason, kind="labels"
    )
    return settled, reason, decision, decision_run
