"""Tasks of the rollout flow: move the registry's rollout state, watch every model-server replica,
record steps.

A step's polling (waiting for the replicas, then looking at their window every second) is one
task, ``follow_step``, whose loops log nothing to the run: the run's logs keep the verdicts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from mlops_core import events
from mlops_core.adapters.audit import record_rollout_step
from mlops_core.adapters.context import DatasetContext
from mlops_core.delivery import registry_moved
from mlops_core.faults import failpoint
from mlops_core.outcomes import RegistryWrite, StepWatch
from mlops_core.replicas import analyse_replicas, merge_stats
from mlops_core.rollout import RolloutConfig, RolloutVerdict, Verdict
from mlops_core.tags import (
    CHALLENGER,
    ROLLOUT_MODE,
    ROLLOUT_SINCE,
    ROLLOUT_STEP,
    ROLLOUT_VERSION,
    ROLLOUT_WEIGHT,
)

if TYPE_CHECKING:
    import httpx


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def aliases(ctx: DatasetContext) -> dict[str, str]:
    """The version each role points at now."""
    return ctx.registry.aliases()


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def set_step(
    ctx: DatasetContext, version: str, mode: str, weight: float, step: int, champion: str | None
) -> RegistryWrite:
    """The challenger alias and the rollout tags every server replica follows -- unless a person
    moved the aliases since the rollout began (checked under the alias lock: no move between the
    check and the writes)."""
    registry = ctx.registry
    with registry.moves():
        now = registry.aliases()
        if registry_moved(now, champion=champion, version=version, placed=step > 0):
            return RegistryWrite(now, moved=True)
        if now.get(CHALLENGER) != version:
            registry.set_challenger(version)
        # Version and weight before the mode: a reader never sees a new mode with stale values.
        registry.set_tags(
            {
                ROLLOUT_VERSION: version,
                ROLLOUT_WEIGHT: f"{weight:g}",
                ROLLOUT_STEP: str(step),
                ROLLOUT_SINCE: f"{time.time():.3f}",
                ROLLOUT_MODE: mode,
            }
        )
        return RegistryWrite(registry.aliases())


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def end_rollout(
    ctx: DatasetContext, version: str, promote: bool, champion: str | None = None
) -> RegistryWrite:
    """Promote the challenger (old champion to ``previous``) or drop it; tags back to idle.

    A promotion is made under the alias lock, after checking that nobody moved the aliases since
    the rollout began: a person's move is never overwritten by it.
    """
    registry = ctx.registry
    with registry.moves():
        if promote:
            now = registry.aliases()
            if registry_moved(now, champion=champion, version=version, placed=True):
                return RegistryWrite(now, moved=True)
            failpoint("rollout-promoting")
            after = registry.promote(version)
        else:
            registry.drop_challenger(version)
            after = registry.aliases()
        registry.set_tags({ROLLOUT_MODE: "idle", ROLLOUT_WEIGHT: "0", ROLLOUT_STEP: "done"})
        return RegistryWrite(after)


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def stand_down(ctx: DatasetContext, version: str) -> dict[str, str]:
    """After a person moved the registry: stop this rollout's traffic (its challenger alias and
    its rollout tags, if they are still this rollout's) and touch nothing else."""
    registry = ctx.registry
    registry.drop_challenger(version)
    if registry.tags().get(ROLLOUT_VERSION) == version:
        registry.set_tags({ROLLOUT_MODE: "idle", ROLLOUT_WEIGHT: "0", ROLLOUT_STEP: "interrupted"})
    return registry.aliases()


def read_replicas(
    urls: Sequence[str],
    path: str,
    params: Callable[[str], dict[str, Any]] | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
) -> list[dict[str, Any]]:
    """GET ``path`` from every replica at once (``params(url)`` its query): each answer with its
    ``replica`` URL, or ``{"replica": url, "unreachable": why}`` -- no retries, the caller looks
    again. ``transport`` is for tests (``httpx.MockTransport``)."""
    import httpx

    def one(client: httpx.Client, url: str) -> dict[str, Any]:
        try:
            answer = client.get(f"{url.rstrip('/')}{path}", params=params(url) if params else None)
            answer.raise_for_status()
            return {**dict(answer.json()), "replica": url}
        except (httpx.HTTPError, ValueError) as exc:  # ValueError: an answer that is not JSON
            return {"replica": url, "unreachable": f"{type(exc).__name__}: {exc}"[:200]}

    with (
        httpx.Client(timeout=5, transport=transport) as client,
        ThreadPoolExecutor(max_workers=max(1, len(urls))) as pool,
    ):
        return list(pool.map(lambda url: one(client, url), urls))


