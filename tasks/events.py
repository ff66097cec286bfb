"""Task that emits a Prefect event about a dataset."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from mlops_core.events import dataset_resource


@task(cache_policy=NO_CACHE)
def emit(event: str, dataset: str, payload: dict[str, Any]) -> None:
    """Emit ``event`` with the dataset as its resource."""
    emit_event(event=event, resource=dataset_resource(dataset), payload=payload)
