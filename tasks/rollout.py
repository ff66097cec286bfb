"""Tasks of the rollout flow: move the registry's rollout state, watch the server, record steps."""

from __future__ import annotations

import time
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from mlops_core.adapters.audit import record_rollout_step
from mlops_core.adapters.context import DatasetContext
from mlops_core.delivery import registry_moved
from mlops_core.outcomes import StepWatch
from mlops_core.rollout import RolloutConfig, RolloutVerdict, Verdict, analyse
from mlops_core.tags import CHALLENGER, ROLLOUT_MODE, ROLLOUT_STEP, ROLLOUT_VERSION, ROLLOUT_WEIGHT


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def aliases(ctx: DatasetContext) -> dict[str, str]:
    """The version each role points at now."""
    return ctx.registry.aliases()


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def set_step(ctx: DatasetContext, version: str, mode: str, weight: float, step: int) -> None:
    """The challenger alias and the rollout tags every server replica follows."""
    registry = ctx.registry
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
def end_rollout(ctx: DatasetContext, version: str, promote: bool) -> dict[str, str]:
    """Promote the challenger (old champion to ``previous``) or drop it; tags back to idle."""
    registry = ctx.registry
    if promote:
        after = registry.promote(version)
    else:
        registry.drop_challenger(version)
        after = registry.aliases()
    registry.set_tags({ROLLOUT_MODE: "idle", ROLLOUT_WEIGHT: "0", ROLLOUT_STEP: "done"})
    return after


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def stand_down(ctx: DatasetContext, version: str) -> dict[str, str]:
    """After a person moved the registry: stop this rollout's traffic (its challenger alias and
    its rollout tags, if they are still this rollout's) and touch nothing else."""
    registry = ctx.registry
    registry.drop_challenger(version)
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


def _moved(ctx: DatasetContext, champion: str | None, version: str) -> dict[str, str] | None:
    """The aliases, when a person moved them since the rollout placed ``version``; else None."""
    now = ctx.registry.aliases()
    return now if registry_moved(now, champion=champion, version=version, placed=True) else None


@task(cache_policy=NO_CACHE)
def await_server(
    ctx: DatasetContext,
    url: str,
    version: str,
    weight: float,
    champion: str | None,
    step: int,
    deadline: float,
) -> dict[str, str] | None:
    """Wait until the model server follows the step (it polls the registry; the flow does not
    push): None once it does, the aliases if a person moves them meanwhile."""
    while True:
        routing = server_get(url, "/routing")
        if routing.get("challenger") == version and routing.get("weight") == weight:
            return None
        if (now := _moved(ctx, champion, version)) is not None:
            return now
        if time.monotonic() > deadline:
            raise TimeoutError(f"the model server at {url} did not follow step {step}")
        time.sleep(0.5)


@task(cache_policy=NO_CACHE)
def watch_step(
    ctx: DatasetContext,
    url: str,
    config: RolloutConfig,
    champion: str | None,
    version: str,
    started: float,
    deadline: float,
) -> StepWatch:
    """Analyse the step's window every second until the verdict is no longer ``hold`` (or a
    person moves the registry): the verdict and the stats it rests on."""
    while True:
        time.sleep(1.0)
        if (now := _moved(ctx, champion, version)) is not None:
            return StepWatch(moved=now)
        stats = server_get(url, "/rollout/stats", {"since": started})
        verdict = analyse(stats, config, past_deadline=time.monotonic() > deadline)
        if verdict.verdict is not Verdict.hold:
            return StepWatch(verdict=verdict, stats=stats)


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def record_step(
    ctx: DatasetContext,
    version: str,
    step: int,
    mode: str,
    weight: float,
    verdict: RolloutVerdict,
    stats: dict[str, Any],
    parent_run_id: str | None,
) -> str:
    """Each step and its verdict as an MLflow run (``mlops.run_type=rollout``)."""
    return record_rollout_step(
        ctx.registry, version, step, mode, weight, verdict, stats, parent_run_id
    )
