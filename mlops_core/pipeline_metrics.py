"""The pipeline's own figures as Prometheus metrics, computed from what owns them.

The exporter (``mlops_core.adapters.exporter``, started by ``mlops up``) reads each dataset's
ledger, batch reports and decision runs (``mlops_core.adapters.timeline_source``) and the
registry's rollout tags, and this module turns them into metric families. Every series carries
``dataset``:

* ``mlops_drift_p_value`` -- the combined drift p-value of the newest batch tested for drift;
* ``mlops_drift_detected`` -- 1 when that batch drifted, else 0;
* ``mlops_drifted_features`` -- how many of its features drifted (Holm-adjusted per-feature tests);
* ``mlops_estimated_accuracy`` / ``mlops_observed_accuracy`` -- the newest estimate (CBPE, on
  unlabelled rows) and the newest accuracy measured on labels;
* ``mlops_accuracy_retrain_line`` -- the accuracy below which the policy retrains (the champion's
  reference accuracy minus ``MLOPS_RETRAIN_ACCURACY_DROP``);
* ``mlops_decisions_total{action}`` -- decision runs recorded, by action (a batch's, a labels
  file's, a drift review's, a person's ``mlops train``/``promote``/``rollback``);
* ``mlops_batches{state}`` -- batches in the ledger by state (every state, zeros included);
* ``mlops_submit_to_decision_seconds`` -- histogram: a batch's submission to its settled state;
* ``mlops_last_batch_timestamp_seconds`` -- when the newest batch was submitted (Unix seconds);
* ``mlops_batch_expected_interval_seconds`` -- ``MLOPS_EXPECTED_BATCH_INTERVAL_HOURS``;
* ``mlops_retrains_total{outcome}`` -- gated retrains by outcome (promoted, refused, failed...),
  from the ``mlops.retrain`` tag their decision run carries once the retrain settled;
* ``mlops_rollout_step{version,mode}`` -- the rollout's current step (0: no rollout under way);
* ``mlops_rollout_step_weight`` -- the challenger's share of traffic the rollout set;
* ``mlops_rollout_step_since_timestamp_seconds`` -- when the current step began.

The exporter adds ``mlops_exporter_errors_total{dataset}`` (datasets it could not read) and
``mlops_exporter_scrape_seconds``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from mlops_core.batches import FINAL_STATES, BatchState, LedgerEntry
from mlops_core.outcomes import RetrainStatus
from mlops_core.policy import Action
from mlops_core.tags import DECISION, RETRAIN
from mlops_core.timeline import Timeline

PIPELINE_METRIC_NAMES = (
    "mlops_drift_p_value",
    "mlops_drift_detected",
    "mlops_drifted_features",
    "mlops_estimated_accuracy",
    "mlops_observed_accuracy",
    "mlops_accuracy_retrain_line",
    "mlops_decisions_total",
    "mlops_batches",
    "mlops_submit_to_decision_seconds",
    "mlops_last_batch_timestamp_seconds",
    "mlops_batch_expected_interval_seconds",
    "mlops_retrains_total",
    "mlops_rollout_step",
    "mlops_rollout_step_weight",
    "mlops_rollout_step_since_timestamp_seconds",
)

# Submission to a settled state: seconds on one machine, minutes behind a busy work pool.
DECISION_BUCKETS = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


@dataclass(frozen=True)
class RolloutState:
    """The registry's rollout tags, read as numbers (``step`` 0 when no rollout is under way)."""

    step: int = 0
    mode: str = "idle"
    version: str = ""
    weight: float = 0.0
    since: float | None = None  # Unix seconds the step began

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> RolloutState:
        """The state the ``mlops.rollout.*`` tags describe; idle when absent, ended or unreadable."""
        mode = tags.get("mlops.rollout.mode", "idle") or "idle"
        try:
            step = int(tags.get("mlops.rollout.step", "0"))
            weight = float(tags.get("mlops.rollout.weight", "0") or 0)
            since = float(tags["mlops.rollout.since"]) if tags.get("mlops.rollout.since") else None
        except ValueError:  # "done", "interrupted": the rollout ended
            return cls()
        if mode == "idle":
            return cls()
        return cls(step, mode, tags.get("mlops.rollout.version", ""), weight, since)


