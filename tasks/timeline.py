"""Task that publishes a dataset's timeline: a Prefect table artifact and MLflow HTML pages."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mlops_core.adapters.context import DatasetContext
from mlops_core.batches import BatchState

REPORT_FOLDER = "report"  # on the decision run: timeline.html, timeline.png, batch.html
PLOTS_FOR_LAST = 3  # batches whose drift plots the logged timeline.html embeds
# Batches being processed or about to be: each settles and publishes by itself (a failed one
# does when reconcile retries it).
IN_FLIGHT = (BatchState.landed, BatchState.processing)


@dataclass(frozen=True)
class PublishedTimeline:
    """Where the timeline went: the Prefect artifact's key and the MLflow artifact paths."""

    artifact_key: str
    mlflow_paths: tuple[str, ...]
    batches: int  # rows of the published timeline (0 when deferred)
    # Other batches of the dataset were still in flight: only this batch's page was logged, the
    # dataset's timeline is left to the last of them to settle.
    deferred: bool = False


def timeline_key(dataset: str) -> str:
    """The one Prefect artifact key of a dataset's timeline (lowercase, dashes), so Prefect
    keeps its versions together."""
    return "timeline-" + re.sub(r"[^a-z0-9-]+", "-", dataset.lower()).strip("-")


@task(cache_policy=NO_CACHE)
def publish_timeline(
    ctx: DatasetContext, sha256: str, decision_run_id: str | None
) -> PublishedTimeline | None:
    """The dataset's timeline as a Prefect table artifact and, on the decision run, HTML pages."""
    try:
        return _publish(ctx, sha256, decision_run_id)
    except Exception as exc:  # noqa: BLE001 -- a report that cannot render never fails a batch
        get_run_logger().error(
            "could not publish the timeline of %s (batch %s): %s: %s",
            ctx.name,
            sha256[:12] or "-",
            type(exc).__name__,
            exc,
        )
        return None


def _publish(ctx: DatasetContext, sha256: str, decision_run_id: str | None) -> PublishedTimeline:
    from prefect.artifacts import create_table_artifact

    from mlops_core.adapters.timeline_source import load_timeline
    from mlops_core.reporting import md_text, mlflow_ui_link
    from mlops_core.timeline import batch_html, timeline_html, timeline_png
    from tasks.report import mlflow_ui

    # Debounced: while other batches of the dataset are still in flight (a burst), each logs only
    # its own page and the last of them to settle publishes the timeline. A batch settles before
    # it gets here, so of batches settling together the last one sees none in flight.
    in_flight = sum(
        1
        for entry in ctx.batches.entries(ctx.name)
        if entry.state in IN_FLIGHT and entry.sha256 != sha256
    )
    if in_flight and sha256:
        return _publish_page_only(ctx, sha256, decision_run_id, in_flight)
    # Plots of the newest batches only: this page is logged again for every batch. A batch
    # without drift has no plots to show (drawing them took 4-5 s of every quiet batch's run).
    timeline = load_timeline(ctx, plots_for_last=PLOTS_FOR_LAST, plots_of=sha256 or None)
    key = timeline_key(ctx.name)
    paths: list[str] = []
    link = ""
    if decision_run_id:
        client = ctx.registry.client
        plot = timeline_png(timeline)
        client.log_text(
            decision_run_id, timeline_html(timeline, plot=plot), f"{REPORT_FOLDER}/timeline.html"
        )
        with tempfile.TemporaryDirectory(prefix="mlops-timeline-") as scratch:
            png = Path(scratch) / "timeline.png"
            png.write_bytes(plot)
            client.log_artifact(decision_run_id, str(png), REPORT_FOLDER)
        paths += [f"{REPORT_FOLDER}/timeline.html", f"{REPORT_FOLDER}/timeline.png"]
        if sha256 and any(row.sha256 == sha256 for row in timeline.rows):
            client.log_text(
                decision_run_id, batch_html(timeline, sha256), f"{REPORT_FOLDER}/batch.html"
            )
            paths.append(f"{REPORT_FOLDER}/batch.html")
        ui = mlflow_ui(ctx.settings)
        route = f"experiments/{ctx.registry.experiment_id()}/runs/{decision_run_id}/artifacts"
        where = (
            f"[the decision run]({mlflow_ui_link(ui, route)})"
            if ui
            else f"decision run {decision_run_id}"
        )
        link = f"; pages: {', '.join(paths)} on {where}"
    records = timeline.records()
    newest = timeline.rows[-1].file_name if timeline.rows else "-"
    create_table_artifact(
        table=records,
        key=key,
        description=(
            f"Timeline of {ctx.name}: {len(records)} batches, newest {md_text(newest)}{link}. "
            "Drift p is the "
            "smallest Holm-adjusted p-value; accuracies with their 95% intervals."
        ),
    )
    get_run_logger().info(
        "timeline of %s published: %d batches, artifact %s%s",
        ctx.name,
        len(records),
        key,
        f", {len(paths)} pages on run {decision_run_id}" if paths else "",
    )
    return PublishedTimeline(key, tuple(paths), len(records))


def _publish_page_only(
    ctx: DatasetContext, sha256: str, decision_run_id: str | None, in_flight: int
) -> PublishedTimeline:
    """This batch's own page on its decision run, the dataset's timeline left to a later batch.
    Its row alone is read, so a backlog of batches does not make each of them slower."""
    from mlops_core.adapters.timeline_source import load_batch
    from mlops_core.timeline import batch_html

    paths: tuple[str, ...] = ()
    if decision_run_id:
        timeline = load_batch(ctx, sha256)
        if timeline.rows:
            ctx.registry.client.log_text(
                decision_run_id, batch_html(timeline, sha256), f"{REPORT_FOLDER}/batch.html"
            )
            paths = (f"{REPORT_FOLDER}/batch.html",)
    get_run_logger().info(
        "timeline of %s left to the last of %d batches still in flight%s",
        ctx.name,
        in_flight,
        f"; this batch's page on run {decision_run_id}" if paths else "",
    )
    return PublishedTimeline(timeline_key(ctx.name), paths, 0, deferred=True)
