"""Tasks of the gated subflow: gather data, train, gate, record, promote."""

from __future__ import annotations

import json
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from mlops_core.adapters.audit import attach, record_evaluation
from mlops_core.adapters.registry import CHAMPION, ModelRegistry
from mlops_core.evaluation import GateReport
from mlops_core.lifecycle import (
    Challenger,
    TrainingData,
    gate_challenger,
    gather_training_data,
    train_challenger,
)
from mlops_core.settings import Settings


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def gather_data(settings: Settings, dataset: str, first_model: bool) -> TrainingData:
    """The training window and the recent rows held out for the gates."""
    return gather_training_data(settings, dataset, first_model=first_model)


@task(cache_policy=NO_CACHE)
def train(
    settings: Settings,
    dataset: str,
    data: TrainingData,
    batch_sha256: str,
    decision_run_id: str | None,
) -> Challenger:
    """Fit and register a new version (registered, not yet any role)."""
    return train_challenger(
        settings, dataset, data, batch_sha256=batch_sha256, parent_run_id=decision_run_id
    )


@task(cache_policy=NO_CACHE)
def gate(
    settings: Settings, dataset: str, challenger: Challenger, data: TrainingData
) -> GateReport:
    """Run every gate against the champion on the held-out recent rows."""
    return gate_challenger(settings, dataset, challenger, data)


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def record_gates(
    settings: Settings,
    dataset: str,
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
        settings,
        dataset,
        version=challenger.version,
        report_json=json.dumps(report.to_dict(), indent=2),
        report_markdown=report.markdown() + "\n",
        metrics=metrics,
        passed=report.passed,
        batch_sha256=batch_sha256,
        parent_run_id=decision_run_id,
        train_run_id=challenger.run_id,
    )
    ModelRegistry(settings, dataset).set_version_tags(
        challenger.version,
        {
            "mlops.gates": "passed" if report.passed else "failed",
            "mlops.gate_run_id": run_id,
            **({"mlops.decision_run_id": decision_run_id} if decision_run_id else {}),
        },
    )
    return run_id


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def promote(settings: Settings, dataset: str, version: str) -> dict[str, str]:
    """A passing challenger: alias ``challenger``, then ``champion`` (old one to ``previous``)."""
    registry = ModelRegistry(settings, dataset)
    registry.set_challenger(version)
    return registry.promote(version)


@task(cache_policy=NO_CACHE)
def champion_version(settings: Settings, dataset: str) -> str | None:
    return ModelRegistry(settings, dataset).aliases().get(CHAMPION)


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def note_outcome(
    settings: Settings, dataset: str, decision_run_id: str, outcome: dict[str, Any], gates_md: str
) -> None:
    """The subflow's outcome on the decision run: a tag, and the gate report beside its reasons."""
    artifacts = {"retrain.json": json.dumps(outcome, indent=2, default=str)}
    if gates_md:
        artifacts["gate_report.md"] = gates_md
    attach(
        settings,
        dataset,
        decision_run_id,
        tags={"mlops.retrain": outcome["status"], "mlops.retrain_reason": outcome["reason"]},
        artifacts=artifacts,
    )


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def ensure_retrain_limit(settings: Settings, dataset: str) -> None:
    """The dataset's retrain concurrency limit (1) exists on the Prefect server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    from mlops_core.lifecycle import retrain_limit_name

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
    from prefect import get_run_logger
    from prefect.artifacts import update_progress_artifact

    get_run_logger().info("retrain: %s (%d%%)", stage, percent)
    if artifact_id is None:
        return
    try:
        update_progress_artifact(artifact_id=artifact_id, progress=float(percent))
    except Exception:  # noqa: BLE001 -- progress display must never break a retrain
        return