def _moved(ctx: DatasetContext, champion: str | None, version: str) -> dict[str, str] | None:
    """The aliases, when a person moved them since the rollout placed ``version``; else None."""
    now = ctx.registry.aliases()
    return now if registry_moved(now, champion=champion, version=version, placed=True) else None


def registry_aliases(ctx: DatasetContext, attempts: int = 3) -> dict[str, str]:
    """The version each role points at now, read between steps without a task run of its own
    (the flow looks before each write; a transient registry error is retried)."""
    for attempt in range(attempts):
        try:
            return ctx.registry.aliases()
        except Exception:
            if attempt == attempts - 1:
                raise
            time.sleep(1 + 4 * attempt)
    raise AssertionError("unreachable")


@task(cache_policy=NO_CACHE)
def follow_step(
    ctx: DatasetContext,
    urls: Sequence[str],
    config: RolloutConfig,
    champion: str | None,
    version: str,
    mode: str,
    weight: float,
    step: int,
    deadline: float,
) -> StepWatch:
    """Wait until every replica follows the step, announce that it started, and watch its window
    until a verdict: the verdict and its stats, or the aliases a person moved meanwhile."""
    moved = await_replicas(ctx, urls, version, weight, champion, step, deadline)
    if moved is not None:
        return StepWatch(moved=moved)
    started = replica_clocks(urls)
    emit_event(
        event=events.ROLLOUT_STEP,
        resource=events.dataset_resource(ctx.name),
        payload={
            "version": version,
            "step": step,
            "mode": mode,
            "weight": weight,
            "state": "started",
        },
    )
    return watch_step(ctx, urls, config, champion, version, started, deadline, step)


def await_replicas(
    ctx: DatasetContext,
    urls: Sequence[str],
    version: str,
    weight: float,
    champion: str | None,
    step: int,
    deadline: float,
) -> dict[str, str] | None:
    """Wait until every model-server replica follows the step (each polls the registry; the flow
    does not push): None once they all do, the aliases if a person moves them meanwhile."""
    while True:
        lagging = {
            answer["replica"]: answer.get("unreachable")
            or f"serves challenger {answer.get('challenger')} at weight {answer.get('weight')}"
            for answer in read_replicas(urls, "/routing")
            if answer.get("challenger") != version or answer.get("weight") != weight
        }
        if not lagging:
            return None
        if (now := _moved(ctx, champion, version)) is not None:
            return now
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{len(lagging)} of {len(urls)} model-server replicas did not follow step {step} "
                f"(challenger {version} at weight {weight:g}) in time: "
                + "; ".join(f"{url} ({state})" for url, state in lagging.items())
                + " -- check that they reach the MLflow registry, or take them out of "
                "MLOPS_SERVE_URL"
            )
        time.sleep(0.5)


def replica_clocks(urls: Sequence[str]) -> dict[str, float]:
    """Each replica's clock now, where its step window starts (this machine's for one that
    cannot be read: it adds nothing to the step until it answers again)."""
    here = time.time()
    return {
        answer["replica"]: float(answer.get("now", here))
        for answer in read_replicas(urls, "/rollout/stats", lambda _: {"since": here})
    }


def look(
    urls: Sequence[str],
    started: dict[str, float],
    config: RolloutConfig,
    *,
    past_deadline: bool,
    step: int = 0,
    past_feedback_wait: bool = False,
    transport: httpx.BaseTransport | None = None,
) -> tuple[RolloutVerdict, dict[str, Any]]:
    """One look at the step: every replica's window since it started, added up, and judged (no
    promotion while a replica is missing)."""
    windows = read_replicas(
        urls, "/rollout/stats", lambda url: {"since": started[url]}, transport=transport
    )
    stats = merge_stats(windows)
    verdict = analyse_replicas(
        stats,
        config,
        past_deadline=past_deadline,
        step=step,
        past_feedback_wait=past_feedback_wait,
    )
    return verdict, stats


def watch_step(
    ctx: DatasetContext,
    urls: Sequence[str],
    config: RolloutConfig,
    champion: str | None,
    version: str,
    started: dict[str, float],
    deadline: float,
    step: int = 0,
) -> StepWatch:
    """Analyse the step's window, added up over the replicas, every second until the verdict is
    no longer ``hold`` (or a person moves the registry): the verdict and the stats it rests on.

    With delayed feedback the first step may hold past ``deadline`` for the labels, up to
    ``feedback_wait_seconds`` after it began."""
    feedback_deadline = time.monotonic() + config.feedback_wait_seconds
    while True:
        time.sleep(1.0)
        if (now := _moved(ctx, champion, version)) is not None:
            return StepWatch(moved=now)
        verdict, stats = look(
            urls,
            started,
            config,
            past_deadline=time.monotonic() > deadline,
            step=step,
            past_feedback_wait=time.monotonic() > feedback_deadline,
        )
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
