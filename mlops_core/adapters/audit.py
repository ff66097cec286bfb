"""The audit trail in MLflow: every decision is a run, with its reasons and evidence attached.

Each run carries ``mlops.run_type`` and ``mlops.batch_sha256``; a decision run also carries
``mlops.decision`` (none, watch, retrain, rollback) and ``mlops.reasons``, its evidence as
params and metrics, and a markdown artifact a person reads in the MLflow UI.

A batch's decision is recorded once: its run carries ``mlops.decision_key`` (kind and sha256),
and a run that processes the batch again after a crash finds the finished run and reuses it. A
run the crash left half-written (still ``RUNNING``) is closed as ``KILLED`` and marked superseded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_core.adapters.registry import ModelRegistry
from mlops_core.policy import Decision
from mlops_core.settings import Settings

RUN_TYPE, BATCH, DECISION, REASONS, KEY = (
    "mlops.run_type",
    "mlops.batch_sha256",
    "mlops.decision",
    "mlops.reasons",
    "mlops.decision_key",
)


@dataclass(frozen=True)
class DecisionRecord:
    run_id: str
    started: int
    action: str
    reasons: str
    batch_sha256: str


def decision_markdown(decision: Decision, batch_sha256: str) -> str:
    lines = [
        f"# Decision: {decision.action.value}",
        "",
        f"Batch `{batch_sha256 or '-'}`",
        "",
        "## Reasons",
        "",
    ]
    lines += [f"- {reason}" for reason in decision.reasons]
    lines += [
        "",
        "## Evidence",
        "",
        "```json",
        json.dumps(decision.to_dict()["evidence"], indent=2),
        "```",
    ]
    return "\n".join(lines) + "\n"


def record_decision(
    settings: Settings,
    dataset: str,
    decision: Decision,
    *,
    batch_sha256: str = "",
    artifacts: dict[str, str] | None = None,
    files: list[Path] | None = None,
    parent_run_id: str | None = None,
    extra_tags: dict[str, str] | None = None,
    run_name: str | None = None,
    key: str | None = None,
) -> str:
    """Log ``decision`` as a ``decision`` run in the dataset's experiment; return the run id.

    With ``key``, a finished decision run already recorded under that key is returned instead of
    recording a second one (a batch processed again after its first run crashed).
    """
    registry = ModelRegistry(settings, dataset)
    client = registry.client
    if key:
        recorded = _recorded_under(client, registry.experiment_id(), key)
        if recorded is not None:
            return recorded
    tags = {
        RUN_TYPE: "decision",
        BATCH: batch_sha256,
        DECISION: decision.action.value,
        REASONS: "; ".join(decision.reasons)[:5000],
    }
    if key:
        tags[KEY] = key
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    tags.update(extra_tags or {})
    run = client.create_run(
        registry.experiment_id(),
        tags=tags,
        run_name=run_name or f"decision-{decision.action.value}-{batch_sha256[:12] or 'manual'}",
    )
    run_id = run.info.run_id
    status = "FAILED"
    try:
        evidence: dict[str, Any] = decision.to_dict()["evidence"]
        for key, value in evidence.items():
            if isinstance(value, bool) or value is None or isinstance(value, str | list):
                client.log_param(run_id, key, json.dumps(value))
            elif isinstance(value, int | float):
                client.log_metric(run_id, key, float(value))
            else:
                client.log_param(run_id, key, str(value))
        for name, value in (
            ("expected_benefit", decision.expected_benefit),
            ("retrain_cost", decision.retrain_cost),
        ):
            if value is not None:
                client.log_metric(run_id, name, float(value))
        client.log_text(run_id, decision_markdown(decision, batch_sha256), "decision.md")
        for name, text in (artifacts or {}).items():
            client.log_text(run_id, text, name)
        for path in files or []:
            client.log_artifact(run_id, str(path), "drift")
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status=status)
    return run_id


def _recorded_under(client: Any, experiment_id: str, key: str) -> str | None:
    """The finished decision run recorded under ``key`` (oldest first); half-written ones that a
    crash left ``RUNNING`` are closed as ``KILLED`` and tagged superseded."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{KEY}` = '{key}'",
        order_by=["attributes.start_time ASC"],
    )
    finished = [run.info.run_id for run in runs if run.info.status == "FINISHED"]
    for run in runs:
        if run.info.status == "RUNNING":
            client.set_tag(run.info.run_id, "mlops.superseded", "true")
            client.set_terminated(run.info.run_id, status="KILLED")
    return finished[0] if finished else None


