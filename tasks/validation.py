"""Task that validates a landed batch against its dataset's expectation suite."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from mlops_core.adapters.catalog import DatasetCatalog
from mlops_core.settings import Settings
from mlops_core.validation import ValidationReport, load_suite, validate_file


@task(cache_policy=NO_CACHE)
def validate_batch(settings: Settings, dataset: str, path: Path, label: str) -> ValidationReport:
    """Run the dataset's Great Expectations suite on the batch file."""
    registered = DatasetCatalog(settings).get(dataset)
    suite = load_suite(settings, dataset)
    return validate_file(path, registered.spec, suite, settings, label=label)
