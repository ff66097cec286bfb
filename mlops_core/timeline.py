"""A dataset's timeline, batch by batch, and one page per batch: what happened, in one place.

A row per landed batch (its ledger entry, the report beside its file, and what MLflow added to
its decision run after a retrain): the file's name, when it landed, the validation verdict, the
combined drift p-value, the champion's estimated (CBPE, without labels) and observed (with labels)
accuracy with their 95% intervals against the retrain line, the decision, what the retrain did,
and the champion after the batch. Rendered three ways, all pure: records (the Prefect table
artifact, the CLI's table and JSON), a PNG plot, and one self-contained HTML document (inline CSS,
plots as ``data:`` PNGs, every text escaped, nothing fetched over a network) with an anchored
section per batch; ``batch_html`` renders one batch's section as its own page.

The statistics are named as the product computes them: the combined drift p-value is the smallest
Holm-adjusted p-value over the dataset-level tests (``mlops_core.drift_report``); per-feature
p-values are Bonferroni-adjusted over the features (``mlops_core.drift_features``). An observed
accuracy's interval is the 95% bootstrap interval of its difference from the reference holdout's
accuracy, placed at the reference (``mlops_core.performance``). The cost-benefit is in the
currency of ``value_per_correct_prediction`` (``mlops_core.policy``).
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from mlops_core.batches import BatchState, LedgerEntry
from mlops_core.drift_report import DriftReport
from mlops_core.evaluation import GateReport
from mlops_core.performance import PerformanceEstimate, PerformanceReport
from mlops_core.policy import Action, Decision, PolicyConfig
from mlops_core.reporting import P_FLOOR, cost_benefit, p_phrase, p_text
from mlops_core.validation import ValidationReport

M = TypeVar("M", bound=BaseModel)


def format_p(p: float | None) -> str:
    """A p-value in a table cell: ``< 0.001`` below the floor (as everywhere the project shows
    one, ``reporting.p_text``), three decimals otherwise, so a column lines up."""
    if p is None:
        return "-"
    return p_text(p) if p < P_FLOOR else f"{p:.3f}"


def _pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}%"


@dataclass(frozen=True)
class Interval:
    """An accuracy with its 95% interval, and the rows it was measured on."""

    value: float
    low: float
    high: float
    rows: int

    def text(self) -> str:
        """``81.2% [78.0, 84.1]``: the value and its interval, in percent."""
        return f"{100 * self.value:.1f}% [{100 * self.low:.1f}, {100 * self.high:.1f}]"


@dataclass(frozen=True)
class Plot:
    """A PNG picture of a batch (a drift plot), by name."""

    name: str
    png: bytes


@dataclass(frozen=True)
class RetrainResult:
    """What the gated retrain did after a ``retrain`` decision (``pending`` while unknown)."""

    status: str  # promoted, refused, failed, rolled back, interrupted, shadow judged, pending
    reason: str = ""
    version: str | None = None
    champion_before: str | None = None
    champion_after: str | None = None
    gates: GateReport | None = None


@dataclass(frozen=True)
class LabelsResult:
    """What the batch's delayed labels showed: the observed accuracy, the labels' own decision
    and what its retrain did (the labels flow records one decision per labels file)."""

    file_name: str
    performance: PerformanceReport | None = None
    decision: Decision | None = None
    retrain: RetrainResult | None = None
    rollback: str | None = None
    decision_run_id: str | None = None
    batches: int = 1  # the batches that file's labels joined (its accuracy is over all of them)

    @property
    def action(self) -> str:
        """The labels decision's action (``-`` when none was made)."""
        return self.decision.action.value if self.decision is not None else "-"


