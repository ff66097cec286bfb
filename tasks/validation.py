"""Task that validates a landed batch against its dataset's expectation suite."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mlops_core.adapters.context import DatasetContext
from mlops_core.validation import ValidationReport


@task(cache_policy=NO_CACHE)
def validate_batch(
    ctx: DatasetContext, path: Path, label: str, submitted_at: str | None = None
) -> ValidationReport:
    """Run the dataset's Great Expectations suite on the batch file (its Data Docs deferred)."""
    # The ledger's submission time bounds the event times: none can be later than its landing.
    landed = datetime.fromisoformat(submitted_at) if submitted_at else None
    return ctx.validate_file(path, label=label, data_docs="deferred", ingested_at=landed)


@task(cache_policy=NO_CACHE)
def publish_data_docs(ctx: DatasetContext, report: ValidationReport) -> str | None:
    """Render the batch's Data Docs page and the site's index, once the batch is settled.

    A rendering failure is logged and does not fail the run: the batch is settled and its
    validation result is stored, so nothing is lost, and the decision must still be carried out.
    """
    try:
        return ctx.build_data_docs(report)
    except Exception as exc:  # noqa: BLE001 -- the page can be rendered again; the decision can't wait
        get_run_logger().error("could not render the Data Docs of %s: %s", report.source, exc)
        return None
