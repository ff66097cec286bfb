"""The automations, created idempotently (by name) when the stack starts.

* **repeated drift**: ``mlops.drift.detected`` three times within an hour for one dataset ->
  run ``review-drift`` (it emits ``mlops.alert`` and decides on those batches together);
* **flow run failed**: any run tagged ``mlops`` fails or crashes -> run ``alert`` (it emits
  ``mlops.alert`` naming the run).
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from prefect.automations import Automation
from prefect.events.actions import RunDeployment
from prefect.events.schemas.automations import EventTrigger, Posture

from deployments.definitions import TAG
from mlops_core import events

REPEATED_DRIFT = "mlops: drift in 3 batches within an hour"
FLOW_RUN_FAILED = "mlops: a flow run failed"


def specs(review_drift_id: UUID, alert_id: UUID) -> list[Automation]:
    """The repeated-drift and failed-run automations, wired to those two deployments (not yet saved)."""
    return [
        Automation(
            name=REPEATED_DRIFT,
            description="Three drift alarms for one dataset within an hour: alert and review.",
            trigger=EventTrigger(
                expect={events.DRIFT_DETECTED},
                match={"prefect.resource.id": "mlops.dataset.*"},
                for_each={"prefect.resource.id"},
                posture=Posture.Reactive,
                threshold=3,
                within=timedelta(hours=1),
            ),
            actions=[
                RunDeployment(
                    source="selected",
                    deployment_id=review_drift_id,
                    parameters={
                        "dataset": "{{ event.resource.name }}",
                        "alarms": 3,
                        "window_minutes": 60,
                    },
                )
            ],
        ),
        Automation(
            name=FLOW_RUN_FAILED,
            description="A flow run of the loop failed or crashed: emit mlops.alert.",
            trigger=EventTrigger(
                expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
                match={"prefect.resource.id": "prefect.flow-run.*"},
                match_related={"prefect.resource.id": f"prefect.tag.{TAG}"},
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[
                RunDeployment(
                    source="selected",
                    deployment_id=alert_id,
                    parameters={
                        "dataset": "{{ flow_run.parameters.get('dataset', 'all') }}",
                        "what": "flow run {{ flow_run.name }} {{ event.event.split('.')[-1] }}",
                        "detail": "{{ event.resource.id }}",
                    },
                )
            ],
        ),
    ]


def ensure(review_drift_id: UUID, alert_id: UUID) -> list[Automation]:
    """Create each automation, or update the one of the same name; return them."""
    done = []
    for wanted in specs(review_drift_id, alert_id):
        try:
            existing = Automation.read(name=wanted.name)
        except ValueError:
            existing = None
        if existing is None:
            done.append(wanted.create())
        else:
            wanted.id = existing.id
            wanted.update()
            done.append(wanted)
    return done