@dataclass(frozen=True)
class BatchRow:
    """One batch of the timeline: the ledger's facts, the batch report's evidence, the outcome."""

    dataset: str
    sha256: str
    file_name: str  # the name the file was submitted under
    submitted_at: str  # ISO 8601, UTC
    state: str  # the ledger's state: processed, quarantined, or still landed/processing/failed
    reason: str | None = None
    validation: ValidationReport | None = None
    drift: DriftReport | None = None
    decision: Decision | None = None
    estimate: PerformanceEstimate | None = None
    performance: PerformanceReport | None = None
    champion_version: str | None = None  # the champion that judged the batch
    decision_run_id: str | None = None
    retrain: RetrainResult | None = None
    rollback: str | None = None  # the champion a policy rollback moved to
    plots: tuple[Plot, ...] = ()
    notes: tuple[str, ...] = ()
    plots_elsewhere: bool = False  # its plots were left out here; its own page has them
    labels: LabelsResult | None = None  # its delayed labels, once they arrived

    @property
    def observed_performance(self) -> PerformanceReport | None:
        """The observed accuracy's report: the batch's own labels, else its delayed labels'."""
        if self.performance is not None:
            return self.performance
        return self.labels.performance if self.labels is not None else None

    @property
    def retrains(self) -> tuple[RetrainResult, ...]:
        """The retrains the batch led to: its own decision's, then its labels'."""
        found = [self.retrain, self.labels.retrain if self.labels is not None else None]
        return tuple(r for r in found if r is not None)

    @property
    def anchor(self) -> str:
        """The id of the batch's section in the HTML report."""
        return f"batch-{self.sha256[:12]}"

    @property
    def quarantined(self) -> bool:
        """Whether the batch ended in quarantine."""
        return self.state == BatchState.quarantined.value

    @property
    def verdict(self) -> str:
        """The validation verdict, or the ledger state while there is none."""
        return self.validation.verdict if self.validation is not None else self.state

    @property
    def estimated(self) -> Interval | None:
        """The champion's CBPE-estimated accuracy and its interval (no labels needed)."""
        e = self.estimate
        return Interval(e.estimated_accuracy, e.ci_low, e.ci_high, e.rows) if e else None

    @property
    def observed(self) -> Interval | None:
        """The observed accuracy; its interval is the difference's, placed at the reference."""
        p = self.observed_performance
        if p is None:
            return None
        return Interval(p.current, p.reference + p.ci_low, p.reference + p.ci_high, p.current_rows)

    @property
    def reference_accuracy(self) -> float | None:
        """The champion's accuracy on its reference holdout, as the policy saw it."""
        if self.decision is not None and self.decision.evidence.reference_accuracy is not None:
            return self.decision.evidence.reference_accuracy
        if self.observed_performance is not None:
            return self.observed_performance.reference
        return self.estimate.reference_accuracy if self.estimate is not None else None

    def retrain_line(self, drop: float) -> float | None:
        """The accuracy below which the policy retrains: the reference minus ``drop``."""
        if self.observed_performance is not None:
            drop = self.observed_performance.threshold
        reference = self.reference_accuracy
        return None if reference is None else reference - drop

    @property
    def action(self) -> str:
        """The decision's action (``-`` before one was made)."""
        return self.decision.action.value if self.decision is not None else "-"

    @property
    def champion_after(self) -> str | None:
        """The champion once this batch's decisions (its own, then its labels') were carried out."""
        labels = self.labels
        if labels is not None and labels.retrain is not None and labels.retrain.champion_after:
            return labels.retrain.champion_after
        if labels is not None and labels.rollback:
            return labels.rollback
        if self.retrain is not None and self.retrain.champion_after:
            return self.retrain.champion_after
        return self.rollback or self.champion_version

    @property
    def decisions(self) -> str:
        """``watch``, or ``watch / labels: retrain`` once the labels were judged too."""
        if self.labels is None or self.labels.decision is None:
            return self.action
        return f"{self.action} / labels: {self.labels.action}"

    @property
    def outcome(self) -> str:
        """What happened because of the batch: quarantined, promoted, refused and why, or none;
        then what its labels led to (``labels: retrain refused: ...``)."""
        return self.outcome_text(why=True)

    def outcome_text(self, *, why: bool) -> str:
        """``outcome``; without ``why``, without the retrain's reasons (a table cell)."""
        if self.quarantined:
            return "quarantined"
        own = _retrain_outcome(self.retrain, self.rollback, why)
        if own is None:
            own = "none"
            if self.state not in (BatchState.processed.value, BatchState.quarantined.value):
                own = self.state
        labels = self.labels
        later = _retrain_outcome(labels.retrain, labels.rollback, why) if labels else None
        return own if later is None else f"{own}; labels: {later}"

    def champion_text(self) -> str:
        """``v3``, or ``v3 -> v4`` when the batch changed the champion."""
        before, after = self.champion_version, self.champion_after
        if before and after and before != after:
            return f"v{before} -> v{after}"
        return f"v{after}" if after else "-"

    def to_dict(self, drop: float) -> dict[str, Any]:
        """The row as JSON: numbers as numbers (accuracies as fractions), nested reports as JSON."""
        estimated, observed = self.estimated, self.observed
        return {
            "file": self.file_name,
            "sha256": self.sha256,
            "submitted_at": self.submitted_at,
            "state": self.state,
            "validation": self.verdict,
            "drift": self.drift.is_drift if self.drift is not None else None,
            "drift_p_value": self.drift.p_value if self.drift is not None else None,
            "estimated_accuracy": estimated.__dict__ if estimated else None,
            "observed_accuracy": observed.__dict__ if observed else None,
            "reference_accuracy": self.reference_accuracy,
            "retrain_line": self.retrain_line(drop),
            "decision": self.action,
            "reasons": list(self.decision.reasons) if self.decision else [],
            "labels": self.labels.file_name if self.labels else None,
            "labels_decision": self.labels.action if self.labels else None,
            "outcome": self.outcome,
            "retrain": self.retrain.status if self.retrain else None,
            "retrain_reason": self.retrain.reason if self.retrain else None,
            "champion_before": self.champion_version,
            "champion_after": self.champion_after,
            "decision_run_id": self.decision_run_id,
        }


