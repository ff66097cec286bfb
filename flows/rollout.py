"""The rollout flow: the challenger reaches users step by step, judged on live traffic.

For each step of the plan (``mlops_core.rollout``): write the split into the registry's rollout
tags, wait until the model server follows it, then analyse the step's window from the server's
``/rollout/stats`` until the verdict is no longer ``hold`` (or the deadline passes). ``promote``
moves to the next step and, after the last, makes the challenger champion (the old one becomes
``previous``); ``rollback`` drops the challenger and returns all traffic to the champion. Every
step is an MLflow run and a ``mlops.rollout.step`` event. If a person moves the registry during
the rollout (``mlops rollback``, ``mlops promote``), the flow notices -- it looks before every
write it makes to the registry and every second while it waits -- and stands down: it takes its
own challenger out of traffic and leaves the champion and previous aliases as the person set
them. (MLflow has no compare-and-set on aliases, so a move in the instant between the look and
the write can still be overwritten; the window is one registry round trip.)
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger

from mlops_core import events
from mlops_core.rollout import Verdict, analyse
from mlops_core.settings import Settings
from tasks.events import emit
from tasks.rollout import aliases, end_rollout, record_step, server_get, set_step, stand_down


@flow(name="rollout", flow_run_name="rollout-{dataset}-v{version}")
def rollout(
    dataset: str, version: str, server_url: str | None = None, parent_run_id: str | None = None
) -> dict[str, Any]:
    """Roll ``version`` out through the model server at ``server_url`` (or ``MLOPS_SERVE_URL``)."""
    settings = Settings()
    logger = get_run_logger()
    config = settings.rollout_config()
    url = server_url or settings.serve_url
    if not url:
        raise ValueError("no model server to roll out through: set MLOPS_SERVE_URL")
    before = aliases(settings, dataset)
    champion = before.get("champion")
    steps: list[dict[str, Any]] = []
    placed = False  # once the first step is set, the challenger alias must stay this version

    def moved() -> dict[str, str] | None:
        """The aliases, when a person moved them since the rollout began; None otherwise."""
        now = aliases(settings, dataset)
        if now.get("champion") != champion or (placed and now.get("challenger") != version):
            return now
        return None

    def interrupted(step: int, now: dict[str, str]) -> dict[str, Any]:
        logger.warning("the registry was moved by hand (%s); the rollout stands down", now)
        after = stand_down(settings, dataset, version)
        emit(
            events.ROLLOUT_STEP,
            dataset,
            {"version": version, "step": step, "state": "interrupted", "aliases": after},
        )
        return {"status": "interrupted", "version": version, "aliases": after, "steps": steps}

    for step, (mode, weight) in enumerate(config.plan()):
        if (now := moved()) is not None:
            return interrupted(step, now)
        set_step(settings, dataset, version, mode, weight, step)
        placed = True
        deadline = time.monotonic() + config.step_seconds
        while True:  # wait until the server follows the registry (it polls; also refresh)
            routing = server_get(url, "/routing")
            if routing.get("challenger") == version and routing.get("weight") == weight:
                break
            if (now := moved()) is not None:
                return interrupted(step, now)
            if time.monotonic() > deadline:
                raise TimeoutError(f"the model server at {url} did not follow step {step}")
            time.sleep(0.5)
        started = float(server_get(url, "/rollout/stats", {"since": time.time()})["now"])
        emit(
            events.ROLLOUT_STEP,
            dataset,
            {"version": version, "step": step, "mode": mode, "weight": weight, "state": "started"},
        )
        while True:
            time.sleep(1.0)
            if (now := moved()) is not None:
                return interrupted(step, now)
            stats = server_get(url, "/rollout/stats", {"since": started})
            verdict = analyse(stats, config, past_deadline=time.monotonic() > deadline)
            if verdict.verdict is not Verdict.hold:
                break
        if verdict.verdict is Verdict.approve:
            from prefect.flow_runs import pause_flow_run

            logger.warning("inconclusive: waiting for a person to approve in the Prefect UI")
            approved = pause_flow_run(timeout=int(config.step_seconds * 10), wait_for_input=bool)
            verdict = verdict.model_copy(
                update={"verdict": Verdict.promote if approved else Verdict.rollback}
            )
        run_id = record_step(
            settings, dataset, version, step, mode, weight, verdict, stats, parent_run_id
        )
        steps.append(
            {
                "step": step,
                "mode": mode,
                "weight": weight,
                "verdict": verdict.verdict.value,
                "reasons": list(verdict.reasons),
                "requests": verdict.requests,
                "run_id": run_id,
            }
        )
        emit(
            events.ROLLOUT_STEP,
            dataset,
            {
                "version": version,
                "step": step,
                "mode": mode,
                "weight": weight,
                "verdict": verdict.verdict.value,
                "reasons": list(verdict.reasons),
            },
        )
        logger.info(
            "step %d (%s %g): %s -- %s",
            step,
            mode,
            weight,
            verdict.verdict.value,
            "; ".join(verdict.reasons),
        )
        if (now := moved()) is not None:
            return interrupted(step, now)
        if verdict.verdict is Verdict.rollback:
            after = end_rollout(settings, dataset, version, promote=False)
            emit(
                events.MODEL_ROLLED_BACK,
                dataset,
                {
                    "version": version,
                    "champion": after.get("champion"),
                    "reasons": list(verdict.reasons),
                },
            )
            return {"status": "rolled back", "version": version, "aliases": after, "steps": steps}
    if config.mode == "shadow":
        after = end_rollout(settings, dataset, version, promote=False)
        return {"status": "shadow judged", "version": version, "aliases": after, "steps": steps}
    after = end_rollout(settings, dataset, version, promote=True)
    emit(
        events.MODEL_PROMOTED,
        dataset,
        {"version": version, "previous": champion, "rollout": config.mode},
    )
    return {"status": "promoted", "version": version, "aliases": after, "steps": steps}
