"""Where a dataset's timeline comes from: the ledger, the report beside each batch, and MLflow.

The ledger gives every batch once (its original file name, when it landed, where it ended); the
JSON report the batch flow settled beside the file gives the validation, drift, assessment and
decision; the decision run in MLflow gives what happened after the decision (the retrain's
outcome and gate report, a rollback) and the drift plots it carries. Rows are assembled by the
pure :mod:`mlops_core.timeline`.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from mlops_core.adapters.context import DatasetContext
from mlops_core.batches import FINAL_STATES, LedgerEntry
from mlops_core.tags import RUN_TYPE
from mlops_core.timeline import (
    BatchRow,
    LabelsResult,
    Plot,
    Timeline,
    batch_row,
    carry_champions,
    labels_by_batch,
    labels_result,
)

_PLOT_FOLDER = "drift"


def load_timeline(
    ctx: DatasetContext,
    *,
    plots: bool = True,
    plots_for_last: int | None = None,
    plots_of: str | None = None,
) -> Timeline:
    """The dataset's timeline, a row per landed batch, oldest first.

    With ``plots``, each row carries the drift plots its decision run holds (only the newest
    ``plots_for_last`` rows when given: a report logged for every batch stays small, plus those of
    batch ``plots_of`` (sha256), whose own page is being made). A batch without drift has none:
    plots are drawn when the drift test finds drift (``tasks.drift.plot_batch_drift``).
    """
    tags = decision_run_tags(ctx)
    rows: list[BatchRow] = []
    entries = ctx.batches.entries(ctx.name)
    pictured = len(entries) if plots_for_last is None else plots_for_last
    with tempfile.TemporaryDirectory(prefix="mlops-timeline-") as scratch:
        labelled = _labels_by_batch(ctx, tags, Path(scratch))
        for index, entry in enumerate(entries):
            wanted = plots and (index >= len(entries) - pictured or entry.sha256 == plots_of)
            report = _report(ctx, entry)
            run_id = _run_id(report)
            row = _row(
                ctx,
                entry,
                report,
                tags.get(run_id, {}) if run_id else {},
                plots=wanted,
                labels=labelled.get(entry.sha256),
                scratch=Path(scratch),
            )
            if plots and not wanted and row.drift is not None and row.drift.is_drift:
                row = replace(row, plots_elsewhere=True)
            rows.append(row)
    return _timeline(ctx, carry_champions(rows))


def load_batch(ctx: DatasetContext, sha256: str) -> Timeline:
    """A timeline of batch ``sha256``'s row alone (none when it never landed): what its own page
    shows as it settles, read at a cost independent of how many batches the dataset has had --
    its report, its decision run's tags, retrain outcome and drift plots. Labels are joined, and
    a quarantined batch shown with the champion then standing, by :func:`load_timeline`."""
    entry = ctx.batches.get(ctx.name, sha256)
    if entry is None:
        return _timeline(ctx, ())
    report = _report(ctx, entry)
    run_id = _run_id(report)
    run_tags: dict[str, str] = {}
    if run_id:
        try:
            run_tags = dict(ctx.registry.client.get_run(run_id).data.tags)
        except Exception:  # noqa: BLE001 -- the row still shows the report
            run_tags = {}
    with tempfile.TemporaryDirectory(prefix="mlops-timeline-") as scratch:
        row = _row(ctx, entry, report, run_tags, plots=True, labels=None, scratch=Path(scratch))
    return _timeline(ctx, (row,))


def _row(
    ctx: DatasetContext,
    entry: LedgerEntry,
    report: dict[str, Any] | None,
    run_tags: dict[str, str],
    *,
    plots: bool,
    labels: LabelsResult | None,
    scratch: Path,
) -> BatchRow:
    """A batch's row from its report and its decision run (the retrain's outcome, the plots)."""
    run_id = _run_id(report)
    retrain = None
    if run_id and run_tags.get("mlops.decision") == "retrain":
        retrain = _json_artifact(ctx, run_id, "retrain.json", scratch)
    pictures = _run_plots(ctx, run_id, scratch) if plots and run_id else []
    return batch_row(
        entry, report, run_tags=run_tags, retrain=retrain, plots=pictures, labels=labels
    )


def _timeline(ctx: DatasetContext, rows: tuple[BatchRow, ...]) -> Timeline:
    settings = ctx.settings
    return Timeline(
        dataset=ctx.name,
        rows=rows,
        policy=settings.policy_config(),
        false_alarm_rate=settings.drift_false_alarm_rate,
    )


def _labels_by_batch(
    ctx: DatasetContext, tags: dict[str, dict[str, str]], scratch: Path
) -> dict[str, LabelsResult]:
    """What each batch's delayed labels showed, by batch sha256 (the newest labels file wins)."""
    found: list[tuple[tuple[str, ...], LabelsResult]] = []
    for entry in ctx.labels.entries(ctx.name):
        report = _report(ctx, entry, kind="labels")
        run_id = _run_id(report)
        run_tags = tags.get(run_id, {}) if run_id else {}
        retrain = None
        if run_id and run_tags.get("mlops.decision") == "retrain":
            retrain = _json_artifact(ctx, run_id, "retrain.json", scratch)
        joined = labels_result(entry, report, run_tags=run_tags, retrain=retrain)
        if joined is not None:
            found.append(joined)
    return labels_by_batch(found, [entry.sha256 for entry in ctx.batches.entries(ctx.name)])