@dataclass(frozen=True)
class Timeline:
    """A dataset's batches, oldest first, and the settings their numbers are read against."""

    dataset: str
    rows: tuple[BatchRow, ...]
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    false_alarm_rate: float = 0.05

    def row(self, sha256: str) -> BatchRow:
        """The row of batch ``sha256`` (a prefix is enough); ``KeyError`` when absent."""
        for row in self.rows:
            if row.sha256.startswith(sha256):
                return row
        raise KeyError(sha256)

    def records(self) -> list[dict[str, str]]:
        """One display row per batch (the Prefect table artifact's and the CLI table's)."""
        drop = self.policy.retrain_accuracy_drop
        records = []
        for row in self.rows:
            estimated, observed, line = row.estimated, row.observed, row.retrain_line(drop)
            records.append(
                {
                    "file": row.file_name,
                    "landed": _when(row.submitted_at),
                    "validation": row.verdict,
                    "drift p": format_p(row.drift.p_value) if row.drift else "-",
                    "estimated accuracy": estimated.text() if estimated else "-",
                    "observed accuracy": observed.text() if observed else "-",
                    "retrain line": _pct(line),
                    "decision": row.decisions,
                    "outcome": row.outcome_text(why=False),
                    "champion": row.champion_text(),
                }
            )
        return records

    def to_dict(self) -> dict[str, Any]:
        """The timeline as JSON."""
        drop = self.policy.retrain_accuracy_drop
        return {
            "dataset": self.dataset,
            "retrain_accuracy_drop": drop,
            "false_alarm_rate": self.false_alarm_rate,
            "batches": [row.to_dict(drop) for row in self.rows],
        }


# --------------------------------------------------------------------------- building rows


def _retrain_outcome(
    retrain: RetrainResult | None, rollback: str | None, why: bool = True
) -> str | None:
    """``promoted v5``, ``retrain refused: why``, ``rolled back to v3``; None when neither."""
    if retrain is not None:
        if retrain.status == "promoted":
            return f"promoted v{retrain.version}" if retrain.version else "promoted"
        if retrain.status == "pending":
            return "retrain pending"
        reason = f": {retrain.reason}" if why and retrain.reason else ""
        return f"retrain {retrain.status}{reason}"
    return f"rolled back to v{rollback}" if rollback else None


def _parsed(model: type[M], data: Any, drop: Sequence[str] = ()) -> M | None:
    """``data`` as ``model``; None when it is absent or of another shape (an older report)."""
    if not isinstance(data, Mapping):
        return None
    try:
        return model.model_validate({k: v for k, v in data.items() if k not in drop})
    except ValidationError:
        return None


def retrain_result(tags: Mapping[str, str], outcome: Mapping[str, Any] | None) -> RetrainResult:
    """What the retrain did, from the decision run's tags and its ``retrain.json`` (either may be
    missing: a retrain still running is ``pending``)."""
    outcome = outcome or {}
    status = str(outcome.get("status") or tags.get("mlops.retrain") or "pending")
    reason = str(outcome.get("reason") or tags.get("mlops.retrain_reason") or "")
    return RetrainResult(
        status=status,
        reason=reason,
        version=outcome.get("version"),
        champion_before=outcome.get("champion_before"),
        champion_after=outcome.get("champion_after"),
        gates=_parsed(GateReport, outcome.get("gates"), drop=("passed",)),
    )


_ROLLED_TO = re.compile(r"champion is now v(\S+)")


def batch_row(
    entry: LedgerEntry,
    report: Mapping[str, Any] | None,
    *,
    run_tags: Mapping[str, str] | None = None,
    retrain: Mapping[str, Any] | None = None,
    plots: Sequence[Plot] = (),
    labels: LabelsResult | None = None,
) -> BatchRow:
    """One row from a ledger entry, the report beside its file (``detail``: validation, drift,
    assessment, decision, decision_run_id) and its decision run's tags and ``retrain.json``."""
    found = report.get("detail") if isinstance(report, Mapping) else None
    detail: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    tags = run_tags or {}
    judged = detail.get("assessment")
    assessment: Mapping[str, Any] = judged if isinstance(judged, Mapping) else {}
    decision = _parsed(Decision, detail.get("decision"))
    champion = assessment.get("champion_version") or tags.get("mlops.champion_version") or None
    retrained = None
    if decision is not None and decision.action is Action.retrain:
        retrained = retrain_result(tags, retrain)
    rolled = _ROLLED_TO.search(tags.get("mlops.rollback", ""))
    run_id = detail.get("decision_run_id")
    return BatchRow(
        dataset=entry.dataset,
        sha256=entry.sha256,
        file_name=entry.original_name,
        submitted_at=entry.submitted_at,
        state=entry.state.value,
        reason=entry.reason,
        validation=_parsed(ValidationReport, detail.get("validation"), drop=("verdict",)),
        drift=_parsed(DriftReport, detail.get("drift")),
        decision=decision,
        estimate=_parsed(PerformanceEstimate, assessment.get("estimate")),
        performance=_parsed(PerformanceReport, assessment.get("performance")),
        champion_version=str(champion) if champion else None,
        decision_run_id=str(run_id) if run_id else None,
        retrain=retrained,
        rollback=rolled.group(1) if rolled else None,
        plots=tuple(plots),
        notes=tuple(str(n) for n in assessment.get("notes", ()) or ()),
        labels=labels,
    )


