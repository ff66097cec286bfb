"""The warm runner: executes the deployments' triggered runs inside one long-lived process.

``prefect.serve`` polls for scheduled runs every 10 s by default and starts each run in a fresh
(spawned) interpreter, which must import polars, Great Expectations, alibi-detect and MLflow
again -- seconds per run. The warm runner registers the same deployments, polls every
``MLOPS_RUNNER_POLL_SECONDS`` (0.25 s), claims a due run by proposing ``Pending`` (the server's
orchestration rules accept one claimant only, so two runners never execute the same run), and
runs it with Prefect's own engine (``prefect.flow_engine.run_flow``) in a worker thread of this
warm process, where the imports, the fitted drift detectors and the loaded champion stay in
memory. States, logs, artifacts and events are exactly those of any Prefect flow run.

The Prefect UI shows a deployment "Ready" only while something polls for its runs through
``POST /deployments/get_scheduled_flow_runs`` (the call ``prefect.serve``'s runner makes): that
endpoint marks the deployments READY and stamps ``last_polled``, and the server's foreman marks
them NOT_READY again once ``last_polled`` is older than 60 s. The warm runner's fast poll reads
flow runs through the generic filter (no write per poll on the server's database), so it also
makes that call every ``HEARTBEAT_SECONDS``: served deployments show as Ready, and turn Not Ready
within a minute of the runner stopping.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

logger = logging.getLogger("mlops.runner")

# Well inside the foreman's 60 s (PREFECT_SERVER_SERVICES_FOREMAN_DEPLOYMENT_LAST_POLLED_TIMEOUT_SECONDS).
HEARTBEAT_SECONDS = 10.0


class QuietCompletions(logging.Filter):
    """Drops the task engine's "Finished in state Completed()" lines (one per task, about 15 a
    batch), so a run's logs in the Prefect UI read as its story: the verdicts, the decision and
    the outcome the flow logs. Failures, retries and every other line pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a task's completion line, True for every other record."""
        return not (
            record.levelno == logging.INFO
            and record.getMessage().startswith("Finished in state Completed(")
        )


def quiet_task_completions() -> None:
    """Install ``QuietCompletions`` on Prefect's task-run logger in this process (once)."""
    task_runs = logging.getLogger("prefect.task_runs")
    if not any(isinstance(f, QuietCompletions) for f in task_runs.filters):
        task_runs.addFilter(QuietCompletions())


class WarmRunner:
    """Register deployments, then execute their due runs in this process until stopped."""

    def __init__(
        self,
        deployments: list[Any],
        flows: dict[str, Any],
        *,
        poll_seconds: float = 0.25,
        workers: int = 2,
    ):
        self.deployments = deployments
        self.flows_by_name = flows
        self.poll_seconds = poll_seconds
        self.workers = workers
        self.flows: dict[UUID, Any] = {}
        self.ids: dict[str, UUID] = {}
        self.stopped = threading.Event()
        self._running: dict[UUID, Future[Any]] = {}

    def register(self) -> dict[str, UUID]:
        """Create or update every deployment on the server; return their ids by full name."""
        for deployment in self.deployments:
            deployment_id = deployment.apply()
            self.flows[deployment_id] = self.flows_by_name[deployment.flow_name]
            self.ids[f"{deployment.flow_name}/{deployment.name}"] = deployment_id
        return self.ids

    def due_runs(self, client: Any) -> list[Any]:
        """The scheduled runs of these deployments now due, earliest first, two per worker at most."""
        from prefect.client.schemas.filters import (
            DeploymentFilter,
            DeploymentFilterId,
            FlowRunFilter,
            FlowRunFilterNextScheduledStartTime,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType
        from prefect.client.schemas.sorting import FlowRunSort

        return list(
            client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])
                    ),
                    next_scheduled_start_time=FlowRunFilterNextScheduledStartTime(
                        before_=datetime.now(UTC)
                    ),
                ),
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=list(self.flows))),
                sort=FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC,
                limit=self.workers * 2,
            )
        )

    def heartbeat(self, client: Any) -> None:
        """Tell the server these deployments are served (they show "Ready" in the Prefect UI);
        a failure is logged and retried at the next heartbeat."""
        try:
            client.get_scheduled_flow_runs_for_deployments(
                list(self.flows), scheduled_before=datetime.now(UTC), limit=1
            )
        except Exception as exc:  # noqa: BLE001 -- the server may be restarting
            logger.warning("could not mark the deployments ready: %s", exc)

    def claim(self, client: Any, flow_run: Any) -> bool:
        """Propose ``Pending``; true only when the server accepted this runner as the claimant."""
        from prefect.client.schemas.responses import SetStateStatus
        from prefect.states import Pending

        try:
            result = client.set_flow_run_state(flow_run.id, Pending(), force=False)
        except Exception as exc:  # noqa: BLE001 -- a failed claim is retried next poll
            logger.warning("could not claim flow run %s: %s", flow_run.id, exc)
            return False
        return bool(result.status == SetStateStatus.ACCEPT)

    def execute(self, flow_run: Any) -> None:
        """Run one claimed flow run to its end in this process; a failure is logged, not raised."""
        from prefect.client.orchestration import get_client
        from prefect.flow_engine import run_flow

        flow = self.flows[flow_run.deployment_id]
        with get_client(sync_client=True) as client:
            fresh = client.read_flow_run(flow_run.id)
        try:
            run_flow(flow, flow_run=fresh, return_type="state")
        except BaseException as exc:  # noqa: BLE001 -- the engine has recorded the failure
            logger.error("flow run %s ended with %s", flow_run.name, exc)

    def serve(self) -> None:
        """Poll and execute until ``stop()``; a run in progress is allowed to finish."""
        from prefect.client.orchestration import get_client

        with (
            ThreadPoolExecutor(self.workers, thread_name_prefix="mlops-run") as pool,
            get_client(sync_client=True) as client,
        ):
            beat = 0.0
            while not self.stopped.is_set():
                if time.monotonic() - beat >= HEARTBEAT_SECONDS:
                    self.heartbeat(client)
                    beat = time.monotonic()
                self._running = {k: f for k, f in self._running.items() if not f.done()}
                free = self.workers - len(self._running)
                if free > 0:
                    try:
                        due = self.due_runs(client)
                    except Exception as exc:  # noqa: BLE001 -- the server may be restarting
                        logger.warning("could not read scheduled runs: %s", exc)
                        due = []
                    for flow_run in due[:free]:
                        if flow_run.id in self._running or not self.claim(client, flow_run):
                            continue
                        self._running[flow_run.id] = pool.submit(self.execute, flow_run)
                self.stopped.wait(self.poll_seconds)

    def stop(self) -> None:
        """Tell ``serve()`` to stop polling; it returns once the runs in progress have finished."""
        self.stopped.set()


def wait_until(condition: Any, timeout: float, every: float = 0.2) -> bool:
    """Poll ``condition()`` until true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return bool(condition())
