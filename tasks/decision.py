"""Tasks of the decision stage: assess the champion on a batch, decide, record the decision."""

from __future__ import annotations

import itertools
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from mlops_core import events
from mlops_core.adapters.audit import attach, outcome_words, record_decision
from mlops_core.adapters.context import DatasetContext
from mlops_core.adapters.registry import NAME_SEPARATOR
from mlops_core.assessment import Assessment, DriftSignal, assess
from mlops_core.drift import DriftReport
from mlops_core.errors import MlopsError
from mlops_core.outcomes import RecordedDecision
from mlops_core.policy import Decision, decide
from mlops_core.tags import BATCHES, CHAMPION, CHAMPION_VERSION, CONTEXT, ROLLBACK
from tasks.drift import drift_config
from tasks.events import emit


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def assess_batch(
    ctx: DatasetContext, path: Path, validation_passed: bool, drift: DriftReport | None
) -> Assessment:
    """The policy's evidence: observed and estimated accuracy, cooldown, labels, cost basis."""
    frame = None
    if validation_passed:
        try:
            frame = ctx.read_batch(path)
        except MlopsError:
            validation_passed = False
    signal = DriftSignal.of(drift) if drift is not None else None
    return assess(ctx, frame, validation_passed=validation_passed, drift=signal)


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def assess_frame(ctx: DatasetContext, frame: pl.DataFrame, batches: tuple[str, ...]) -> Assessment:
    """The policy's evidence on rows that just got their labels (they passed validation)."""
    return assess(ctx, frame, validation_passed=True, drift=None, exclude=batches)


@task(cache_policy=NO_CACHE)
def decide_batch(ctx: DatasetContext, assessment: Assessment) -> Decision:
    """Apply the policy (pure) with the thresholds from settings."""
    return decide(assessment.evidence, ctx.settings.policy_config())


PLOT_FOLDER_PREFIX = "mlops-drift-"  # plot_batch_drift's folders, which discard_plots removes


@task(cache_policy=NO_CACHE)
def plot_batch_drift(ctx: DatasetContext, path: Path, drift: DriftReport) -> list[Path]:
    """The drift plots (effect sizes, distributions) as PNG files in a temporary folder."""
    from mlops_core.plots import plot_drift

    out = Path(tempfile.mkdtemp(prefix=PLOT_FOLDER_PREFIX))
    return plot_drift(
        drift, ctx.reference(), ctx.read_batch(path), ctx.spec, out, config=drift_config(ctx)
    )


def discard_plots(plots: list[Path]) -> None:
    """Remove the temporary folder :func:`plot_batch_drift` drew ``plots`` in, once the decision
    run has them (or could not be recorded): a long-lived worker would otherwise keep two PNGs of
    every drifted batch in its temporary folder for good."""
    for folder in {path.parent for path in plots}:
        if folder.name.startswith(PLOT_FOLDER_PREFIX):
            shutil.rmtree(folder, ignore_errors=True)


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def record_batch_decision(
    ctx: DatasetContext,
    sha256: str,
    decision: Decision,
    assessment: Assessment,
    validation: dict[str, Any],
    drift: DriftReport | None,
    plots: list[Path],
    extra_tags: dict[str, str] | None = None,
    kind: str = "batch",
    original_name: str | None = None,
) -> str:
    """The decision as an MLflow run with the batch's validation, drift and performance evidence,
    named for the file and what happened; recorded once per batch (a rerun reuses the run)."""
    artifacts = {
        "validation.json": json.dumps(validation, indent=2, default=str),
        "assessment.json": json.dumps(assessment.to_dict(), indent=2, default=str),
    }
    if drift is not None:
        artifacts["drift/drift.json"] = json.dumps(drift.to_dict(), indent=2, default=str)
    extra = {CHAMPION_VERSION: assessment.champion_version or "", **(extra_tags or {})}
    return record_decision(
        ctx.registry,
        decision,
        batch_sha256=sha256,
        artifacts=artifacts,
        files=plots,
        extra_tags=extra,
        key=f"{kind}:{sha256}",
        original_name=original_name,
        kind=kind,
    )


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def alert_if_stuck(ctx: DatasetContext, sha256: str, assessment: Assessment) -> int:
    """An ``mlops.alert`` event when the champion has stayed below the retrain line for more
    labelled batches in a row than ``MLOPS_ALERT_AFTER_DEGRADED_BATCHES``; the streak."""
    evidence = assessment.evidence
    if not evidence.observed_degraded or assessment.champion_version is None:
        return 0
    streak = ctx.registry.degraded_streak(assessment.champion_version)
    if streak > ctx.settings.alert_after_degraded_batches:
        emit(
            events.ALERT,
            ctx.name,
            {
                "what": "champion below the retrain line",
                "reason": (
                    f"champion v{assessment.champion_version} has been below the retrain line for "
                    f"{streak} labelled batches in a row (observed accuracy "
                    f"{evidence.observed_accuracy:.1%}, reference {evidence.reference_accuracy:.1%})"
                ),
                "sha256": sha256,
                "batches": streak,
            },
        )
    return streak


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def roll_back(ctx: DatasetContext, decision_run_id: str | None) -> dict[str, str]:
    """The policy's rollback: one alias move, noted on the decision run."""
    aliases = ctx.registry.rollback()
    if decision_run_id:
        tags = {ROLLBACK: f"champion is now v{aliases.get(CHAMPION)}"}
        attach(ctx.registry, decision_run_id, tags=tags)
    return aliases


@task(cache_policy=NO_CACHE)
def review_recent_drift(
    ctx: DatasetContext, alarms: int, window_minutes: int
) -> RecordedDecision | None:
    """The decision on the newest ``alarms`` processed batches together (the automation's
    context), and its run; None when there is nothing processed to review."""
    recent = list(itertools.islice(ctx.processed_batches(newest_first=True), alarms))[::-1]
    if not recent:
        return None
    frame = pl.concat([f for _, f in recent], how="diagonal_relaxed")
    shas = tuple(e.sha256 for e, _ in recent)
    signal = DriftSignal(is_drift=True, p_value=0.0)
    assessment = assess(ctx, frame, validation_passed=True, drift=signal, exclude=shas)
    decision = decide(assessment.evidence, ctx.settings.policy_config())
    context = f"drift detected in {alarms} batches within {window_minutes} minutes"
    run_id = record_decision(
        ctx.registry,
        decision,
        batch_sha256=shas[-1],
        artifacts={"assessment.json": json.dumps(assessment.to_dict(), indent=2, default=str)},
        extra_tags={CONTEXT: context, BATCHES: ",".join(s[:12] for s in shas)},
        run_name=f"review of {len(shas)} drifted batches{NAME_SEPARATOR}{outcome_words(decision)}",
    )
    return RecordedDecision(decision, run_id)
