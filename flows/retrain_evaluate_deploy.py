"""The gated subflow: train a challenger, judge it against the champion, promote only if it passes.

A failure anywhere -- training raises, MLflow is unreachable, a gate fails -- leaves ``champion``
exactly where it was: promotion is the last step, taken only on a passing ``GateReport``. The
outcome (promoted, refused, failed) is recorded on the decision run and, on failure, an alert
event is emitted. A passing challenger is rolled out through the model server by the rollout flow
when `MLOPS_SERVE_URL` names one, and promoted directly otherwise.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.concurrency.sync import concurrency

from flows.rollout import rollout
from mlops_core import events
from mlops_core.faults import failpoint
from mlops_core.lifecycle import RetrainOutcome, gate_summary, retrain_limit_name
from mlops_core.settings import Settings
from tasks.events import emit
from tasks.retrain import (
    champion_version,
    ensure_retrain_limit,
    gate,
    gather_data,
    note_outcome,
    promote,
    record_gates,
    show_progress,
    start_progress,
    train,
)


@flow(name="retrain-evaluate-deploy", flow_run_name="retrain-{dataset}-{batch_sha256:.12}")
def retrain_evaluate_deploy(
    dataset: str, batch_sha256: str = "", decision_run_id: str | None = None
) -> RetrainOutcome:
    """Train, gate and (on a pass) promote a new model for ``dataset``; never raises."""
    settings = Settings()
    logger = get_run_logger()
    before: str | None = None
    gates_md = ""
    stage = "reading the registry"
    progress = start_progress(dataset, batch_sha256)
    try:
        before = champion_version(settings, dataset)
        ensure_retrain_limit(settings, dataset)
        # One retrain per dataset at a time (a Prefect global concurrency limit of 1).
        with concurrency(retrain_limit_name(dataset), occupy=1, strict=False):
            stage = "gathering training data"
            show_progress(progress, 10, stage)
            data = gather_data(settings, dataset, first_model=before is None)
            stage = "training"
            show_progress(progress, 25, stage)
            failpoint("retrain-training")
            challenger = train(settings, dataset, data, batch_sha256, decision_run_id)
            emit(
                events.MODEL_REGISTERED,
                dataset,
                {
                    "version": challenger.version,
                    "run_id": challenger.run_id,
                    "sha256": batch_sha256,
                },
            )
            stage = "evaluating"
            show_progress(progress, 60, stage)
            failpoint("retrain-evaluating")
            report = gate(settings, dataset, challenger, data)
            stage = "recording the gate report"
            show_progress(progress, 85, stage)
            evaluate_run = record_gates(
                settings, dataset, challenger, report, batch_sha256, decision_run_id
            )
            gates_md = report.markdown() + "\n"
            if report.passed and settings.serve_url and before is not None:
                # Progressive delivery through the model server (canary / blue-green / shadow);
                # a first model has no champion to share traffic with, so it is promoted directly.
                stage = "rolling out"
                show_progress(progress, 90, stage)
                result = rollout(
                    dataset=dataset,
                    version=challenger.version,
                    parent_run_id=decision_run_id,
                )
                last = result["steps"][-1]["reasons"] if result["steps"] else []
                outcome = RetrainOutcome(
                    result["status"],
                    f"{gate_summary(report)}; rollout {result['status']}"
                    + (f": {'; '.join(last)}" if last else ""),
                    challenger.version,
                    report.to_dict(),
                    before,
                    result["aliases"].get("champion"),
                    challenger.run_id,
                    evaluate_run,
                )
            elif report.passed:
                stage = "promoting"
                aliases = promote(settings, dataset, challenger.version)
                emit(
                    events.MODEL_PROMOTED,
                    dataset,
                    {"version": challenger.version, "previous": before, "sha256": batch_sha256},
                )
                outcome = RetrainOutcome(
                    "promoted",
                    gate_summary(report)
                    + "; promoted directly (no MLOPS_SERVE_URL to roll out through)",
                    challenger.version,
                    report.to_dict(),
                    before,
                    aliases.get("champion"),
                    challenger.run_id,
                    evaluate_run,
                )
            else:
                outcome = RetrainOutcome(
                    "refused",
                    gate_summary(report),
                    challenger.version,
                    report.to_dict(),
                    before,
                    before,
                    challenger.run_id,
                    evaluate_run,
                )
    except Exception as exc:  # noqa: BLE001 -- any failure is recorded; the champion stays
        reason = f"{stage} failed: {type(exc).__name__}: {exc}"
        logger.error("retrain of %s failed; champion v%s unchanged: %s", dataset, before, reason)
        outcome = RetrainOutcome("failed", reason, champion_before=before, champion_after=before)
        emit(
            events.ALERT,
            dataset,
            {"what": "retrain failed", "reason": reason, "sha256": batch_sha256},
        )
    show_progress(progress, 100, outcome.status)
    if decision_run_id:
        try:
            note_outcome(settings, dataset, decision_run_id, outcome.to_dict(), gates_md)
        except Exception as exc:  # noqa: BLE001 -- MLflow itself may be what failed
            logger.error("could not record the retrain outcome on run %s: %s", decision_run_id, exc)
    return outcome
