"""The labels flow: join delayed labels to earlier batches by id, then check and decide.

With labels, the champion's accuracy is observed rather than estimated, so concept drift --
invisible to the input-drift tests -- shows up here, and the decision can be ``retrain`` (the
gated subflow) or ``rollback``.
"""

from __future__ import annotations

from dataclasses import replace

from prefect import flow
from prefect.runtime import flow_run

from flows.process_batch import carry_out, finish, give_back
from mlops_core import events
from mlops_core.adapters.context import DatasetContext
from mlops_core.batches import BatchState, LedgerEntry
from mlops_core.errors import MlopsError
from mlops_core.outcomes import BatchOutcome, RecordedDecision
from mlops_core.policy import Action
from mlops_core.settings import Settings
from mlops_core.tags import LABELS_FOR
from tasks.decision import alert_if_stuck, assess_frame, decide_batch, record_batch_decision
from tasks.events import emit
from tasks.labels import labelled_rows, read_label_file
from tasks.landing import (
    claim_batch,
    fetch_file,
    file_title,
    ledger_entry,
    open_dataset,
    settle_batch,
)
from tasks.report import publish_report
from tasks.retrain import request_retrain
from tasks.timeline import publish_timeline


def _run_name() -> str:
    """``credit · labels labels-03.parquet``: the dataset and the labels file's name."""
    parameters = flow_run.parameters
    return file_title(parameters["dataset"], parameters["sha256"], "labels", "labels")


@flow(name="process-labels", flow_run_name=_run_name)
def process_labels(dataset: str, sha256: str, act: bool = True) -> BatchOutcome:
    """Process one landed labels file exactly once; with ``act``, carry out the decision too.

    Returns the ``BatchOutcome``; the run's final state is named for it."""
    ctx = open_dataset(Settings(), dataset)
    claimed = claim_batch(ctx, sha256, kind="labels")
    if claimed is None:
        known = ledger_entry(ctx, sha256, kind="labels")
        if known is None:
            raise ValueError(f"labels {sha256[:12]} of dataset {dataset!r} were never landed")
        return finish(BatchOutcome.settled_before(known))
    try:
        outcome = _judge_labels(ctx, sha256, claimed, act)
    except Exception as exc:
        # MLflow unreachable, a bug: the file stays in landing/ as failed, for reconcile.
        give_back(ctx, sha256, exc, kind="labels")
        raise
    retrain = None
    try:
        if act and outcome.decision is not None:
            retrain = carry_out(ctx, sha256, outcome.decision, outcome.decision_run_id)
            outcome = replace(outcome, retrain=retrain)
    finally:  # after acting, so the artifact says what the retrain did (refused, and why)
        if outcome.state is BatchState.processed:
            publish_report(
                ctx,
                sha256,
                None,
                None,
                outcome.decision.to_dict() if outcome.decision is not None else None,
                outcome.decision_run_id,
                title="Labels",
                original_name=claimed.original_name,
                retrain=retrain,
            )
    if outcome.decision is not None:
        # The timeline again: the batches these labels joined now show their observed accuracy.
        publish_timeline(ctx, sha256, outcome.decision_run_id)
    return finish(outcome)


def _judge_labels(
    ctx: DatasetContext, sha256: str, claimed: LedgerEntry, act: bool
) -> BatchOutcome:
    """Read, join, assess, decide, record and settle one claimed labels file (or quarantine it);
    with ``act``, a retrain the decision asks for is requested before the file settles."""
    try:
        labels = read_label_file(ctx, fetch_file(ctx, claimed, kind="labels"))
    except MlopsError as exc:
        settled = settle_batch(ctx, sha256, BatchState.quarantined, {}, str(exc), kind="labels")
        emit(
            events.BATCH_QUARANTINED,
            ctx.name,
            {"sha256": sha256, "kind": "labels", "path": settled.location, "reason": str(exc)},
        )
        return BatchOutcome(ctx.name, sha256, settled.state, settled.location, str(exc), None)

    matched = labelled_rows(ctx, labels)
    frame, batches = matched.frame, matched.batches
    summary = {
        "labels": labels.height,
        "matched_rows": 0 if frame is None else frame.height,
        "batches": list(batches),
    }
    assessment = recorded = None
    if frame is not None:
        assessment = assess_frame(ctx, frame, batches)
        decision = decide_batch(ctx, assessment)
        run_id = record_batch_decision(
            ctx,
            sha256,
            decision,
            assessment,
            summary,
            None,
            [],
            extra_tags={LABELS_FOR: ",".join(b[:12] for b in batches)},
            kind="labels",
            original_name=claimed.original_name,
        )
        alert_if_stuck(ctx, sha256, assessment)
        if act and decision.action is Action.retrain and run_id:
            request_retrain(ctx, run_id, sha256)
        recorded = RecordedDecision(decision, run_id)
        _announce_decision(ctx, sha256, recorded, batches)
    decision_json = recorded.decision.to_dict() if recorded else None
    run_id = recorded.run_id if recorded else None
    detail = {
        "labels": summary,
        "assessment": assessment.to_dict() if assessment else None,
        "decision": decision_json,
        "decision_run_id": run_id,
    }
    reason = None if frame is not None else "no processed rows carry these ids (yet); labels kept"
    settled = settle_batch(ctx, sha256, BatchState.processed, detail, reason, kind="labels")
    return BatchOutcome(
        ctx.name,
        sha256,
        settled.state,
        settled.location,
        reason,
        None,
        decision=recorded.decision if recorded else None,
        decision_run_id=run_id,
    )


def _announce_decision(
    ctx: DatasetContext, sha256: str, recorded: RecordedDecision, batches: tuple[str, ...]
) -> None:
    """``mlops.decision.made`` for a labels file, naming the batches its labels belong to."""
    emit(
        events.DECISION_MADE,
        ctx.name,
        {
            "sha256": sha256,
            "kind": "labels",
            "action": recorded.decision.action.value,
            "reasons": list(recorded.decision.reasons),
            "run_id": recorded.run_id,
            "batches": list(batches),
        },
    )
