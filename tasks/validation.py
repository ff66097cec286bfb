"""Task that validates a landed batch against its dataset's expectation suite."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from mlops_core.adapters.context import DatasetContext
from mlops_core.validation import ValidationReport


@task(cache_policy=NO_CACHE)
def validate_batch(ctx: DatasetContext, path: Path, label: str) -> ValidationReport:
    """Run the dataset's Great Expectations suite on the batch file."""
    return ctx.validate_file(path, label=label)
