"""The batch flow: claim a landed batch, validate, test for drift, assess, decide, act, settle.

Every batch gets a decision run in MLflow (even a quarantined one: its decision is ``none``,
with the validation failure as evidence). The flow branches only on the decision's action.

What a person sees in Prefect: the run is named from its dataset and file
(``credit · batch-19-week19.csv``); its final state is named for the outcome (``Quarantined``,
``Drift``, ``Retrain refused``, ``Promoted``, ...) and tagged with it; its logs carry the
verdicts and the decision; its markdown artifact is published once the decision is carried out.
A file that was not a table at all was quarantined when it was submitted: its run announces
the quarantine and ends ``Quarantined`` with the reason.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.retrain_evaluate_deploy import retrain_evaluate_deploy
from mlops_core import events
from mlops_core.adapters.context import DatasetContext
from mlops_core.adapters.landing import quarantined_on_arrival
from mlops_core.batches import BatchState, LedgerEntry, disposition
from mlops_core.faults import failpoint
from mlops_core.outcomes import BatchJudgement, BatchOutcome, RetrainOutcome
from mlops_core.policy import Action, Decision
from mlops_core.reporting import (
    batch_run_label,
    decision_line,
    drift_line,
    retrain_line,
    validation_line,
)
from mlops_core.settings import Settings
from tasks.decision import (
    alert_if_stuck,
    assess_batch,
    decide_batch,
    discard_plots,
    plot_batch_drift,
    record_batch_decision,
    roll_back,
)
from tasks.drift import detect_batch_drift
from tasks.events import emit
from tasks.landing import (
    claim_batch,
    fetch_file,
    file_title,
    ledger_entry,
    mark_failed,
    open_dataset,
    settle_batch,
)
from tasks.report import ending, publish_report, tag_run
from tasks.retrain import request_retrain
from tasks.timeline import publish_timeline
from tasks.validation import publish_data_docs, validate_batch


def _run_name() -> str:
    """``credit · batch-19-week19.csv``: the dataset and the file's name as it was submitted."""
    parameters = flow_run.parameters
    return file_title(parameters["dataset"], parameters["sha256"])


