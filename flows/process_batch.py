"""The batch flow: claim a landed batch, validate, test for drift, assess, decide, act, settle.

Every batch gets a decision run in MLflow (even a quarantined one: its decision is ``none``,
with the validation failure as evidence). The flow branches only on the decision's action.
"""

from __future__ import annotations

from prefect import flow

from flows.retrain_evaluate_deploy import retrain_evaluate_deploy
from mlops_core import events
from mlops_core.adapters.context import DatasetContext
from mlops_core.batches import BatchState, LedgerEntry, disposition
from mlops_core.faults import failpoint
from mlops_core.outcomes import BatchJudgement, BatchOutcome, RetrainOutcome
from mlops_core.policy import Action, Decision
from mlops_core.settings import Settings
from tasks.decision import (
    alert_if_stuck,
    assess_batch,
    decide_batch,
    plot_batch_drift,
    record_batch_decision,
    roll_back,
)
from tasks.drift import detect_batch_drift
from tasks.events import emit
from tasks.landing import (
    claim_batch,
    fetch_file,
    ledger_entry,
    mark_failed,
    open_dataset,
    settle_batch,
)
from tasks.report import publish_report
from tasks.validation import publish_data_docs, validate_batch


@flow(name="process-batch", flow_run_name="{dataset}-{sha256:.12}")
def process_batch(dataset: str, sha256: str, act: bool = True) -> BatchOutcome:
    """Process one landed batch exactly once; with ``act``, carry out the decision too."""
    ctx = open_dataset(Settings(), dataset)
    claimed = claim_batch(ctx, sha256)
    if claimed is None:
        known = ledger_entry(ctx, sha256)
        if known is None:
            raise ValueError(f"batch {sha256[:12]} of dataset {dataset!r} was never landed")
        return BatchOutcome.settled_before(known)

    failpoint("batch-claimed")
    try:
        judged = _judge(ctx, sha256, claimed)
    except Exception as exc:
        # MLflow unreachable, a bug: the batch stays in landing/ as failed, for reconcile.
        mark_failed(ctx, sha256, exc)
        raise
    emit(
        events.BATCH_VALIDATED
        if judged.settled.state is BatchState.processed
        else events.BATCH_QUARANTINED,
        dataset,
        {
            "sha256": sha256,
            "path": str(judged.settled.location),
            "rows": judged.rows,
            "reason": judged.reason,
        },
    )
    # Rendering the Data Docs (about 0.5 s) waits until the batch is settled and announced.
    publish_data_docs(ctx, judged.validation)
    retrain = carry_out(ctx, sha256, judged.decision, judged.decision_run_id) if act else None
    return BatchOutcome(
        dataset,
        sha256,
        judged.settled.state,
        judged.settled.location,
        judged.reason,
        judged.validation,
        drift=judged.drift,
        decision=judged.decision,
        decision_run_id=judged.decision_run_id,
        retrain=retrain,
    )


def carry_out(
    ctx: DatasetContext, sha256: str, decision: Decision, decision_run: str | None
) -> RetrainOutcome | None:
    """Act on a decision: the gated retrain subflow (its outcome), or the policy's rollback."""
    if decision.action is Action.retrain:
        return retrain_evaluate_deploy(
            dataset=ctx.name, batch_sha256=sha256, decision_run_id=decision_run
        )
    if decision.action is Action.rollback:
        aliases = roll_back(ctx, decision_run)
        emit(events.MODEL_ROLLED_BACK, ctx.name, {"sha256": sha256, "aliases": aliases})
    return None


def _judge(ctx: DatasetContext, sha256: str, claimed: LedgerEntry) -> BatchJudgement:
    """Validate, test for drift, assess, decide, record, report and settle one claimed batch."""
    batch_file = fetch_file(ctx, claimed)
    report = validate_batch(ctx, batch_file, claimed.original_name)
    state = disposition(report.success)
    reason = None if report.success else "; ".join(report.reasons())
    drift = None
    plots = []
    if state is BatchState.processed:  # drift is only meaningful on a batch that passed validation
        drift = detect_batch_drift(ctx, batch_file)
        if drift.is_drift:
            emit(
                events.DRIFT_DETECTED,
                ctx.name,
                {"sha256": sha256, "p_value": drift.p_value, "drivers": list(drift.drivers)},
            )
            plots = plot_batch_drift(ctx, batch_file, drift)

    assessment = assess_batch(ctx, batch_file, report.success, drift)
    decision = decide_batch(ctx, assessment)
    validation = report.to_dict()
    decision_run = record_batch_decision(
        ctx, sha256, decision, assessment, validation, drift, plots
    )
    alert_if_stuck(ctx, sha256, assessment)
    failpoint("batch-decided")
    emit(
        events.DECISION_MADE,
        ctx.name,
        {
            "sha256": sha256,
            "action": decision.action.value,
            "reasons": list(decision.reasons),
            "run_id": decision_run,
        },
    )
    drift_json = drift.to_dict() if drift is not None else None
    detail = {
        "validation": validation,
        "drift": drift_json,
        "assessment": assessment.to_dict(),
        "decision": decision.to_dict(),
        "decision_run_id": decision_run,
    }
    publish_report(ctx, sha256, validation, drift_json, decision.to_dict(), decision_run, plots)
    settled = settle_batch(ctx, sha256, state, detail, reason)
    return BatchJudgement(settled, report.rows, reason, report, drift, decision, decision_run)
