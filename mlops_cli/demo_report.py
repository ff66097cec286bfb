"""What ``mlops demo`` prints: the stream's schedule, a live line per batch and labels file, the summary.

``Row`` is what the demo knows of one weekly batch (and later of its labels); it is also the
JSON the demo hands back (``--rows-json``), which the demo's test reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from mlops_cli.scenarios import Stream

DECISION_COLOURS = {"none": "green", "watch": "yellow", "retrain": "magenta"}


def print_schedule(stream: Stream, console: Console) -> None:
    """Print the stream's truth: which weeks are which phase, and what happens in each."""
    table = Table(title="The stream's truth (schedule)", title_justify="left")
    table.add_column("weeks")
    table.add_column("phase")
    table.add_column("what happens")
    for phase in stream.schedule:
        weeks = [b.week for b in stream.batches if b.phase == phase.name]
        table.add_row(
            f"{weeks[0]}-{weeks[-1]}" if len(weeks) > 1 else str(weeks[0]), phase.name, phase.truth
        )
    console.print(table)


def _percent(value: object) -> str:
    return f"{float(value):.1%}" if value is not None else "-"  # type: ignore[arg-type]


def _p_value(drift: dict[str, Any] | None) -> str:
    if drift is None:
        return "-"
    p_value = float(drift["p_value"])
    shown = "<0.001" if p_value < 0.001 else f"{p_value:.3f}"
    return f"{'yes' if drift['is_drift'] else 'no'} p{'' if shown.startswith('<') else '='}{shown}"


@dataclass
class Row:
    """What the demo knows of one weekly batch (and, later, of its labels)."""

    index: int
    week: int
    phase: str
    kind: str
    corruption: str | None
    rows: int
    sha256: str = ""
    state: str = ""
    verdict: str = "-"
    reason: str | None = None
    location: str = ""
    drift: dict[str, Any] | None = None
    estimated: float | None = None
    observed: float | None = None
    decision: str = "-"
    labels_decision: str = "-"
    retrain: str | None = None
    labels_retrain: str | None = None
    champion: str = "-"
    seconds: float = 0.0
    labels_seconds: float | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON, the form ``run_demo`` returns and ``--rows-json`` writes."""
        return {
            "index": self.index,
            "phase": self.phase,
            "kind": self.kind,
            "corruption": self.corruption,
            "rows": self.rows,
            "verdict": self.verdict,
            "state": self.state,
            "location": self.location,
            "reason": self.reason,
            "drift": bool(self.drift["is_drift"]) if self.drift else None,
            "drift_p_value": self.drift["p_value"] if self.drift else None,
            "drivers": list(self.drift["drivers"]) if self.drift else [],
            "decision": self.decision,
            "labels_decision": self.labels_decision,
            "estimated_accuracy": self.estimated,
            "observed_accuracy": self.observed,
            "retrain": self.retrain,
            "labels_retrain": self.labels_retrain,
            "champion": self.champion,
            "seconds": round(self.seconds, 2),
            "labels_seconds": round(self.labels_seconds, 2) if self.labels_seconds else None,
        }


def _decision(action: str, retrain: str | None) -> str:
    """The coloured decision and, when the flow acted on it, what the retrain did."""
    colour = DECISION_COLOURS.get(action, "red")
    outcome = f" -> {retrain}" if retrain else ""
    return f"[{colour}]{action:<8}[/{colour}]{outcome:<12}"


def batch_line(row: Row, *, labels: bool = False) -> str:
    """One live line: a batch as it settled, or its labels as they were judged."""
    if labels:
        return (
            f"{row.index:>2}  {'labels':<17} observed {_percent(row.observed):>6}  "
            f"{_decision(row.labels_decision, row.labels_retrain)} champion v{row.champion}"
            f"  [dim]{row.labels_seconds:.1f} s[/dim]"
        )
    colour = "green" if row.state == "processed" else "red"
    return (
        f"{row.index:>2}  {row.phase:<17} [{colour}]{row.verdict:<8}[/{colour}] "
        f"drift {_p_value(row.drift):<12} est. {_percent(row.estimated):>6}  "
        f"{_decision(row.decision, row.retrain)} "
        f"champion v{row.champion}  [dim]{row.seconds:.1f} s[/dim]"
    )


def change_line(evidence: dict[str, Any]) -> str:
    """Where the champion's accuracy changed, when the decision located a significant change."""
    p_value = evidence.get("change_p_value")
    if p_value is None or p_value > 0.05:
        return ""
    low, high = evidence.get("change_interval") or ("?", "?")
    return (
        f"    [dim]accuracy changed {_percent(evidence.get('accuracy_before_change'))} -> "
        f"{_percent(evidence.get('accuracy_after_change'))} at {evidence.get('change_at')} "
        f"(95% interval {low} to {high}, p = {p_value:.3f}; "
        f"{evidence.get('labelled_rows_since_change') or 0:,} labelled rows since)[/dim]"
    )


def summary_table(rows: list[Row]) -> Table:
    """The summary: one line per batch, from validation to the champion after it."""
    table = Table(title="Summary", title_justify="left")
    for column in (
        "#",
        "phase",
        "validation",
        "drift (p)",
        "est. acc.",
        "obs. acc.",
        "decision: batch / labels",
        "champion",
    ):
        table.add_column(column)
    for row in rows:
        retrain = row.retrain or row.labels_retrain
        decision = f"{row.decision} / {row.labels_decision}" + (f" ({retrain})" if retrain else "")
        table.add_row(
            str(row.index),
            row.phase,
            row.verdict,
            _p_value(row.drift),
            _percent(row.estimated),
            _percent(row.observed),
            decision,
            f"v{row.champion}",
        )
    return table
