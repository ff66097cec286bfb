"""The audit trail in MLflow: every decision is a run, with its reasons and evidence attached.

Each run carries ``mlops.run_type`` and ``mlops.batch_sha256``; a decision run also carries
``mlops.decision`` (none, watch, retrain, rollback) and ``mlops.reasons``, its evidence as
params and metrics, and a markdown artifact a person reads in the MLflow UI. It is named for its
file and what happened (``batch-19-week19.csv · drift, retrain``, then ``→ promoted`` once the
retrain ends) and carries a short description (MLflow's ``mlflow.note.content``).

A batch's decision is recorded once: its run carries ``mlops.decision_key`` (kind and sha256),
and a run that processes the batch again after a crash finds the finished run and reuses it. A
run the crash left half-written (still ``RUNNING``) is closed as ``KILLED`` and marked superseded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from mlops_core.adapters.registry import NAME_SEPARATOR, NOTE, RUN_NAME, ModelRegistry, RunWriter
from mlops_core.policy import Action, Decision
from mlops_core.rollout import RolloutVerdict
from mlops_core.tags import (
    BATCH_SHA256,
    DECISION,
    DECISION_KEY,
    GATES,
    LABELS_FOR,
    MANUAL,
    MODEL_VERSION,
    REASONS,
    RETRAIN,
    ROLLOUT_MODE,
    ROLLOUT_STEP,
    ROLLOUT_VERDICT,
    RUN_TYPE,
    SUPERSEDED,
    TAG_VALUE_LIMIT,
    TRAIN_RUN,
)


@dataclass(frozen=True)
class DecisionRecord:
    """One recorded decision: its run, when it started (epoch ms), the action, its reasons and the batch."""

    run_id: str
    started: int
    action: str
    reasons: str
    batch_sha256: str
    name: str = ""  # the run's name: "batch-19-week19.csv · drift, retrain → promoted"
    key: str = ""  # mlops.decision_key: "batch:<sha256>" or "labels:<sha256>"
    labels_for: tuple[str, ...] = ()  # a labels decision: the batches' sha256[:12] it judged
    retrain: str = ""  # the retrain's outcome, when the decision called for one
    estimated_accuracy: float | None = None
    observed_accuracy: float | None = None
    reference_accuracy: float | None = None
    labelled_rows: int | None = None


def decision_markdown(decision: Decision, batch_sha256: str) -> str:
    """The decision as the markdown page a person reads in MLflow: action, batch, reasons and evidence."""
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


# What a decision did, in the words of a run name.
_ACTION_WORDS = {
    Action.none: "no action",
    Action.watch: "watch",
    Action.retrain: "retrain",
    Action.rollback: "rollback",
}


def outcome_words(decision: Decision) -> str:
    """What happened to a batch, in a few words: ``quarantined``, ``drift, retrain``, ``quiet``."""
    evidence = decision.evidence
    if not evidence.validation_passed:
        return "quarantined"
    seen = [
        word
        for word, present in (("drift", evidence.drift), ("degraded", evidence.observed_degraded))
        if present
    ]
    if decision.action is Action.none and not seen:
        return "quiet"
    return ", ".join([*seen, _ACTION_WORDS[decision.action]])


def decision_run_name(
    decision: Decision, batch_sha256: str, original_name: str | None, kind: str = "batch"
) -> str:
    """A decision run's name: the file it judged and what happened
    (``batch-19-week19.csv · drift, retrain``); the sha256's start when the file has no name."""
    subject = original_name or f"{kind}-{batch_sha256[:12] or 'manual'}"
    if kind == "labels" and original_name:
        subject = f"labels {original_name}"
    return f"{subject}{NAME_SEPARATOR}{outcome_words(decision)}"


def decision_note(decision: Decision, batch_sha256: str, original_name: str | None) -> str:
    """The run's description in the MLflow UI (markdown): action, file, reasons."""
    batch = f"`{original_name}`" if original_name else "a batch"
    lines = [
        f"**{decision.action.value}** ({outcome_words(decision)}) on {batch}"
        + (f", sha256 `{batch_sha256[:12]}`" if batch_sha256 else ""),
        "",
        *[f"- {reason}" for reason in decision.reasons],
    ]
    if decision.expected_benefit is not None and decision.retrain_cost is not None:
        lines += [
            "",
            f"Expected benefit {decision.expected_benefit:,.2f} vs retrain cost "
            f"{decision.retrain_cost:,.2f} (currency units of the policy's settings).",
        ]
    return "\n".join(lines) + "\n"


