"""Tasks of the gated subflow: gather data, train, gate, record, promote."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from mlops_core.adapters.audit import attach, note_retrain, record_evaluation
from mlops_core.adapters.context import DatasetContext
from mlops_core.adapters.retrain_claims import RetrainClaims
from mlops_core.challenger import (
    Challenger,
    TrainingData,
    gate_challenger,
    gather_training_data,
    retrain_limit_name,
    train_challenger,
)
from mlops_core.evaluation import GateReport
from mlops_core.outcomes import RetrainOutcome, retrain_gain
from mlops_core.tags import (
    CHAMPION,
    DECISION_RUN,
    GATE_ONLY,
    GATE_RUN,
    GATES,
    RETRAIN,
    RETRAIN_REASON,
)


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def gather_data(ctx: DatasetContext, first_model: bool) -> TrainingData:
    """The training window and the recent rows held out for the gates."""
    return gather_training_data(ctx, first_model=first_model)


@task(cache_policy=NO_CACHE)
def train(
    ctx: DatasetContext, data: TrainingData, batch_sha256: str, decision_run_id: str | None
) -> Challenger:
    """Fit and register a new version (registered, not yet any role)."""
    return train_challenger(ctx, data, batch_sha256=batch_sha256, parent_run_id=decision_run_id)


@task(cache_policy=NO_CACHE)
def gate(ctx: DatasetContext, challenger: Challenger, data: TrainingData) -> GateReport:
    """Run every gate against the champion on the held-out recent rows."""
    return gate_challenger(ctx, challenger, data)


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def record_gates(
    ctx: DatasetContext,
    challenger: Challenger,
    report: GateReport,
    batch_sha256: str,
    decision_run_id: str | None,
) -> str:
    """The gate report as an ``evaluate`` run; the version and the decision run point at it."""
    metrics = {"challenger_accuracy": report.challenger_accuracy, "rows": report.rows}
    if report.champion_accuracy is not None:
        metrics["champion_accuracy"] = report.champion_accuracy
    run_id = record_evaluation(
        ctx.registry,
        version=challenger.version,
        report_json=json.dumps(report.to_dict(), indent=2),
        report_markdown=report.markdown() + "\n",
        metrics=metrics,
        passed=report.passed,
        batch_sha256=batch_sha256,
        parent_run_id=decision_run_id,
        train_run_id=challenger.run_id,
    )
    ctx.registry.set_version_tags(
        challenger.version,
        {
            GATES: "passed" if report.passed else "failed",
            GATE_RUN: run_id,
            **({DECISION_RUN: decision_run_id} if decision_run_id else {}),
        },
    )
    return run_id


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def mark_gate_only(ctx: DatasetContext, run_id: str, version: str | None = None) -> None:
    """Tag a gate-only check's run (and its model version): judged, never to be delivered."""
    ctx.registry.client.set_tag(run_id, GATE_ONLY, "true")
    if version is not None:
        ctx.registry.set_version_tags(version, {GATE_ONLY: "true"})


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def promote(ctx: DatasetContext, version: str) -> dict[str, str]:
    """A passing challenger: alias ``challenger``, then ``champion`` (old one to ``previous``)."""
    ctx.registry.set_challenger(version)
    return ctx.registry.promote(version)


@task(cache_policy=NO_CACHE)
def champion_version(ctx: DatasetContext) -> str | None:
    """The version the champion alias points at; None before the first model."""
    return ctx.registry.aliases().get(CHAMPION)


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def note_outcome(
    ctx: DatasetContext, decision_run_id: str, outcome: RetrainOutcome, gates: GateReport | None
) -> None:
    """The subflow's outcome on the decision run: a tag, its name and description (``→ promoted``),
    and the gate report (when the gates were recorded) beside its reasons."""
    artifacts = {"retrain.json": json.dumps(outcome.to_dict(), indent=2, default=str)}
    if gates is not None:
        artifacts["gate_report.md"] = gates.markdown() + "\n"
    attach(
        ctx.registry,
        decision_run_id,
        tags={RETRAIN: outcome.status.value, RETRAIN_REASON: outcome.reason},
        artifacts=artifacts,
    )
    note_retrain(ctx.registry, decision_run_id, outcome.status.value, outcome.reason)
    gain = retrain_gain(outcome)
    if gain is not None:  # what the cost-benefit learns from (mlops_core.policy)
        ctx.registry.client.log_metric(decision_run_id, "retrain_accuracy_gain", gain)


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def request_retrain(ctx: DatasetContext, decision_run_id: str, batch_sha256: str) -> bool:
    """Record, before the batch settles, that its decision asked for a retrain: if the run dies
    before the subflow claims it, reconcile carries it out. False when recorded before."""
    return RetrainClaims(ctx.settings).request(ctx.name, decision_run_id, batch_sha256)


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def claim_retrain(ctx: DatasetContext, decision_run_id: str, batch_sha256: str) -> bool:
    """Claim a decision's retrain for this run; False when another run claimed it first."""
    return RetrainClaims(ctx.settings).start(ctx.name, decision_run_id, batch_sha256)


def keep_claim(
    ctx: DatasetContext, decision_run_id: str | None
) -> contextlib.AbstractContextManager[None]:
    """Beats on the decision's retrain claim while the block runs (nothing without a claim): a
    quarter of ``MLOPS_RECONCILE_STALE_SECONDS`` apart, so a live run's claim never goes stale."""
    if decision_run_id is None:
        return contextlib.nullcontext()
    beat = max(1.0, ctx.settings.reconcile_stale_seconds / 4)
    return RetrainClaims(ctx.settings).held(ctx.name, decision_run_id, beat_seconds=beat)


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def finish_retrain_claim(ctx: DatasetContext, decision_run_id: str) -> None:
    """The decision's retrain has its outcome recorded: reconcile leaves it alone."""
    RetrainClaims(ctx.settings).finish(ctx.name, decision_run_id)


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def ensure_retrain_limit(dataset: str) -> None:
    """The dataset's retrain concurrency limit (1) exists on the Prefect server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    name = retrain_limit_name(dataset)
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))


def start_progress(dataset: str, batch_sha256: str) -> Any:
    """A progress artifact for the Prefect UI (None when it cannot be created)."""
    from prefect.artifacts import create_progress_artifact

    try:
        return create_progress_artifact(
            progress=0.0,
            description=f"retrain of {dataset} (batch {batch_sha256[:12] or 'manual'})",
        )
    except Exception:  # noqa: BLE001 -- progress display must never break a retrain
        return None


def show_progress(artifact_id: Any, percent: float, stage: str) -> None:
    """Log the retrain's stage and move its progress artifact to ``percent`` (a lost update is ignored)."""
    from prefect import get_run_logger
    from prefect.artifacts import update_progress_artifact

    get_run_logger().info("retrain: %s (%d%%)", stage, percent)
    if artifact_id is None:
        return
    try:
        update_progress_artifact(artifact_id=artifact_id, progress=float(percent))
    except Exception:  # noqa: BLE001 -- progress display must never break a retrain
        return