def labels_result(
    entry: LedgerEntry,
    report: Mapping[str, Any] | None,
    *,
    run_tags: Mapping[str, str] | None = None,
    retrain: Mapping[str, Any] | None = None,
) -> tuple[tuple[str, ...], LabelsResult] | None:
    """The batches (sha256s) a processed labels file joined and what it showed; None when it
    joined none (or its report is gone)."""
    found = report.get("detail") if isinstance(report, Mapping) else None
    detail: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    summary = detail.get("labels")
    joined = summary.get("batches") if isinstance(summary, Mapping) else None
    if not joined:
        return None
    tags = run_tags or {}
    judged = detail.get("assessment")
    assessment: Mapping[str, Any] = judged if isinstance(judged, Mapping) else {}
    decision = _parsed(Decision, detail.get("decision"))
    retrained = None
    if decision is not None and decision.action is Action.retrain:
        retrained = retrain_result(tags, retrain)
    rolled = _ROLLED_TO.search(tags.get("mlops.rollback", ""))
    run_id = detail.get("decision_run_id")
    result = LabelsResult(
        file_name=entry.original_name,
        performance=_parsed(PerformanceReport, assessment.get("performance")),
        decision=decision,
        retrain=retrained,
        rollback=rolled.group(1) if rolled else None,
        decision_run_id=str(run_id) if run_id else None,
        batches=len(joined),
    )
    return tuple(str(b) for b in joined), result


def labels_by_batch(
    joined: Sequence[tuple[tuple[str, ...], LabelsResult]], batch_order: Sequence[str]
) -> dict[str, LabelsResult]:
    """What each batch's delayed labels showed, by batch sha256, from every labels file (oldest
    first: a newer file that labels a batch again wins). Labels that joined several batches made
    one decision: it is shown, and counted, once, on the newest of them (``batch_order``, the
    ledger's); the others show the pooled accuracy only."""
    position = {sha: i for i, sha in enumerate(batch_order)}
    found: dict[str, LabelsResult] = {}
    for batches, result in joined:
        newest = max(batches, key=lambda sha: position.get(sha, -1))
        shared = replace(result, decision=None, retrain=None, rollback=None)
        found.update({sha: result if sha == newest else shared for sha in batches})
    return found


def carry_champions(rows: Sequence[BatchRow]) -> tuple[BatchRow, ...]:
    """Rows where a batch that met no champion (quarantined ones) shows the one standing then."""
    standing: str | None = None
    carried = []
    for row in rows:
        if row.champion_version is None and not row.retrains and standing is not None:
            row = replace(row, champion_version=standing)
        standing = row.champion_after or standing
        carried.append(row)
    return tuple(carried)


# --------------------------------------------------------------------------- the plot


