"""The rollout flow: the challenger reaches users step by step, judged on live traffic.

For each step of the plan (``mlops_core.rollout``): write the split into the registry's rollout
tags, wait until every model-server replica follows it, then analyse the step's window -- every
replica's ``/rollout/stats`` added up (``mlops_core.replicas``) -- until the verdict is no longer
``hold`` (or the deadline passes); a replica that cannot be read holds the step, never promotes
it. ``promote`` moves to the next step and, after the last, makes the challenger champion (the
old one becomes ``previous``); ``rollback`` drops the challenger and returns all traffic to the
champion. Promotion and rollback are registry tags and aliases, which every replica follows.
Every step is an MLflow run and a ``mlops.rollout.step`` event. If a person moves the registry
during the rollout (``mlops rollback``, ``mlops promote``), the flow notices -- it looks before
every write it makes to the registry and every second while it waits -- and stands down: it
takes its own challenger out of traffic and leaves the champion and previous aliases as the
person set them. MLflow has no compare-and-set on aliases, so each look and the writes after it
hold the dataset's alias lock in the ledger's database (``mlops_core.adapters.alias_lock``),
as a person's promote and rollback do: a move cannot land between the look and the write.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from mlops_core import events
from mlops_core.adapters.context import DatasetContext
from mlops_core.delivery import registry_moved
from mlops_core.outcomes import RolloutOutcome, RolloutStatus, RolloutStep
from mlops_core.reporting import rollout_run_label, run_title
from mlops_core.rollout import RolloutConfig, RolloutVerdict, Verdict
from mlops_core.settings import Settings
from mlops_core.tags import CHAMPION
from tasks.events import emit
from tasks.landing import open_dataset
from tasks.report import ending, tag_run
from tasks.rollout import (
    aliases,
    end_rollout,
    follow_step,
    record_step,
    registry_aliases,
    set_step,
    stand_down,
)


def _run_name() -> str:
    """``credit · rollout v5``."""
    parameters = flow_run.parameters
    return run_title(parameters["dataset"], f"rollout v{parameters['version']}")


@flow(name="rollout", flow_run_name=_run_name)
def rollout(
    dataset: str, version: str, server_url: str | None = None, parent_run_id: str | None = None
) -> RolloutOutcome:
    """Roll ``version`` out through the model-server replicas at ``server_url`` (comma-separated;
    default ``MLOPS_SERVE_URL``), judged on the evidence of all of them.

    Returns the ``RolloutOutcome``; the run's final state is named for it (``Promoted``,
    ``Rolled back``, ``Interrupted``, ``Shadow judged``)."""
    return _ended(_roll_out(dataset, version, server_url, parent_run_id))


def _ended(outcome: RolloutOutcome) -> Any:
    """The run's final state, named and tagged for ``outcome``; callers get ``outcome`` back."""
    label = rollout_run_label(outcome)
    get_run_logger().info("rollout of v%s %s: %s", outcome.version, label.state_name, label.message)
    tag_run(label.tags)
    return ending(label, outcome)


def _roll_out(
    dataset: str, version: str, server_url: str | None, parent_run_id: str | None
) -> RolloutOutcome:
    """Every step of the plan, judged; the outcome (the registry moved as it says)."""
    settings = Settings()
    config = settings.rollout_config()
    urls = (
        settings.model_copy(update={"serve_url": server_url}).serve_urls
        if server_url
        else settings.serve_urls
    )
    if not urls:
        raise ValueError("no model server to roll out through: set MLOPS_SERVE_URL")
    ctx = open_dataset(settings, dataset)
    champion = aliases(ctx).get(CHAMPION)
    steps: list[RolloutStep] = []
    for step, (mode, weight) in enumerate(config.plan()):
        placed = set_step(ctx, version, mode, weight, step, champion)
        if placed.moved:
            return _interrupted(ctx, version, step, placed.aliases, steps)
        deadline = time.monotonic() + config.step_seconds
        watched = follow_step(ctx, urls, config, champion, version, mode, weight, step, deadline)
        if watched.moved is not None or watched.verdict is None:
            return _interrupted(ctx, version, step, watched.moved or {}, steps)
        verdict = _approved(watched.verdict, config)
        run_id = record_step(
            ctx, version, step, mode, weight, verdict, watched.stats, parent_run_id
        )
        steps.append(
            RolloutStep(
                step, mode, weight, verdict.verdict.value, verdict.reasons, verdict.requests, run_id
            )
        )
        _announce_verdict(dataset, version, steps[-1])
        now = registry_aliases(ctx)
        if registry_moved(now, champion=champion, version=version, placed=True):
            return _interrupted(ctx, version, step, now, steps)
        if verdict.verdict is Verdict.rollback:
            return _rolled_back(ctx, version, verdict, steps)
    return _finish(ctx, version, config, champion, steps)


