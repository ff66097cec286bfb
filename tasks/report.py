"""Tasks that publish what a person sees in the Prefect UI: the batch report, the run's outcome."""

from __future__ import annotations

import re
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, State

from mlops_core.adapters.context import DatasetContext
from mlops_core.adapters.stack_state import read_state
from mlops_core.outcomes import RetrainOutcome
from mlops_core.reporting import MlflowPlace, RunLabel, batch_markdown, md_text
from mlops_core.settings import Settings

# Where record_batch_decision logs the drift plots in the decision run.
PLOTS_FOLDER = "drift"


def _key(*parts: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")[:100]


def mlflow_ui(settings: Settings) -> str | None:
    """The MLflow UI a browser can open now: the running stack's, or an ``http`` tracking
    server's; None when there is none (a SQLite tracking URI and no `mlops up`)."""
    state = read_state(settings)
    if state is not None and state.mlflow_ui_url:
        return state.mlflow_ui_url
    uri = settings.tracking_uri
    return uri if uri.startswith(("http://", "https://")) else None


@task(cache_policy=NO_CACHE)
def publish_report(
    ctx: DatasetContext,
    sha256: str,
    validation: dict[str, Any] | None,
    drift: dict[str, Any] | None,
    decision: dict[str, Any] | None,
    decision_run_id: str | None,
    title: str = "Batch",
    original_name: str | None = None,
    retrain: RetrainOutcome | None = None,
) -> str:
    """A markdown artifact: verdicts, drift tables, decision, cost-benefit, retrain, MLflow run
    and its drift plots embedded from the MLflow server (links built from the URLs of now).

    It runs after the batch is settled: a failure (MLflow or the Prefect API unreachable) is
    logged and returns "", it never fails a run whose batch is already accounted for."""
    try:
        return _publish(
            ctx, sha256, validation, drift, decision, decision_run_id, title, original_name, retrain
        )
    except Exception as exc:  # noqa: BLE001 -- the ledger and MLflow hold the outcome already
        get_run_logger().error(
            "could not publish the %s report of %s: %s: %s",
            title.lower(),
            original_name or sha256[:12],
            type(exc).__name__,
            exc,
        )
        return ""


def _publish(
    ctx: DatasetContext,
    sha256: str,
    validation: dict[str, Any] | None,
    drift: dict[str, Any] | None,
    decision: dict[str, Any] | None,
    decision_run_id: str | None,
    title: str,
    original_name: str | None,
    retrain: RetrainOutcome | None,
) -> str:
    settings, dataset = ctx.settings, ctx.name
    plots = _plots(ctx, decision_run_id) if drift is not None else []
    place = MlflowPlace(
        tracking_uri=settings.tracking_uri,
        ui=mlflow_ui(settings),
        experiment_id=ctx.registry.experiment_id() if decision_run_id else None,
        run_id=decision_run_id,
    )
    markdown = batch_markdown(
        dataset=dataset,
        sha256=sha256,
        original_name=original_name,
        validation=validation,
        drift=drift,
        decision=decision,
        retrain=retrain,
        policy=settings.policy_config() if decision is not None else None,
        mlflow=place,
        plots=plots,
        title=title,
    )
    create_markdown_artifact(
        markdown=markdown,
        key=_key(title, dataset, sha256[:12]),
        description=f"{title} {md_text(original_name or sha256[:12])}: validation, drift, decision",
    )
    return markdown


def _plots(ctx: DatasetContext, run_id: str | None) -> list[str]:
    """The drift plots the decision run holds (artifact paths), as MLflow will serve them."""
    if not run_id:
        return []
    listed = ctx.registry.client.list_artifacts(run_id, PLOTS_FOLDER)
    return sorted(a.path for a in listed if not a.is_dir and a.path.endswith(".png"))


@task(cache_policy=NO_CACHE)
def tag_run(tags: tuple[str, ...]) -> list[str]:
    """Add ``tags`` to this flow run, so the runs list filters on its outcome; its tags after.

    Only the UI depends on them: a failure is logged and does not fail the run."""
    from prefect import get_client
    from prefect.runtime import flow_run

    if not tags:
        return []
    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run.id)
            merged = sorted(set(run.tags) | set(tags))
            client.update_flow_run(run.id, tags=merged)
        return merged
    except Exception as exc:  # noqa: BLE001 -- a missing tag must not undo a settled batch
        get_run_logger().warning("could not tag this run %s: %s", list(tags), exc)
        return []


def ending(label: RunLabel, data: Any) -> State[Any]:
    """The run's final state: Completed, named for its outcome (``Quarantined``, ``Drift``,
    ``Retrain refused``, ``Promoted``...), with ``data`` as the value callers get back."""
    return Completed(name=label.state_name, message=label.message[:500], data=data)