def timeline_png(timeline: Timeline) -> bytes:
    """The timeline as a PNG: accuracy (estimated and observed with their intervals, the retrain
    line) above, the drift p-values below, with quarantine, retrain and promotion marked."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    import numpy as np

    rows = timeline.rows
    drop = timeline.policy.retrain_accuracy_drop
    n = len(rows)
    x = np.arange(1, n + 1)
    nan = float("nan")

    def series(values: Sequence[float | None]) -> Any:
        return np.array([nan if v is None else v for v in values], dtype=float)

    est = [r.estimated for r in rows]
    obs = [r.observed for r in rows]
    fig, (acc, drift) = plt.subplots(
        2, 1, figsize=(max(8.0, 0.32 * n + 4), 7.5), sharex=True, height_ratios=(3, 2)
    )
    acc.fill_between(
        x,
        series([e.low if e else None for e in est]),
        series([e.high if e else None for e in est]),
        color="#1f77b4",
        alpha=0.2,
        step="mid",
        label="estimated, 95% interval",
    )
    acc.plot(
        x,
        series([e.value if e else None for e in est]),
        "o-",
        color="#1f77b4",
        ms=4,
        label="estimated accuracy (CBPE, no labels)",
    )
    seen = [i for i, o in enumerate(obs) if o is not None]
    if seen:
        values = np.array([obs[i].value for i in seen])  # type: ignore[union-attr]
        lows = values - np.array([obs[i].low for i in seen])  # type: ignore[union-attr]
        highs = np.array([obs[i].high for i in seen]) - values  # type: ignore[union-attr]
        acc.errorbar(
            x[seen],
            values,
            yerr=np.clip([lows, highs], 0, None),
            fmt="s",
            color="#2ca02c",
            ms=5,
            capsize=3,
            label="observed accuracy (labels), 95% interval",
        )
    acc.plot(
        x,
        series([r.reference_accuracy for r in rows]),
        "--",
        color="#7f7f7f",
        drawstyle="steps-mid",
        label="reference accuracy",
    )
    acc.plot(
        x,
        series([r.retrain_line(drop) for r in rows]),
        "-",
        color="#d62728",
        drawstyle="steps-mid",
        label=f"retrain line (reference - {drop:.0%})",
    )
    for i, row in enumerate(rows, start=1):
        if row.quarantined:
            for ax in (acc, drift):
                ax.axvspan(i - 0.45, i + 0.45, color="#d62728", alpha=0.12, lw=0)
    top = acc.get_ylim()[1] if any(r.estimate or r.observed_performance for r in rows) else 1.0
    marks = {
        "quarantined": ([i for i, r in enumerate(rows, 1) if r.quarantined], "X", "#d62728"),
        "retrain decided": (
            [
                i
                for i, r in enumerate(rows, 1)
                if r.action == "retrain" or (r.labels and r.labels.action == "retrain")
            ],
            "v",
            "#ff7f0e",
        ),
        "promoted": (
            [i for i, r in enumerate(rows, 1) if any(x.status == "promoted" for x in r.retrains)],
            "*",
            "#2ca02c",
        ),
        "retrain refused/failed": (
            [
                i
                for i, r in enumerate(rows, 1)
                if any(x.status not in ("promoted", "pending") for x in r.retrains)
            ],
            "x",
            "#8c564b",
        ),
    }
    for label, (where, marker, colour) in marks.items():
        if where:
            acc.scatter(
                where,
                [top] * len(where),
                marker=marker,
                s=80,
                color=colour,
                label=label,
                zorder=5,
                clip_on=False,
            )
    acc.set_ylabel("accuracy")
    acc.set_title(f"{timeline.dataset}: accuracy and drift, batch by batch")
    acc.legend(fontsize=7, loc="lower left", ncol=2)
    acc.grid(alpha=0.3)

    floor = 1e-4
    p = series([max(r.drift.p_value, floor) if r.drift else None for r in rows])
    drifted = np.array([bool(r.drift and r.drift.is_drift) for r in rows])
    drift.plot(x, p, "-", color="#7f7f7f", lw=0.8)
    drift.scatter(x[~drifted], p[~drifted], color="#1f77b4", s=18, label="no drift")
    drift.scatter(x[drifted], p[drifted], color="#d62728", s=24, label="drift")
    drift.axhline(
        timeline.false_alarm_rate,
        color="#d62728",
        ls="--",
        lw=1,
        label=f"false-alarm rate {timeline.false_alarm_rate:g}",
    )
    drift.axhline(P_FLOOR, color="#7f7f7f", ls=":", lw=1, label="0.001 (below: shown < 0.001)")
    drift.set_yscale("log")
    drift.set_ylim(floor * 0.7, 1.5)
    drift.set_ylabel("combined drift p (Holm)")
    drift.legend(fontsize=7, loc="lower left", ncol=2)
    drift.grid(alpha=0.3)
    step = max(1, n // 40)
    drift.set_xticks(
        x[::step], [_short(r.file_name) for r in rows][::step], rotation=60, ha="right", fontsize=7
    )
    drift.set_xlim(0.4, n + 0.6)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _short(name: str, limit: int = 28) -> str:
    return name if len(name) <= limit else name[: limit - 3] + "..."


def _when(iso: str) -> str:
    return iso.replace("T", " ")[:16] + (" UTC" if iso else "")


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:80rem;
padding:0 1rem;color:#1d1d1f;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2.5rem;border-top:2px solid #ddd;padding-top:1rem}
h3{font-size:1.05rem;margin-bottom:.3rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.quarantined td{background:#fdecea}tr.promoted td{background:#e9f7ef}
tr.refused td{background:#fff4e5}
.badge{display:inline-block;border-radius:.6rem;padding:0 .5rem;font-size:.8rem;font-weight:600}
.bad{background:#fdecea;color:#a61b1b}.good{background:#e9f7ef;color:#1b6e3a}
.warn{background:#fff4e5;color:#8a5300}.plain{background:#eee;color:#333}
img{max-width:100%;height:auto;border:1px solid #eee}
.muted{color:#666;font-size:.85rem}code{font-size:.85rem}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _badge(text: str) -> str:
    kind = "plain"
    if text in (
        "failed",
        "dead_letter",
        "unusable",
        "quarantined",
        "drift",
        "rollback",
        "degraded",
    ):
        kind = "bad"
    elif text in ("passed", "promoted", "no drift", "none", "holding"):
        kind = "good"
    elif text.startswith(("retrain", "watch", "refused")):
        kind = "warn"
    return f'<span class="badge {kind}">{_e(text)}</span>'


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], classes: Sequence[str] = ()) -> str:
    """A table; cells are HTML already (escape text before)."""
    out = ["<table><thead><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for i, cells in enumerate(rows):
        cls = f' class="{classes[i]}"' if i < len(classes) and classes[i] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _document(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n{body}\n</body></html>\n"
    )


def _row_class(row: BatchRow) -> str:
    if row.quarantined:
        return "quarantined"
    if any(r.status == "promoted" for r in row.retrains):
        return "promoted"
    return "refused" if any(r.status != "pending" for r in row.retrains) else ""


def _summary_table(timeline: Timeline, link: bool) -> str:
    records = timeline.records()
    cells = []
    for row, record in zip(timeline.rows, records, strict=True):
        name = _e(record["file"])
        cells.append(
            [
                f'<a href="#{row.anchor}">{name}</a>' if link else name,
                _e(record["landed"]),
                _badge(record["validation"]),
                _e(record["drift p"])
                + (" " + _badge("drift") if row.drift and row.drift.is_drift else ""),
                _e(record["estimated accuracy"]),
                _e(record["observed accuracy"]),
                _e(record["retrain line"]),
                _badge(record["decision"]),
                _e(record["outcome"]),
                _e(record["champion"]),
            ]
        )
    return _table(
        list(records[0]) if records else [], cells, [_row_class(r) for r in timeline.rows]
    )


def timeline_html(timeline: Timeline, *, plot: bytes | None = None) -> str:
    """The whole report as one self-contained HTML document: the plot, the table of batches, and
    an anchored section per batch; ``plot`` is the timeline PNG (drawn when not given)."""
    rows = timeline.rows
    quarantined = sum(r.quarantined for r in rows)
    retrains = [r for row in rows for r in row.retrains]
    promoted = sum(r.status == "promoted" for r in retrains)
    body = [
        f"<h1>Timeline of dataset <code>{_e(timeline.dataset)}</code></h1>",
        f'<p class="muted">{len(rows)} batches, oldest first: {quarantined} quarantined, '
        f"{sum(r.drift is not None and r.drift.is_drift for r in rows)} with drift, "
        f"{len(retrains)} retrains ({promoted} promoted).</p>",
    ]
    if rows:
        body.append(_img(plot if plot is not None else timeline_png(timeline), "timeline plot"))
        body.append(_summary_table(timeline, link=True))
    else:
        body.append("<p>No batch has landed yet.</p>")
    body.append(_reading_notes(timeline))
    body += [_batch_section(timeline, row) for row in rows]
    return _document(f"{timeline.dataset} timeline", "\n".join(body))


def batch_html(timeline: Timeline, sha256: str) -> str:
    """One batch's page as its own self-contained HTML document (``KeyError`` when absent)."""
    row = timeline.row(sha256)
    body = _batch_section(timeline, row, heading="h1") + _reading_notes(timeline)
    return _document(f"{timeline.dataset}: {row.file_name}", body)


