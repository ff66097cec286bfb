"""Tasks that publish what a person sees in the Prefect UI: the batch report and the plots."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from mlops_core.adapters.context import DatasetContext
from mlops_core.adapters.stack_state import read_state
from mlops_core.adapters.store import open_store
from mlops_core.reporting import batch_markdown, mlflow_run_url


def _key(*parts: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")[:100]


@task(cache_policy=NO_CACHE)
def publish_report(
    ctx: DatasetContext,
    sha256: str,
    validation: dict[str, Any] | None,
    drift: dict[str, Any] | None,
    decision: dict[str, Any] | None,
    decision_run_id: str | None,
    plots: list[Path],
    title: str = "Batch",
) -> str:
    """A markdown artifact (verdict, drift table, decision, MLflow links) and the plots as links."""
    settings, dataset = ctx.settings, ctx.name
    state = read_state(settings)
    mlflow_ui = state.mlflow_ui_url if state else None
    links: dict[str, str | None] = {}
    if decision_run_id:
        experiment = ctx.registry.experiment_id()
        links["MLflow decision run"] = mlflow_run_url(mlflow_ui, experiment, decision_run_id)
        if links["MLflow decision run"] is None:
            links[f"MLflow run {decision_run_id} ({settings.tracking_uri})"] = None
    store = open_store(settings)
    for plot in plots:
        name = Path(plot).name
        key = f"reports/{dataset}/{sha256[:12]}/{name}"
        store.put_bytes(key, Path(plot).read_bytes())
        kept = store.location(key)
        stem = Path(name).stem
        create_link_artifact(
            key=_key("plot", dataset, sha256[:12], stem),
            link=kept if "://" in kept else Path(kept).as_uri(),
            link_text=f"{stem} ({dataset}, batch {sha256[:12]})",
            description=f"drift plot of batch {sha256[:12]}",
        )
    markdown = batch_markdown(
        dataset=dataset,
        sha256=sha256,
        validation=validation,
        drift=drift,
        decision=decision,
        links=links,
        title=title,
    )
    create_markdown_artifact(
        markdown=markdown,
        key=_key(title, dataset, sha256[:12]),
        description=f"{title} {sha256[:12]}: validation, drift, decision",
    )
    return markdown
