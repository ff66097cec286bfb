"""The deployments: each flow with its event trigger (or schedule), built in Python.

``build(settings)`` returns ``RunnerDeployment`` objects for ``prefect.serve`` or for the warm
runner (``deployments/runner.py``); ``prefect.yaml`` beside this file declares the same
deployments for work pools. Triggers map the event's payload to flow parameters with Prefect's
templates, so ``mlops.batch.arrived`` with ``{"dataset": "credit", "sha256": "..."}`` becomes
``process_batch(dataset="credit", sha256="...")``.
"""

from __future__ import annotations

from typing import Any

from prefect.events import DeploymentEventTrigger

from flows.alerts import alert, review_drift
from flows.gc import gc
from flows.process_batch import process_batch
from flows.process_labels import process_labels
from flows.reconcile import reconcile
from flows.retrain_evaluate_deploy import retrain_evaluate_deploy
from mlops_core import events
from mlops_core.settings import Settings

TAG = "mlops"  # every run of the loop carries it; the failure automation matches on it
ARRIVAL_PARAMETERS = {
    "dataset": "{{ event.payload.dataset }}",
    "sha256": "{{ event.payload.sha256 }}",
}
# Deployment names as Prefect shows them: "<flow name>/<deployment name>".
PROCESS_BATCH = "process-batch/on-batch-arrived"
PROCESS_LABELS = "process-labels/on-labels-arrived"
RECONCILE = "reconcile/sweep"
GC = "gc/retention"
RETRAIN = "retrain-evaluate-deploy/manual"
REVIEW_DRIFT = "review-drift/on-repeated-drift"
ALERT = "alert/on-failure"


FLOWS = {
    f.name: f
    for f in (
        process_batch,
        process_labels,
        reconcile,
        retrain_evaluate_deploy,
        review_drift,
        alert,
        gc,
    )
}


def arrival_trigger(event: str, flow_name: str) -> DeploymentEventTrigger:
    """A trigger that runs ``flow_name`` on each ``event`` about a dataset, with its payload as parameters."""
    return DeploymentEventTrigger(
        name=f"mlops: {event} -> {flow_name}",
        description=f"Runs {flow_name} for every {event} event, with the payload as parameters.",
        expect={event},
        match={"prefect.resource.id": "mlops.dataset.*"},
        parameters=dict(ARRIVAL_PARAMETERS),
    )


def build(settings: Settings) -> list[Any]:
    """Every deployment of the loop, ready for ``prefect.serve`` or the warm runner."""
    return [
        process_batch.to_deployment(
            name="on-batch-arrived",
            triggers=[arrival_trigger(events.BATCH_ARRIVED, "process-batch")],
            tags=[TAG],
            description="validate -> drift -> performance -> decide -> (retrain) for one batch",
        ),
        process_labels.to_deployment(
            name="on-labels-arrived",
            triggers=[arrival_trigger(events.LABELS_ARRIVED, "process-labels")],
            tags=[TAG],
            description="join delayed labels by id, observe accuracy, decide -> (retrain)",
        ),
        reconcile.to_deployment(
            name="sweep",
            interval=settings.reconcile_interval_seconds,
            parameters={"dataset": "all"},
            tags=[TAG],
            description="process, exactly once, what landed while nothing listened or crashed",
        ),
        gc.to_deployment(
            name="retention",
            interval=settings.gc_interval_hours * 3600,
            parameters={"dataset": "all"},
            tags=[TAG],
            description="delete settled files and logs past MLOPS_RETENTION_DAYS, never what "
            "a registered model's training data or an open rollout references",
        ),
        retrain_evaluate_deploy.to_deployment(
            name="manual",
            tags=[TAG],
            description="the gated subflow on its own: train, gate, promote (run from the UI)",
        ),
        review_drift.to_deployment(
            name="on-repeated-drift",
            tags=[TAG],
            description="run by the repeated-drift automation: alert, then decide with context",
        ),
        # No "mlops" tag: a failing alert must not trigger the failure automation again.
        alert.to_deployment(name="on-failure", description="emits mlops.alert"),
    ]