def _reading_notes(timeline: Timeline) -> str:
    drop = timeline.policy.retrain_accuracy_drop
    return (
        '<h3>How to read it</h3><ul class="muted">'
        "<li>Drift p: the combined p-value, the smallest Holm-adjusted p-value over the "
        f"dataset-level tests; drift when it is at most the family-wise false-alarm rate "
        f"{timeline.false_alarm_rate:g}. Per-feature p-values are Bonferroni-adjusted over the "
        "features. Values below 0.001 are shown as &lt; 0.001.</li>"
        "<li>Estimated accuracy: the champion's accuracy estimated without labels (CBPE), with its "
        "95% interval. Observed accuracy: measured on the batch's labelled rows (those not kept "
        "for the gates); its interval is the 95% bootstrap interval of the difference from the "
        "reference holdout's accuracy, placed at the reference.</li>"
        f"<li>Retrain line: the reference accuracy minus {drop:.0%}. The policy counts the "
        "observed accuracy as degraded when it is more than that below the reference and the "
        "difference's 95% interval lies wholly below zero; the estimated accuracy when its whole "
        "95% interval lies below the line. Whether it then retrains also depends on the "
        "cost-benefit, the cooldown and the labelled rows (the reasons say which).</li>"
        "</ul>"
    )


def _batch_section(timeline: Timeline, row: BatchRow, heading: str = "h2") -> str:
    parts = [
        f'<section id="{_e(row.anchor)}">',
        f"<{heading}>{_e(row.file_name)} {_badge(row.outcome if row.quarantined else row.verdict)}"
        f"</{heading}>",
        f'<p class="muted">dataset <code>{_e(row.dataset)}</code> · batch <code>{_e(row.sha256)}'
        f"</code> · landed {_e(_when(row.submitted_at))} · state {_e(row.state)}"
        + (
            f" · MLflow decision run <code>{_e(row.decision_run_id)}</code>"
            if row.decision_run_id
            else ""
        )
        + "</p>",
        _validation_part(row),
        _drift_part(row),
        _accuracy_part(row, timeline.policy.retrain_accuracy_drop),
        _decision_part(row, timeline.policy),
        _retrain_part(row),
        _labels_part(row, timeline.policy),
        "</section>",
    ]
    return "\n".join(parts)


