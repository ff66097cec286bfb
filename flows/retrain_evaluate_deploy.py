"""The gated subflow: train a challenger, judge it against the champion, promote only if it passes.

A failure anywhere -- training raises, MLflow is unreachable, a gate fails -- leaves ``champion``
exactly where it was: promotion is the last step, taken only on a passing ``GateReport``. The
outcome (promoted, refused, failed) is recorded on the decision run and, on failure, an alert
event is emitted. A passing challenger is rolled out through the model server by the rollout flow
when `MLOPS_SERVE_URL` names one, and promoted directly otherwise.

With ``gate_only`` (``mlops train --gate-only``, a CI job's check of new training code) the
challenger is trained, registered and judged as always, its runs and version tagged
``mlops.gate_only``, and then nothing is delivered: no alias moves, pass or fail.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.concurrency.sync import concurrency
from prefect.runtime import flow_run

from flows.rollout import rollout
from mlops_core import events
from mlops_core.adapters.context import DatasetContext
from mlops_core.challenger import Challenger, TrainingData, gate_summary, retrain_limit_name
from mlops_core.delivery import Delivery, choose_delivery
from mlops_core.evaluation import GateReport
from mlops_core.faults import failpoint
from mlops_core.outcomes import RetrainOutcome, RetrainStatus
from mlops_core.reporting import retrain_line, retrain_run_label, run_title
from mlops_core.settings import Settings
from mlops_core.tags import CHAMPION
from tasks.events import emit
from tasks.landing import file_title, open_dataset
from tasks.report import ending, tag_run
from tasks.retrain import (
    champion_version,
    claim_retrain,
    ensure_retrain_limit,
    finish_retrain_claim,
    gate,
    gather_data,
    keep_claim,
    mark_gate_only,
    note_outcome,
    promote,
    record_gates,
    show_progress,
    start_progress,
    train,
)


class _Progress:
    """Where the subflow is, for the progress artifact and for the reason when a stage fails."""

    def __init__(self, dataset: str, batch_sha256: str) -> None:
        self.stage = "reading the registry"
        self.artifact = start_progress(dataset, batch_sha256)
        self.gates: GateReport | None = None  # recorded gates, attached to the decision run

    def enter(self, stage: str, percent: float | None = None) -> None:
        self.stage = stage
        if percent is not None:
            show_progress(self.artifact, percent, stage)


def _run_name() -> str:
    """``credit · retrain after batch-19-week19.csv``: the dataset and the file that called
    for it (a batch or a labels file)."""
    parameters = flow_run.parameters
    if parameters.get("gate_only"):
        return run_title(parameters["dataset"], "gate check (no alias moves)")
    sha256 = parameters.get("batch_sha256") or ""
    if not sha256:  # `mlops train`, the first champion, the drift-review automation
        return run_title(parameters["dataset"], "retrain (no batch: by hand or on review)")
    return file_title(parameters["dataset"], sha256, what="retrain after")


@flow(name="retrain-evaluate-deploy", flow_run_name=_run_name)
def retrain_evaluate_deploy(
    dataset: str,
    batch_sha256: str = "",
    decision_run_id: str | None = None,
    gate_only: bool = False,
    resumed: bool = False,
) -> RetrainOutcome:
    """Train, gate and (on a pass) promote a new model for ``dataset``; never raises.

    Returns the ``RetrainOutcome``; the run's final state is named for it (``Promoted``,
    ``Retrain refused``, ``Retrain failed``, ``Rolled back``...). ``gate_only`` stops after the
    gates: the outcome carries their verdict and no alias moves.

    A decision's retrain is claimed in the ledger as it starts and the claim is kept alive while
    it works (``mlops_core.adapters.retrain_claims``), so reconcile can carry out, once, one
    whose process died; ``resumed`` is reconcile's run, which took the claim over already."""
    settings = Settings()
    progress = _Progress(dataset, batch_sha256)
    before: str | None = None
    ctx: DatasetContext | None = None
    claimed = False
    try:
        ctx = open_dataset(settings, dataset)
        before = champion_version(ctx)
        if decision_run_id and not gate_only:
            claimed = resumed or claim_retrain(ctx, decision_run_id, batch_sha256)
            if not claimed:  # another run carries this decision's retrain out: never twice
                get_run_logger().warning(
                    "the retrain of decision run %s was claimed by another run", decision_run_id
                )
                return RetrainOutcome(
                    RetrainStatus.failed,
                    "this decision's retrain was claimed by another run",
                    champion_before=before,
                    champion_after=before,
                )
            failpoint("retrain-claimed")
        ensure_retrain_limit(dataset)
        # One retrain per dataset at a time (a Prefect global concurrency limit of 1). The claim
        # beats while this run waits for that slot too: a queue of retrains longer than the stale
        # time must not look like dead runs to reconcile, or a waiting one would be run twice.
        with (
            keep_claim(ctx, decision_run_id if claimed else None),
            concurrency(retrain_limit_name(dataset), occupy=1, strict=False),
        ):
            outcome = _train_and_judge(
                ctx, progress, before, batch_sha256, decision_run_id, gate_only
            )
    except Exception as exc:  # noqa: BLE001 -- any failure is recorded; the champion stays
        outcome = _failed(dataset, progress.stage, exc, before, batch_sha256, alert=not gate_only)
    show_progress(progress.artifact, 100, outcome.status.value)
    if decision_run_id:
        _note(ctx, decision_run_id, outcome, progress.gates)
        if claimed and ctx is not None:
            finish_retrain_claim(ctx, decision_run_id)
    get_run_logger().info(retrain_line(outcome))
    label = retrain_run_label(outcome)
    tag_run(label.tags)
    return ending(label, outcome)


