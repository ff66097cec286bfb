"""Tasks of the decision stage: assess the champion on a batch, decide, record the decision."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from mlops_core.adapters.audit import attach, record_decision
from mlops_core.adapters.catalog import DatasetCatalog
from mlops_core.adapters.registry import ModelRegistry
from mlops_core.data import read_table
from mlops_core.drift import DriftConfig, DriftReport
from mlops_core.errors import MlopsError
from mlops_core.lifecycle import Assessment, assess
from mlops_core.policy import Decision, decide
from mlops_core.settings import Settings


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def assess_batch(
    settings: Settings,
    dataset: str,
    path: Path,
    validation_passed: bool,
    drift: dict[str, Any] | None,
) -> Assessment:
    """The policy's evidence: observed and estimated accuracy, cooldown, labels, cost basis."""
    frame = None
    if validation_passed:
        try:
            frame = read_table(path, max_bytes=settings.max_batch_bytes)
        except MlopsError:
            validation_passed = False
    return assess(settings, dataset, frame, validation_passed=validation_passed, drift=drift)


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def assess_frame(
    settings: Settings, dataset: str, frame: pl.DataFrame, batches: tuple[str, ...]
) -> Assessment:
    """The policy's evidence on rows that just got their labels (they passed validation)."""
    return assess(settings, dataset, frame, validation_passed=True, drift=None, exclude=batches)


@task(cache_policy=NO_CACHE)
def decide_batch(settings: Settings, assessment: Assessment) -> Decision:
    """Apply the policy (pure) with the thresholds from settings."""
    return decide(assessment.evidence, settings.policy_config())


@task(cache_policy=NO_CACHE)
def plot_batch_drift(
    settings: Settings, dataset: str, path: Path, drift: dict[str, Any]
) -> list[Path]:
    """The drift plots (effect sizes, distributions) as PNG files in a temporary folder."""
    from mlops_core.plots import plot_drift

    registered = DatasetCatalog(settings).get(dataset)
    out = Path(tempfile.mkdtemp(prefix="mlops-drift-"))
    return plot_drift(
        DriftReport.model_validate(drift),
        registered.reference(),
        read_table(path, max_bytes=settings.max_batch_bytes),
        registered.spec,
        out,
        config=DriftConfig(false_alarm_rate=settings.drift_false_alarm_rate),
    )


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def record_batch_decision(
    settings: Settings,
    dataset: str,
    sha256: str,
    decision: Decision,
    assessment: Assessment,
    validation: dict[str, Any],
    drift: dict[str, Any] | None,
    plots: list[Path],
    extra_tags: dict[str, str] | None = None,
    kind: str = "batch",
) -> str:
    """The decision as an MLflow run with the batch's validation, drift and performance evidence;
    recorded once per batch (a rerun after a crash reuses the finished run)."""
    artifacts = {
        "validation.json": json.dumps(validation, indent=2, default=str),
        "assessment.json": json.dumps(assessment.to_dict(), indent=2, default=str),
    }
    if drift is not None:
        artifacts["drift/drift.json"] = json.dumps(drift, indent=2, default=str)
    extra = {"mlops.champion_version": assessment.champion_version or "", **(extra_tags or {})}
    return record_decision(
        settings,
        dataset,
        decision,
        batch_sha256=sha256,
        artifacts=artifacts,
        files=plots,
        extra_tags=extra,
        key=f"{kind}:{sha256}",
    )


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def roll_back(settings: Settings, dataset: str, decision_run_id: str | None) -> dict[str, str]:
    """The policy's rollback: one alias move, noted on the decision run."""
    aliases = ModelRegistry(settings, dataset).rollback()
    if decision_run_id:
        attach(
            settings,
            dataset,
            decision_run_id,
            tags={"mlops.rollback": f"champion is now v{aliases.get('champion')}"},
        )
    return aliases


@task(cache_policy=NO_CACHE)
def review_recent_drift(
    settings: Settings, dataset: str, alarms: int, window_minutes: int
) -> dict[str, Any]:
    """Decide on the newest ``alarms`` processed batches together (the automation's context)."""
    from mlops_core.lifecycle import processed_batches

    spec = DatasetCatalog(settings).get(dataset).spec
    recent = list(processed_batches(settings, dataset, spec))[-alarms:]
    if not recent:
        return {"action": None, "reason": "no processed batches to review"}
    frame = pl.concat([f for _, f in recent], how="diagonal_relaxed")
    shas = tuple(e.sha256 for e, _ in recent)
    assessment = assess(
        settings,
        dataset,
        frame,
        validation_passed=True,
        drift={"is_drift": True, "p_value": 0.0, "drivers": []},
        exclude=shas,
    )
    decision = decide(assessment.evidence, settings.policy_config())
    context = f"drift detected in {alarms} batches within {window_minutes} minutes"
    run_id = record_decision(
        settings,
        dataset,
        decision,
        batch_sha256=shas[-1],
        artifacts={"assessment.json": json.dumps(assessment.to_dict(), indent=2, default=str)},
        extra_tags={"mlops.context": context, "mlops.batches": ",".join(s[:12] for s in shas)},
        run_name=f"review-drift-{decision.action.value}",
    )
    return {"action": decision.action.value, "reasons": list(decision.reasons), "run_id": run_id}