def _validation_part(row: BatchRow) -> str:
    report = row.validation
    if report is None:
        why = f": {_e(row.reason)}" if row.reason else ""
        return f"<h3>Validation</h3><p>No validation report ({_e(row.state)}{why}).</p>"
    if not report.usable:
        return f"<h3>Validation {_badge('unusable')}</h3><p>{_e(report.error or '')}</p>"
    text = [
        f"<h3>Validation {_badge(report.verdict)}</h3>",
        f"<p>{report.rows:,} rows, {report.evaluated} expectations, "
        f"{len(report.failures)} failed.</p>",
    ]
    if report.failures:
        text.append(
            _table(
                ["column", "problem", "observed", "expected", "expectation"],
                [
                    [
                        _e(f.column or "(table)"),
                        _e(f.kind),
                        _e(f.observed),
                        _e(f.expected),
                        _e(f.expectation),
                    ]
                    for f in report.failures
                ],
            )
        )
    if report.warnings:
        text.append("<ul>" + "".join(f"<li>{_e(w)}</li>" for w in report.warnings) + "</ul>")
    return "".join(text)


def _drift_part(row: BatchRow) -> str:
    drift = row.drift
    if drift is None:
        why = "the batch failed validation" if row.quarantined else "no drift report"
        return f"<h3>Drift</h3><p>Not tested: {why}.</p>"
    verdict = "drift" if drift.is_drift else "no drift"
    parts = [
        f"<h3>Drift {_badge(verdict)}</h3>",
        f"<p>Combined {_e(p_phrase(drift.p_value))} (the smallest Holm-adjusted p-value over "
        f"{len(drift.tests)} tests) at a family-wise false-alarm rate of "
        f"{drift.false_alarm_rate:g}; reference {drift.reference_rows:,} rows, batch "
        f"{drift.current_rows:,} rows."
        + (f" Drivers: {_e(', '.join(drift.drivers))}." if drift.drivers else "")
        + "</p>",
        _table(
            [
                "test",
                "statistic",
                "p-value",
                "Holm-adjusted p",
                "effect",
                "rows (reference / batch)",
                "drift",
            ],
            [
                [
                    _e(t.name),
                    f"{t.statistic:.4g}",
                    _e(format_p(t.p_value)),
                    _e(format_p(t.adjusted_p_value)),
                    _e(
                        f"{t.effect_size:.3g} {t.effect_metric or ''}"
                        if t.effect_size is not None
                        else "-"
                    ),
                    f"{t.reference_rows:,} / {t.current_rows:,}",
                    "yes" if t.is_drift else "no",
                ]
                for t in drift.tests
            ],
        ),
    ]
    if drift.features:
        features = sorted(drift.features, key=lambda f: (f.adjusted_p_value, -f.effect_size))
        parts.append(
            _table(
                [
                    "feature",
                    "test",
                    "p-value",
                    "Bonferroni-adjusted p",
                    "effect size",
                    "missing share change",
                    "drift",
                ],
                [
                    [
                        _e(f.feature),
                        _e(f.test),
                        _e(format_p(f.p_value)),
                        _e(format_p(f.adjusted_p_value)),
                        _e(f"{f.effect_size:.3f} ({f.effect_metric})"),
                        f"{100 * f.missing_change:+.1f} pts",
                        "yes" if f.is_drift else "no",
                    ]
                    for f in features
                ],
                ["refused" if f.is_drift else "" for f in features],
            )
        )
    if row.plots:
        parts += [
            f"<figure>{_img(p.png, p.name)}<figcaption class='muted'>{_e(p.name)}</figcaption></figure>"
            for p in row.plots
        ]
    else:
        parts.append(
            '<p class="muted">The drift plots of this batch are on its own page (report/batch.html '
            "on its decision run).</p>"
            if row.plots_elsewhere
            else '<p class="muted">No drift plots: they are drawn for batches that drifted.</p>'
        )
    return "".join(parts)


