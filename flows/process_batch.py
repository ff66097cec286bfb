"""The batch flow: claim a landed batch, validate, test for drift, assess, decide, act, settle.

Every batch gets a decision run in MLflow (even a quarantined one: its decision is ``none``,
with the validation failure as evidence). The flow branches only on the decision's action.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.retrain_evaluate_deploy import retrain_evaluate_deploy
from mlops_core import events
from mlops_core.batches import BatchOutcome, BatchState, LedgerEntry, disposition
from mlops_core.faults import failpoint
from mlops_core.policy import Action, Decision
from mlops_core.settings import Settings
from tasks.decision import (
    assess_batch,
    decide_batch,
    plot_batch_drift,
    record_batch_decision,
    roll_back,
)
from tasks.drift import detect_batch_drift
from tasks.events import emit
from tasks.landing import claim_batch, ledger_entry, mark_failed, settle_batch
from tasks.report import publish_report
from tasks.validation import validate_batch


@flow(name="process-batch", flow_run_name="{dataset}-{sha256:.12}")
def process_batch(dataset: str, sha256: str, act: bool = True) -> BatchOutcome:
    """Process one landed batch exactly once; with ``act``, carry out the decision too."""
    settings = Settings()
    claimed = claim_batch(settings, dataset, sha256)
    if claimed is None:
        known = ledger_entry(settings, dataset, sha256)
        if known is None:
            raise ValueError(f"batch {sha256[:12]} of dataset {dataset!r} was never landed")
        return BatchOutcome(
            dataset, sha256, known.state, known.location, known.reason, None, already_settled=True
        )

    failpoint("batch-claimed")
    try:
        settled, rows, reason, validation, drift, decision, decision_run = _judge(
            settings, dataset, sha256, claimed
        )
    except Exception as exc:
        # MLflow unreachable, a bug: the batch stays in landing/ as failed, for reconcile.
        mark_failed(settings, dataset, sha256, exc)
        raise
    emit(
        events.BATCH_VALIDATED
        if settled.state is BatchState.processed
        else events.BATCH_QUARANTINED,
        dataset,
        {"sha256": sha256, "path": str(settled.location), "rows": rows, "reason": reason},
    )

    retrain = carry_out(settings, dataset, sha256, decision, decision_run) if act else None
    return BatchOutcome(
        dataset,
        sha256,
        settled.state,
        settled.location,
        reason,
        validation,
        drift=drift,
        decision=decision.to_dict(),
        decision_run_id=decision_run,
        retrain=retrain,
    )


def carry_out(
    settings: Settings, dataset: str, sha256: str, decision: Decision, decision_run: str | None
) -> dict[str, Any] | None:
    """Act on a decision: the gated retrain subflow (its outcome), or the policy's rollback."""
    if decision.action is Action.retrain:
        return retrain_evaluate_deploy(
            dataset=dataset, batch_sha256=sha256, decision_run_id=decision_run
        ).to_dict()
    if decision.action is Action.rollback:
        aliases = roll_back(settings, dataset, decision_run)
        emit(events.MODEL_ROLLED_BACK, dataset, {"sha256": sha256, "aliases": aliases})
    return None


def _judge(
    settings: Settings, dataset: str, sha256: str, claimed: LedgerEntry
) -> tuple[LedgerEntry, int, str | None, dict[str, Any], dict[str, Any] | None, Decision, str]:
    """Validate, test for drift, assess, decide, record, report and settle one claimed batch."""
    report = validate_batch(settings, dataset, claimed.location, claimed.original_name)
    state = disposition(report.success)
    reason = None if report.success else "; ".join(report.reasons())
    validation = report.to_dict()
    drift = None
    plots = []
    if state is BatchState.processed:  # drift is only meaningful on a batch that passed validation
        drift = detect_batch_drift(settings, dataset, claimed.location).to_dict()
        if drift["is_drift"]:
            emit(
                events.DRIFT_DETECTED,
                dataset,
                {"sha256": sha256, "p_value": drift["p_value"], "drivers": drift["drivers"]},
            )
            plots = plot_batch_drift(settings, dataset, claimed.location, drift)

    assessment = assess_batch(settings, dataset, claimed.location, report.success, drift)
    decision = decide_batch(settings, assessment)
    decision_run = record_batch_decision(
        settings, dataset, sha256, decision, assessment, validation, drift, plots
    )
    failpoint("batch-decided")
    emit(
        events.DECISION_MADE,
        dataset,
        {
            "sha256": sha256,
            "action": decision.action.value,
            "reasons": list(decision.reasons),
            "run_id": decision_run,
        },
    )
    detail = {
        "validation": validation,
        "drift": drift,
        "assessment": assessment.to_dict(),
        "decision": decision.to_dict(),
        "decision_run_id": decision_run,
    }
    publish_report(
        settings,
        dataset,
        sha256,
        validation,
        drift,
        decision.to_dict(),
        decision_run,
        plots,
    )
    settled = settle_batch(settings, dataset, sha256, state, detail, reason)
    return settled, report.rows, reason, validation, drift, decision, decision_run