def record_decision(
    registry: ModelRegistry,
    decision: Decision,
    *,
    batch_sha256: str = "",
    original_name: str | None = None,
    kind: str = "batch",
    artifacts: dict[str, str] | None = None,
    files: list[Path] | None = None,
    parent_run_id: str | None = None,
    extra_tags: dict[str, str] | None = None,
    run_name: str | None = None,
    key: str | None = None,
) -> str:
    """Log ``decision`` as a ``decision`` run in the dataset's experiment; return the run id.

    It is named for ``original_name`` (the file as submitted) and what happened, and described
    by a short markdown note (MLflow shows ``mlflow.note.content`` as the run's description).

    With ``key``, a finished decision run already recorded under that key is returned instead of
    recording a second one (a batch processed again after its first run crashed).
    """
    if key:
        recorded = _recorded_under(registry.client, registry.experiment_id(), key)
        if recorded is not None:
            return recorded
    tags = {
        RUN_TYPE: "decision",
        BATCH_SHA256: batch_sha256,
        DECISION: decision.action.value,
        REASONS: "; ".join(decision.reasons)[:TAG_VALUE_LIMIT],
    }
    if key:
        tags[DECISION_KEY] = key
    tags[NOTE] = decision_note(decision, batch_sha256, original_name)[:TAG_VALUE_LIMIT]
    tags.update(extra_tags or {})
    name = run_name or decision_run_name(decision, batch_sha256, original_name, kind)
    with registry.run(tags, name=name, parent_run_id=parent_run_id) as run:
        _log_evidence(run, decision)
        run.text(decision_markdown(decision, batch_sha256), "decision.md")
        for artifact, text in (artifacts or {}).items():
            run.text(text, artifact)
        for path in files or []:
            run.file(path, "drift")
    return run.run_id


def readable_duration(delta: timedelta) -> str:
    """A duration as a person reads it: ``63 d 0 h``, ``5 h 12 min``, ``40 s``."""
    seconds = int(delta.total_seconds())
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{sign}{days} d {hours} h"
    if hours:
        return f"{sign}{hours} h {minutes} min"
    return f"{sign}{minutes} min {seconds} s" if minutes else f"{sign}{seconds} s"


def _log_evidence(run: RunWriter, decision: Decision) -> None:
    """The decision's evidence as params (flags, texts, lists) and metrics (numbers); a duration
    as both a readable param (``63 d 0 h``) and a metric in hours (``<name>_hours``)."""
    evidence: dict[str, Any] = decision.to_dict()["evidence"]
    for key, value in evidence.items():
        duration = getattr(decision.evidence, key, None)
        if isinstance(duration, timedelta):
            run.param(key, readable_duration(duration))
            run.metric(f"{key}_hours", duration.total_seconds() / 3600)
        elif isinstance(value, bool) or value is None or isinstance(value, str | list):
            run.param(key, json.dumps(value))
        elif isinstance(value, int | float):
            run.metric(key, float(value))
        else:
            run.param(key, str(value))
    for name, number in (
        ("expected_benefit", decision.expected_benefit),
        ("retrain_cost", decision.retrain_cost),
    ):
        if number is not None:
            run.metric(name, float(number))


def _recorded_under(client: Any, experiment_id: str, key: str) -> str | None:
    """The finished decision run recorded under ``key`` (oldest first); half-written ones that a
    crash left ``RUNNING`` are closed as ``KILLED`` and tagged superseded."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{DECISION_KEY}` = '{key}'",
        order_by=["attributes.start_time ASC"],
    )
    finished = [run.info.run_id for run in runs if run.info.status == "FINISHED"]
    for run in runs:
        if run.info.status == "RUNNING":
            client.set_tag(run.info.run_id, SUPERSEDED, "true")
            client.set_terminated(run.info.run_id, status="KILLED")
    return finished[0] if finished else None


def recent_decisions(registry: ModelRegistry, limit: int = 10) -> list[DecisionRecord]:
    """The newest decision runs of the registry's dataset, newest first."""
    experiment = registry.client.get_experiment_by_name(registry.name)
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
            batch_sha256=run.data.tags.get(BATCH_SHA256, ""),
            name=str(run.info.run_name or ""),
            key=run.data.tags.get(DECISION_KEY, ""),
            labels_for=tuple(s for s in run.data.tags.get(LABELS_FOR, "").split(",") if s),
            retrain=run.data.tags.get(RETRAIN, ""),
            estimated_accuracy=run.data.metrics.get("estimated_accuracy"),
            observed_accuracy=run.data.metrics.get("observed_accuracy"),
            reference_accuracy=run.data.metrics.get("reference_accuracy"),
            labelled_rows=(
                int(run.data.metrics["labelled_rows"])
                if "labelled_rows" in run.data.metrics
                else None
            ),
        )
        for run in runs
    ]


