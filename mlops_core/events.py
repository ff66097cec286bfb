"""Every event name of the loop, in one place; triggers and emitters import these constants."""

from __future__ import annotations

BATCH_ARRIVED = "mlops.batch.arrived"
LABELS_ARRIVED = "mlops.labels.arrived"
BATCH_VALIDATED = "mlops.batch.validated"
BATCH_QUARANTINED = "mlops.batch.quarantined"
BATCH_DEAD_LETTERED = "mlops.batch.dead_lettered"  # failed MLOPS_MAX_BATCH_ATTEMPTS times
DRIFT_DETECTED = "mlops.drift.detected"
DECISION_MADE = "mlops.decision.made"
MODEL_REGISTERED = "mlops.model.registered"
ROLLOUT_STEP = "mlops.rollout.step"
MODEL_PROMOTED = "mlops.model.promoted"
MODEL_ROLLED_BACK = "mlops.model.rolled_back"
ALERT = "mlops.alert"

ALL_EVENTS = (
    BATCH_ARRIVED,
    LABELS_ARRIVED,
    BATCH_VALIDATED,
    BATCH_QUARANTINED,
    BATCH_DEAD_LETTERED,
    DRIFT_DETECTED,
    DECISION_MADE,
    MODEL_REGISTERED,
    ROLLOUT_STEP,
    MODEL_PROMOTED,
    MODEL_ROLLED_BACK,
    ALERT,
)


def dataset_resource(dataset: str) -> dict[str, str]:
    """The Prefect event resource for a dataset: ``mlops.dataset.<name>``."""
    return {"prefect.resource.id": f"mlops.dataset.{dataset}", "prefect.resource.name": dataset}
