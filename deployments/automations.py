"""The automations, created idempotently (by name) when the stack starts.

* **repeated drift**: ``mlops.drift.detected`` three times within an hour for one dataset ->
  run ``review-drift`` (it emits ``mlops.alert`` and decides on those batches together);
* **flow run failed**: any run tagged ``mlops`` fails or crashes -> run ``alert`` (it emits
  ``mlops.alert`` naming the run);
* **notify** (only with ``MLOPS_ALERT_WEBHOOK_URL``): every ``mlops.alert``, drift alarm,
  quarantined batch and rollback of a dataset -> a POST to that URL through the Prefect
  notification block ``mlops-alert-webhook``, so alerts reach people without Prometheus.
  Without the setting, a notify automation and block left by an earlier start are deleted:
  unsetting the URL stops the messages, and the URL (a secret) does not stay behind.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from uuid import UUID

from prefect.automations import Automation
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.events.actions import RunDeployment, SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture

from deployments.definitions import TAG
from mlops_core import events
from mlops_core.settings import Settings

REPEATED_DRIFT = "mlops: drift in 3 batches within an hour"
FLOW_RUN_FAILED = "mlops: a flow run failed"
NOTIFY = "mlops: notify"
WEBHOOK_BLOCK = "mlops-alert-webhook"

# The events a person should hear about: the alerts (failed runs, a champion below the line,
# repeated drift, a failed retrain), and the drift, quarantine and rollback that the loop
# otherwise handles by itself -- the conditions of deployments/alerts.yml, without Prometheus.
NOTIFY_ON = (
    events.ALERT,
    events.DRIFT_DETECTED,
    events.BATCH_QUARANTINED,
    events.MODEL_ROLLED_BACK,
)

# Jinja, rendered by the Prefect server. Payloads differ by event (an alert has what and detail or
# reason; drift its p-value and drivers; a rollback its reasons), so each line shows only when its
# field is there.
NOTIFY_SUBJECT = "[mlops] {{ event.resource.name }}: {{ event.payload.what or event.event }}"
NOTIFY_BODY = (
    "{{ event.event }} for dataset {{ event.resource.name }} at {{ event.occurred }}\n"
    "{% if event.payload.what %}what: {{ event.payload.what }}\n{% endif %}"
    "{% if event.payload.detail %}detail: {{ event.payload.detail }}\n{% endif %}"
    "{% if event.payload.reason %}reason: {{ event.payload.reason }}\n{% endif %}"
    "{% if event.payload.reasons %}reasons: {{ event.payload.reasons | join('; ') }}\n{% endif %}"
    "{% if event.payload.p_value is number %}drift p-value: {{ event.payload.p_value }}"
    "{% if event.payload.drivers %}, drivers: {{ event.payload.drivers | join(', ') }}{% endif %}"
    "\n{% endif %}"
    "{% if event.payload.version %}model version: {{ event.payload.version }}\n{% endif %}"
    "{% if event.payload.sha256 %}batch: {{ event.payload.sha256 }}\n{% endif %}"
)


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


def webhook_block(url: str) -> CustomWebhookNotificationBlock:
    """The notification block that POSTs JSON ``text``, ``subject`` and ``body`` to ``url``.

    The URL is kept among the block's secrets (Slack's and Teams' webhook URLs carry their
    token), so the Prefect UI and API show it obscured.
    """
    return CustomWebhookNotificationBlock(
        name=WEBHOOK_BLOCK,
        url="{{ webhook_url }}",
        method="POST",
        json_data={
            "text": "{{ subject }}\n{{ body }}",
            "subject": "{{ subject }}",
            "body": "{{ body }}",
        },
        secrets={"webhook_url": url},
    )


def notify_spec(block_document_id: UUID) -> Automation:
    """The automation sending each alert-worthy dataset event to that notification block."""
    return Automation(
        name=NOTIFY,
        description="An alert, drift, a quarantined batch or a rollback: notify people "
        "(MLOPS_ALERT_WEBHOOK_URL).",
        trigger=EventTrigger(
            expect=set(NOTIFY_ON),
            match={"prefect.resource.id": "mlops.dataset.*"},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[
            SendNotification(
                block_document_id=block_document_id, subject=NOTIFY_SUBJECT, body=NOTIFY_BODY
            )
        ],
    )


def ensure(
    review_drift_id: UUID, alert_id: UUID, settings: Settings | None = None
) -> list[Automation]:
    """Create each automation, or update the one of the same name; return them.

    With ``settings.alert_webhook_url`` (default: ``Settings()`` from the environment) the
    notification block is saved and "mlops: notify" ensured too; without it both are deleted.
    """
    settings = settings or Settings()
    wanted = specs(review_drift_id, alert_id)
    if settings.alert_webhook_url is not None:
        url = settings.alert_webhook_url.get_secret_value()
        wanted.append(notify_spec(webhook_block(url).save(WEBHOOK_BLOCK, overwrite=True)))
    else:
        forget_notifications()
    return [_create_or_update(automation) for automation in wanted]


def forget_notifications() -> None:
    """Delete the notify automation and its block if an earlier start made them."""
    with contextlib.suppress(ValueError):  # none: nothing to forget
        Automation.read(name=NOTIFY).delete()
    with contextlib.suppress(ValueError):
        CustomWebhookNotificationBlock.delete(WEBHOOK_BLOCK)


def _create_or_update(wanted: Automation) -> Automation:
    try:
        existing = Automation.read(name=wanted.name)
    except ValueError:
        return wanted.create()
    wanted.id = existing.id
    wanted.update()
    return wanted