@dataclass(frozen=True)
class DatasetFigures:
    """What the exporter read about one dataset."""

    timeline: Timeline
    entries: Sequence[LedgerEntry]
    rollout: RolloutState
    expected_interval_seconds: float
    decision_runs: Sequence[dict[str, str]] = ()  # every decision run's tags


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def families(figures: Iterable[DatasetFigures]) -> list[Metric]:
    """Every pipeline metric family for these datasets (a family is present even when empty)."""
    g = {
        name: GaugeMetricFamily(name, doc, labels=labels)
        for name, doc, labels in (
            ("mlops_drift_p_value", "Combined drift p-value of the newest batch", ["dataset"]),
            ("mlops_drift_detected", "1 when the newest batch drifted", ["dataset"]),
            ("mlops_drifted_features", "Features that drifted in the newest batch", ["dataset"]),
            ("mlops_estimated_accuracy", "Newest estimated accuracy (CBPE)", ["dataset"]),
            ("mlops_observed_accuracy", "Newest accuracy measured on labels", ["dataset"]),
            ("mlops_accuracy_retrain_line", "Accuracy below which we retrain", ["dataset"]),
            ("mlops_batches", "Batches in the ledger by state", ["dataset", "state"]),
            ("mlops_last_batch_timestamp_seconds", "Newest batch's submission", ["dataset"]),
            ("mlops_batch_expected_interval_seconds", "Longest expected gap", ["dataset"]),
            ("mlops_rollout_step", "Rollout step (0: none)", ["dataset", "version", "mode"]),
            ("mlops_rollout_step_weight", "Challenger share the rollout set", ["dataset"]),
            ("mlops_rollout_step_since_timestamp_seconds", "When the step began", ["dataset"]),
        )
    }
    decisions = CounterMetricFamily(
        "mlops_decisions", "Decisions recorded, by action", labels=["dataset", "action"]
    )
    retrains = CounterMetricFamily(
        "mlops_retrains", "Gated retrains by outcome", labels=["dataset", "outcome"]
    )
    latency = HistogramMetricFamily(
        "mlops_submit_to_decision_seconds",
        "Seconds from a batch's submission to its settled state",
        labels=["dataset"],
    )
    for f in figures:
        name = f.timeline.dataset
        _batch_figures(g, name, f)
        counted, outcomes = _decisions_and_retrains(f.decision_runs)
        for action, count in sorted(counted.items()):
            decisions.add_metric([name, action], count)
        for outcome, count in sorted(outcomes.items()):
            retrains.add_metric([name, outcome], count)
        waits = [
            max(_seconds(e.updated_at) - _seconds(e.submitted_at), 0.0)
            for e in f.entries
            if e.state in FINAL_STATES
        ]
        buckets = [(repr(b), float(sum(1 for w in waits if w <= b))) for b in DECISION_BUCKETS]
        buckets.append(("+Inf", float(len(waits))))
        latency.add_metric([name], buckets, sum(waits))
        r = f.rollout
        g["mlops_rollout_step"].add_metric([name, r.version, r.mode], r.step)
        g["mlops_rollout_step_weight"].add_metric([name], r.weight)
        if r.since is not None and r.step > 0:
            g["mlops_rollout_step_since_timestamp_seconds"].add_metric([name], r.since)
    return [*g.values(), decisions, retrains, latency]


def _batch_figures(g: dict[str, GaugeMetricFamily], name: str, f: DatasetFigures) -> None:
    rows = f.timeline.rows
    states = Counter(e.state.value for e in f.entries)
    for state in BatchState:
        g["mlops_batches"].add_metric([name, state.value], states.get(state.value, 0))
    known = {s.value for s in BatchState}
    for other, count in sorted(states.items()):  # a state a newer ledger knows (dead letters...)
        if other not in known:
            g["mlops_batches"].add_metric([name, other], count)
    if f.entries:
        newest = max(_seconds(e.submitted_at) for e in f.entries)
        g["mlops_last_batch_timestamp_seconds"].add_metric([name], newest)
    g["mlops_batch_expected_interval_seconds"].add_metric([name], f.expected_interval_seconds)
    drifted = [r for r in rows if r.drift is not None]
    if drifted:
        drift = drifted[-1].drift
        assert drift is not None
        g["mlops_drift_p_value"].add_metric([name], drift.p_value)
        g["mlops_drift_detected"].add_metric([name], 1.0 if drift.is_drift else 0.0)
        g["mlops_drifted_features"].add_metric([name], sum(1 for x in drift.features if x.is_drift))
    reference: float | None = None
    estimated = [r.estimate for r in rows if r.estimate is not None]
    if estimated:
        g["mlops_estimated_accuracy"].add_metric([name], estimated[-1].estimated_accuracy)
        reference = estimated[-1].reference_accuracy
    observed = [p for p in (r.observed_performance for r in rows) if p is not None]
    if observed:
        g["mlops_observed_accuracy"].add_metric([name], observed[-1].current)
        reference = observed[-1].reference
    if reference is not None:
        line = reference - f.timeline.policy.retrain_accuracy_drop
        g["mlops_accuracy_retrain_line"].add_metric([name], line)


def _decisions_and_retrains(runs: Sequence[dict[str, str]]) -> tuple[Counter[str], Counter[str]]:
    """Decision runs by action, and those whose gated retrain settled by outcome (their tags)."""
    # Every known value from zero, so a rate or an increase has a series before its first event.
    actions: Counter[str] = Counter({a.value: 0 for a in Action})
    outcomes: Counter[str] = Counter({s.value.replace(" ", "_"): 0 for s in RetrainStatus})
    for tags in runs:
        action = tags.get(DECISION)
        if action:
            actions[action] += 1
        outcome = tags.get(RETRAIN)
        if outcome and outcome != "pending":
            outcomes[outcome.replace(" ", "_")] += 1
    return actions, outcomes
