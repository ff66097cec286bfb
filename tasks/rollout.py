"""Tasks of the rollout flow: move the registry's rollout state, read the server, record steps."""

from __future__ import annotations

import json
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from mlops_core.adapters.registry import CHALLENGER, ModelRegistry
from mlops_core.rollout import RolloutVerdict
from mlops_core.serving.follower import ROLLOUT_MODE, ROLLOUT_STEP, ROLLOUT_VERSION, ROLLOUT_WEIGHT
from mlops_core.settings import Settings


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def aliases(settings: Settings, dataset: str) -> dict[str, str]:
    return ModelRegistry(settings, dataset).aliases()


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def set_step(
    settings: Settings, dataset: str, version: str, mode: str, weight: float, step: int
) -> None:
    """The challenger alias and the rollout tags every server replica follows."""
    registry = ModelRegistry(settings, dataset)
    if registry.aliases().get(CHALLENGER) != version:
        registry.set_challenger(version)
    # Version and weight before the mode: a reader never sees a new mode with stale values.
    registry.set_tags(
        {
            ROLLOUT_VERSION: version,
            ROLLOUT_WEIGHT: f"{weight:g}",
            ROLLOUT_STEP: str(step),
            ROLLOUT_MODE: mode,
        }
    )


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def end_rollout(settings: Settings, dataset: str, version: str, promote: bool) -> dict[str, str]:
    """Promote the challenger (old champion to ``previous``) or drop it; tags back to idle."""
    registry = ModelRegistry(settings, dataset)
    if promote:
        after = registry.promote(version)
    else:
        if registry.aliases().get(CHALLENGER) == version:
            registry.client.delete_registered_model_alias(dataset, CHALLENGER)
        after = registry.aliases()
    registry.set_tags({ROLLOUT_MODE: "idle", ROLLOUT_WEIGHT: "0", ROLLOUT_STEP: "done"})
    return after


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def stand_down(settings: Settings, dataset: str, version: str) -> dict[str, str]:
    """After a person moved the registry: stop this rollout's traffic (its challenger alias and
    its rollout tags, if they are still this rollout's) and touch nothing else."""
    registry = ModelRegistry(settings, dataset)
    if registry.aliases().get(CHALLENGER) == version:
        registry.client.delete_registered_model_alias(dataset, CHALLENGER)
    if registry.tags().get(ROLLOUT_VERSION) == version:
        registry.set_tags({ROLLOUT_MODE: "idle", ROLLOUT_WEIGHT: "0", ROLLOUT_STEP: "interrupted"})
    return registry.aliases()


@task(retries=3, retry_delay_seconds=[1, 2, 4], cache_policy=NO_CACHE)
def server_get(url: str, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """GET a JSON route of the model server (the rollout's only view of live traffic)."""
    import httpx

    answer = httpx.get(f"{url.rstrip('/')}{path}", params=params, timeout=10)
    answer.raise_for_status()
    return dict(answer.json())


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def record_step(
    settings: Settings,
    dataset: str,
    version: str,
    step: int,
    mode: str,
    weight: float,
    verdict: RolloutVerdict,
    stats: dict[str, Any],
    parent_run_id: str | None,
) -> str:
    """Each step and its verdict as an MLflow run (``mlops.run_type=rollout``)."""
    registry = ModelRegistry(settings, dataset)
    tags = {
        "mlops.run_type": "rollout",
        "mlops.batch_sha256": "",
        "mlops.model_version": version,
        "mlops.rollout.step": str(step),
        "mlops.rollout.mode": mode,
        "mlops.rollout.verdict": verdict.verdict.value,
        "mlops.reasons": "; ".join(verdict.reasons)[:5000],
    }
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    client = registry.client
    run = client.create_run(
        registry.experiment_id(), tags=tags, run_name=f"rollout-v{version}-step{step}-{mode}"
    )
    status = "FAILED"
    try:
        client.log_metric(run.info.run_id, "weight", weight)
        client.log_metric(run.info.run_id, "challenger_requests", verdict.requests)
        client.log_text(run.info.run_id, json.dumps(verdict.to_dict(), indent=2), "verdict.json")
        client.log_text(run.info.run_id, json.dumps(stats, indent=2, default=str), "stats.json")
        status = "FINISHED"
    finally:
        client.set_terminated(run.info.run_id, status=status)
    return str(run.info.run_id)