def recent_decisions(settings: Settings, dataset: str, limit: int = 10) -> list[DecisionRecord]:
    """The newest decision runs of ``dataset``, newest first."""
    registry = ModelRegistry(settings, dataset)
    experiment = registry.client.get_experiment_by_name(dataset)
    if experiment is None:
        return []
    runs = registry.client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{RUN_TYPE}` = 'decision' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=limit,
    )
    return [
        DecisionRecord(
            run_id=run.info.run_id,
            started=run.info.start_time,
            action=run.data.tags.get(DECISION, ""),
            reasons=run.data.tags.get(REASONS, ""),
            batch_sha256=run.data.tags.get(BATCH, ""),
        )
        for run in runs
    ]


def attach(
    settings: Settings,
    dataset: str,
    run_id: str,
    *,
    tags: dict[str, str] | None = None,
    artifacts: dict[str, str] | None = None,
) -> None:
    """Add what happened after a decision (the retrain's outcome, the gate report) to its run."""
    client = ModelRegistry(settings, dataset).client
    for key, value in (tags or {}).items():
        client.set_tag(run_id, key, value[:5000])
    for name, text in (artifacts or {}).items():
        client.log_text(run_id, text, name)


def record_evaluation(
    settings: Settings,
    dataset: str,
    *,
    version: str,
    report_json: str,
    report_markdown: str,
    metrics: dict[str, float],
    passed: bool,
    batch_sha256: str = "",
    parent_run_id: str | None = None,
    train_run_id: str | None = None,
) -> str:
    """Log a gate report as an ``evaluate`` run (child of the decision run); return its id."""
    registry = ModelRegistry(settings, dataset)
    client = registry.client
    tags = {
        RUN_TYPE: "evaluate",
        BATCH: batch_sha256,
        "mlops.model_version": version,
        "mlops.gates": "passed" if passed else "failed",
    }
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    if train_run_id:
        tags["mlops.train_run_id"] = train_run_id
    run = client.create_run(registry.experiment_id(), tags=tags, run_name=f"gates-v{version}")
    run_id = run.info.run_id
    status = "FAILED"
    try:
        for key, value in metrics.items():
            client.log_metric(run_id, key, float(value))
        client.log_text(run_id, report_json, "gate_report.json")
        client.log_text(run_id, report_markdown, "gate_report.md")
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status=status)
    return run_id


MANUAL_ACTIONS = ("promote", "rollback", "retrain")


def record_manual(
    settings: Settings,
    dataset: str,
    action: str,
    *,
    reason: str,
    before: dict[str, str],
    after: dict[str, str] | None = None,
) -> str:
    """A person's override (``mlops promote``/``rollback``/``train``) as a decision run.

    ``mlops.decision`` is the action (``promote`` exists only for this manual path), with
    ``mlops.manual=true`` and the aliases before and after as params.
    """
    if action not in MANUAL_ACTIONS:
        raise ValueError(f"a manual decision is one of {MANUAL_ACTIONS}, not {action!r}")
    registry = ModelRegistry(settings, dataset)
    client = registry.client
    tags = {
        RUN_TYPE: "decision",
        BATCH: "",
        DECISION: action,
        REASONS: reason,
        "mlops.manual": "true",
    }
    run = client.create_run(registry.experiment_id(), tags=tags, run_name=f"manual-{action}")
    run_id = run.info.run_id
    status = "FAILED"
    try:
        client.log_param(run_id, "aliases_before", json.dumps(before))
        if after is not None:
            client.log_param(run_id, "aliases_after", json.dumps(after))
        lines = [f"# Manual decision: {action}", "", f"- {reason}", "", f"before: `{before}`"]
        if after is not None:
            lines.append(f"after: `{after}`")
        client.log_text(run_id, "\n".join(lines) + "\n", "decision.md")
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status=status)
    return run_id