def _train_and_judge(
    ctx: DatasetContext,
    progress: _Progress,
    before: str | None,
    batch_sha256: str,
    decision_run_id: str | None,
    gate_only: bool = False,
) -> RetrainOutcome:
    """Gather, train, gate and record; then deliver the challenger as the gates allow (a
    gate-only run delivers nothing)."""
    progress.enter("gathering training data", 10)
    data = gather_data(ctx, first_model=before is None)
    progress.enter("training", 25)
    failpoint("retrain-training")
    challenger = train(ctx, data, batch_sha256, decision_run_id)
    if gate_only:  # marked at once: a check that fails later still leaves its version marked
        mark_gate_only(ctx, challenger.run_id, version=challenger.version)
    emit(
        events.MODEL_REGISTERED,
        ctx.name,
        {
            "version": challenger.version,
            "run_id": challenger.run_id,
            "sha256": batch_sha256,
            **({"gate_only": True} if gate_only else {}),
        },
    )
    progress.enter("evaluating", 60)
    failpoint("retrain-evaluating")
    report = gate(ctx, challenger, data)
    progress.enter("recording the gate report", 85)
    evaluate_run = record_gates(ctx, challenger, report, batch_sha256, decision_run_id)
    progress.gates = report
    judged: dict[str, Any] = {
        "version": challenger.version,
        "gates": report,
        "champion_before": before,
        "train_run_id": challenger.run_id,
        "evaluate_run_id": evaluate_run,
    }
    if gate_only:
        mark_gate_only(ctx, evaluate_run)
        return _judged_only(report, data, before, judged)
    delivery = choose_delivery(
        gates_passed=report.passed,
        serve_url=ctx.settings.serve_url,
        has_champion=before is not None,
    )
    if delivery is Delivery.refuse:
        return RetrainOutcome(
            RetrainStatus.refused, gate_summary(report, data), champion_after=before, **judged
        )
    if delivery is Delivery.rollout:
        progress.enter("rolling out", 90)
        return _roll_out(ctx, challenger, report, decision_run_id, judged)
    progress.enter("promoting")
    return _promote(ctx, challenger, report, batch_sha256, judged)


# RetrainStatus has no value yet for "judged at the gates, nothing delivered"; the nearest is the
# shadow rollout's (judged, never promoted). One name, so a status of its own replaces it here.
GATES_PASSED_NOT_DELIVERED = RetrainStatus.gates_passed


def _judged_only(
    report: GateReport, data: TrainingData, before: str | None, judged: dict[str, Any]
) -> RetrainOutcome:
    """A gate-only run's end: the gates' verdict; the champion stays whatever they said."""
    status = GATES_PASSED_NOT_DELIVERED if report.passed else RetrainStatus.refused
    return RetrainOutcome(
        status,
        f"{gate_summary(report, data)}; gate-only: nothing delivered, no alias moved",
        champion_after=before,
        **judged,
    )


def _roll_out(
    ctx: DatasetContext,
    challenger: Challenger,
    report: GateReport,
    decision_run_id: str | None,
    judged: dict[str, Any],
) -> RetrainOutcome:
    """Progressive delivery through the model server (canary / blue-green / shadow)."""
    result = rollout(dataset=ctx.name, version=challenger.version, parent_run_id=decision_run_id)
    last = result.last_reasons
    reason = f"{gate_summary(report)}; rollout {result.status.value}" + (
        f": {'; '.join(last)}" if last else ""
    )
    return RetrainOutcome(
        RetrainStatus(result.status.value),
        reason,
        champion_after=result.aliases.get(CHAMPION),
        **judged,
    )


def _promote(
    ctx: DatasetContext,
    challenger: Challenger,
    report: GateReport,
    batch_sha256: str,
    judged: dict[str, Any],
) -> RetrainOutcome:
    """Straight to champion: a first model, or no model server to roll out through."""
    aliases = promote(ctx, challenger.version)
    emit(
        events.MODEL_PROMOTED,
        ctx.name,
        {
            "version": challenger.version,
            "previous": judged["champion_before"],
            "sha256": batch_sha256,
        },
    )
    return RetrainOutcome(
        RetrainStatus.promoted,
        gate_summary(report) + "; promoted directly (no MLOPS_SERVE_URL to roll out through)",
        champion_after=aliases.get(CHAMPION),
        **judged,
    )


def _failed(
    dataset: str,
    stage: str,
    exc: Exception,
    before: str | None,
    batch_sha256: str,
    *,
    alert: bool = True,
) -> RetrainOutcome:
    """A stage raised: the champion stays, an alert goes out (not for a gate-only check: its CI
    job fails instead), the reason names the stage."""
    reason = f"{stage} failed: {type(exc).__name__}: {exc}"
    get_run_logger().error(
        "retrain of %s failed; champion v%s unchanged: %s", dataset, before, reason
    )
    if alert:
        emit(
            events.ALERT,
            dataset,
            {"what": "retrain failed", "reason": reason, "sha256": batch_sha256},
        )
    return RetrainOutcome(
        RetrainStatus.failed, reason, champion_before=before, champion_after=before
    )


def _note(
    ctx: DatasetContext | None,
    decision_run_id: str,
    outcome: RetrainOutcome,
    gates: GateReport | None,
) -> None:
    """The outcome on the decision run; MLflow itself may be what failed, so never raise."""
    try:
        if ctx is None:  # the dataset could not even be opened: the reason says why
            raise RuntimeError(outcome.reason)
        note_outcome(ctx, decision_run_id, outcome, gates)
    except Exception as exc:  # noqa: BLE001 -- MLflow itself may be what failed
        get_run_logger().error(
            "could not record the retrain outcome on run %s: %s", decision_run_id, exc
        )