@flow(name="process-batch", flow_run_name=_run_name)
def process_batch(dataset: str, sha256: str, act: bool = True) -> BatchOutcome:
    """Process one landed batch exactly once; with ``act``, carry out the decision too.

    Returns the ``BatchOutcome``; the run's final state is named for it (see ``ending``)."""
    ctx = open_dataset(Settings(), dataset)
    claimed = claim_batch(ctx, sha256)
    if claimed is None:
        known = ledger_entry(ctx, sha256)
        if known is None:
            raise ValueError(f"batch {sha256[:12]} of dataset {dataset!r} was never landed")
        if quarantined_on_arrival(known):
            return finish(_unusable(ctx, known))
        return finish(BatchOutcome.settled_before(known))

    failpoint("batch-claimed")
    try:
        judged = _judge(ctx, sha256, claimed, act)
    except Exception as exc:
        # MLflow unreachable, a bug: the batch stays in landing/ as failed, for reconcile.
        give_back(ctx, sha256, exc)
        raise
    failpoint("batch-settled")
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
    retrain = None
    try:
        retrain = carry_out(ctx, sha256, judged.decision, judged.decision_run_id) if act else None
    finally:  # the report says what the retrain did, and is published even if acting failed
        publish_report(
            ctx,
            sha256,
            judged.validation.to_dict(),
            judged.drift.to_dict() if judged.drift is not None else None,
            judged.decision.to_dict(),
            judged.decision_run_id,
            original_name=claimed.original_name,
            retrain=retrain,
        )
        # The dataset's timeline (one Prefect table artifact, versioned) and this batch's page,
        # logged to its decision run; a rendering failure is logged, never fails the batch.
        publish_timeline(ctx, sha256, judged.decision_run_id)
    return finish(
        BatchOutcome(
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
    )


def finish(outcome: BatchOutcome) -> Any:
    """The run's final state, named and tagged for ``outcome`` and the retrain logged; callers
    of the flow get ``outcome`` back (Prefect hands them the returned state's data)."""
    label = batch_run_label(outcome)
    tag_run(label.tags)
    if outcome.retrain is not None:
        get_run_logger().info(retrain_line(outcome.retrain))
    return ending(label, outcome)


def give_back(ctx: DatasetContext, sha256: str, error: BaseException, kind: str = "batch") -> None:
    """Nothing returned: the claim goes back as ``failed`` (the next sweep claims it again), or,
    after ``MLOPS_MAX_BATCH_ATTEMPTS`` tries, as ``dead_letter``, announced (see ``dead_lettered``)."""
    entry = mark_failed(ctx, sha256, error, kind)
    if entry is not None and entry.state is BatchState.dead_letter:
        dead_lettered(ctx, entry, kind)


def dead_lettered(ctx: DatasetContext, entry: LedgerEntry, kind: str = "batch") -> None:
    """Nothing returned: ``mlops.batch.dead_lettered`` and an ``mlops.alert`` (which the
    automations carry to people) say a batch failed its last allowed attempt and waits for
    ``mlops retry`` or ``mlops drop``."""
    noun = "batch" if kind == "batch" else "labels file"
    what = f"{noun} {entry.original_name} dead-lettered after {entry.attempts} attempts"
    get_run_logger().error("%s: %s", what, entry.reason)
    emit(
        events.BATCH_DEAD_LETTERED,
        ctx.name,
        {
            "sha256": entry.sha256,
            "kind": kind,
            "original_name": entry.original_name,
            "path": entry.location,
            "attempts": entry.attempts,
            "reason": entry.reason,
        },
    )
    emit(
        events.ALERT,
        ctx.name,
        {"what": what, "reason": entry.reason, "sha256": entry.sha256, "attempts": entry.attempts},
    )


def _unusable(ctx: DatasetContext, entry: LedgerEntry) -> BatchOutcome:
    """A file quarantined on arrival (not a table at all): the quarantine event and report."""
    get_run_logger().warning("quarantined on arrival: %s", entry.reason)
    emit(
        events.BATCH_QUARANTINED,
        ctx.name,
        {
            "sha256": entry.sha256,
            "path": entry.location,
            "rows": 0,
            "reason": entry.reason,
            "stage": "submit",
            "original_name": entry.original_name,
        },
    )
    validation = {"verdict": "unusable", "failures": [], "error": entry.reason}
    publish_report(
        ctx, entry.sha256, validation, None, None, None, original_name=entry.original_name
    )
    return BatchOutcome.settled_before(entry)


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


def _judge(ctx: DatasetContext, sha256: str, claimed: LedgerEntry, act: bool) -> BatchJudgement:
    """Validate, test for drift, assess, decide, record, report and settle one claimed batch;
    with ``act``, a retrain the decision asks for is requested in the ledger before the batch
    settles, so reconcile carries it out if this run dies before the subflow claims it."""
    logger = get_run_logger()
    batch_file = fetch_file(ctx, claimed)
    report = validate_batch(ctx, batch_file, claimed.original_name, claimed.submitted_at)
    logger.log(logging.INFO if report.success else logging.WARNING, validation_line(report))
    state = disposition(report.success)
    reason = None if report.success else "; ".join(report.reasons())
    drift = None
    plots = []
    if state is BatchState.processed:  # drift is only meaningful on a batch that passed validation
        drift = detect_batch_drift(ctx, batch_file)
        logger.info(drift_line(drift))
        if drift.is_drift:
            emit(
                events.DRIFT_DETECTED,
                ctx.name,
                {"sha256": sha256, "p_value": drift.p_value, "drivers": list(drift.drivers)},
            )
            plots = plot_batch_drift(ctx, batch_file, drift)

    assessment = assess_batch(ctx, batch_file, report.success, drift)
    decision = decide_batch(ctx, assessment)
    logger.info(decision_line(decision))
    validation = report.to_dict()
    try:
        decision_run = record_batch_decision(
            ctx,
            sha256,
            decision,
            assessment,
            validation,
            drift,
            plots,
            original_name=claimed.original_name,
        )
    finally:
        discard_plots(plots)
    alert_if_stuck(ctx, sha256, assessment)
    if act and decision.action is Action.retrain and decision_run:
        request_retrain(ctx, decision_run, sha256)
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
    settled = settle_batch(ctx, sha256, state, detail, reason)
    return BatchJudgement(settled, report.rows, reason, report, drift, decision, decision_run)
