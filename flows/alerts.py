"""Flows that automations run: an alert, and a drift review with the context of repeated drift."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.retrain_evaluate_deploy import retrain_evaluate_deploy
from mlops_core import events
from mlops_core.policy import Action
from mlops_core.settings import Settings
from tasks.decision import review_recent_drift
from tasks.events import emit
from tasks.landing import open_dataset
from tasks.retrain import request_retrain


@flow(name="alert", flow_run_name="alert-{dataset}")
def alert(dataset: str, what: str, detail: str = "") -> None:
    """Emit ``mlops.alert`` (what an automation turns a failure or a pattern into)."""
    emit(events.ALERT, dataset, {"what": what, "detail": detail})


@flow(name="review-drift", flow_run_name="review-drift-{dataset}")
def review_drift(dataset: str, alarms: int = 3, window_minutes: int = 60) -> dict[str, Any]:
    """Repeated drift: alert, then decide on the recent batches together, with that context."""
    ctx = open_dataset(Settings(), dataset)
    emit(
        events.ALERT,
        dataset,
        {"what": f"drift detected in {alarms} batches within {window_minutes} minutes"},
    )
    review = review_recent_drift(ctx, alarms, window_minutes)
    if review is None:
        return {"action": None, "reason": "no processed batches to review"}
    decision, run_id = review.decision, review.run_id
    result: dict[str, Any] = {
        "action": decision.action.value,
        "reasons": list(decision.reasons),
        "run_id": run_id,
    }
    if decision.action is Action.retrain:
        if run_id:  # reconcile carries it out if this run dies before the subflow claims it
            request_retrain(ctx, run_id, "")
        result["retrain"] = retrain_evaluate_deploy(
            dataset=dataset, decision_run_id=run_id
        ).to_dict()
    return result