def attach(
    registry: ModelRegistry,
    run_id: str,
    *,
    tags: dict[str, str] | None = None,
    artifacts: dict[str, str] | None = None,
) -> None:
    """Add what happened after a decision (the retrain's outcome, the gate report) to its run."""
    for key, value in (tags or {}).items():
        registry.client.set_tag(run_id, key, value[:TAG_VALUE_LIMIT])
    for name, text in (artifacts or {}).items():
        registry.client.log_text(run_id, text, name)


def note_retrain(registry: ModelRegistry, run_id: str, status: str, reason: str) -> None:
    """The retrain's end on its decision run: its name gains ``→ <status>``
    (``week19.csv · drift, retrain → refused``) and its description the reason."""
    run = registry.client.get_run(run_id)
    name = str(run.info.run_name or "").split(" → ")[0]
    note = run.data.tags.get(NOTE, "").split("\n**Retrain")[0].rstrip("\n")
    registry.client.set_tag(run_id, RUN_NAME, f"{name} → {status}")
    text = (
        f"{note}\n\n**Retrain {status}**: {reason}\n"
        if note
        else f"**Retrain {status}**: {reason}\n"
    )
    registry.client.set_tag(run_id, NOTE, text[:TAG_VALUE_LIMIT])


def record_evaluation(
    registry: ModelRegistry,
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
    tags = {
        RUN_TYPE: "evaluate",
        BATCH_SHA256: batch_sha256,
        MODEL_VERSION: version,
        GATES: "passed" if passed else "failed",
    }
    if train_run_id:
        tags[TRAIN_RUN] = train_run_id
    name = f"gates-v{version}{NAME_SEPARATOR}{'passed' if passed else 'refused'}"
    with registry.run(tags, name=name, parent_run_id=parent_run_id) as run:
        for key, value in metrics.items():
            run.metric(key, float(value))
        run.text(report_json, "gate_report.json")
        run.text(report_markdown, "gate_report.md")
    return run.run_id


def record_rollout_step(
    registry: ModelRegistry,
    version: str,
    step: int,
    mode: str,
    weight: float,
    verdict: RolloutVerdict,
    stats: dict[str, Any],
    parent_run_id: str | None,
) -> str:
    """One rollout step and its verdict as a ``rollout`` run; return its id."""
    tags = {
        RUN_TYPE: "rollout",
        BATCH_SHA256: "",
        MODEL_VERSION: version,
        ROLLOUT_STEP: str(step),
        ROLLOUT_MODE: mode,
        ROLLOUT_VERDICT: verdict.verdict.value,
        REASONS: "; ".join(verdict.reasons)[:TAG_VALUE_LIMIT],
    }
    name = f"rollout-v{version}-step{step}-{mode}"
    with registry.run(tags, name=name, parent_run_id=parent_run_id) as run:
        run.metric("weight", weight)
        run.metric("challenger_requests", verdict.requests)
        run.text(json.dumps(verdict.to_dict(), indent=2), "verdict.json")
        run.text(json.dumps(stats, indent=2, default=str), "stats.json")
    return run.run_id


MANUAL_ACTIONS = ("promote", "rollback", "retrain")


def record_manual(
    registry: ModelRegistry,
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
    tags = {
        RUN_TYPE: "decision",
        BATCH_SHA256: "",
        DECISION: action,
        REASONS: reason,
        MANUAL: "true",
        NOTE: f"**Manual {action}** by a person: {reason}"[:TAG_VALUE_LIMIT],
    }
    with registry.run(tags, name=f"manual-{action}") as run:
        run.param("aliases_before", json.dumps(before))
        if after is not None:
            run.param("aliases_after", json.dumps(after))
        lines = [f"# Manual decision: {action}", "", f"- {reason}", "", f"before: `{before}`"]
        if after is not None:
            lines.append(f"after: `{after}`")
        run.text("\n".join(lines) + "\n", "decision.md")
    return run.run_id