def _accuracy_part(row: BatchRow, drop: float) -> str:
    parts = ["<h3>Accuracy</h3><ul>"]
    line = row.retrain_line(drop)
    if row.estimate is not None:
        e = row.estimate
        parts.append(
            f"<li>Estimated (CBPE, no labels) on {e.rows:,} rows: "
            f"{_e(_pct(e.estimated_accuracy))}, {100 * e.confidence:g}% interval "
            f"[{_e(_pct(e.ci_low))}, {_e(_pct(e.ci_high))}], against the reference "
            f"{_e(_pct(e.reference_accuracy))}."
            + (f" {_e(e.warning)}" if e.warning else "")
            + "</li>"
        )
    if row.observed_performance is not None:
        p = row.observed_performance
        labels = row.labels if row.performance is None else None
        source = ""
        if labels is not None:
            joined = f", over {labels.batches} batches" if labels.batches > 1 else ""
            source = f" (its delayed labels, {_e(labels.file_name)}{joined})"
        parts.append(
            f"<li>Observed{source} on {p.current_rows:,} labelled rows: {_e(_pct(p.current))} against "
            f"{_e(_pct(p.reference))} on the reference holdout ({p.reference_rows:,} rows); "
            f"difference {100 * p.difference:+.1f} pts, {100 * p.confidence:g}% bootstrap "
            f"interval [{100 * p.ci_low:+.1f}, {100 * p.ci_high:+.1f}] pts: "
            f"{_badge('degraded' if p.degraded else 'holding')}</li>"
        )
    if row.estimate is None and row.observed_performance is None:
        why = "the batch failed validation" if row.quarantined else "no champion judged it"
        parts.append(f"<li>Not assessed: {why}.</li>")
    if line is not None:
        parts.append(f"<li>Retrain line: {_e(_pct(line))}.</li>")
    parts += [f"<li>{_e(note)}</li>" for note in row.notes]
    parts.append(f"<li>Champion: {_e(row.champion_text())}.</li></ul>")
    return "".join(parts)


def _decision_part(row: BatchRow, policy: PolicyConfig) -> str:
    decision = row.decision
    if decision is None:
        return "<h3>Decision</h3><p>No decision recorded yet.</p>"
    parts = [f"<h3>Decision {_badge(decision.action.value)}</h3><ul>"]
    parts += [f"<li>{_e(reason)}</li>" for reason in decision.reasons]
    parts.append("</ul>")
    weighed = cost_benefit(decision, policy)
    if weighed:
        parts.append(
            "<h3>Cost and benefit</h3><p>" + " ".join(_e(line) for line in weighed) + "</p>"
        )
    return "".join(parts)


def _labels_part(row: BatchRow, policy: PolicyConfig) -> str:
    labels = row.labels
    if labels is None:
        return ""
    parts = [f"<h3>Its labels: <code>{_e(labels.file_name)}</code> {_badge(labels.action)}</h3>"]
    if labels.decision is None and labels.batches > 1:
        parts.append(
            f"<p>These labels joined {labels.batches} batches; their one decision is shown on the "
            "newest of them.</p>"
        )
    if labels.decision is not None:
        parts.append("<ul>" + "".join(f"<li>{_e(r)}</li>" for r in labels.decision.reasons))
        parts.append("</ul>")
        weighed = cost_benefit(labels.decision, policy)
        if weighed:
            parts.append("<p>" + " ".join(_e(line) for line in weighed) + "</p>")
    parts.append(_retrain_part_of(labels.retrain, labels.rollback))
    return "".join(parts)


def _retrain_part(row: BatchRow) -> str:
    return _retrain_part_of(row.retrain, row.rollback)


def _retrain_part_of(retrain: RetrainResult | None, rollback: str | None) -> str:
    if rollback:
        return f"<h3>Rollback</h3><p>The champion is now v{_e(rollback)}.</p>"
    if retrain is None:
        return ""
    parts = [
        f"<h3>Retrain {_badge(retrain.status)}</h3><p>"
        + (f"Challenger v{_e(retrain.version)}. " if retrain.version else "")
        + f"Champion before v{_e(retrain.champion_before or '-')}, after "
        f"v{_e(retrain.champion_after or '-')}. {_e(retrain.reason)}</p>"
    ]
    if retrain.gates is not None:
        gates = retrain.gates
        parts.append(
            f'<p class="muted">Gates judged on {gates.rows:,} held-out recent rows: challenger '
            f"accuracy {_e(_pct(gates.challenger_accuracy))}, champion "
            f"{_e(_pct(gates.champion_accuracy))}.</p>"
        )
        parts.append(
            _table(
                ["gate", "threshold", "observed", "result"],
                [
                    [_e(g.name), _e(g.threshold), _e(g.observed), "pass" if g.passed else "FAIL"]
                    for g in gates.gates
                ],
                ["" if g.passed else "quarantined" for g in gates.gates],
            )
        )
    return "".join(parts)