def _report(ctx: DatasetContext, entry: LedgerEntry, kind: str = "batch") -> dict[str, Any] | None:
    """The report settled beside a batch; None while it is unsettled or when the report is gone."""
    if entry.state not in FINAL_STATES:
        return None
    try:
        report = ctx.zone(kind).read_report(entry)
    except Exception:  # noqa: BLE001 -- the row still shows the batch, its state and reason
        return None
    return report if isinstance(report, dict) else None


def _run_id(report: dict[str, Any] | None) -> str | None:
    detail = report.get("detail") if report else None
    run_id = detail.get("decision_run_id") if isinstance(detail, dict) else None
    return str(run_id) if run_id else None


def decision_run_tags(ctx: DatasetContext) -> dict[str, dict[str, str]]:
    """Every decision run's tags in the dataset's experiment, by run id (one search)."""
    client = ctx.registry.client
    experiment = client.get_experiment_by_name(ctx.name)
    if experiment is None:
        return {}
    found: dict[str, dict[str, str]] = {}
    token = None
    while True:
        page = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`{RUN_TYPE}` = 'decision'",
            max_results=1_000,
            page_token=token,
        )
        for run in page:
            found[run.info.run_id] = dict(run.data.tags)
        token = page.token
        if not token:
            return found


def _json_artifact(ctx: DatasetContext, run_id: str, name: str, scratch: Path) -> Any:
    """A JSON artifact of a run; None when the run has none (yet)."""
    try:
        local = ctx.registry.client.download_artifacts(run_id, name, str(scratch / run_id))
        return json.loads(Path(local).read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 -- absent or unreadable: the row says "pending"
        return None


def _run_plots(ctx: DatasetContext, run_id: str, scratch: Path) -> list[Plot]:
    """The PNG drift plots a decision run carries, by name."""
    client = ctx.registry.client
    try:
        names = [a.path for a in client.list_artifacts(run_id, _PLOT_FOLDER) if not a.is_dir]
        pictures = []
        for name in sorted(n for n in names if n.endswith(".png")):
            local = client.download_artifacts(run_id, name, str(scratch / run_id))
            pictures.append(Plot(Path(name).stem.replace("_", " "), Path(local).read_bytes()))
        return pictures
    except Exception:  # noqa: BLE001 -- a missing picture never hides the row
        return []