def _approved(verdict: RolloutVerdict, config: RolloutConfig) -> RolloutVerdict:
    """An inconclusive step waits for a person's approval in the Prefect UI; others pass as is."""
    if verdict.verdict is not Verdict.approve:
        return verdict
    from prefect.flow_runs import pause_flow_run

    get_run_logger().warning("inconclusive: waiting for a person to approve in the Prefect UI")
    approved = pause_flow_run(timeout=int(config.step_seconds * 10), wait_for_input=bool)
    return verdict.model_copy(update={"verdict": Verdict.promote if approved else Verdict.rollback})


def _announce_verdict(dataset: str, version: str, step: RolloutStep) -> None:
    """The step's verdict as a ``mlops.rollout.step`` event and a log line."""
    emit(
        events.ROLLOUT_STEP,
        dataset,
        {
            "version": version,
            "step": step.step,
            "mode": step.mode,
            "weight": step.weight,
            "verdict": step.verdict,
            "reasons": list(step.reasons),
        },
    )
    get_run_logger().info(
        "step %d (%s %g): %s -- %s",
        step.step,
        step.mode,
        step.weight,
        step.verdict,
        "; ".join(step.reasons),
    )


def _interrupted(
    ctx: DatasetContext, version: str, step: int, now: dict[str, str], steps: list[RolloutStep]
) -> RolloutOutcome:
    """A person moved the registry: take this rollout's challenger out of traffic, stop."""
    get_run_logger().warning("the registry was moved by hand (%s); the rollout stands down", now)
    after = stand_down(ctx, version)
    emit(
        events.ROLLOUT_STEP,
        ctx.name,
        {"version": version, "step": step, "state": "interrupted", "aliases": after},
    )
    return RolloutOutcome(RolloutStatus.interrupted, version, after, tuple(steps))


def _rolled_back(
    ctx: DatasetContext, version: str, verdict: RolloutVerdict, steps: list[RolloutStep]
) -> RolloutOutcome:
    """The step failed: all traffic back to the champion, the challenger dropped."""
    after = end_rollout(ctx, version, promote=False).aliases
    emit(
        events.MODEL_ROLLED_BACK,
        ctx.name,
        {"version": version, "champion": after.get(CHAMPION), "reasons": list(verdict.reasons)},
    )
    return RolloutOutcome(RolloutStatus.rolled_back, version, after, tuple(steps))


def _finish(
    ctx: DatasetContext,
    version: str,
    config: RolloutConfig,
    champion: str | None,
    steps: list[RolloutStep],
) -> RolloutOutcome:
    """Every step passed: promote (a shadow rollout only judges, it never promotes)."""
    if config.mode == "shadow":
        after = end_rollout(ctx, version, promote=False).aliases
        return RolloutOutcome(RolloutStatus.shadow_judged, version, after, tuple(steps))
    ended = end_rollout(ctx, version, promote=True, champion=champion)
    if ended.moved:  # a person moved the aliases after the last step's check
        return _interrupted(ctx, version, len(steps) - 1, ended.aliases, steps)
    after = ended.aliases
    emit(
        events.MODEL_PROMOTED,
        ctx.name,
        {"version": version, "previous": champion, "rollout": config.mode},
    )
    return RolloutOutcome(RolloutStatus.promoted, version, after, tuple(steps))
